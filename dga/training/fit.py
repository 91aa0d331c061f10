"""Training: one loop for a single process, torchrun or srun (`dga.training.distributed`), with checkpoints
(`dga.training.checkpoint`) and resume.

Training never imports MLflow or Optuna: fit() returns metrics and calls `on_epoch` with each
epoch's record; the CLI and the search wire that to tracking.
"""

from __future__ import annotations

import math
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.distributed as tdist
from torch import nn

from dga.config import Config
from dga.data.store import Store
from dga.data.windows import COMPLEMENT, EpochBatches, Region, Splits, WindowDataset, batch_loader
from dga.errors import InputError
from dga.evaluation.metrics import confusion, metrics_from_confusion
from dga.labels import N_CLASSES
from dga.nets.infer import forward_codes, iter_region_batches
from dga.nets.registry import build_model, count_parameters, describe
from dga.training import checkpoint as ckpt
from dga.training.distributed import DistInfo, auto_threads
from dga.training.teacher import distillation_loss

EXIT_PREEMPTED = 75  # distinct exit status after SIGTERM: checkpoint saved, resume with --resume
EXIT_DIVERGED = 3


class Preempted(Exception):
    """SIGTERM arrived: a checkpoint was written and the run can be resumed."""


class TrainingDiverged(Exception):
    """The loss became NaN or infinite."""


@dataclass
class FitResult:
    model: nn.Module
    history: list[dict] = field(default_factory=list)
    confusion: np.ndarray | None = None  # validation confusion of the returned (best) weights
    metrics: dict[str, float] = field(default_factory=dict)
    n_parameters: int = 0
    best_epoch: int = -1
    train_seconds: float = 0.0
    stopped: str = ""  # why training ended early ("" = all epochs ran)
    parent: dict | None = None  # fine-tuning: the model it started from (dga.training.finetune.parent_record)
    teacher: dict | None = None  # distillation: the model it learnt from (dga.training.teacher.teacher_record)


def restrict(regions: list[Region], span: str) -> list[Region]:
    """Cut regions to a 1-based inclusive 'start-end' span (the seed's single 100 kb training region)."""
    if not span:
        return regions
    a, _, b = span.partition("-")
    lo, hi = int(a) - 1, int(b)
    return [Region(r.seqid, max(r.start, lo), min(r.end, hi)) for r in regions if r.end > lo and r.start < hi]


def training_regions(cfg: Config, splits: Splits) -> list[Region]:
    """What fit() trains on: every fold but cfg.fold (all folds when -1), cut to cfg.train_region.
    The test region is never among them."""
    return restrict(splits.training(cfg.fold if cfg.fold >= 0 else None), cfg.train_region)


def class_weights(store: Store, regions: list[Region], cfg: Config) -> torch.Tensor:
    """Loss weights from the training regions' class frequencies (intergenic dominates)."""
    if cfg.class_weighting == "none":
        return torch.ones(N_CLASSES)
    offsets = {s["id"]: s["offset"] for s in store.seqids}
    counts = np.zeros(N_CLASSES)
    tracks = ["label"] if cfg.labels == "merged" else ["label_plus", "label_minus"]
    for name in tracks:
        lab = store.track(name)
        for r in regions:
            counts += np.bincount(lab[offsets[r.seqid] + r.start: offsets[r.seqid] + r.end], minlength=N_CLASSES)
    freq = np.maximum(counts, 1) / max(counts.sum(), 1)
    w = freq ** (-0.5 if cfg.class_weighting == "inverse_sqrt" else -1.0)
    return torch.tensor(w / w.mean(), dtype=torch.float32)


@torch.no_grad()
def validate(model: nn.Module, store: Store, regions: list[Region], cfg: Config, dist: DistInfo,
             loss_fn: nn.Module | None = None) -> tuple[np.ndarray, float]:
    """Confusion matrix and mean loss over whole regions (sliding windows, centres kept).

    Tiles are sharded across ranks and the counts all-reduced, so the result is exact for any
    world size. With stranded labels both reads count: forward vs + strand genes, reverse
    complement vs - strand genes.
    """
    was_training = model.training
    model.eval()
    window = cfg.effective_val_window
    margin = int(window * cfg.val_overlap)
    offsets = {s["id"]: s["offset"] for s in store.seqids}
    seq = store.track("seq")
    reads = [("label", False)] if cfg.labels == "merged" else [("label_plus", False), ("label_minus", True)]
    cm = np.zeros((N_CLASSES, N_CLASSES), dtype=np.int64)
    loss_sum = torch.zeros(2, dtype=torch.float64)
    for r in regions:
        lo, hi = offsets[r.seqid] + r.start, offsets[r.seqid] + r.end
        for track, rc in reads:
            codes, truth = np.asarray(seq[lo:hi]), np.asarray(store.track(track)[lo:hi])
            if rc:
                codes, truth = COMPLEMENT[codes[::-1]], truth[::-1]
            for x, tile_batch in iter_region_batches(codes, window, margin, cfg.val_batch_size,
                                                     (dist.rank, dist.world_size)):
                logits = forward_codes(model, x, dist.device, cfg.bf16)[..., :N_CLASSES]
                for j, t in enumerate(tile_batch):
                    part = logits[j, t.keep_from - t.start: t.keep_to - t.start]
                    kept = truth[t.keep_from: t.keep_to]
                    cm += confusion(kept, part.argmax(-1).cpu().numpy())
                    if loss_fn is not None:
                        y = torch.from_numpy(kept.astype(np.int64)).to(part.device)
                        loss_sum[0] += float(loss_fn(part, y)) * len(y)
                        loss_sum[1] += len(y)
    if dist.world_size > 1:
        both = torch.cat([torch.from_numpy(cm.ravel()).double(), loss_sum]).to(dist.device)
        tdist.all_reduce(both)
        both = both.cpu()
        cm, loss_sum = both[: cm.size].numpy().astype(np.int64).reshape(cm.shape), both[cm.size:]
    model.train(was_training)
    return cm, float(loss_sum[0]) / max(float(loss_sum[1]), 1.0)


@dataclass
class _Run:
    """Everything one `fit` call works with."""

    cfg: Config
    store: Store
    dist: DistInfo
    dataset: WindowDataset
    batches: EpochBatches
    parts: ckpt.Trainable
    ddp: nn.Module
    loss_fn: nn.Module
    val_regions: list[Region]
    limit: int
    checkpoint: Path | None
    log: Callable[[str], None]
    stop: dict = field(default_factory=lambda: {"flag": False})  # set by SIGTERM (and the deadline)


def _setup(cfg: Config, store: Store, splits: Splits, dist: DistInfo, checkpoint: Path | None,
           log: Callable[[str], None]) -> tuple[_Run, dict | None, dict | None]:
    """The run's data (with a teacher's probabilities when distilling), network (fine-tuning's start
    when asked), optimizer, schedule and loss; returns the run, its parent and its teacher records."""
    train_regions = training_regions(cfg, splits)
    soft, teacher = None, None
    if cfg.teacher and cfg.distill_weight > 0:  # at weight 0 a teacher changes nothing: not read, not recorded
        from dga.training.teacher import teacher_probs

        # every non-test base, so all folds, trials and reruns on this store share one cache
        probs = teacher_probs(cfg, store, splits.training(None), dist, log=log if dist.is_main else lambda _: None)
        soft, teacher = probs.windows, probs.record
        if dist.is_main:
            log(f"distilling from {cfg.teacher} (weights {teacher['weights_sha256'][:12]}): loss = "
                f"{1 - cfg.distill_weight:g} x cross-entropy + {cfg.distill_weight:g} x T^2 KL at T = "
                f"{cfg.distill_temperature:g}")
    dataset = WindowDataset(store, train_regions, cfg.window, reverse_complement=cfg.reverse_complement,
                            labels=cfg.labels, soft_targets=soft)
    if len(dataset) < cfg.batch_size * dist.world_size:
        raise InputError(None, f"only {len(dataset)} training windows of {cfg.window} bases: fewer than one batch "
                               f"per rank (batch_size {cfg.batch_size} x {dist.world_size} ranks); lower window or "
                               f"batch_size")
    limit = cfg.bases_per_epoch // cfg.window if cfg.bases_per_epoch else 0
    batches = EpochBatches(len(dataset), cfg.batch_size, seed=cfg.seed, rank=dist.rank,
                           world_size=dist.world_size, limit=limit)
    if len(batches) == 0:
        raise InputError(None, "bases_per_epoch is too small for one batch per rank: raise it or set 0 (every window)")
    model = build_model(cfg)
    parent = None
    if cfg.init_from:
        from dga.training.finetune import initialise

        parent = initialise(model, cfg)
        if dist.is_main:
            log(f"fine-tuning from {cfg.init_from} (weights {parent['weights_sha256'][:12]}, trained on "
                f"{parent['trained_on']['dataset']})" + (f", first {cfg.freeze_layers} layer(s) frozen"
                                                         if cfg.freeze_layers else ""))
    model = model.to(dist.device)
    if not cfg.threads and dist.device.type == "cpu":
        torch.set_num_threads(auto_threads(count_parameters(model), dist))
    ddp = nn.parallel.DistributedDataParallel(model, device_ids=[dist.device.index] if dist.device.type == "cuda"
                                              else None) if dist.world_size > 1 else model
    opt_cls = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
    optimizer = opt_cls([p for p in model.parameters() if p.requires_grad], lr=cfg.lr, weight_decay=cfg.weight_decay)
    total_steps = cfg.epochs * len(batches)
    schedule = (lambda s: 0.5 * (1 + math.cos(math.pi * min(s, total_steps) / total_steps))) \
        if cfg.lr_schedule == "cosine" else (lambda s: 1.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    loss_fn = nn.CrossEntropyLoss(weight=class_weights(store, train_regions, cfg).to(dist.device))
    run = _Run(cfg, store, dist, dataset, batches, ckpt.Trainable(model, optimizer, scheduler, dist.device), ddp,
               loss_fn, splits.validation(cfg.fold) if cfg.fold >= 0 else [], limit, checkpoint, log)
    return run, parent, teacher


@dataclass(frozen=True)
class _Budget:
    """When training stops: a wall-clock deadline (perf_counter) and a CPU-time one (process_time); 0 = none."""
    wall: float = 0.0
    cpu: float = 0.0

    @classmethod
    def of(cls, cfg: Config) -> "_Budget":
        return cls(time.perf_counter() + cfg.deadline_minutes * 60 if cfg.deadline_minutes else 0.0,
                   time.process_time() + cfg.cpu_minutes * 60 if cfg.cpu_minutes else 0.0)

    def spent(self) -> bool:
        return bool((self.wall and time.perf_counter() > self.wall) or (self.cpu and time.process_time() > self.cpu))

    def describe(self, cfg: Config) -> str:
        # another rank may have spent its budget first: name the budget that is set, the CPU one if both
        # are and this rank's wall clock has not run out
        if self.cpu and (not self.wall or time.perf_counter() <= self.wall):
            return f"CPU budget: {cfg.cpu_minutes:g} CPU minutes spent"
        return f"deadline: {cfg.deadline_minutes:g} minutes reached"


def _step(run: _Run, batch: tuple[torch.Tensor, ...], budget: _Budget) -> tuple[float, bool, bool]:
    """One optimizer step on (x, y) or (x, y, teacher probabilities); returns (mean loss over ranks,
    SIGTERM seen by any rank, time budget spent on any rank)."""
    cfg, dist, parts = run.cfg, run.dist, run.parts
    x, y = batch[0].to(dist.device, non_blocking=True), batch[1].to(dist.device, non_blocking=True)
    soft = batch[2].to(dist.device, non_blocking=True) if len(batch) > 2 else None
    with torch.autocast(dist.device.type, dtype=torch.bfloat16, enabled=cfg.bf16 and dist.device.type == "cuda"):
        logits = run.ddp(x)[..., :N_CLASSES]
    loss = distillation_loss(logits, y, run.loss_fn, soft, cfg.distill_weight, cfg.distill_temperature)
    parts.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if cfg.grad_clip > 0:
        nn.utils.clip_grad_norm_(parts.model.parameters(), cfg.grad_clip)
    parts.optimizer.step()
    parts.scheduler.step()
    if budget.spent():
        run.stop["deadline"] = True
    status = torch.tensor([loss.item(), float(run.stop["flag"]), float(run.stop.get("deadline", False))],
                          device=dist.device)
    if dist.world_size > 1:
        tdist.all_reduce(status)
    return status[0].item() / dist.world_size, status[1].item() > 0, status[2].item() > 0


def _train_epoch(run: _Run, progress: ckpt.Progress, epoch: int, budget: _Budget) -> tuple[dict, bool]:
    """One epoch of training from `progress.batch`; returns its record and whether time ran out."""
    from tqdm import tqdm

    cfg, dist = run.cfg, run.dist
    run.dataset.set_epoch(epoch, cfg.seed)
    run.batches.set_epoch(epoch)
    first = run.batches.skip
    run.ddp.train()
    t0, seen, loss_acc, wait, out_of_time = time.perf_counter(), 0, 0.0, 0.0, False
    bar = tqdm(total=len(run.batches), initial=first, desc=f"epoch {epoch + 1}/{cfg.epochs}",
               disable=not (dist.is_main and sys.stderr.isatty()), mininterval=2, unit="batch", leave=False)
    t_fetch = time.perf_counter()
    for i, batch in enumerate(batch_loader(run.dataset, run.batches, cfg.num_workers), start=first):
        wait += time.perf_counter() - t_fetch
        x = batch[0]
        mean_loss, stopping, out_of_time = _step(run, batch, budget)
        if not math.isfinite(mean_loss):
            raise TrainingDiverged(f"non-finite training loss ({mean_loss}) at epoch {epoch + 1}, "
                                   f"batch {i + 1}: lower lr (now {cfg.lr}) or enable grad_clip")
        loss_acc += mean_loss
        seen += 1
        bar.update(1)
        if not bar.disable:
            rate = seen * x.shape[0] * x.shape[1] * dist.world_size / (time.perf_counter() - t0)
            bar.set_postfix(loss=f"{mean_loss:.4f}", bases_s=f"{rate:,.0f}")
        if stopping:
            if dist.is_main and run.checkpoint is not None:
                progress.epoch, progress.batch = epoch, i + 1
                ckpt.save(run.checkpoint, run.parts, progress, cfg.to_dict())
            raise Preempted(f"SIGTERM: checkpoint saved at epoch {epoch + 1}, batch {i + 1}")
        if out_of_time:
            break
        t_fetch = time.perf_counter()
    bar.close()
    seconds = time.perf_counter() - t0
    return {"epoch": epoch + 1, "train_loss": loss_acc / max(seen, 1), "lr": run.parts.scheduler.get_last_lr()[0],
            "train_bases_per_s": seen * cfg.batch_size * cfg.window * dist.world_size / seconds,
            "data_wait_fraction": wait / seconds, "epoch_seconds": seconds}, out_of_time


def _validate_epoch(run: _Run, progress: ckpt.Progress, record: dict, epoch: int) -> None:
    """Validation metrics into the epoch's record; the best epoch's weights kept."""
    tv = time.perf_counter()
    cm, val_loss = validate(run.parts.model, run.store, run.val_regions, run.cfg, run.dist, run.loss_fn)
    record["val_seconds"] = time.perf_counter() - tv
    record["val_loss"] = val_loss
    record.update({f"val_{k}": v for k, v in metrics_from_confusion(cm).items()})
    record["val_confusion"] = cm.tolist()
    score = float(record[f"val_{run.cfg.objective}"])
    if score > progress.best_score:
        progress.best_score, progress.stale, progress.best_epoch = score, 0, epoch + 1
        progress.best_state = {k: v.detach().clone() for k, v in run.parts.model.state_dict().items()}
    else:
        progress.stale += 1


def _epoch_line(record: dict, cfg: Config, validated: bool) -> str:
    msg = (f"epoch {record['epoch']}/{cfg.epochs}: train loss {record['train_loss']:.4f}, "
           f"{record['train_bases_per_s']:,.0f} bases/s, data wait {record['data_wait_fraction']:.1%}")
    if validated:
        msg += (f"; val loss {record['val_loss']:.4f}, genic F1 {record['val_genic_f1']:.3f}, "
                f"macro F1 {record['val_macro_f1']:.3f}")
    return msg


def fit(cfg: Config, store: Store, splits: Splits, dist: DistInfo, *, checkpoint: Path | None = None,
        resume: bool = False, on_epoch: Callable[[dict], None] | None = None,
        log: Callable[[str], None] = print) -> FitResult:
    """Train on every fold but cfg.fold (all non-test data when fold == -1), validating on cfg.fold;
    the best validated epoch's weights are returned. With `checkpoint`, rank 0 saves the run after
    every epoch and on SIGTERM (then `Preempted` is raised); `resume` continues from it."""
    torch.manual_seed(cfg.seed)
    run, parent, teacher = _setup(cfg, store, splits, dist, checkpoint, log)
    result = FitResult(run.parts.model, n_parameters=count_parameters(run.parts.model), parent=parent,
                       teacher=teacher)
    progress = ckpt.Progress()
    if resume and checkpoint is not None and checkpoint.is_file():
        progress = ckpt.restore(checkpoint, run.parts)
        run.batches.skip = progress.batch
        if dist.is_main:
            log(f"resumed from {checkpoint}: epoch {progress.epoch + 1}, batch {progress.batch}")
    result.history, result.best_epoch = progress.history, progress.best_epoch
    old_handler = signal.signal(signal.SIGTERM, lambda *_: run.stop.update(flag=True))
    if dist.is_main and run.limit > len(run.dataset):
        log(f"bases_per_epoch {cfg.bases_per_epoch:,} is more than the {len(run.dataset) * cfg.window:,} bases of "
            f"the training windows: each epoch reads every window once (raise epochs to train longer)")
    if dist.is_main:
        log(f"model: {describe(cfg)}, {result.n_parameters:,} parameters; {len(run.dataset):,} training windows of "
            f"{cfg.window}; {len(run.batches)} batches/epoch/rank on {dist.world_size} process(es), {dist.device}")
    t_start, budget = time.perf_counter(), _Budget.of(cfg)
    try:
        for epoch in range(progress.epoch, cfg.epochs):
            record, out_of_time = _train_epoch(run, progress, epoch, budget)
            if run.val_regions:
                _validate_epoch(run, progress, record, epoch)
                result.best_epoch = progress.best_epoch
            progress.history.append(record)
            if dist.is_main:
                log(_epoch_line(record, cfg, bool(run.val_regions)))
                if on_epoch is not None:
                    on_epoch(record)
                if checkpoint is not None:
                    progress.epoch, progress.batch = epoch + 1, 0
                    ckpt.save(checkpoint, run.parts, progress, cfg.to_dict())
            if out_of_time:
                result.stopped = f"{budget.describe(cfg)} in epoch {epoch + 1}"
                if dist.is_main:
                    kept = (f"keeping the best validated epoch ({result.best_epoch})" if run.val_regions
                            else "keeping the last epoch's weights (nothing to validate on)")
                    log(f"{result.stopped}; {kept}")
                break
            if cfg.early_stopping_patience and progress.stale >= cfg.early_stopping_patience:
                if dist.is_main:
                    log(f"early stopping: no {cfg.objective} gain for {progress.stale} epochs (best epoch "
                        f"{result.best_epoch})")
                break
    finally:
        signal.signal(signal.SIGTERM, old_handler)
    result.train_seconds = time.perf_counter() - t_start
    if progress.best_state is not None:
        _keep_best(result, progress.best_state)
    return result


def _keep_best(result: FitResult, best_state: dict) -> None:
    """Load the best validated epoch's weights into result.model, with that epoch's metrics."""
    result.model.load_state_dict(best_state)
    best = next(r for r in result.history if r["epoch"] == result.best_epoch)
    result.confusion = np.array(best["val_confusion"])
    result.metrics = {k: v for k, v in best.items() if k.startswith("val_") and k != "val_confusion"}
