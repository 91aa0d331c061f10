"""Distillation: a student trained against a teacher model's per-base class probabilities as well as
the labels (`teacher = "zoo:athaliana"`, `distill_weight`, `distill_temperature`).

The teacher reads every non-test base of the store once, both strands (int8 on a CPU, as `dga
predict` reads), and its probabilities are cached beside the store under a key made of the
teacher's weights checksum, the store's checksum and the regions read: every fold, trial and rerun
of one store and teacher shares them, and another teacher (other weights) gets its own. The test
region is never read. The loss mixes the usual cross-entropy on the labels with the KL divergence
to the teacher's tempered probabilities (`distillation_loss`; weight 0 is plain training).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dga.data.prepare import TEACHER_DIR, TEACHER_FILES
from dga.data.windows import COMPLEMENT, Region
from dga.errors import InputError
from dga.labels import N_CLASSES

if TYPE_CHECKING:
    from dga.bundle import Bundle
    from dga.config import Config
    from dga.data.store import Store
    from dga.training.distributed import DistInfo

CACHE_DIR = TEACHER_DIR  # inside the store folder, which may hold it (dga.data.prepare.is_store_folder)
_FLOOR = 1e-4  # float16 probabilities of 0 would make the teacher's log-probability infinite


@dataclass(frozen=True)
class TeacherProbs:
    """A teacher's class probabilities for every base of the store's concatenated genome, float16
    [G, 4]: `fwd` as the forward read sees each base, `rev` as the reverse-complement read sees it
    (forward coordinates). Bases outside the regions read are zero."""

    fwd: np.ndarray
    rev: np.ndarray
    folder: Path
    record: dict[str, Any]

    def windows(self, starts: np.ndarray, flips: np.ndarray, window: int) -> np.ndarray:
        """The teacher's probabilities for the dataset's windows, float32 [B, window, 4]."""
        out = np.empty((len(starts), window, N_CLASSES), np.float32)
        span = np.arange(window)
        flips = np.asarray(flips, bool)
        if (~flips).any():
            out[~flips] = self.fwd[starts[~flips, None] + span]
        if flips.any():  # the reverse-complement read runs backwards along the genome
            out[flips] = self.rev[starts[flips, None] + span[::-1]]
        return out


def distillation_loss(logits: torch.Tensor, y: torch.Tensor, ce: nn.Module, teacher: torch.Tensor | None,
                      weight: float, temperature: float) -> torch.Tensor:
    """(1 - weight) x cross-entropy on the labels + weight x T^2 x KL(teacher_T || student_T), where
    `_T` is a distribution tempered by `temperature` (Hinton et al.: T^2 keeps the soft term's
    gradients on the hard term's scale). Weight 0 (or no teacher) is exactly the cross-entropy."""
    flat = logits.float().reshape(-1, N_CLASSES)
    hard = ce(flat, y.reshape(-1))
    if teacher is None or weight == 0:
        return hard
    t = float(temperature)
    target = F.log_softmax(torch.log(teacher.float().reshape(-1, N_CLASSES).clamp_min(_FLOOR)) / t, dim=-1)
    soft = F.kl_div(F.log_softmax(flat / t, dim=-1), target, log_target=True, reduction="batchmean") * t * t
    return (1.0 - weight) * hard + weight * soft


def teacher_bundle(ref: str) -> "Bundle":
    """The teacher by any reference DGA accepts (zoo:NAME, models:/..., runs:/..., a bundle folder)."""
    from dga import bundle

    return bundle.load(ref)


def cache_key(teacher_sha256: str, store_checksum: str, regions: list[Region]) -> str:
    """The cache folder's name: the teacher's weights, the store and the regions read."""
    text = json.dumps([teacher_sha256, store_checksum, [[r.seqid, r.start, r.end] for r in regions]])
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def teacher_record(cfg: "Config", source: "Bundle") -> dict[str, Any]:
    """What a distilled model learnt from: the teacher's reference, weights checksum, the data it was
    trained on, and the mix (weight, temperature); recorded like `init_from`'s parent."""
    from dga.training.finetune import parent_record

    return {**parent_record(cfg.teacher, source), "weight": cfg.distill_weight,
            "temperature": cfg.distill_temperature}


def teacher_tags(teacher: dict[str, Any] | None) -> dict[str, str]:
    """MLflow tags of a run or registered version trained with a teacher (none without one)."""
    if not teacher:
        return {}
    return {"dga.teacher_uri": teacher["uri"], "dga.teacher_sha256": teacher["weights_sha256"],
            "dga.distill_weight": repr(teacher["weight"]), "dga.distill_temperature": repr(teacher["temperature"])}


def lineage_tags(parent: dict[str, Any] | None, teacher: dict[str, Any] | None) -> dict[str, str]:
    """A model's lineage as MLflow tags: what it was fine-tuned from and what it was distilled from."""
    from dga.training.finetune import parent_tags

    return {**parent_tags(parent), **teacher_tags(teacher)}


def _open(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    return (np.load(folder / "fwd.npy", mmap_mode="r"), np.load(folder / "rev.npy", mmap_mode="r"))


def _read(source: "Bundle", store: "Store", regions: list[Region], tmp: Path, log: Callable[[str], None]) -> None:
    """The teacher's reads of every region, both strands, into tmp/fwd.npy and tmp/rev.npy."""
    from dga.prediction.model import int8_on_cpu, loaded
    from dga.prediction.reads import pieces_probs

    device = torch.device("cpu")
    lm = int8_on_cpu(loaded(source, device), device)
    n = len(store.track("seq"))
    fwd = np.lib.format.open_memmap(tmp / "fwd.npy", mode="w+", dtype=np.float16, shape=(n, N_CLASSES))
    rev = np.lib.format.open_memmap(tmp / "rev.npy", mode="w+", dtype=np.float16, shape=(n, N_CLASSES))
    offsets = {s["id"]: s["offset"] for s in store.seqids}
    seq, total, done, t0 = store.track("seq"), sum(len(r) for r in regions), 0, time.perf_counter()
    for r in regions:
        lo, hi = offsets[r.seqid] + r.start, offsets[r.seqid] + r.end
        codes = np.asarray(seq[lo:hi])
        args = (lm.window, lm.margin, source.config.val_batch_size, device, False)
        pieces_probs(lm.model, [codes], *args, [fwd[lo:hi]])
        pieces_probs(lm.model, [COMPLEMENT[codes[::-1]]], *args, [rev[lo:hi][::-1]])
        done += hi - lo
        log(f"  teacher: {r.seqid}:{r.start + 1}-{r.end} read, {done:,} of {total:,} bases "
            f"({time.perf_counter() - t0:.0f} s)")
    fwd.flush()
    rev.flush()
    del fwd, rev


def teacher_probs(cfg: "Config", store: "Store", regions: list[Region], dist: "DistInfo",
                  log: Callable[[str], None] = print) -> TeacherProbs:
    """The teacher's cached probabilities over `regions` (all of the store's non-test data), read
    now if no cache holds them. Rank 0 reads; the other ranks wait, then open the same files."""
    import torch.distributed as tdist

    source = teacher_bundle(cfg.teacher)
    if source.config.labels != cfg.labels:
        raise InputError(None, f"teacher = {cfg.teacher!r} was trained with labels = {source.config.labels!r}, "
                               f"this run uses {cfg.labels!r}: its probabilities mean other classes")
    record = teacher_record(cfg, source)
    key = cache_key(source.weights_sha256, store.checksum, regions)
    folder = Path(store.path) / CACHE_DIR / key
    record["cache"] = key
    if dist.is_main and not (folder / "meta.json").is_file():
        from dga.files import make_dir

        t0 = time.perf_counter()
        log(f"teacher {cfg.teacher} (weights {source.weights_sha256[:12]}): reading {sum(len(r) for r in regions):,} "
            f"training bases, both strands, once for this store (cached in {folder})")
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = make_dir(folder.parent, f".{key}-")
        _read(source, store, regions, tmp, log)
        meta = {"teacher": cfg.teacher, "weights_sha256": source.weights_sha256, "store_checksum": store.checksum,
                "regions": [[r.seqid, r.start, r.end] for r in regions], "seconds": round(time.perf_counter() - t0, 1)}
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
        try:
            os.rename(tmp, folder)
        except OSError:  # another worker finished the same cache first: keep theirs, remove what we wrote
            for name in TEACHER_FILES:
                (tmp / name).unlink(missing_ok=True)
            tmp.rmdir()
    if dist.world_size > 1:
        tdist.barrier()
    fwd, rev = _open(folder)
    return TeacherProbs(fwd, rev, folder, record)
