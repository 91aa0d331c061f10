"""One trial: its configuration trained and validated on every fold (in this process, or as a
torchrun job per fold), each fold a nested MLflow run, the running mean reported to the pruner."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np

from dga.config import Config
from dga.data.store import Store
from dga.data.windows import Splits
from dga.errors import InputError
from dga.files import write_text_atomic
from dga.search.files import fold_checkpoint_dir
from dga.search.space import RUNTIME_FIELDS, SearchConfig, trial_config
from dga.training import checkpoint as ckpt
from dga.training.distributed import DistInfo
from dga.training.fit import EXIT_PREEMPTED, Preempted
from dga.training.teacher import lineage_tags


@dataclass
class FoldResult:
    fold: int
    metrics: dict[str, float]
    confusion: np.ndarray
    run_id: str = ""


@dataclass
class TrialContext:
    """What every trial of one worker shares: the search settings, the base config, the data and
    its split, the process group, where MLflow and the checkpoints go."""

    sc: SearchConfig
    base: Config
    store: Store
    splits: Splits
    dist: DistInfo
    experiment_id: str
    checkpoint_root: Path
    folds: list[int] = field(default_factory=list)
    log: Callable[[str], None] = print
    stop: dict[str, bool] = field(default_factory=lambda: {"flag": False})  # set by SIGTERM between folds


def _fold_checkpoint_dir(ctx: TrialContext, origin: int, fold: int) -> Path:
    return fold_checkpoint_dir(ctx.checkpoint_root, origin, fold)


def _fresh_checkpoint(ckpt_dir: Path, cfg: Config) -> None:
    """Keep a fold checkpoint only if it was written for this config (names and runtime settings
    aside: a retried trial has another number), else start over."""
    path = ckpt_dir / ckpt.CHECKPOINT
    if path.is_file():
        try:
            saved = ckpt.saved_config(path)
        except InputError:  # unreadable as plain data (an older DGA's, or altered): start the fold over
            saved = {}
        mine = cfg.to_dict()
        if any(saved.get(k) != v for k, v in mine.items() if k not in RUNTIME_FIELDS):
            shutil.rmtree(ckpt_dir)


def _fold_in_process(ctx: TrialContext, cfg: Config, ckpt_dir: Path, tags: dict) -> FoldResult:
    import mlflow

    from dga import tracking
    from dga.training.bundling import write_bundle
    from dga.training.fit import fit

    resumed = (ckpt_dir / ckpt.CHECKPOINT).is_file()
    with mlflow.start_run(experiment_id=ctx.experiment_id, run_name=cfg.run_name, nested=True,
                          tags={**tags, "resumed_from_checkpoint": str(resumed).lower()}) as run:
        mlflow.log_params(cfg.to_dict())
        logged = []

        def on_epoch(record: dict) -> None:
            tracking.log_epoch(record)
            logged.append(record["epoch"])

        def epoch_lines(text: str) -> None:  # a line per epoch with its genic F1, nothing else of fit()'s
            if text.startswith("epoch"):
                ctx.log(f"    fold {cfg.fold} {text}")

        result = fit(cfg, ctx.store, ctx.splits, ctx.dist, checkpoint=ckpt_dir / ckpt.CHECKPOINT, resume=True,
                     on_epoch=on_epoch, log=epoch_lines)
        for record in result.history:  # epochs trained before a resume
            if record["epoch"] not in logged:
                tracking.log_epoch(record)
        mlflow.log_param("n_parameters", result.n_parameters)
        mlflow.set_tags(lineage_tags(result.parent, result.teacher))
        mlflow.log_metrics({f"best_{k}": v for k, v in result.metrics.items()})
        assert result.confusion is not None  # a fold always validates
        tracking.log_confusion(result.confusion, "val_confusion", f"fold {cfg.fold}, best epoch {result.best_epoch}")
        tracking.log_curves(result.history)
        # the fold model as a bundle: registration tunes the winner's decoder on these
        write_bundle(cfg, ctx.store, ctx.splits, ctx.dist, result, ckpt_dir, with_signals=False,
                     extra={"mlflow": {"run_id": run.info.run_id}})
        return FoldResult(cfg.fold, result.metrics, result.confusion, run.info.run_id)


def _fold_as_torchrun(ctx: TrialContext, cfg: Config, ckpt_dir: Path, tags: dict, parent_run_id: str) -> FoldResult:
    """The fold as a DDP job: `torchrun --standalone -m dga.cli train` on this node's processes (a
    separate process group is what DDP needs). The one hand-over: the fold's config.json and
    handover.json (parent MLflow run, tags) in its checkpoint folder, read by `dga train`."""
    from dga.training.fit import EXIT_DIVERGED, Preempted, TrainingDiverged

    ckpt_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(ckpt_dir / "config.json", json.dumps(cfg.to_dict(), indent=1))
    launcher = os.environ.get("DGA_TRIAL_LAUNCHER", "").split() or [
        sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={ctx.sc.processes_per_trial}"]
    cmd = [*launcher, "-m", "dga.cli", "train", str(ckpt_dir / "config.json"), "--resume"]
    import mlflow

    write_text_atomic(ckpt_dir / ckpt.HANDOVER, json.dumps({"parent_run_id": parent_run_id, "tags": tags}, indent=1))
    env = {**os.environ, "MLFLOW_TRACKING_URI": mlflow.get_tracking_uri()}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode == EXIT_DIVERGED:
        raise TrainingDiverged(proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "diverged")
    if proc.returncode == EXIT_PREEMPTED:
        raise Preempted(f"fold {cfg.fold} was preempted (checkpoint kept)")
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        raise RuntimeError(f"fold {cfg.fold}: `{' '.join(cmd)}` exited {proc.returncode}:\n{tail}")
    summary = json.loads((ckpt_dir / "result.json").read_text())
    return FoldResult(cfg.fold, summary["metrics"], np.array(summary["confusion"]), summary["run_id"])


def cv_summary(results: list[FoldResult]) -> dict[str, float]:
    """Mean and standard deviation over folds of every validation metric (`cv_<metric>_mean/_std`)."""
    out = {}
    for key in results[0].metrics:
        vals = np.array([r.metrics[key] for r in results], dtype=float)
        name = key[4:] if key.startswith("val_") else key
        out[f"cv_{name}_mean"] = float(vals.mean())
        out[f"cv_{name}_std"] = float(vals.std(ddof=1)) if len(vals) > 1 else 0.0
    return out


def describe(overrides: dict) -> str:
    short = {"hidden_size": "h", "num_layers": "l", "bases_per_step": "k", "window": "w", "lr": "lr",
             "batch_size": "b", "dropout": "d"}
    parts = [f"{short.get(k, k)}={v:.3g}" if isinstance(v, float) else f"{short.get(k, k)}={v}"
             for k, v in overrides.items()]
    return " ".join(parts)


class DuplicateConfiguration(Exception):
    """A proposed configuration is complete or running already: the trial fails without training."""


def _completed_with(study, params: dict, number: int) -> int | None:
    """The number of another COMPLETE or RUNNING trial with exactly these parameters, if any (a
    running one: another worker trains that configuration right now)."""
    for t in study.get_trials(deepcopy=False):
        if t.number != number and t.state.name in ("COMPLETE", "RUNNING") and t.params == params and params:
            return t.number
    return None


def _trial_tags(ctx: TrialContext, number: int, overrides: dict, baseline: str | None, origin: int) -> dict[str, str]:
    """The trial run's tags: study, trial, store, objective, lineage (fine-tuned, distilled), baseline, retry."""
    sc = ctx.sc
    tags = {"optuna_study": sc.study_name, "optuna_trial": str(number),
            "store_checksum": ctx.store.checksum, "dga.kind": "trial", "dga.objective": sc.objective}
    init_from = overrides.get("init_from", ctx.base.init_from)
    tags.update({"dga.init": "fine-tuned", "dga.parent_uri": init_from} if init_from else {"dga.init": "scratch"})
    teacher = overrides.get("teacher", ctx.base.teacher)
    if teacher and float(overrides.get("distill_weight", ctx.base.distill_weight)) > 0:
        tags["dga.teacher_uri"] = teacher  # filter distilled against plain trials in the runs view
    if baseline:
        tags["baseline"] = baseline
    if origin != number:
        tags["retry_of_trial"] = str(origin)
    return tags


def make_objective(ctx: TrialContext):
    """The study's objective: a trial's configuration trained on each CV fold in turn (a nested MLflow
    run per fold under the trial's run), the running mean reported after each fold so the pruner can
    stop it; returns the mean of the objective over the folds. A configuration already complete is
    failed without training; a SIGTERM checkpoints the fold and marks the trial preempted."""
    import mlflow
    import optuna

    from dga import tracking

    sc = ctx.sc
    metric = f"val_{sc.objective}"

    def objective(trial: optuna.Trial) -> float:
        overrides = dict(trial.user_attrs.get("overrides", {}))
        baseline = trial.user_attrs.get("baseline")
        if not baseline:
            overrides.update({p.name: p.suggest(trial) for p in sc.space})
            same = _completed_with(trial.study, trial.params, trial.number)
            if same is not None:  # TPE on a small categorical space can propose a finished configuration
                trial.set_user_attr("duplicate_of", same)
                trial.set_user_attr("fail_reason", f"duplicate of trial {same}")
                ctx.log(f"trial {trial.number}: {describe(overrides)} is trial {same}'s configuration, complete "
                        f"or running: not trained again")
                raise DuplicateConfiguration(f"same configuration as trial {same}")
        # A re-queued trial (its worker died) reuses the fold checkpoints of the trial it retries.
        frozen = trial.study.get_trials(deepcopy=False)[trial.number]
        origin = frozen.system_attrs.get("failed_trial", trial.number)
        tags = _trial_tags(ctx, trial.number, overrides, baseline, origin)
        label = f"trial {trial.number}" + (f" ({baseline})" if baseline else "")
        ctx.log(f"{label}: {describe(overrides)}")
        with mlflow.start_run(experiment_id=ctx.experiment_id, run_name=f"trial-{trial.number:03d}", tags=tags) as run:
            trial.set_user_attr("mlflow_run_id", run.info.run_id)
            results: list[FoldResult] = []
            try:
                cfg = trial_config(ctx.base, overrides)
                # the trial as the study runs it: its folds, the study's experiment, no model of its own
                # (run name and checkpoint folder are the study's, so that only searched values differ
                # between trial runs and MLflow's comparison view shows those)
                mlflow.log_params({**replace(cfg, experiment=sc.mlflow_experiment, log_model=False).to_dict(),
                                   "fold": ",".join(map(str, ctx.folds)), "checkpoint_dir": str(ctx.checkpoint_root)})
                mlflow.set_tags(tracking.run_tags(str(ctx.dist.device), ctx.sc.processes_per_trial,
                                                  ctx.store.checksum))
                t0 = time.perf_counter()
                for step, fold in enumerate(ctx.folds):
                    if ctx.stop["flag"]:
                        raise Preempted(f"SIGTERM before fold {fold}")
                    fcfg = replace(cfg, fold=fold, run_name=f"trial-{trial.number:03d}-fold-{fold}", log_model=False,
                                   experiment=sc.mlflow_experiment,
                                   checkpoint_dir=str(_fold_checkpoint_dir(ctx, origin, fold)))
                    ckpt_dir = Path(fcfg.checkpoint_dir)
                    _fresh_checkpoint(ckpt_dir, fcfg)
                    fold_tags = {**tags, "fold": str(fold), "dga.kind": "fold"}
                    if ctx.splits.fold_names:  # leave-one-genome-out: the fold is a genome
                        fold_tags["genome"] = ctx.splits.fold_name(fold)
                    if sc.processes_per_trial > 1:
                        res = _fold_as_torchrun(ctx, fcfg, ckpt_dir, fold_tags, run.info.run_id)
                    else:
                        res = _fold_in_process(ctx, fcfg, ckpt_dir, fold_tags)
                    results.append(res)
                    if ctx.splits.fold_names:  # each held-out genome's score on the trial's run
                        mlflow.log_metric(f"{sc.objective}_{ctx.splits.fold_name(fold)}", res.metrics[metric])
                    # every fold's score beside the mean and spread: cv_<objective>_fold_<k>, _mean, _std sort
                    # together in MLflow's tables
                    name = ctx.splits.fold_names[fold] if ctx.splits.fold_names else str(fold)
                    mlflow.log_metric(f"cv_{sc.objective}_fold_{name}", res.metrics[metric])
                    running = float(np.mean([r.metrics[metric] for r in results]))
                    mlflow.log_metric(f"cv_running_{sc.objective}", running, step=step)
                    trial.report(running, step)
                    ctx.log(f"  fold {fold}: {sc.objective} {res.metrics[metric]:.3f} (running mean {running:.3f}, "
                            f"{time.perf_counter() - t0:.0f} s)")
                    if trial.should_prune():
                        _log_cv(results, trial, sc, partial=True)
                        # pruned is a verdict, not a failure: the run ends FINISHED, named and tagged pruned
                        mlflow.set_tags({"optuna_state": "PRUNED",
                                         "mlflow.runName": f"trial-{trial.number:03d} (pruned)"})
                        ctx.log(f"  pruned after {step + 1} fold(s)")
                        mlflow.end_run("FINISHED")
                        raise optuna.TrialPruned(f"running mean {running:.3f} after {step + 1} fold(s)")
                score = _log_cv(results, trial, sc)
                mlflow.set_tag("optuna_state", "COMPLETE")
                mlflow.log_metric("trial_seconds", time.perf_counter() - t0)
                ctx.log(f"  CV {sc.objective} {score:.4f}")
                return score
            except optuna.TrialPruned:
                raise
            except Preempted as exc:
                # checkpointed: not a failure of the configuration; run_worker queues it again
                trial.set_user_attr("preempted", str(exc))
                mlflow.set_tags({"optuna_state": "PREEMPTED", "preempted": str(exc)})
                mlflow.end_run("KILLED")
                ctx.log(f"  preempted: {exc}")
                raise
            except Exception as exc:
                reason = f"{type(exc).__name__}: {exc}"[:2000]
                trial.set_user_attr("fail_reason", reason)
                mlflow.set_tags({"optuna_state": "FAIL", "failure_reason": reason})
                mlflow.end_run("FAILED")
                ctx.log(f"  FAILED: {reason}")
                raise

    objective.stop = ctx.stop  # type: ignore[attr-defined]  # read by run_worker's SIGTERM handler
    return objective


def _log_cv(results: list[FoldResult], trial, sc: SearchConfig, partial: bool = False) -> float:
    import mlflow

    from dga import tracking

    summary = cv_summary(results)
    mlflow.log_metrics({**summary, "cv_folds_done": len(results)})
    cm = np.sum([r.confusion for r in results], axis=0)
    tracking.log_confusion(cm, "cv_confusion", f"trial {trial.number}: summed over "
                                               f"{len(results)} fold(s){' (pruned)' if partial else ''}")
    trial.set_user_attr("cv", {k: round(v, 6) for k, v in summary.items()})
    return summary[f"cv_{sc.objective}_mean"]
