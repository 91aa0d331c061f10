"""`dga train`: config -> store -> splits -> `make_model` (DDP-aware) -> the bundle, and its MLflow run on rank 0."""

from __future__ import annotations

import os
import socket
import sys
import time
from pathlib import Path
from typing import Callable

from dga import bundle as bundle_io
from dga.config import Config, config_values, load_config
from dga.data.windows import splits_for
from dga.files import write_text_atomic
from dga.lifecycle.pipeline import MadeModel, ModelJob, make_model
from dga.redact import redact
from dga.tracking import write_json
from dga.training import checkpoint as ckpt
from dga.training.distributed import DistInfo, cleanup_distributed, setup_distributed, store_for_config
from dga.training.finetune import adopt_architecture
from dga.training.fit import EXIT_DIVERGED, EXIT_PREEMPTED, Preempted, TrainingDiverged
from dga.training.teacher import lineage_tags


def run_name(cfg: Config) -> str:
    return cfg.run_name or (f"{cfg.dataset or 'custom'}-h{cfg.hidden_size}-l{cfg.num_layers}-k{cfg.bases_per_step}"
                            f"-w{cfg.window}-fold{cfg.fold}")


def run_training(config_path: str | None, overrides: list[str] | dict, resume: bool = False) -> int:
    """Train per the config; returns the process exit status (0, EXIT_PREEMPTED or EXIT_DIVERGED).

    Rank 0 writes the trained model as a bundle in `<checkpoint dir>/bundle` (weights, config,
    signal models, untuned decoder settings, provenance); with `tracking = "mlflow"` (default) it
    also logs the run and the bundle to MLflow."""
    cfg = adopt_architecture(load_config(config_path, overrides), config_values(config_path, overrides))
    dist = setup_distributed(cfg.device, cfg.threads)
    say = print if dist.is_main else (lambda *_: None)
    if dist.world_size > 1:  # every rank says where it runs (SLURM's node name, else the host)
        print(f"rank {dist.rank} of {dist.world_size} on node "
              f"{os.environ.get('SLURMD_NODENAME') or socket.gethostname()}", flush=True)
    try:
        status = _train_on_this_rank(cfg, dist, resume, say)
    except Preempted as exc:  # every rank is signalled and stops at the same step
        say(f"dga: {exc}; resume with --resume")
        status = EXIT_PREEMPTED
    except BaseException:
        cleanup_distributed(peers_alive=False)
        raise
    cleanup_distributed()
    return status


def _train_on_this_rank(cfg: Config, dist: DistInfo, resume: bool, say: Callable[..., None]) -> int:
    """This rank's share of `dga train`; returns its exit status (ranks agree on it, so they all
    reach the teardown barrier)."""
    store = store_for_config(cfg, dist, log=say)
    splits = splits_for(store, cfg)
    ckpt_dir = Path(cfg.checkpoint_dir or Path("checkpoints") / run_name(cfg))
    job = ModelJob(cfg, store, splits, dist, ckpt_dir, resume=resume, log=say)
    if not dist.is_main:
        try:
            make_model(job)
        except TrainingDiverged:  # the loss is all-reduced: rank 0 reports the same divergence
            return EXIT_DIVERGED
        return 0
    if cfg.tracking == "none":
        try:
            made = make_model(job)
        except TrainingDiverged as exc:
            print(f"dga: error: {exc}", file=sys.stderr)
            return EXIT_DIVERGED
        _report(made, ckpt_dir, {})
        print("tracking = none: nothing logged to MLflow")
        return 0
    return _train_and_track(job)


def _report(made: MadeModel, ckpt_dir: Path, summary: dict) -> None:
    result, folder = made.result, made.bundle
    summary = {**summary, "n_parameters": result.n_parameters, "best_epoch": result.best_epoch,
               "metrics": result.metrics, "confusion": None if result.confusion is None else result.confusion.tolist(),
               "bundle": str(folder)}
    write_json(ckpt_dir / "result.json", summary)
    if result.metrics:
        print(f"best epoch {result.best_epoch}: validation genic F1 {result.metrics['val_genic_f1']:.3f}, "
              f"macro F1 {result.metrics['val_macro_f1']:.3f}, accuracy {result.metrics['val_accuracy']:.3f}")
    print(f"bundle {folder} (use it with `dga predict --model {folder}`)")


def _train_and_track(job: ModelJob) -> int:
    """Rank 0's `dga train` with tracking: the run's params, curves, confusion and bundle in MLflow
    (a search's fold nests under its trial's run, as the folder's hand-over says)."""
    import mlflow

    from dga import tracking

    cfg, store, dist, ckpt_dir = job.cfg, job.store, job.dist, job.folder
    tracking.setup()
    exp_id = tracking.experiment_id(cfg.experiment)
    run_id_file = ckpt_dir / ckpt.RUN_ID
    run_id = run_id_file.read_text().strip() if job.resume and run_id_file.is_file() else None
    handover = ckpt.handover(ckpt_dir)
    parent = handover.get("parent_run_id")
    with mlflow.start_run(run_id=run_id, experiment_id=None if run_id else exp_id,
                          run_name=None if run_id else run_name(cfg),
                          parent_run_id=None if run_id else parent) as run:
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        write_text_atomic(run_id_file, run.info.run_id)
        if run_id is None:
            mlflow.log_params(cfg.to_dict())
            mlflow.set_tags(tracking.run_tags(str(dist.device), dist.world_size, store.checksum))
            mlflow.set_tags(handover.get("tags", {}))
            tracking.log_store_input(store)
        # a model of its own gets its decoder's signal models; a search fold's are fitted when tuning
        job.with_signals = parent is None
        job.provenance = {"mlflow": {"run_id": run.info.run_id, "experiment": cfg.experiment}}
        job.on_epoch = tracking.log_epoch
        try:
            made = make_model(job)
        except Preempted:
            mlflow.set_tag("preempted", "true")
            mlflow.end_run(status="KILLED")
            raise
        except TrainingDiverged as exc:
            print(f"dga: error: {exc}", file=sys.stderr)
            mlflow.set_tag("failure_reason", str(exc))
            mlflow.end_run(status="FAILED")
            return EXIT_DIVERGED
        _log_result(made, cfg)
        summary = {"run_id": run.info.run_id}
        if cfg.log_model and made.bundle is not None:
            t = time.perf_counter()
            summary["model_uri"] = tracking.log_bundle(bundle_io.files(made.bundle))
            print(f"logged model {summary['model_uri']} in {time.perf_counter() - t:.1f} s")
        _report(made, ckpt_dir, summary)
        print(f"MLflow run {run.info.run_id} (experiment {cfg.experiment!r}, {redact(mlflow.get_tracking_uri())})")
    return 0


def _log_result(made: MadeModel, cfg: Config) -> None:
    import mlflow

    from dga import tracking

    result = made.result
    mlflow.log_param("n_parameters", result.n_parameters)
    mlflow.set_tags(lineage_tags(result.parent, result.teacher))
    mlflow.log_metric("train_seconds", result.train_seconds)
    if result.stopped:
        mlflow.set_tag("stopped", result.stopped)
    if result.confusion is not None:
        mlflow.log_metrics({f"best_{k}": v for k, v in result.metrics.items()})
        tracking.log_confusion(result.confusion, "val_confusion",
                               f"validation fold {cfg.fold}, best epoch {result.best_epoch}")
    tracking.log_curves(result.history)
