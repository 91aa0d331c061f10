"""A training run's checkpoint folder: the resumable state (`checkpoint.pt`), written and read here only.

`checkpoint.pt` holds tensors and plain data (read with `weights_only=True`, so it cannot run code):
the model, optimizer and scheduler states, the random state, where the run stands (`Progress`) and
the resolved config. `handover.json` is what a search leaves for a fold it runs as a `dga train`
process (its MLflow parent run and tags); `mlflow_run_id` lets `--resume` continue the same run.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dga.errors import InputError

CHECKPOINT = "checkpoint.pt"
HANDOVER = "handover.json"  # {"parent_run_id", "tags"} from the search
RUN_ID = "mlflow_run_id"


@dataclass
class Progress:
    """Where a run stands: epochs done, batches done in the current epoch, and the best epoch so far."""

    epoch: int = 0
    batch: int = 0
    history: list[dict] = field(default_factory=list)
    best_score: float = -math.inf
    best_state: dict | None = None
    best_epoch: int = -1
    stale: int = 0  # epochs since the best one (early stopping)


@dataclass
class Trainable:
    """The parts of a run whose state a checkpoint keeps."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any  # torch.optim.lr_scheduler.LRScheduler
    device: torch.device


def save(path: Path, parts: Trainable, progress: Progress, config: dict) -> None:
    """Write the checkpoint atomically (a unique temporary beside it, renamed): a kill mid-write
    never leaves a broken checkpoint."""
    state = {"model": parts.model.state_dict(), "optimizer": parts.optimizer.state_dict(),
             "scheduler": parts.scheduler.state_dict(), "epoch": progress.epoch, "batch": progress.batch,
             "rng_cpu": torch.get_rng_state(),
             "rng_cuda": torch.cuda.get_rng_state() if parts.device.type == "cuda" else None,
             "history": progress.history, "best_score": progress.best_score, "best_state": progress.best_state,
             "best_epoch": progress.best_epoch, "stale": progress.stale, "config": config}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        torch.save(state, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _read(path: Path, device: torch.device) -> dict:
    try:  # tensors and plain data only: a checkpoint cannot run code
        return torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:
        raise InputError(path, f"cannot be read as a plain checkpoint ({type(exc).__name__}): written by an older "
                               f"DGA or altered; remove it to start this run over") from None


def restore(path: Path, parts: Trainable) -> Progress:
    """Load a checkpoint into the run's parts; returns where the run stood."""
    state = _read(path, parts.device)
    parts.model.load_state_dict(state["model"])
    parts.optimizer.load_state_dict(state["optimizer"])
    parts.scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["rng_cpu"])
    if parts.device.type == "cuda" and state.get("rng_cuda") is not None:
        torch.cuda.set_rng_state(state["rng_cuda"])
    return Progress(state["epoch"], state["batch"], state["history"], state["best_score"], state["best_state"],
                    state.get("best_epoch", -1), state["stale"])


def saved_config(path: Path) -> dict:
    """The resolved config a checkpoint was written with ({} when it has none)."""
    return _read(path, torch.device("cpu")).get("config") or {}


def handover(folder: Path) -> dict:
    """What a search left for the fold trained in `folder` ({} when run alone)."""
    f = folder / HANDOVER
    return json.loads(f.read_text()) if f.is_file() else {}
