"""The only module that imports MLflow: runs, params, metrics, confusion figures, models, registry.

Default store: SQLite under mlruns/ (MLflow 3's file store is in maintenance mode and raises),
artifacts in mlruns/artifacts. MLFLOW_TRACKING_URI overrides it (e.g. a cluster tracking server).
"""

from __future__ import annotations

import json
import os
import platform
import socket
import subprocess
from pathlib import Path
from typing import Any

import numpy as np

import dga
from dga.labels import CLASS_NAMES

PIP_REQUIREMENTS = ["torch==2.13.0", "mlflow==3.17.2", "numpy"]


def default_tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path('mlruns').resolve()}/mlflow.db"


def _sqlite_file(uri: str) -> Path | None:
    """The database file of a sqlite:/// URI, None for any other store."""
    return Path(uri[len("sqlite:///"):]) if uri.startswith("sqlite:///") else None


def setup(uri: str | None = None) -> str:
    """Point MLflow at `uri` (default: the local SQLite store under mlruns/) and return it."""
    import mlflow

    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    uri = uri or default_tracking_uri()
    db = _sqlite_file(uri)
    if db is not None:
        db.parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    return uri


def experiment_id(name: str) -> str:
    """Get or create an experiment; local SQLite stores keep artifacts in <db dir>/artifacts."""
    import mlflow

    exp = mlflow.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    db = _sqlite_file(mlflow.get_tracking_uri())
    location = (db.parent / "artifacts").resolve().as_uri() if db is not None else None
    try:
        return mlflow.create_experiment(name, artifact_location=location)
    except mlflow.exceptions.MlflowException:  # another worker created it first
        return mlflow.get_experiment_by_name(name).experiment_id


def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                              cwd=Path(dga.__file__).parent).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def run_tags(device: str, world_size: int, store_checksum: str) -> dict[str, str]:
    import torch

    return {"git_commit": git_commit(), "host": socket.gethostname(), "device": device,
            "world_size": str(world_size), "torch_version": torch.__version__, "dga_version": dga.__version__,
            "python": platform.python_version(), "store_checksum": store_checksum}


def log_store_input(store, context: str = "training") -> None:
    """The store manifest as the run's dataset input (source, digest = store checksum) and as an artifact."""
    import mlflow
    from mlflow.data.sources import LocalArtifactDatasetSource
    from mlflow.data.meta_dataset import MetaDataset

    name = store.manifest.get("dataset") or store.path.name
    mlflow.log_input(MetaDataset(LocalArtifactDatasetSource(str(store.path.resolve())), name=name,
                                 digest=store.checksum), context=context)
    mlflow.log_dict(store.manifest, "store_manifest.json")


def log_epoch(record: dict[str, Any]) -> None:
    import mlflow

    mlflow.log_metrics({k: float(v) for k, v in record.items()
                        if k not in ("epoch", "val_confusion") and np.isfinite(v)}, step=int(record["epoch"]))
    if "val_confusion" in record:  # every evaluation's confusion matrix, not only the best one
        log_confusion(record["val_confusion"], f"confusion/epoch_{int(record['epoch']):03d}",
                      f"validation, epoch {record['epoch']}")


def confusion_figure(cm: np.ndarray, title: str):
    """Counts and row-normalised (recall) panels with class names on the axes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import ConfusionMatrixDisplay

    cm = np.asarray(cm)
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.6))
    ConfusionMatrixDisplay(cm, display_labels=CLASS_NAMES).plot(ax=axes[0], values_format=",d", colorbar=False,
                                                                cmap="Blues")
    axes[0].set_title("bases (rows: reference)")
    ConfusionMatrixDisplay(norm, display_labels=CLASS_NAMES).plot(ax=axes[1], values_format=".2f",
                                                                  colorbar=False, cmap="Blues")
    axes[1].set_title("row-normalised (recall)")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def log_confusion(cm: np.ndarray, name: str, title: str = "") -> None:
    """Figure (PNG) and data (JSON) of a confusion matrix, as `<name>.png` / `<name>.json`."""
    import matplotlib.pyplot as plt
    import mlflow

    fig = confusion_figure(cm, title or name)
    mlflow.log_figure(fig, f"{name}.png")
    plt.close(fig)
    mlflow.log_dict({"labels": list(CLASS_NAMES), "rows": "reference", "columns": "prediction",
                     "matrix": np.asarray(cm).tolist()}, f"{name}.json")


def log_curves(history: list[dict]) -> None:
    """Loss and validation-F1 curves per epoch as one figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import mlflow

    epochs = [r["epoch"] for r in history]
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    a.plot(epochs, [r["train_loss"] for r in history], "o-", label="train")
    if "val_loss" in history[0]:
        a.plot(epochs, [r["val_loss"] for r in history], "o-", label="validation")
        for key in ("val_genic_f1", "val_subgenic_f1", "val_macro_f1", "val_f1_CDS", "val_f1_UTR"):
            b.plot(epochs, [r[key] for r in history], "o-", label=key[4:])
        b.set_ylim(0, 1)
        b.legend()
    a.set_xlabel("epoch"), a.set_ylabel("cross-entropy"), a.legend(), b.set_xlabel("epoch")
    a.set_title("loss"), b.set_title("validation F1")
    fig.tight_layout()
    mlflow.log_figure(fig, "curves.png")
    plt.close(fig)


def log_model(model, cfg) -> str:
    """Log the trained model with signature and input example; returns its model URI.

    Pickle format, not MLflow's default pt2 (torch.export): pt2 freezes the sequence length to the
    example's, while prediction runs any window length. Loading needs `dga` importable.
    """
    import mlflow
    import torch
    from mlflow.models import infer_signature

    model = model.to("cpu").eval()
    example = np.zeros((1, cfg.window, 4), dtype=np.float32)
    example[0, np.arange(cfg.window), np.arange(cfg.window) % 4] = 1.0
    with torch.no_grad():
        out = model(torch.from_numpy(example)).numpy()
    info = mlflow.pytorch.log_model(model, name="model", signature=infer_signature(example, out),
                                    input_example=example, serialization_format="pickle",
                                    pip_requirements=PIP_REQUIREMENTS + [f"dga=={dga.__version__}"])
    mlflow.log_dict(cfg.to_dict(), "config.json")
    return info.model_uri


def exec_mlflow_server(args: list[str]) -> None:
    """Replace this process with `mlflow server ARGS` (the venv's mlflow first), without MLflow's
    background job runner and telemetry: it starts in about half the time."""
    import shutil
    import sys

    from dga.errors import InputError

    mlflow_bin = shutil.which("mlflow", path=str(Path(sys.executable).parent)) or shutil.which("mlflow")
    if mlflow_bin is None:
        raise InputError(None, "the mlflow command is not installed (pip install mlflow==3.17.2)")
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", "MLFLOW_DISABLE_TELEMETRY": "true"}
    os.execve(mlflow_bin, [mlflow_bin, "server", *args], env)


def write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2))
    os.replace(tmp, path)
