"""MLflow helpers: runs, params, metrics, confusion figures, model bundles in and out of MLflow.

Default store: SQLite under mlruns/ (MLflow 3's file store is in maintenance mode and raises),
artifacts in mlruns/artifacts. MLFLOW_TRACKING_URI overrides it (e.g. a cluster tracking server).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dga.data.store import Store

import json
import logging
import os
import socket
from pathlib import Path
from typing import Any

import numpy as np

import dga
from dga.labels import CLASS_NAMES
from dga.redact import redact


def default_tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path('mlruns').resolve()}/mlflow.db"


def _sqlite_file(uri: str) -> Path | None:
    """The database file of a sqlite:/// URI, None for any other store."""
    return Path(uri[len("sqlite:///"):]) if uri.startswith("sqlite:///") else None


def setup(uri: str | None = None) -> str:
    """Point MLflow at `uri` (default: the local SQLite store under mlruns/) and return it."""
    import mlflow

    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # no download bars in logs
    uri = uri or default_tracking_uri()
    db = _sqlite_file(uri)
    if db is not None:
        db.parent.mkdir(parents=True, exist_ok=True)
    # MLflow's own INFO lines (creating tables, migrations) are nothing a DGA user acts on
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    mlflow.set_tracking_uri(uri)
    return uri


EXPERIMENT_KIND, TRAINING_KIND = "mlflow.experimentKind", "custom_model_development"


def experiment_id(name: str) -> str:
    """Get or create an experiment; local SQLite stores keep artifacts in <db dir>/artifacts."""
    import mlflow

    exp = mlflow.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    db = _sqlite_file(mlflow.get_tracking_uri())
    location = (db.parent / "artifacts").resolve().as_uri() if db is not None else None
    try:
        # a model-training experiment: MLflow 3's UI opens it on its training runs, not the GenAI views
        return mlflow.create_experiment(name, artifact_location=location, tags={EXPERIMENT_KIND: TRAINING_KIND})
    except mlflow.exceptions.MlflowException:  # another worker created it first
        created = mlflow.get_experiment_by_name(name)
        assert created is not None
        return created.experiment_id


def run_tags(device: str, world_size: int, store_checksum: str) -> dict[str, str]:
    from dga.software import software

    return {**software(), **process_tags(), "device": device, "world_size": str(world_size),
            "store_checksum": store_checksum}


def process_tags() -> dict[str, str]:
    """Which process runs a run: `end_orphaned_runs` ends the runs of processes that no longer exist."""
    return {"host": socket.gethostname(), "dga.pid": str(os.getpid())}


def end_orphaned_runs(experiment_id: str, tags: dict[str, str]) -> list[str]:
    """Runs of this experiment with `tags` still RUNNING although the process that ran them on this
    host is gone (killed with -9, the machine lost power): ended as KILLED, with the reason. Returns
    their ids. Runs of live processes, and of other hosts, are left alone."""
    import mlflow

    from dga.files import process_alive

    where = " and ".join(["attributes.status = 'RUNNING'"] + [f"tags.`{k}` = '{v}'" for k, v in tags.items()])
    client = mlflow.MlflowClient()
    ended = []
    for run in client.search_runs([experiment_id], where):
        pid, host = run.data.tags.get("dga.pid", ""), run.data.tags.get("host")
        if host == socket.gethostname() and pid.isdigit() and not process_alive(int(pid)):
            client.set_tag(run.info.run_id, "failure_reason", f"process {pid} ended without finishing this run")
            client.set_terminated(run.info.run_id, status="KILLED")
            ended.append(run.info.run_id)
    return ended


def log_store_input(store: "Store", context: str = "training") -> None:
    """The store manifest as the run's dataset input (source, digest = store checksum) and as an artifact."""
    import mlflow
    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.data.sources import LocalArtifactDatasetSource  # type: ignore[attr-defined]

    name = store.manifest.get("dataset") or store.path.name
    source = LocalArtifactDatasetSource(str(store.path.resolve()))
    dataset = MetaDataset(source, name=name, digest=store.checksum)  # type: ignore[abstract]
    mlflow.log_input(dataset, context=context)
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


class _BundleFlavor:
    """MLflow flavor `dga`: the model version's files are the bundle folder itself (plus MLmodel).
    No pickle and no python_function loader: DGA reads it back with `dga.bundle.read`, which
    verifies the checksums and loads tensors only."""

    __name__ = "dga"

    @staticmethod
    def save_model(path: str, mlflow_model, files: list[Path], **_: Any) -> None:
        import shutil

        Path(path).mkdir(parents=True)
        for f in files:  # a bundle's verified files (`dga.bundle.files`), copied as regular files
            shutil.copyfile(f, Path(path) / f.name, follow_symlinks=False)
        mlflow_model.add_flavor("dga", dga_version=dga.__version__, reader="dga.bundle.read")
        mlflow_model.save(str(Path(path) / "MLmodel"))


def log_bundle(files: list[Path], name: str = "model") -> str:
    """Log a bundle as the active run's model (flavor `dga`): `files`, the bundle's verified files
    (`dga.bundle.files`: what its checksums list and nothing else); returns its model URI."""
    from mlflow.models import Model

    info = Model.log(artifact_path=None, name=name, flavor=_BundleFlavor, files=list(files))
    return info.model_uri


def registered_weights_sha256(uri: str) -> str | None:
    """The weights' SHA-256 recorded when the model version `uri` (models:/NAME@ALIAS or
    models:/NAME/VERSION) was registered; None for other URIs and versions registered without it."""
    import mlflow

    if not uri.startswith("models:/"):
        return None
    ref = uri[len("models:/"):]
    client = mlflow.MlflowClient()
    if "@" in ref:
        name, _, alias = ref.partition("@")
        mv = client.get_model_version_by_alias(name, alias)
    else:
        name, _, version = ref.rpartition("/")
        if not name or not version.isdigit():  # a logged model's id (models:/m-...), not a registered version
            return None
        mv = client.get_model_version(name, version)
    return mv.tags.get("weights_sha256")


def download_bundle(uri: str, dst: Path) -> Path:
    """Download an MLflow model (`models:/...`, `runs:/...`) into `dst`; returns the bundle folder.
    A failed lookup is a user error naming the URI, and nothing is created in the working directory."""
    import mlflow
    from mlflow.exceptions import MlflowException

    from dga.errors import InputError

    db = _sqlite_file(default_tracking_uri())
    if db is not None and not db.is_file():  # a lookup must not create an empty store as a side effect
        raise InputError(None, f"cannot load {uri}: no MLflow store at {db} (set MLFLOW_TRACKING_URI, or run "
                               f"from the folder holding mlruns/)")
    setup()
    try:
        path = mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(dst))
    except (MlflowException, OSError) as exc:
        first = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
        raise InputError(None, f"cannot load {uri} from {redact(mlflow.get_tracking_uri())}: {redact(first)} "
                               f"(set MLFLOW_TRACKING_URI, or run from the folder holding mlruns/)") from None
    return Path(path)


def exec_mlflow_server(args: list[str]) -> None:
    """Replace this process with `mlflow server ARGS` (the venv's mlflow first), without MLflow's
    background job runner and telemetry: it starts in about half the time."""
    import shutil
    import sys

    from dga.errors import InputError

    mlflow_bin = shutil.which("mlflow", path=str(Path(sys.executable).parent)) or shutil.which("mlflow")
    if mlflow_bin is None:
        raise InputError(None, "the mlflow command is not installed (pip install mlflow==3.17.2)")
    # MLflow's own deprecation warnings (Starlette's WSGI middleware) are nothing a DGA user can act on
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", "MLFLOW_DISABLE_TELEMETRY": "true",
           "PYTHONWARNINGS": os.environ.get("PYTHONWARNINGS")
           or "ignore::DeprecationWarning,ignore:starlette.middleware.wsgi is deprecated"}
    os.execve(mlflow_bin, [mlflow_bin, "server", *args], env)


def write_json(path: Path, data: dict) -> None:
    from dga.files import write_text_atomic

    write_text_atomic(path, json.dumps(data, indent=2))
