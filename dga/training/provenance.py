"""Provenance records for model bundles: where the data came from, how it was split, how the model
was trained. Plain dicts of JSON values, built from the objects the product already has (store,
splits, fit result); no MLflow here, so `dga train` with `tracking = "none"` records the same."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dga.config import Config
    from dga.data.store import Store
    from dga.data.windows import Region, Splits
    from dga.training.distributed import DistInfo
    from dga.training.fit import FitResult

import socket
from datetime import datetime, timezone
from typing import Any

from dga.software import software


def region_text(r: "Region") -> str:
    return f"{r.seqid}:{r.start + 1}-{r.end}"


def data_record(store: "Store", splits: "Splits", cfg: "Config") -> dict[str, Any]:
    """Dataset, store checksum, input files (name, size, SHA-256; no machine paths) and the split."""
    inputs = {k: {kk: vv for kk, vv in v.items() if kk != "path"} for k, v in store.manifest.get("inputs", {}).items()}
    training = "all non-test data (every fold)" if cfg.fold < 0 else \
        f"every fold but fold {cfg.fold} (its validation fold)"
    return {"dataset": cfg.dataset or store.manifest.get("dataset") or store.path.name,
            "store_checksum": store.checksum, "inputs": inputs,
            "split": {"k_folds": splits.k, "test_fraction": splits.test_fraction, "split_seed": splits.seed,
                      "folds": [[region_text(r) for r in f] for f in splits.folds],
                      "test": [region_text(r) for r in splits.test]},
            "trained_on": training + (f", cut to {cfg.train_region}" if cfg.train_region else ""),
            "validation_fold": cfg.fold}


def training_record(cfg: "Config", result: "FitResult", dist: "DistInfo", stop_reason: str = "") -> dict[str, Any]:
    """What fit() did: epochs, best epoch, wall time, bases seen, device; the per-epoch history."""
    history = [{k: v for k, v in r.items() if k != "val_confusion"} for r in result.history]
    steps_bases = sum(r.get("train_bases_per_s", 0.0) * r.get("epoch_seconds", 0.0) for r in result.history)
    # wall time from the per-epoch records, so a run resumed from its checkpoint counts every epoch
    seconds = sum(r.get("epoch_seconds", 0.0) + r.get("val_seconds", 0.0) for r in result.history)
    return {"epochs_run": len(result.history), "best_epoch": result.best_epoch,
            "train_seconds": round(seconds, 2), "bases_seen": int(steps_bases),
            "device": _device_name(dist.device), "world_size": dist.world_size, "host": socket.gethostname(),
            "n_parameters": result.n_parameters, "stopped": stop_reason or "completed",
            "validation": dict(result.metrics), "history": history,
            "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"), **software()}


def _device_name(device) -> str:
    import torch

    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({torch.get_num_threads()} threads)"
