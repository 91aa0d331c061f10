"""Can a study tell its configurations apart? The CV objective of its best trials against the
seed-to-seed spread of one configuration: the best trial's config cross-validated again with other
training seeds (same folds, same budget, same code path as a trial's folds).

    python benchmarks/quickstart_spread.py                     # after `make demo`, in the clone
    python benchmarks/quickstart_spread.py --study drosophila --seeds 1 2 3
    python benchmarks/quickstart_spread.py --seeds 0 --set epochs=10 --set bases_per_epoch=3000000   # 10x the bases

Reads the study from mlruns/optuna.db (or --storage); trains len(seeds) x k fold models, nothing
logged to MLflow. Prints the CPU it ran on.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import optuna
from cpu_features import cpu_line
from optuna.trial import TrialState

from dga.config import config_values, load_config
from dga.data.windows import splits_for
from dga.training.distributed import setup_distributed, store_for_config
from dga.training.fit import fit


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--study", default="quickstart")
    ap.add_argument("--storage", default=f"sqlite:///{Path('mlruns').resolve()}/optuna.db")
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--top", type=int, default=3, help="best complete trials whose CV range is compared")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="change the best configuration before training it again (e.g. epochs=10)")
    args = ap.parse_args()
    print(cpu_line())
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name=args.study, storage=args.storage)
    objective = study.user_attrs["search"]["objective"]
    done = sorted(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)), key=lambda t: -float(t.value))
    top = done[:args.top]
    print(f"study {args.study!r}: objective CV {objective}; best {len(top)} of {len(done)} complete trials:")
    for t in done:
        tag = f" [{t.user_attrs['baseline']}]" if t.user_attrs.get("baseline") else ""
        print(f"  trial {t.number:>3}{tag}: {float(t.value):.4f}  {t.params}")
    best = done[0]
    base = load_config(None, study.user_attrs["base_config"])
    cfg = load_config(None, {**base.to_dict(), **best.user_attrs.get("overrides", {}), **best.params})
    if args.set:
        cfg = load_config(None, {**cfg.to_dict(), **config_values(None, args.set)})
        print(f"trained again with {', '.join(args.set)}")
    dist = setup_distributed(cfg.device, cfg.threads)
    store = store_for_config(cfg, dist)
    splits = splits_for(store, cfg)
    scores = {} if args.set else {cfg.seed: float(best.value)}  # the study's score is of the unchanged config
    for seed in args.seeds:
        t0, folds = time.perf_counter(), []
        for fold in range(cfg.k_folds):
            result = fit(replace(cfg, fold=fold, seed=seed, tracking="none"), store, splits, dist, log=lambda s: None)
            folds.append(result.metrics[f"val_{objective}"])
        scores[seed] = float(np.mean(folds))
        print(f"  trial {best.number}'s configuration, training seed {seed}: CV {objective} {scores[seed]:.4f} "
              f"(folds {', '.join(f'{v:.4f}' for v in folds)}; {time.perf_counter() - t0:.0f} s)")
    vals = np.array(list(scores.values()))
    top_vals = np.array([float(t.value) for t in top])
    seed_range, top_range = float(vals.max() - vals.min()), float(top_vals.max() - top_vals.min())
    if len(vals) > 1:
        print(f"seed-to-seed (seeds {', '.join(map(str, scores))}): range {seed_range:.4f}, "
              f"std {vals.std(ddof=1):.4f}")
    print(f"best {len(top)} trials: range {top_range:.4f}; champion minus next best {top_vals[0] - top_vals[1]:.4f}"
          if len(top) > 1 else "one complete trial: no range")
    baseline = [t for t in done if t.user_attrs.get("baseline")]
    if baseline:
        gap = float(best.value) - float(baseline[0].value)
        print(f"champion minus the {baseline[0].user_attrs['baseline']!r} configuration: {gap:.4f}")

if __name__ == "__main__":
    main()
