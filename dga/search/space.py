"""The `[search]` table of an experiment file: study settings, the search space (names are Config
fields; lists are categorical, tables ranges) and the fixed baseline trials."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dga.config import FIELD_NAMES, OBJECTIVES, Config, coerce, load_config, read_experiment
from dga.errors import InputError

# Fields a trial may not change: they define the data, the folds and where things go.
FIXED_FIELDS = {"dataset", "fasta", "gff", "store", "genomes", "split", "k_folds", "test_fraction", "split_seed",
                "fold",
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
    decoder_objective: str = "exon+subgenic"  # registration: what decoder tuning maximises (or "exon+genic")
    cpus_per_process: int = 1  # SLURM: CPUs per training process (cpus-per-task = this x processes_per_trial)
    trial_minutes: float = 60.0  # SLURM: time one trial may take (sets the array tasks' --time)
    slurm_mem: str = "4G"  # SLURM: memory per worker task
    # registration: whole annotated genomes never trained, tuned or chosen on, on which the champion,
    # each baseline configuration and the all-intergenic floor are judged (`dga.lifecycle.heldout`)
    held_out_genomes: tuple[str, ...] = ()
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
                "decoder_objective": self.decoder_objective,
                "held_out_genomes": list(self.held_out_genomes),
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
    where = str(path)
    if not isinstance(raw.get("search", {}), dict):
        raise InputError(where, f"search = {raw['search']!r}: [search] must be a table (a [search] section)")
    table = dict(raw.get("search", {}))
    for key in ("space", "baseline"):
        if key in table and not isinstance(table[key], dict if key == "space" else list):
            raise InputError(where, f"[search] {key} must be a {'table' if key == 'space' else 'list of tables'}")
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
        folds = table["folds"]
        if not isinstance(folds, list) or not all(isinstance(f, int) and not isinstance(f, bool) for f in folds):
            raise InputError(where, f"[search] folds = {folds!r}: give a list of fold numbers, e.g. [0, 1]")
        table["folds"] = tuple(folds)
    if "held_out_genomes" in table:
        held = table["held_out_genomes"]
        if not isinstance(held, list) or not all(isinstance(g, str) and g for g in held):
            raise InputError(where, f"[search] held_out_genomes = {held!r}: give a list of genomes (packaged "
                                    f"dataset names or \"NAME=FASTA,GFF\")")
        table["held_out_genomes"] = tuple(held)
    _check_types(table, where)
    if n_trials is not None:
        table["n_trials"] = n_trials
    try:
        sc = SearchConfig(space=space, baselines=tuple(baselines), **table)
    except TypeError as exc:
        raise InputError(where, f"[search]: {exc}") from None
    from dga.lifecycle.tuning import OBJECTIVES as DECODER_OBJECTIVES

    checks = {"objective": sc.objective in OBJECTIVES, "n_trials": sc.n_trials >= 1,
              "decoder_objective": sc.decoder_objective in DECODER_OBJECTIVES,
              "sampler": sc.sampler in ("tpe", "random"), "pruner": sc.pruner in ("median", "none"),
              "processes_per_trial": sc.processes_per_trial >= 1, "timeout": sc.timeout >= 0,
              "heartbeat_interval": sc.heartbeat_interval >= 1, "grace_period": sc.grace_period > sc.heartbeat_interval}
    for key, ok in checks.items():
        if not ok:
            raise InputError(where, f"[search]: value out of range: {key} = {getattr(sc, key)!r}")
    return sc


def _check_types(table: dict, where: str) -> None:
    """Each [search] value has its field's type (an int where a float is expected is fine)."""
    for key, value in table.items():
        default = SearchConfig.__dataclass_fields__[key].default
        want = type(default) if default is not None and not isinstance(default, tuple) else None
        if key == "study_name":
            want = str
        if want is None:
            continue
        ok = isinstance(value, want) and not (want is int and isinstance(value, bool))
        if want is float and isinstance(value, int) and not isinstance(value, bool):
            ok = True
        if not ok:
            raise InputError(where, f"[search] {key} = {value!r}: expected {want.__name__}")


def trial_config(base: Config, overrides: dict[str, Any]) -> Config:
    """The base config with a trial's overrides (a bad combination raises InputError naming the key)."""
    return load_config(None, {**base.to_dict(), **overrides})
