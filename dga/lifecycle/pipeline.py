"""The one way DGA makes a model: train -> test -> bundle -> tune the decoder.

`dga train` (one model, no test, no tuning), `dga register` (a study's best configuration retrained
on all non-test data, tested once, tuned on the trial's fold models, then registered) and `dga zoo
build` (a card's recipe rebuilt) all run `make_model`; what differs is the `ModelJob` they describe.
Registration is the registry's step after it (`dga.lifecycle.registry`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from dga import bundle as bundle_io
from dga.bundle import Bundle
from dga.config import Config
from dga.data.store import Store
from dga.data.windows import Splits
from dga.evaluation.metrics import metrics_from_confusion
from dga.training.bundling import write_bundle
from dga.training.checkpoint import CHECKPOINT
from dga.training.distributed import DistInfo
from dga.training.fit import FitResult, fit, validate


@dataclass(frozen=True)
class Tuning:
    """Decoder tuning on fold models' validation folds (`dga.lifecycle.tuning.tune_bundle`)."""

    fold_models: list[Bundle]
    trials: int = 40
    bases: int = 3_000_000
    seed: int = 0
    objective: str = "exon+subgenic"  # `dga.lifecycle.tuning.OBJECTIVES`


@dataclass
class ModelJob:
    """What to make: the config, its data, where its checkpoint and bundle go, and which steps run."""

    cfg: Config
    store: Store
    splits: Splits
    dist: DistInfo
    folder: Path  # checkpoint.pt and bundle/ go here
    resume: bool = False
    test: bool = False  # score the held-out test region once, before decoding
    tuning: Tuning | None = None
    with_signals: bool = True  # fit the decoder's signal models on the training region
    provenance: dict = field(default_factory=dict)  # added to the bundle's provenance
    on_epoch: Callable[[dict], None] | None = None
    log: Callable[[str], None] = print


@dataclass
class MadeModel:
    """What `make_model` made (on rank 0; other ranks get the fit result alone)."""

    result: FitResult
    bundle: Path | None = None
    test: dict[str, float] | None = None  # test_<metric> before decoding, and test_seconds
    test_confusion: np.ndarray | None = None
    decoder: dict | None = None  # the tuning record, when tuned


def test_scores(job: ModelJob, result: FitResult) -> tuple[dict[str, float], np.ndarray]:
    """The trained network on the held-out test region (before decoding): test_<metric> and its confusion."""
    t = time.perf_counter()
    cm, _ = validate(result.model, job.store, list(job.splits.test), job.cfg, job.dist)
    test = {f"test_{k}": v for k, v in metrics_from_confusion(cm).items()}
    test["test_seconds"] = time.perf_counter() - t
    return test, cm


def make_model(job: ModelJob) -> MadeModel:
    """Train (resuming from the folder's checkpoint when asked), test, write the bundle, tune its decoder."""
    checkpoint = job.folder / CHECKPOINT
    result = fit(job.cfg, job.store, job.splits, job.dist, checkpoint=checkpoint,
                 resume=job.resume and checkpoint.is_file(), on_epoch=job.on_epoch, log=job.log)
    made = MadeModel(result)
    if not job.dist.is_main:
        return made
    provenance = dict(job.provenance)
    if job.test:
        made.test, made.test_confusion = test_scores(job, result)
        provenance["test_window"] = {"region": [f"{r.seqid}:{r.start + 1}-{r.end}" for r in job.splits.test],
                                     **{k[5:]: v for k, v in made.test.items()}}
    made.bundle = write_bundle(job.cfg, job.store, job.splits, job.dist, result, job.folder,
                               with_signals=job.with_signals, extra=provenance)
    if job.tuning is not None:
        from dga.lifecycle.tuning import tune_bundle

        tuned = tune_bundle(bundle_io.read(made.bundle), job.tuning.fold_models, job.store, job.splits,
                            trials=job.tuning.trials, bases=job.tuning.bases, seed=job.tuning.seed,
                            objective=job.tuning.objective, log=job.log)
        bundle_io.write(tuned, made.bundle)
        made.decoder = tuned.decoder["tuned"]
    return made
