"""Training: single process, torchrun or srun (DDP: gloo on CPU, nccl on GPU), checkpoints and resume.

Training never imports MLflow or Optuna: fit() returns metrics and calls `on_epoch` with each
epoch's record; the CLI and the search wire that to tracking.
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
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
from dga.nets.registry import build_model, count_parameters

EXIT_PREEMPTED = 75  # distinct exit status after SIGTERM: checkpoint saved, resume with --resume
EXIT_DIVERGED = 3


class Preempted(Exception):
    """SIGTERM arrived: a checkpoint was written and the run can be resumed."""


class TrainingDiverged(Exception):
    """The loss became NaN or infinite."""


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def backend(self) -> str:
        return "nccl" if self.device.type == "cuda" else "gloo"


def _first_slurm_host() -> str:
    nodelist = os.environ.get("SLURM_JOB_NODELIST") or os.environ.get("SLURM_NODELIST")
    if nodelist:
        try:
            out = subprocess.run(["scontrol", "show", "hostnames", nodelist], capture_output=True, text=True,
                                 timeout=10, check=True).stdout.split()
            if out:
                return out[0]
        except (OSError, subprocess.SubprocessError):
            pass
    return "127.0.0.1"


SMALL_MODEL = 1_000_000  # parameters: below this, one thread per process (benchmarks/bench_contention.py)


def auto_threads(n_parameters: int, dist: "DistInfo") -> int:
    """Threads for training when the config leaves it open: one for a small model, whose work per
    step is too little to share (measured on 2 cores: the quickstart's model trains as fast on one
    thread alone, and 2.9x faster than on two when another CPU-bound process runs beside it), the
    usable CPUs shared between local processes otherwise."""
    if n_parameters < SMALL_MODEL:
        return 1
    return max(1, usable_cpus() // dist.local_world_size)


def usable_cpus() -> int:
    """CPUs this process may really use: its affinity mask (taskset, SLURM's cgroup cpuset), capped by a
    cgroup v2 CPU quota (containers) when one is set. os.cpu_count() counts the whole machine."""
    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            n = min(n, max(1, int(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, n)


def setup_distributed(device: str = "auto", threads: int = 0) -> DistInfo:
    """Read the launcher's environment (torchrun: RANK/WORLD_SIZE/LOCAL_RANK; srun: SLURM_PROCID/
    SLURM_NTASKS/SLURM_LOCALID), pick the device, and join the process group when world_size > 1."""
    env = os.environ
    if "RANK" in env and "WORLD_SIZE" in env:
        rank, world = int(env["RANK"]), int(env["WORLD_SIZE"])
        local_rank = int(env.get("LOCAL_RANK", 0))
        local_world = int(env.get("LOCAL_WORLD_SIZE", world))
    elif int(env.get("SLURM_NTASKS", "1")) > 1 and "SLURM_PROCID" in env:
        rank, world = int(env["SLURM_PROCID"]), int(env["SLURM_NTASKS"])
        local_rank = int(env.get("SLURM_LOCALID", 0))
        local_world = int(env.get("SLURM_NTASKS_PER_NODE", env.get("SLURM_TASKS_PER_NODE", "1")).split("(")[0])
        env.setdefault("MASTER_ADDR", _first_slurm_host())
        env.setdefault("MASTER_PORT", str(20000 + int(env.get("SLURM_JOB_ID", "0")) % 20000))
    else:
        rank, world, local_rank, local_world = 0, 1, 0, 1
    use_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    if device == "cuda" and not torch.cuda.is_available():
        raise InputError(None, "device = 'cuda' but no CUDA device is available (set device = 'auto' or 'cpu')")
    if use_cuda:
        torch.cuda.set_device(local_rank % torch.cuda.device_count())
        dev = torch.device("cuda", local_rank % torch.cuda.device_count())
    else:
        dev = torch.device("cpu")
    torch.set_num_threads(threads or max(1, usable_cpus() // local_world))
    info = DistInfo(rank, world, local_rank, local_world, dev)
    if world > 1 and not tdist.is_initialized():
        env.setdefault("MASTER_ADDR", "127.0.0.1")
        env.setdefault("MASTER_PORT", "29500")
        tdist.init_process_group(info.backend, rank=rank, world_size=world)
    return info


def cleanup_distributed() -> None:
    if tdist.is_initialized():
        tdist.destroy_process_group()


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


def save_checkpoint(path: Path, state: dict) -> None:
    """Atomic torch.save (temp file + rename): a kill mid-write never leaves a broken checkpoint."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def fit(cfg: Config, store: Store, splits: Splits, dist: DistInfo, *, checkpoint: Path | None = None,
        resume: bool = False, on_epoch: Callable[[dict], None] | None = None,
        log: Callable[[str], None] = print) -> FitResult:
    """Train on every fold but cfg.fold (all non-test data when fold == -1), validating on cfg.fold."""
    torch.manual_seed(cfg.seed)
    train_regions = training_regions(cfg, splits)
    val_regions = splits.validation(cfg.fold) if cfg.fold >= 0 else []
    dataset = WindowDataset(store, train_regions, cfg.window, reverse_complement=cfg.reverse_complement,
                            labels=cfg.labels)
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
                f"{parent['trained_on']['dataset']})" + (f", first {cfg.freeze_layers} LSTM layer(s) frozen"
                                                         if cfg.freeze_layers else ""))
    model = model.to(dist.device)
    if not cfg.threads and dist.device.type == "cpu":
        torch.set_num_threads(auto_threads(count_parameters(model), dist))
    n_params = count_parameters(model)
    ddp = nn.parallel.DistributedDataParallel(model, device_ids=[dist.device.index] if dist.device.type == "cuda"
                                              else None) if dist.world_size > 1 else model
    opt_cls = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
    optimizer = opt_cls([p for p in model.parameters() if p.requires_grad], lr=cfg.lr, weight_decay=cfg.weight_decay)
    total_steps = cfg.epochs * len(batches)
    schedule = (lambda s: 0.5 * (1 + math.cos(math.pi * min(s, total_steps) / total_steps))) \
        if cfg.lr_schedule == "cosine" else (lambda s: 1.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    loss_fn = nn.CrossEntropyLoss(weight=class_weights(store, train_regions, cfg).to(dist.device))

    result = FitResult(model, n_parameters=n_params, parent=parent)
    start_epoch, best_score, best_state, stale = 0, -math.inf, None, 0
    if resume and checkpoint is not None and checkpoint.is_file():
        try:  # tensors and plain data only: a checkpoint cannot run code
            state = torch.load(checkpoint, map_location=dist.device, weights_only=True)
        except Exception as exc:
            raise InputError(checkpoint, f"cannot be read as a plain checkpoint ({type(exc).__name__}): written by "
                                         f"an older DGA or altered; remove it to start this run over") from None
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng_cpu"])
        if dist.device.type == "cuda" and state.get("rng_cuda") is not None:
            torch.cuda.set_rng_state(state["rng_cuda"])
        start_epoch, batches.skip = state["epoch"], state["batch"]
        result.history, best_score, best_state, stale = state["history"], state["best_score"], \
            state["best_state"], state["stale"]
        result.best_epoch = state.get("best_epoch", -1)
        if dist.is_main:
            log(f"resumed from {checkpoint}: epoch {start_epoch + 1}, batch {batches.skip}")

    def snapshot(epoch: int, batch: int) -> dict:
        return {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "epoch": epoch, "batch": batch,
                "rng_cpu": torch.get_rng_state(),
                "rng_cuda": torch.cuda.get_rng_state() if dist.device.type == "cuda" else None,
                "history": result.history, "best_score": best_score, "best_state": best_state,
                "best_epoch": result.best_epoch, "stale": stale, "config": cfg.to_dict()}

    stop = {"flag": False}
    old_handler = signal.signal(signal.SIGTERM, lambda *_: stop.update(flag=True))
    autocast = cfg.bf16 and dist.device.type == "cuda"
    if dist.is_main and limit > len(dataset):
        log(f"bases_per_epoch {cfg.bases_per_epoch:,} is more than the {len(dataset) * cfg.window:,} bases of the "
            f"training windows: each epoch reads every window once (raise epochs to train longer)")
    if dist.is_main:
        log(f"model: BiLSTM hidden {cfg.hidden_size} x {cfg.num_layers} layers, {cfg.bases_per_step} base(s)/step, "
            f"{n_params:,} parameters; {len(dataset):,} training windows of {cfg.window}; "
            f"{len(batches)} batches/epoch/rank on {dist.world_size} process(es), {dist.device}")
    t_start = time.perf_counter()
    deadline = t_start + cfg.deadline_minutes * 60 if cfg.deadline_minutes else 0.0
    out_of_time = False
    try:
        from tqdm import tqdm

        for epoch in range(start_epoch, cfg.epochs):
            dataset.set_epoch(epoch, cfg.seed)
            batches.set_epoch(epoch)
            first = batches.skip
            ddp.train()
            t0, seen, loss_acc, wait = time.perf_counter(), 0, 0.0, 0.0
            bar = tqdm(total=len(batches), initial=first, desc=f"epoch {epoch + 1}/{cfg.epochs}",
                       disable=not (dist.is_main and sys.stderr.isatty()), mininterval=2, unit="batch", leave=False)
            t_fetch = time.perf_counter()
            for i, (x, y) in enumerate(batch_loader(dataset, batches, cfg.num_workers), start=first):
                wait += time.perf_counter() - t_fetch
                x, y = x.to(dist.device, non_blocking=True), y.to(dist.device, non_blocking=True)
                with torch.autocast(dist.device.type, dtype=torch.bfloat16, enabled=autocast):
                    logits = ddp(x)[..., :N_CLASSES]
                loss = loss_fn(logits.float().reshape(-1, N_CLASSES), y.reshape(-1))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.grad_clip > 0:
                    nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                optimizer.step()
                scheduler.step()
                if deadline and time.perf_counter() > deadline:
                    stop["deadline"] = True
                status = torch.tensor([loss.item(), float(stop["flag"]), float(stop.get("deadline", False))],
                                      device=dist.device)
                if dist.world_size > 1:
                    tdist.all_reduce(status)
                mean_loss, stopping = status[0].item() / dist.world_size, status[1].item() > 0
                out_of_time = status[2].item() > 0
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
                    if dist.is_main and checkpoint is not None:
                        save_checkpoint(checkpoint, snapshot(epoch, i + 1))
                    raise Preempted(f"SIGTERM: checkpoint saved at epoch {epoch + 1}, batch {i + 1}")
                if out_of_time:
                    break
                t_fetch = time.perf_counter()
            bar.close()
            seconds = time.perf_counter() - t0
            record = {"epoch": epoch + 1, "train_loss": loss_acc / max(seen, 1), "lr": scheduler.get_last_lr()[0],
                      "train_bases_per_s": seen * cfg.batch_size * cfg.window * dist.world_size / seconds,
                      "data_wait_fraction": wait / seconds, "epoch_seconds": seconds}
            if val_regions:
                tv = time.perf_counter()
                cm, val_loss = validate(model, store, val_regions, cfg, dist, loss_fn)
                record["val_seconds"] = time.perf_counter() - tv
                record["val_loss"] = val_loss
                record.update({f"val_{k}": v for k, v in metrics_from_confusion(cm).items()})
                record["val_confusion"] = cm.tolist()
                score = float(record[f"val_{cfg.objective}"])
                if score > best_score:
                    best_score, stale, result.best_epoch = score, 0, epoch + 1
                    best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
                else:
                    stale += 1
            result.history.append(record)
            if dist.is_main:
                msg = (f"epoch {epoch + 1}/{cfg.epochs}: train loss {record['train_loss']:.4f}, "
                       f"{record['train_bases_per_s']:,.0f} bases/s, data wait {record['data_wait_fraction']:.1%}")
                if val_regions:
                    msg += (f"; val loss {record['val_loss']:.4f}, genic F1 {record['val_genic_f1']:.3f}, "
                            f"macro F1 {record['val_macro_f1']:.3f}")
                log(msg)
                if on_epoch is not None:
                    on_epoch(record)
                if checkpoint is not None:
                    save_checkpoint(checkpoint, snapshot(epoch + 1, 0))
            if out_of_time:
                result.stopped = f"deadline: {cfg.deadline_minutes:g} minutes reached in epoch {epoch + 1}"
                if dist.is_main:
                    log(f"{result.stopped}; keeping the best validated epoch ({result.best_epoch})")
                break
            if cfg.early_stopping_patience and stale >= cfg.early_stopping_patience:
                if dist.is_main:
                    log(f"early stopping: no {cfg.objective} gain for {stale} epochs (best epoch {result.best_epoch})")
                break
    finally:
        signal.signal(signal.SIGTERM, old_handler)
    result.train_seconds = time.perf_counter() - t_start
    if best_state is not None:
        _keep_best(result, best_state)
    return result


def _keep_best(result: FitResult, best_state: dict) -> None:
    """Load the best validated epoch's weights into result.model, with that epoch's metrics."""
    result.model.load_state_dict(best_state)
    best = next(r for r in result.history if r["epoch"] == result.best_epoch)
    result.confusion = np.array(best["val_confusion"])
    result.metrics = {k: v for k, v in best.items() if k.startswith("val_") and k != "val_confusion"}


def store_for_config(cfg: Config, dist: DistInfo, log: Callable[[str], None] = print) -> Store:
    """Open the config's store; rank 0 prepares it first if it does not exist yet (others wait)."""
    from dga.data.sources import resolve
    from dga.data.store import open_store, prepare_store

    genomes = cfg.genome_args
    default = cfg.dataset or ("+".join(g.split("=")[0] for g in genomes) if genomes else "custom")
    path = Path(cfg.store or Path("stores") / default)
    if dist.is_main and not (path / "manifest.json").is_file():
        if genomes:
            from dga.data.store import genome_from_arg, prepare_genomes

            prepare_genomes([genome_from_arg(g) for g in genomes], path, dataset=cfg.dataset or None, log=log)
        elif cfg.fasta and cfg.gff:
            prepare_store(cfg.fasta, cfg.gff, path, log=log)
        else:
            fasta, gff, _ = resolve(cfg.dataset)
            prepare_store(fasta, gff, path, dataset=cfg.dataset, log=log)
    if dist.world_size > 1:
        tdist.barrier()
    return open_store(path)
