"""Blocked k-fold splits over each chromosome and a torch Dataset serving windows from the store.

Splits: the last `test_fraction` of every sequence is the held-out test region; the rest is cut
into k contiguous blocks. Every cut (test boundary included) is moved to the nearest base that
is intergenic on both strands, so no gene is cut. A seeded permutation assigns each sequence's
blocks to folds. Windows never straddle a region boundary: each lies inside one region.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from dga.config import Config

import json
import os
import tempfile
from dataclasses import asdict, dataclass

import numpy as np

from dga.data.store import Store
from dga.labels import Label

# Complement of the base codes A C G T N.
COMPLEMENT = np.array([3, 2, 1, 0, 4], dtype=np.uint8)
# One-hot rows for codes 0..4; N (4) is all zeros.
ONEHOT = np.eye(5, 4, dtype=np.float32)


@dataclass(frozen=True)
class Region:
    """A 0-based half-open interval [start, end) of one sequence."""

    seqid: str
    start: int
    end: int

    def __len__(self) -> int:
        return self.end - self.start


@dataclass(frozen=True)
class Splits:
    k: int
    test_fraction: float
    seed: int
    folds: tuple[tuple[Region, ...], ...]
    test: tuple[Region, ...]
    by: str = "blocks"  # blocks: k contiguous blocks per sequence; genome: one fold per genome
    fold_names: tuple[str, ...] = ()  # with by = "genome": each fold's genome

    def fold_name(self, fold: int) -> str:
        return self.fold_names[fold] if self.fold_names else f"fold {fold}"

    def validation(self, fold: int) -> list[Region]:
        return list(self.folds[fold])

    def training(self, fold: int | None) -> list[Region]:
        """Regions of every fold but `fold` (all non-test regions when fold is None)."""
        return [r for i, regions in enumerate(self.folds) if i != fold for r in regions]

    def to_dict(self) -> dict:
        return {"k": self.k, "test_fraction": self.test_fraction, "seed": self.seed, "by": self.by,
                "fold_names": list(self.fold_names),
                "folds": [[asdict(r) for r in f] for f in self.folds], "test": [asdict(r) for r in self.test]}

    @classmethod
    def from_dict(cls, d: dict) -> "Splits":
        return cls(d["k"], d["test_fraction"], d["seed"],
                   tuple(tuple(Region(**r) for r in f) for f in d["folds"]), tuple(Region(**r) for r in d["test"]),
                   d.get("by", "blocks"), tuple(d.get("fold_names", ())))


def nearest_intergenic(labels: np.ndarray, pos: int) -> int:
    """The position nearest `pos` whose label is intergenic (searching outward); `pos` if none exists."""
    n = labels.shape[0]
    if n == 0:
        return pos
    pos = min(max(pos, 0), n - 1)
    radius = 4096
    while True:
        lo, hi = max(0, pos - radius), min(n, pos + radius + 1)
        hits = np.flatnonzero(labels[lo:hi] == Label.INTERGENIC)
        if hits.size:
            hits = hits + lo
            return int(hits[np.argmin(np.abs(hits - pos))])
        if lo == 0 and hi == n:
            return pos
        radius *= 8


def make_splits(store: Store, k: int = 5, test_fraction: float = 0.1, seed: int = 0, by: str = "blocks") -> Splits:
    """Blocked k-fold splits with a held-out test tail on every sequence (deterministic); with
    `by="genome"`, one fold per genome of the store instead (leave-one-genome-out), the same test tails."""
    if by == "genome":
        return genome_splits(store, k, test_fraction, seed)
    if by != "blocks":
        raise ValueError(f"split must be 'blocks' or 'genome', got {by!r}")
    if k < 2:
        raise ValueError(f"k must be >= 2, got {k}")
    if not 0.0 <= test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in [0, 1), got {test_fraction}")
    rng = np.random.default_rng(seed)
    folds: list[list[Region]] = [[] for _ in range(k)]
    test: list[Region] = []
    for s, lab, test_start in _test_tails(store, test_fraction, test):
        cuts = [0] + [nearest_intergenic(lab, int(round(test_start * j / k))) for j in range(1, k)] + [test_start]
        cuts = list(np.maximum.accumulate(np.minimum(cuts, test_start)))
        order = rng.permutation(k)
        for block, fold in enumerate(order):
            if cuts[block + 1] > cuts[block]:
                folds[fold].append(Region(s["id"], int(cuts[block]), int(cuts[block + 1])))
    return Splits(k, test_fraction, seed, tuple(tuple(f) for f in folds), tuple(test))


def _test_tails(store: Store, test_fraction: float, test: list[Region]):
    """Each sequence with its labels and where its held-out tail starts (the last `test_fraction`,
    moved to the nearest intergenic base); the tails are appended to `test`."""
    labels = store.track("label")
    for s in store.seqids:
        lab = labels[s["offset"]: s["offset"] + s["length"]]
        n = s["length"]
        test_start = n if test_fraction == 0 else nearest_intergenic(lab, int(round(n * (1 - test_fraction))))
        if test_start < n:
            test.append(Region(s["id"], test_start, n))
        yield s, lab, test_start


def genome_splits(store: Store, k: int, test_fraction: float, seed: int) -> Splits:
    """Leave-one-genome-out: fold i is every non-test base of genome i; each sequence keeps its
    held-out test tail (cut at an intergenic base, as for blocks)."""
    from dga.errors import InputError

    genomes = store.genomes
    if len(genomes) < 2:
        raise InputError(store.path, "split = 'genome' needs a store of several genomes (dga prepare --genome ...)")
    if k != len(genomes):
        raise InputError(store.path, f"split = 'genome': k_folds must equal the number of genomes ({len(genomes)}: "
                                     f"{', '.join(genomes)}), got {k}")
    folds: list[list[Region]] = [[] for _ in genomes]
    test: list[Region] = []
    for s, _, test_start in _test_tails(store, test_fraction, test):
        if test_start > 0:
            folds[genomes.index(s["genome"])].append(Region(s["id"], 0, test_start))
    return Splits(k, test_fraction, seed, tuple(tuple(f) for f in folds), tuple(test), "genome", tuple(genomes))


def load_or_make_splits(store: Store, k: int = 5, test_fraction: float = 0.1, seed: int = 0,
                        by: str = "blocks") -> Splits:
    """The split file for (k, test_fraction, seed, by) inside the store, written once (atomically)."""
    kind = "" if by == "blocks" else f"_{by}"
    path = store.path / "splits" / f"k{k}_test{test_fraction:g}_seed{seed}{kind}.json"
    if path.is_file():
        return Splits.from_dict(json.loads(path.read_text()))
    splits = make_splits(store, k, test_fraction, seed, by)
    path.parent.mkdir(exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".splits-")
    with os.fdopen(fd, "w") as fh:
        json.dump(splits.to_dict(), fh, indent=1)
    os.replace(tmp, path)  # several workers may race here: all write the same content
    return splits


def splits_for(store: Store, cfg: "Config") -> Splits:
    """The split a training config asks for (`k_folds`, `test_fraction`, `split_seed`, `split`)."""
    return load_or_make_splits(store, cfg.k_folds, cfg.test_fraction, cfg.split_seed, cfg.split)


class WindowDataset:
    """(one-hot DNA, labels) windows lying wholly inside the given regions, with O(1)-ish random access.

    Indexing takes an int or an array of ints (a whole batch at once: use it with
    `batch_loader`). x is float32 [.., window, 4] (N = all zeros), y int64 [.., window].
    labels: "merged" (strand-agnostic) or "stranded" (+ strand genes on the forward read;
    with reverse_complement, the - strand genes on the reverse-complement read).
    reverse_complement doubles the dataset: item i + len/2 is the reverse complement of item i.
    """

    def __init__(self, store: Store, regions: list[Region], window: int, *, stride: int | None = None,
                 reverse_complement: bool = False, labels: str = "merged",
                 soft_targets: Callable[[np.ndarray, np.ndarray, int], np.ndarray] | None = None):
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        if labels not in ("merged", "stranded"):
            raise ValueError(f"labels must be 'merged' or 'stranded', got {labels!r}")
        self.store, self.window, self.stride = store, window, stride or window
        self.reverse_complement, self.labels = reverse_complement, labels
        # soft_targets(starts, flips, window) -> [B, window, 4] per-base targets (a distillation
        # teacher's probabilities); items are then (x, y, soft)
        self.soft_targets = soft_targets
        offsets = {s["id"]: s["offset"] for s in store.seqids}
        usable = [r for r in regions if len(r) >= window]
        self.region_starts = np.array([offsets[r.seqid] + r.start for r in usable], dtype=np.int64)
        self.slack = np.array([len(r) - window for r in usable], dtype=np.int64)
        counts = self.slack // self.stride + 1
        self.cum = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        # Spare room at each region's end: set_epoch() shifts windows within it.
        self.room = self.slack - (counts - 1) * self.stride
        self.shift = np.zeros_like(self.room)
        self.n_forward = int(self.cum[-1])

    def __len__(self) -> int:
        return self.n_forward * (2 if self.reverse_complement else 1)

    def set_epoch(self, epoch: int, seed: int = 0) -> None:
        """Move every region's windows by a seeded offset (same count, still inside the region)."""
        rng = np.random.default_rng([seed, epoch])
        self.shift = (rng.random(self.room.shape) * (self.room + 1)).astype(np.int64)

    def starts(self, index: np.ndarray) -> np.ndarray:
        """Genome (concatenated) start of each forward window index."""
        r = np.searchsorted(self.cum, index, side="right") - 1
        return self.region_starts[r] + self.shift[r] + (index - self.cum[r]) * self.stride

    def __getitem__(self, index):
        single = np.isscalar(index)
        idx = np.atleast_1d(np.asarray(index, dtype=np.int64))
        if idx.size and (idx.min() < 0 or idx.max() >= len(self)):
            raise IndexError(f"window index out of range 0..{len(self) - 1}")
        rc = idx >= self.n_forward
        starts = self.starts(np.where(rc, idx - self.n_forward, idx))
        w = self.window
        seq = self.store.track("seq")
        fwd_track = self.store.track("label" if self.labels == "merged" else "label_plus")
        rc_track = self.store.track("label" if self.labels == "merged" else "label_minus")
        codes = np.empty((idx.size, w), dtype=np.uint8)
        y = np.empty((idx.size, w), dtype=np.int64)
        for j, (s, flip) in enumerate(zip(starts.tolist(), rc.tolist())):
            if flip:
                codes[j] = COMPLEMENT[seq[s: s + w][::-1]]
                y[j] = rc_track[s: s + w][::-1]
            else:
                codes[j] = seq[s: s + w]
                y[j] = fwd_track[s: s + w]
        import torch  # the store and splits work without torch; only serving tensors needs it

        x, yt = torch.from_numpy(ONEHOT[codes]), torch.from_numpy(y)
        if self.soft_targets is not None:
            soft = torch.from_numpy(self.soft_targets(starts, rc, w))
            return (x[0], yt[0], soft[0]) if single else (x, yt, soft)
        return (x[0], yt[0]) if single else (x, yt)


class EpochBatches:
    """Batch sampler: a seeded shuffle per epoch, sharded across DDP ranks in equal-length shares."""

    def __init__(self, n: int, batch_size: int, *, shuffle: bool = True, seed: int = 0, rank: int = 0,
                 world_size: int = 1, drop_last: bool = True, limit: int = 0):
        self.n, self.batch_size, self.shuffle, self.seed = n, batch_size, shuffle, seed
        self.rank, self.world_size, self.drop_last, self.epoch = rank, world_size, drop_last, 0
        self.limit = min(limit, n) if limit else n  # items per epoch across all ranks (a random subset)
        self.skip = 0  # batches to skip at the start of the next epoch (resuming mid-epoch)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _mine(self) -> np.ndarray:
        order = (np.random.default_rng([self.seed, self.epoch]).permutation(self.n) if self.shuffle
                 else np.arange(self.n))
        per_rank = self.limit // self.world_size  # equal shares keep DDP ranks in step
        return order[self.rank * per_rank: (self.rank + 1) * per_rank]

    def __iter__(self):
        mine, skip, self.skip = self._mine(), self.skip, 0
        for b in range(skip, len(self)):
            yield mine[b * self.batch_size: (b + 1) * self.batch_size]

    def __len__(self) -> int:
        per_rank = self.limit // self.world_size
        return per_rank // self.batch_size if self.drop_last else -(-per_rank // self.batch_size)


def batch_loader(dataset: WindowDataset, batches: EpochBatches, num_workers: int = 0):
    """A DataLoader that fetches whole batches with one vectorised __getitem__ call."""
    from torch.utils.data import DataLoader

    return DataLoader(dataset, sampler=batches,  # type: ignore[arg-type]  # a map-style dataset by protocol
                      batch_size=None, num_workers=num_workers,
                      persistent_workers=num_workers > 0)
