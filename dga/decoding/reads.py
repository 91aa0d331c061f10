"""A decoder's input: one sequence's two reads of class probabilities, read a slice at a time.

The network reads every sequence forward and as its reverse complement (`dga.prediction.reads`).
A strand-aware model's decoder takes + strand genes from the forward read and - strand genes from
the reverse-complement read; a strand-agnostic model's decoder reads the mean of both. Assembly
gaps (runs of N) are certain intergenic on every read.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dga.labels import N_CLASSES, Label

N_RUN_MIN = 10  # runs of at least this many N (assembly gaps) are never genic
CERTAIN_IG = np.eye(N_CLASSES, dtype=np.float32)[Label.INTERGENIC]  # a base inside an assembly gap


def n_runs(codes: np.ndarray, min_len: int) -> np.ndarray:
    """Mask of bases inside runs of >= min_len N codes."""
    is_n = np.concatenate([[False], codes == 4, [False]])
    edges = np.flatnonzero(is_n[1:] != is_n[:-1])
    starts, ends = edges[0::2], edges[1::2]
    keep = ends - starts >= min_len
    mask = np.zeros(len(codes) + 1, dtype=np.int32)
    np.add.at(mask, starts[keep], 1)
    np.add.at(mask, ends[keep], -1)
    return np.cumsum(mask[:-1]) > 0


class ReadsView:
    """Rows of the probabilities that decoding and gene scores read, computed per slice (a piece or
    a gene at a time): one read, or the mean of both, as float32, with assembly gaps (when given) set
    to certain intergenic. Nothing of the whole sequence's length is made."""

    def __init__(self, reads: tuple[np.ndarray, ...], gaps: np.ndarray | None = None):
        self.reads, self.gaps = reads, gaps

    def __getitem__(self, rows: slice) -> np.ndarray:
        out = np.array(self.reads[0][rows], dtype=np.float32)  # a copy: the reads are never written
        if len(self.reads) == 2:
            out = (out + self.reads[1][rows]) / 2
        if self.gaps is not None:
            out[self.gaps[rows]] = CERTAIN_IG
        return out


@dataclass
class SequenceReads:
    """One sequence as a decoder sees it: its codes (A C G T N = 0..4) and both reads [L, 4], the
    reverse-complement read already in forward coordinates."""

    seqid: str
    codes: np.ndarray
    fwd: np.ndarray
    rev_fwd: np.ndarray
    stranded: bool  # a strand-aware model: + genes from `fwd`, - genes from `rev_fwd`

    def __post_init__(self) -> None:
        self.gaps = n_runs(self.codes, N_RUN_MIN)

    def plus(self) -> ReadsView:
        """What + strand states read: the forward read (stranded), else the mean of both; gaps intergenic."""
        return ReadsView((self.fwd,) if self.stranded else (self.fwd, self.rev_fwd), self.gaps)

    def minus(self) -> ReadsView | None:
        """What - strand states read: the reverse-complement read (stranded), else None (the same as +)."""
        return ReadsView((self.rev_fwd,), self.gaps) if self.stranded else None
