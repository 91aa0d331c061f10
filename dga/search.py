"""Optuna study over training configurations, each trial scored by blocked k-fold cross-validation.

One experiment file holds both the training config (top level) and a `[search]` table: study
name, budget, sampler, pruner, objective, search space (names are Config fields), baseline trials
and storage. A trial trains and validates on every fold (never the test region), reports the
running mean after each fold (so the pruner can stop it early) and returns the mean.

MLflow layout: one experiment per study; a parent run per trial (params, mean and std over folds
of every metric, the summed confusion matrix, the Optuna state) with a nested run per fold, and a
`study-summary` run holding Optuna's plots and the trial table.

Workers (processes or machines) share the study through its storage (SQLite under mlruns/ by
default, PostgreSQL on a cluster). Heartbeats mark a trial whose worker died FAILED (in Optuna
and in MLflow) and queue it again; its folds resume from their checkpoints.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from dga.config import FIELD_NAMES, OBJECTIVES, Config, coerce, load_config, read_experiment
from dga.errors import InputError
from dga.labels import N_CLASSES, Label
from dga.metrics import metrics_from_confusion
from dga.study_files import fold_checkpoint_dir, study_checkpoint_root
from dga.train import EXIT_PREEMPTED, Preempted

# Fields a trial may not change: they define the data, the folds and where things go.
FIXED_FIELDS = {"dataset", "fasta", "gff", "store", "k_folds", "test_fraction", "split_seed", "fold",
                "checkpoint_dir", "experiment", "run_name", "log_model", "tracking"}
# Runtime fields that may differ between workers (and between runs of the same study).
RUNTIME_FIELDS = {"device", "bf16", "num_workers", "threads", "checkpoint_dir", "experiment", "run_name",
                  "log_model", "val_batch_size", "tracking", "deadline_minutes"}


@dataclass(frozen=True)
class ParamSpec:
    """One searched parameter: int / float range (optionally log or stepped) or a categorical list."""

    name: str
    kind: str  # int | float | categorical
    low: float = 0.0
    high: float = 0.0
    log: bool = False
    step: float | None = None
    choices: tuple = ()

    def suggest(self, trial) -> Any:
        if self.kind == "int":
            return trial.suggest_int(self.name, int(self.low), int(self.high), step=int(self.step or 1), log=self.log)
        if self.kind == "float":
            return trial.suggest_float(self.name, self.low, self.high, step=self.step, log=self.log)
        return trial.suggest_categorical(self.name, list(self.choices))

    def describe(self) -> str:
        if self.kind == "categorical":
            return f"{self.name} in {list(self.choices)}"
        return f"{self.name} in [{self.low:g}, {self.high:g}]{' log' if self.log else ''}"


@dataclass(frozen=True)
class SearchConfig:
    study_name: str
    n_trials: int = 10  # COMPLETE + PRUNED trials the study should end with (over all workers and runs)
    timeout: float = 0.0  # seconds per `dga search` invocation; no new trial starts after it (0 = none)
    sampler: str = "tpe"  # tpe | random
    sampler_seed: int = 0
    pruner: str = "median"  # median | none
    pruner_startup_trials: int = 2  # completed trials before the pruner may prune
    objective: str = "genic_f1"  # mean validation metric over folds to maximise
    folds: tuple[int, ...] = ()  # folds each trial runs (default: all k)
    processes_per_trial: int = 1  # > 1: every fold runs as a torchrun DDP job (gloo on CPU, nccl on GPU)
    storage: str = ""  # Optuna storage URL; default DGA_OPTUNA_STORAGE or sqlite:///mlruns/optuna.db
    experiment: str = ""  # MLflow experiment (default: the study name)
    heartbeat_interval: int = 10  # seconds between a running trial's heartbeats
    grace_period: int = 60  # a RUNNING trial without heartbeat for this long is FAILED and re-queued
    max_retry: int = 2  # how often such a trial is re-queued
    register: bool = True  # register the best configuration's model at the end of `dga search`
    decoder_trials: int = 40  # registration: Optuna trials tuning the HMM decoder on the best trial's fold models
    decoder_bases: int = 3_000_000  # registration: bases of each validation fold the decoder is tuned on
    cpus_per_process: int = 1  # SLURM: CPUs per training process (cpus-per-task = this x processes_per_trial)
    trial_minutes: float = 60.0  # SLURM: time one trial may take (sets the array tasks' --time)
    slurm_mem: str = "4G"  # SLURM: memory per worker task
    space: tuple[ParamSpec, ...] = ()
    baselines: tuple[tuple[str, tuple[tuple[str, Any], ...]], ...] = ()  # (name, overrides) run first

    @property
    def mlflow_experiment(self) -> str:
        return self.experiment or self.study_name

    def storage_url(self) -> str:
        if self.storage:
            return self.storage
        if os.environ.get("DGA_OPTUNA_STORAGE"):
            return os.environ["DGA_OPTUNA_STORAGE"]
        return f"sqlite:///{Path('mlruns').resolve()}/optuna.db"

    def to_dict(self) -> dict:
        return {"study_name": self.study_name, "experiment": self.mlflow_experiment, "n_trials": self.n_trials,
                "objective": self.objective,
                "sampler": self.sampler, "sampler_seed": self.sampler_seed, "pruner": self.pruner,
                "folds": list(self.folds), "processes_per_trial": self.processes_per_trial,
                "decoder_trials": self.decoder_trials, "decoder_bases": self.decoder_bases,
                "space": [p.describe() for p in self.space],
                "baselines": {name: dict(o) for name, o in self.baselines}}


def _parse_param(name: str, spec: Any, path: str) -> ParamSpec:
    if name not in FIELD_NAMES:
        raise InputError(path, f"[search.space]: {name!r} is not a training config field")
    if name in FIXED_FIELDS:
        raise InputError(path, f"[search.space]: {name!r} defines the data or folds and cannot be searched")
    if isinstance(spec, list):
        spec = {"choices": spec}
    if not isinstance(spec, dict):
        raise InputError(path, f"[search.space]: {name} must be a list of choices or a table "
                               "{low, high[, log, step]} / {choices}")
    if "choices" in spec:
        choices = tuple(coerce(name, c, path) for c in spec["choices"])
        if not choices:
            raise InputError(path, f"[search.space]: {name} has no choices")
        return ParamSpec(name, "categorical", choices=choices)
    if "low" not in spec or "high" not in spec:
        raise InputError(path, f"[search.space]: {name} needs low and high (or choices)")
    unknown = set(spec) - {"low", "high", "log", "step"}
    if unknown:
        raise InputError(path, f"[search.space]: {name} has unknown keys {sorted(unknown)}")
    kind = "float" if isinstance(coerce(name, spec["low"], path), float) else "int"
    low, high = float(spec["low"]), float(spec["high"])
    if not low <= high or (spec.get("log") and low <= 0):
        raise InputError(path, f"[search.space]: {name} needs low <= high (and low > 0 with log)")
    return ParamSpec(name, kind, low, high, bool(spec.get("log", False)), spec.get("step"))


def load_search(path: str | Path, n_trials: int | None = None) -> SearchConfig:
    """The `[search]` table of an experiment file; unknown keys and parameters are errors naming them."""
    raw = read_experiment(path)
    table = dict(raw.get("search", {}))
    where = str(path)
    space = tuple(_parse_param(k, v, where) for k, v in table.pop("space", {}).items())
    baselines = []
    for i, entry in enumerate(table.pop("baseline", [])):
        entry = dict(entry)
        name = str(entry.pop("name", f"baseline-{i}"))
        for key in entry:
            if key in FIXED_FIELDS:
                raise InputError(where, f"[[search.baseline]] {name}: {key!r} cannot differ between trials")
        baselines.append((name, tuple((k, coerce(k, v, where)) for k, v in entry.items())))
    known = {f for f in SearchConfig.__dataclass_fields__} - {"space", "baselines"}
    unknown = set(table) - known
    if unknown:
        raise InputError(where, f"[search]: unknown keys {sorted(unknown)} (known: {', '.join(sorted(known))})")
    table.setdefault("study_name", Path(path).stem)
    table.setdefault("objective", raw.get("objective", "genic_f1"))
    if "folds" in table:
        table["folds"] = tuple(int(f) for f in table["folds"])
    if n_trials is not None:
        table["n_trials"] = n_trials
    try:
        sc = SearchConfig(space=space, baselines=tuple(baselines), **table)
    except TypeError as exc:
        raise InputError(where, f"[search]: {exc}") from None
    checks = {"objective": sc.objective in OBJECTIVES, "n_trials": sc.n_trials >= 1,
              "sampler": sc.sampler in ("tpe", "random"), "pruner": sc.pruner in ("median", "none"),
              "processes_per_trial": sc.processes_per_trial >= 1, "timeout": sc.timeout >= 0,
              "heartbeat_interval": sc.heartbeat_interval >= 1, "grace_period": sc.grace_period > sc.heartbeat_interval}
    for key, ok in checks.items():
        if not ok:
            raise InputError(where, f"[search]: value out of range: {key} = {getattr(sc, key)!r}")
    return sc


def trial_config(base: Config, overrides: dict[str, Any]) -> Config:
    """The base config with a trial's overrides (a bad combination raises InputError naming the key)."""
    return load_config(None, {**base.to_dict(), **overrides})


# --------------------------------------------------------------------------------------- storage
def _engine_kwargs(url: str) -> dict:
    # Several worker processes write one SQLite file: wait for the lock instead of failing at once.
    return {"connect_args": {"timeout": 120}} if url.startswith("sqlite") else {}


def _mark_stale_runs_failed(run_id: str | None, reason: str) -> None:
    """A dead worker's trial run and its RUNNING fold runs end FAILED in MLflow (not RUNNING forever)."""
    if not run_id:
        return
    import mlflow

    client = mlflow.MlflowClient()
    try:
        run = client.get_run(run_id)
    except mlflow.exceptions.MlflowException:
        return
    children = client.search_runs([run.info.experiment_id], f"tags.mlflow.parentRunId = '{run_id}'")
    for r in [run, *children]:
        if r.info.status == "RUNNING":
            client.set_tag(r.info.run_id, "failure_reason", reason)
            client.set_tag(r.info.run_id, "optuna_state", "FAIL")
            client.set_terminated(r.info.run_id, "FAILED")


def _on_stale_trial(study, trial, max_retry: int, grace: int) -> None:
    from optuna.storages import RetryHeartbeatStaleTrialCallback

    reason = f"worker stopped: no heartbeat for more than {grace} s (trial {trial.number})"
    _mark_stale_runs_failed(trial.user_attrs.get("mlflow_run_id"), reason)
    print(f"trial {trial.number}: {reason}; marked FAILED" + (", queued again" if max_retry else ""), flush=True)
    RetryHeartbeatStaleTrialCallback(max_retry=max_retry)(study, trial)


def make_sampler(sc: SearchConfig, seed: int):
    import optuna

    return (optuna.samplers.TPESampler(seed=seed, n_startup_trials=max(3, len(sc.baselines) + 2))
            if sc.sampler == "tpe" else optuna.samplers.RandomSampler(seed=seed))


def sampler_seed_for(sc: SearchConfig, study, worker_only: bool) -> tuple[int, bool]:
    """(seed, reproducible): `sampler_seed` for the first process of a new study, so one worker
    and no restart reproduces the same trials; any other worker or a restart draws its own seed,
    so parallel workers and restarts do not propose the configurations already proposed."""
    started = any(t.state.name != "WAITING" for t in study.get_trials(deepcopy=False))
    if not worker_only and not started:
        return sc.sampler_seed, True
    return int.from_bytes(os.urandom(4), "little"), False


def open_study(sc: SearchConfig, base: Config | None = None, create: bool = True):
    """Create or load the study (RDB storage with heartbeats). With `base`, the study remembers the
    base config and refuses to continue under a different one."""
    import optuna

    url = sc.storage_url()
    if not url.startswith(("sqlite:", "postgresql", "mysql")):
        raise InputError(None, f"Optuna storage {url!r}: use sqlite:///..., postgresql://... or mysql://...")
    if url.startswith("sqlite:///"):
        Path(url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # failures: our one-line reason, not a traceback
    import sqlalchemy.exc

    for attempt in range(5):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # heartbeats: stable
                storage = optuna.storages.RDBStorage(
                    url, engine_kwargs=_engine_kwargs(url), heartbeat_interval=sc.heartbeat_interval,
                    grace_period=sc.grace_period,
                    heartbeat_stale_trial_callback=functools.partial(_on_stale_trial, max_retry=sc.max_retry,
                                                                     grace=sc.grace_period))
            break
        except sqlalchemy.exc.SQLAlchemyError:
            # another process is creating the same tables right now (first use of a shared storage)
            if attempt == 4:
                raise
            time.sleep(1 + attempt)
    sampler = make_sampler(sc, sc.sampler_seed)
    pruner = (optuna.pruners.MedianPruner(n_startup_trials=sc.pruner_startup_trials, n_warmup_steps=0)
              if sc.pruner == "median" else optuna.pruners.NopPruner())
    if not create and sc.study_name not in optuna.study.get_all_study_names(storage=storage):
        raise InputError(None, f"no study {sc.study_name!r} in {url}")
    study = optuna.create_study(study_name=sc.study_name, storage=storage, sampler=sampler, pruner=pruner,
                                direction="maximize", load_if_exists=True)
    if base is None:
        return study
    attrs = study.user_attrs
    mine = {k: v for k, v in base.to_dict().items() if k not in RUNTIME_FIELDS}
    if "base_config" not in attrs:
        study.set_user_attr("base_config", base.to_dict())
        study.set_user_attr("search", sc.to_dict())
        for name, overrides in sc.baselines:
            study.enqueue_trial({}, user_attrs={"baseline": name, "overrides": dict(overrides)})
    else:
        theirs = {k: v for k, v in attrs["base_config"].items() if k not in RUNTIME_FIELDS}
        changed = sorted(k for k in mine if mine[k] != theirs.get(k))
        if changed:
            raise InputError(None, f"study {sc.study_name!r} in {url} was started with a different config "
                                   f"({', '.join(changed)}); give the experiment a new study_name")
    return study


@contextlib.contextmanager
def _budget_lock(url: str, study_name: str = ""):
    """Serialise 'count trials, then start one' among a study's workers, so that they end with exactly
    the requested number of trials: a file lock next to a SQLite database, a PostgreSQL advisory lock
    on a server (other storages: no lock, at most workers - 1 extra trials)."""
    held = {"on": True}
    if url.startswith("sqlite:///"):
        with open(url[len("sqlite:///"):] + ".lock", "a+") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)

            def release() -> None:
                if held["on"]:
                    fcntl.flock(fh, fcntl.LOCK_UN)
                    held["on"] = False

            try:
                yield release
            finally:
                release()
    elif url.startswith("postgresql"):
        import hashlib

        import sqlalchemy

        key = int(hashlib.sha256(f"dga-budget:{study_name}".encode()).hexdigest()[:15], 16)
        engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)
        conn = engine.connect()
        conn.execute(sqlalchemy.text("SELECT pg_advisory_lock(:k)"), {"k": key})

        def release() -> None:
            if held["on"]:
                conn.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                held["on"] = False

        try:
            yield release
        finally:
            release()
            conn.close()
            engine.dispose()
    else:
        yield lambda: None


def counted_trials(study) -> int:
    from optuna.trial import TrialState

    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED,
                                                         TrialState.RUNNING)))


# --------------------------------------------------------------------------------------- a trial
@dataclass
class FoldResult:
    fold: int
    metrics: dict[str, float]
    confusion: np.ndarray
    run_id: str = ""


@dataclass
class TrialContext:
    sc: SearchConfig
    base: Config
    store: Any
    splits: Any
    dist: Any
    experiment_id: str
    checkpoint_root: Path
    folds: list[int] = field(default_factory=list)
    log: Any = print
    stop: dict = field(default_factory=lambda: {"flag": False})  # set by SIGTERM between folds


def _fold_checkpoint_dir(ctx: TrialContext, origin: int, fold: int) -> Path:
    return fold_checkpoint_dir(ctx.checkpoint_root, origin, fold)


def _fresh_checkpoint(ckpt_dir: Path, cfg: Config) -> None:
    """Keep a fold checkpoint only if it was written for this config (names and runtime settings
    aside: a retried trial has another number), else start over."""
    ckpt = ckpt_dir / "checkpoint.pt"
    if ckpt.is_file():
        import torch

        saved = torch.load(ckpt, map_location="cpu", weights_only=True).get("config") or {}
        mine = cfg.to_dict()
        if any(saved.get(k) != v for k, v in mine.items() if k not in RUNTIME_FIELDS):
            shutil.rmtree(ckpt_dir)


def _fold_in_process(ctx: TrialContext, cfg: Config, ckpt_dir: Path, tags: dict) -> FoldResult:
    import mlflow

    from dga import tracking
    from dga.runner import write_bundle
    from dga.train import fit

    resumed = (ckpt_dir / "checkpoint.pt").is_file()
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

        result = fit(cfg, ctx.store, ctx.splits, ctx.dist, checkpoint=ckpt_dir / "checkpoint.pt", resume=True,
                     on_epoch=on_epoch, log=epoch_lines)
        for record in result.history:  # epochs trained before a resume
            if record["epoch"] not in logged:
                tracking.log_epoch(record)
        mlflow.log_param("n_parameters", result.n_parameters)
        mlflow.log_metrics({f"best_{k}": v for k, v in result.metrics.items()})
        assert result.confusion is not None  # a fold always validates
        tracking.log_confusion(result.confusion, "val_confusion", f"fold {cfg.fold}, best epoch {result.best_epoch}")
        tracking.log_curves(result.history)
        # the fold model as a bundle: registration tunes the winner's decoder on these
        write_bundle(cfg, ctx.store, ctx.splits, ctx.dist, result, ckpt_dir, with_signals=False,
                     extra={"mlflow": {"run_id": run.info.run_id}})
        return FoldResult(cfg.fold, result.metrics, result.confusion, run.info.run_id)


def _fold_as_torchrun(ctx: TrialContext, cfg: Config, ckpt_dir: Path, tags: dict, parent_run_id: str) -> FoldResult:
    """The fold as a DDP job: `torchrun --standalone -m dga.cli train` on this node's processes."""
    from dga.train import EXIT_DIVERGED, EXIT_PREEMPTED, Preempted, TrainingDiverged

    ckpt_dir.mkdir(parents=True, exist_ok=True)
    (ckpt_dir / "config.json").write_text(json.dumps(cfg.to_dict(), indent=1))
    launcher = os.environ.get("DGA_TRIAL_LAUNCHER", "").split() or [
        sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={ctx.sc.processes_per_trial}"]
    cmd = [*launcher, "-m", "dga.cli", "train", str(ckpt_dir / "config.json"), "--resume"]
    import mlflow

    env = {**os.environ, "DGA_PARENT_RUN_ID": parent_run_id, "DGA_RUN_TAGS": json.dumps(tags),
           "MLFLOW_TRACKING_URI": mlflow.get_tracking_uri()}
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


def _describe(overrides: dict) -> str:
    short = {"hidden_size": "h", "num_layers": "l", "bases_per_step": "k", "window": "w", "lr": "lr",
             "batch_size": "b", "dropout": "d"}
    parts = [f"{short.get(k, k)}={v:.3g}" if isinstance(v, float) else f"{short.get(k, k)}={v}"
             for k, v in overrides.items()]
    return " ".join(parts)


class DuplicateConfiguration(Exception):
    """A proposed configuration was already completed: the trial fails without training."""


def _completed_with(study, params: dict, number: int) -> int | None:
    """The number of a COMPLETE trial with exactly these parameters, if any."""
    for t in study.get_trials(deepcopy=False):
        if t.number != number and t.state.name == "COMPLETE" and t.params == params and params:
            return t.number
    return None


def make_objective(ctx: TrialContext):
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
                trial.set_user_attr("fail_reason", f"duplicate of complete trial {same}")
                ctx.log(f"trial {trial.number}: {_describe(overrides)} is trial {same}'s configuration, already "
                        f"complete: not trained again")
                raise DuplicateConfiguration(f"same configuration as complete trial {same}")
        # A re-queued trial (its worker died) reuses the fold checkpoints of the trial it retries.
        frozen = trial.study.get_trials(deepcopy=False)[trial.number]
        origin = frozen.system_attrs.get("failed_trial", trial.number)
        tags = {"optuna_study": sc.study_name, "optuna_trial": str(trial.number),
                "store_checksum": ctx.store.checksum, "dga.kind": "trial"}
        if baseline:
            tags["baseline"] = baseline
        if origin != trial.number:
            tags["retry_of_trial"] = str(origin)
        label = f"trial {trial.number}" + (f" ({baseline})" if baseline else "")
        ctx.log(f"{label}: {_describe(overrides)}")
        with mlflow.start_run(experiment_id=ctx.experiment_id, run_name=f"trial-{trial.number:03d}", tags=tags) as run:
            trial.set_user_attr("mlflow_run_id", run.info.run_id)
            results: list[FoldResult] = []
            try:
                cfg = trial_config(ctx.base, overrides)
                # the trial as the study runs it: its folds, the study's experiment, no model of its own
                mlflow.log_params({**replace(cfg, experiment=sc.mlflow_experiment, log_model=False,
                                             run_name=f"trial-{trial.number:03d}").to_dict(),
                                   "fold": ",".join(map(str, ctx.folds)),
                                   "checkpoint_dir": str(ctx.checkpoint_root / f"trial-{origin:04d}")})
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
                    if sc.processes_per_trial > 1:
                        res = _fold_as_torchrun(ctx, fcfg, ckpt_dir, fold_tags, run.info.run_id)
                    else:
                        res = _fold_in_process(ctx, fcfg, ckpt_dir, fold_tags)
                    results.append(res)
                    running = float(np.mean([r.metrics[metric] for r in results]))
                    mlflow.log_metric(f"cv_running_{sc.objective}", running, step=step)
                    trial.report(running, step)
                    ctx.log(f"  fold {fold}: {sc.objective} {res.metrics[metric]:.3f} (running mean {running:.3f}, "
                            f"{time.perf_counter() - t0:.0f} s)")
                    if trial.should_prune():
                        _log_cv(results, trial, sc, partial=True)
                        mlflow.set_tag("optuna_state", "PRUNED")
                        ctx.log(f"  pruned after {step + 1} fold(s)")
                        mlflow.end_run("KILLED")
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


# --------------------------------------------------------------------------------------- workers
def run_worker(study, objective, sc: SearchConfig, deadline: float, log=print) -> int:
    """Run trials until the study holds n_trials COMPLETE/PRUNED/RUNNING trials or the deadline passes.
    Returns the number of trials this worker ran; raises Preempted after a SIGTERM mid-trial
    (the trial is checkpointed and queued again)."""
    url = sc.storage_url()
    stop = getattr(objective, "stop", {"flag": False})
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.update(flag=True))
    try:
        return _worker_loop(study, objective, sc, deadline, log, url, stop)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _requeue(study, trial) -> None:
    """A preempted trial goes back to the queue with its parameters; its folds resume from checkpoints."""
    import optuna

    origin = trial.system_attrs.get("failed_trial", trial.number)
    attrs = {k: v for k, v in trial.user_attrs.items() if k not in ("preempted", "fail_reason", "mlflow_run_id", "cv")}
    study.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.WAITING, params=trial.params,
                                              distributions=trial.distributions, user_attrs=attrs,
                                              system_attrs={"failed_trial": origin, "preempted_trial": trial.number}))


def _worker_loop(study, objective, sc, deadline, log, url, stop) -> int:
    import optuna
    from optuna.exceptions import ExperimentalWarning
    from optuna.trial import TrialState

    ran, failed_in_a_row, duplicates, waiting = 0, 0, 0, False
    while not stop["flag"]:
        if deadline and time.time() > deadline:
            held = counted_trials(study)
            if held < sc.n_trials:
                log(f"STOPPED BY THE TIMEOUT: [search] timeout = {sc.timeout:g} s passed with {held} of "
                    f"{sc.n_trials} trials; {sc.n_trials - held} were not run (run the same command again to "
                    f"continue the study, or raise or remove the timeout)")
            break
        with _budget_lock(url, sc.study_name) as release:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ExperimentalWarning)
                optuna.storages.fail_stale_trials(study)
            if counted_trials(study) >= sc.n_trials:
                running = [t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))]
                if not running:
                    log(f"stopping: the study has its n_trials = {sc.n_trials} complete or pruned trials")
                    break
                # trials held by other workers, or by a dead one: wait, and take a dead one over once its
                # heartbeat is stale (fail_stale_trials above fails it; the next pass re-queues it)
                if not waiting:
                    log(f"waiting for trial(s) {running}, held by other workers or by a dead one: a trial whose "
                        f"heartbeat is older than grace_period = {sc.grace_period} s is taken over")
                waiting = True
                release()
                time.sleep(sc.heartbeat_interval)
                continue
            waiting = False

            started: dict[str, int] = {}

            def gated(trial):
                release()  # the trial exists (RUNNING) now: let other workers count it and go on
                started["number"] = trial.number
                return objective(trial)

            study.optimize(gated, n_trials=1, catch=(Exception,))
        ran += 1
        if "number" in started:
            trial = study.get_trials(deepcopy=False)[started["number"]]
            if trial.user_attrs.get("preempted"):
                _requeue(study, trial)
                raise Preempted(f"trial {trial.number} preempted and queued again")
            if trial.user_attrs.get("duplicate_of") is not None:
                duplicates += 1
                if duplicates >= 20:
                    log("20 proposals in a row repeated complete configurations: the search space looks "
                        "exhausted; this worker stops")
                    break
                continue
            duplicates = 0
            failed_in_a_row = failed_in_a_row + 1 if trial.state.name == "FAIL" else 0
        if failed_in_a_row >= 3:
            log("3 trials in a row failed: this worker stops (the reasons are above and in MLflow)")
            break
    return ran


# --------------------------------------------------------------------------------------- summary
def all_intergenic_cv(store, splits, folds: list[int], labels: str) -> dict[str, float]:
    """CV metrics of calling every base intergenic, on the same folds (the floor any model must beat)."""
    offsets = {s["id"]: s["offset"] for s in store.seqids}
    tracks = ["label"] if labels == "merged" else ["label_plus", "label_minus"]
    per_fold = []
    for fold in folds:
        cm = np.zeros((N_CLASSES, N_CLASSES), dtype=np.int64)
        for name in tracks:
            lab = store.track(name)
            for r in splits.validation(fold):
                o = offsets[r.seqid]
                cm[:, Label.INTERGENIC] += np.bincount(lab[o + r.start: o + r.end], minlength=N_CLASSES)
        per_fold.append(metrics_from_confusion(cm))
    return {k: float(np.mean([m[k] for m in per_fold])) for k in per_fold[0]}


def trial_table(study) -> list[dict]:
    rows = []
    for t in study.get_trials(deepcopy=False):
        overrides = {**t.user_attrs.get("overrides", {}), **t.params}
        cv = t.user_attrs.get("cv", {})
        rows.append({"trial": t.number, "state": t.state.name, "value": t.value,
                     "baseline": t.user_attrs.get("baseline", ""), "params": overrides,
                     "folds": int(len(t.intermediate_values)), "seconds": (t.duration.total_seconds()
                                                                           if t.duration else None),
                     "cv": cv, "fail_reason": t.user_attrs.get("fail_reason", "")})
    return rows


def format_table(rows: list[dict], objective: str) -> str:
    lines = [f"{'trial':>5}  {'state':<8} {'CV ' + objective:>15}  {'folds':>5}  {'seconds':>7}  params"]
    for r in rows:
        value = "" if r["value"] is None else f"{r['value']:.4f}"
        if r["state"] == "PRUNED" and r["cv"]:
            value = f"({r['cv'].get(f'cv_{objective}_mean', float('nan')):.4f})"
        secs = "" if r["seconds"] is None else f"{r['seconds']:.0f}"
        extra = f"[{r['baseline']}] " if r["baseline"] else ""
        why = f"  ({r['fail_reason'][:60]})" if r["fail_reason"] else ""
        lines.append(f"{r['trial']:>5}  {r['state']:<8} {value:>15}  {r['folds']:>5}  {secs:>7}  "
                     f"{extra}{_describe(r['params'])}{why}")
    return "\n".join(lines)


def log_study_summary(study, sc: SearchConfig, experiment_id: str, baseline: dict[str, float]) -> str:
    """(Re)write the `study-summary` run: Optuna's plots, the trial table, best score and baselines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import mlflow
    from optuna.exceptions import ExperimentalWarning
    from optuna.trial import TrialState
    from optuna.visualization import matplotlib as ovm

    client = mlflow.MlflowClient()
    existing = client.search_runs([experiment_id], "tags.`dga.kind` = 'study_summary'", max_results=1)
    run_id = existing[0].info.run_id if existing else None
    rows = trial_table(study)
    states = [r["state"] for r in rows]
    with mlflow.start_run(run_id=run_id, experiment_id=None if run_id else experiment_id,
                          run_name=None if run_id else "study-summary",
                          tags=None if run_id else {"dga.kind": "study_summary", "optuna_study": sc.study_name}) as run:
        mlflow.log_dict({"search": sc.to_dict(), "trials": rows}, "trials.json")
        mlflow.log_text(format_table(rows, sc.objective), "trials.txt")
        metrics = {f"n_{s.lower()}": float(states.count(s)) for s in ("COMPLETE", "PRUNED", "FAIL")}
        metrics.update({f"all_intergenic_cv_{k}": v for k, v in baseline.items()})
        complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if complete:
            metrics[f"best_cv_{sc.objective}"] = float(study.best_value)
            mlflow.set_tag("best_trial", str(study.best_trial.number))
        mlflow.log_metrics(metrics)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ExperimentalWarning)
            warnings.simplefilter("ignore", UserWarning)  # "few trials per regime" notes of importance plots
            for name, plot in (("optimization_history", ovm.plot_optimization_history),
                               ("param_importances", ovm.plot_param_importances),
                               ("parallel_coordinate", ovm.plot_parallel_coordinate),
                               ("intermediate_values", ovm.plot_intermediate_values)):
                try:
                    ax = plot(study)
                except (ValueError, RuntimeError, ZeroDivisionError) as exc:
                    print(f"(plot {name} skipped: {exc})")
                    continue
                axes = ax if isinstance(ax, np.ndarray) else np.array([ax])
                fig = axes.ravel()[0].figure
                fig.set_size_inches(10, 6)
                fig.tight_layout()
                mlflow.log_figure(fig, f"optuna/{name}.png")
                plt.close(fig)
        return run.info.run_id


# --------------------------------------------------------------------------------------- driver
def run_search(path: str, overrides: list[str], n_trials: int | None = None, workers: int = 1,
               worker_only: bool = False, register: bool | None = None) -> int:
    """`dga search`: create or load the study, run trials in `workers` processes, summarise, register."""
    from dga import tracking
    from dga.data.windows import load_or_make_splits
    from dga.train import setup_distributed, store_for_config

    sc = load_search(path, n_trials)
    base = load_config(path, overrides)
    if workers > 1 and not base.threads:
        from dga.train import usable_cpus

        base = replace(base, threads=max(1, usable_cpus() // workers))
    folds = list(sc.folds) or list(range(base.k_folds))
    if any(not 0 <= f < base.k_folds for f in folds):
        raise InputError(path, f"[search] folds {folds} must lie in 0..{base.k_folds - 1}")
    tracking.setup()
    study = open_study(sc, base)
    seed, reproducible = sampler_seed_for(sc, study, worker_only)
    study.sampler = make_sampler(sc, seed)
    if not reproducible:
        print(f"sampler seed {seed} (this process joins a study that has started, or is an extra worker: its own "
              f"seed keeps its proposals apart from the others')", flush=True)
    if "experiment_file" not in study.user_attrs:
        study.set_user_attr("experiment_file", Path(path).as_posix())
    experiment_id = tracking.experiment_id(sc.mlflow_experiment)
    dist = setup_distributed(base.device, base.threads if sc.processes_per_trial == 1 else 1)
    store = store_for_config(base, dist)
    splits = load_or_make_splits(store, base.k_folds, base.test_fraction, base.split_seed)
    if not worker_only:
        print(f"study {sc.study_name!r}: {sc.n_trials} trials, {len(folds)}-fold CV on {store.path} "
              f"(objective: mean {sc.objective}), Optuna {sc.storage_url()}, MLflow {tracking.default_tracking_uri()} "
              f"experiment {sc.mlflow_experiment!r}", flush=True)
    ctx = TrialContext(sc, base, store, splits, dist, experiment_id,
                       study_checkpoint_root(base, sc.study_name), folds,
                       log=(lambda s: print(f"[worker {os.getpid()}] {s}", flush=True)) if workers > 1 or worker_only
                       else (lambda s: print(s, flush=True)))
    deadline = time.time() + sc.timeout if sc.timeout else 0.0
    children = []
    if workers > 1 and not worker_only:
        cmd = [sys.executable, "-m", "dga.cli", "search", str(path), "--worker-only", "--n-trials", str(sc.n_trials)]
        for item in [*overrides, f"threads={base.threads}"]:
            cmd += ["--set", item]
        children = [subprocess.Popen(cmd) for _ in range(workers - 1)]
    t0 = time.perf_counter()
    try:
        ran = run_worker(study, make_objective(ctx), sc, deadline, log=ctx.log)
    except Preempted as exc:
        print(f"dga: {exc}; run the same command again (or let SLURM requeue the job) to resume it", flush=True)
        return EXIT_PREEMPTED
    finally:
        codes = [c.wait() for c in children]
    if worker_only:
        return 0
    if any(codes):
        print(f"dga: warning: worker exit codes {codes}", file=sys.stderr)
    print(f"\nthis run: {ran} trial(s) here, {len(children)} more worker(s), {time.perf_counter() - t0:.0f} s")
    baseline = all_intergenic_cv(store, splits, folds, base.labels)
    rows = trial_table(study)
    print(format_table(rows, sc.objective))
    print(f"all-intergenic baseline on the same folds: CV {sc.objective} {baseline[sc.objective]:.4f}")
    summary_run = log_study_summary(study, sc, experiment_id, baseline)
    print(f"MLflow: experiment {sc.mlflow_experiment!r}, study summary run {summary_run} "
          f"(see it with `dga ui`)")
    from optuna.trial import TrialState

    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        print("no trial completed: nothing to register", file=sys.stderr)
        return 1
    print(f"best: trial {study.best_trial.number}, CV {sc.objective} {study.best_value:.4f}")
    if sc.register if register is None else register:
        from dga.registry import register_best

        register_best(study, sc, dist=dist, store=store, splits=splits)
    return 0


def register_study(study_name: str, storage: str | None = None) -> int:
    """`dga register STUDY`: the study's search settings come from its storage."""
    from dga import tracking
    from dga.registry import register_best

    tracking.setup()
    sc = SearchConfig(study_name=study_name, storage=storage or "")
    study = open_study(sc, create=False)
    saved = study.user_attrs.get("search", {})
    if "base_config" not in study.user_attrs:
        raise InputError(None, f"study {study_name!r} in {sc.storage_url()} was not created by `dga search`")
    sc = replace(sc, objective=saved.get("objective", sc.objective), experiment=saved.get("experiment", ""),
                 decoder_trials=saved.get("decoder_trials", sc.decoder_trials),
                 decoder_bases=saved.get("decoder_bases", sc.decoder_bases), sampler_seed=saved.get("sampler_seed", 0))
    register_best(study, sc)
    return 0
