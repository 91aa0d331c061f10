"""Posterior probabilities from the gene-structure HMM itself: forward-backward over the states
and moves the Viterbi path uses (`dga.decoding.posterior_kernel`), in overlapping pieces.

For a decoded gene the posteriors say how likely the decoder finds its exact structure among all
the valid annotations of the stretch, each weighted by its score: the gene's (every state from
the base before it to the base after it as decoded: the same start, splice sites, phases and
stop), each exon's (its two boundaries as decoded) and each intron's. A gene the network backs
strongly but whose splice sites have close rivals gets a low posterior; that is what tells a
right gene from a wrong one (`dga.decoding.confidence` turns these into the GFF3 score).

Memory: about 480 bytes per base of a piece (the forward values of 40 states and 17 chain
entries); pieces cut where the Viterbi path is intergenic, each read with `FLANK` bases either
side whose posteriors are dropped (`dga.decoding.pieces.hmm_decode` makes them as long as its
Viterbi pieces). The sums run in linear space, scaled at every base; a stretch whose values span
more than float64 holds (hard probabilities trusted at full weight) is summed again in log space.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from dga.decoding.hmm import HMMParams, KernelInputs
from dga.decoding.hmm_kernel import IG, IG_AFTER, STATE_CLASS
from dga.decoding.posterior_kernel import (
    K_GENE,
    K_INTRON,
    K_NO_UTR,
    K_UTR_INTRON,
    add_young_chains,
    backward,
    backward_log,
    chain_lengths,
    chain_phase,
    forward,
    forward_log,
)
from dga.labels import Label

PIECE = 400_000  # bases of a piece's core (about)
FLANK = 25_000  # bases read beyond each end of a core: the posteriors there forget the cut


@dataclass
class Posteriors:
    """Forward-backward results of one stretch, for the state path it was run with."""

    classes: np.ndarray  # [L, 4] posterior of each class at each base (sums to 1)
    log_alpha: np.ndarray  # [L] log scaled forward value of the path's state
    cum: np.ndarray  # [L] cumulative log increments along the path (scaled)
    along: np.ndarray  # [L] log scaled backward value of the path's state as entered, + log C_t - log Z
    log_z: float  # log of the total weight of all valid paths
    log_space: bool = False  # the sums ran in log space (values beyond float64's range in the scaled pass)

    def segment(self, a: int, b: int) -> float:
        """Posterior that the path is in the decoded state at base a (however it came there; a = -1:
        from the sequence's start) and runs through the decoded states to base b (however it goes
        on): with a and b the bases that pin a feature's ends, the posterior of the feature exactly
        as decoded."""
        left = 0.0 if a < 0 else self.log_alpha[a] - self.cum[a]
        return float(np.minimum(1.0, np.exp(left + self.cum[b] + self.along[b])))  # NaN: no feature ends there


def forward_backward(k: KernelInputs, params: HMMParams, path: np.ndarray,
                     open_ends: tuple[bool, bool] = (True, True)) -> Posteriors:
    """Forward-backward of one stretch (`dga.decoding.hmm.kernel_inputs`) given its decoded state
    path; see `Posteriors`."""
    path = np.asarray(path, dtype=np.int64)
    consts = np.exp(np.array([0.0] * 4))
    consts[K_GENE], consts[K_INTRON] = np.exp(params.gene), np.exp(params.intron)
    consts[K_UTR_INTRON], consts[K_NO_UTR] = np.exp(params.utr_intron), np.exp(params.no_utr)
    ep, em, eig = np.exp(k.em_p), np.exp(k.em_m), np.exp(k.em_ig)
    ecod, esc = np.exp(k.cod, dtype=np.float64), np.exp(k.sc, dtype=np.float64)  # no float64 copy first
    logs = np.column_stack([k.em_p[:, 1], k.em_m[:, 1], k.em_ig])  # what young chain states emit
    cum_log_em = np.vstack([np.zeros((1, 3)), np.cumsum(logs, axis=0)])
    args = (ep, em, eig, ecod, k.sc, esc, k.codes, consts, float(np.exp(params.utr_atg)), cum_log_em,
            k.min_intron, k.min_intergenic)
    phase = chain_phase(path, k.min_intron, k.min_intergenic)
    alpha, entry, log_c, inc = forward(*args, open_ends[0], path)
    linear = not np.isnan(log_c[-1])
    if linear:
        post, entry_post, log_z, along = backward(*args, open_ends[1], alpha, entry, log_c, path, phase)
        linear = bool(np.isfinite(log_z)) and bool(np.isfinite(post).all())
    if not linear:  # values beyond float64's range at some base: the same sums in log space
        alpha, entry, log_c, inc = forward_log(*args, open_ends[0], path)
        post, entry_post, log_z, along = backward_log(*args, open_ends[1], alpha, entry, path, phase)
    if not np.isfinite(log_z):
        raise FloatingPointError("forward-backward: the stretch has no valid path")
    classes = post.astype(np.float64)
    add_young_chains(classes, entry_post, chain_lengths(k.min_intron, k.min_intergenic))
    t = np.arange(len(path))
    with np.errstate(divide="ignore"):
        log_alpha = np.log(alpha[t, path]) if linear else alpha[t, path]
    log_alpha[phase != 0] = np.nan  # a young chain state: no feature starts after it
    return Posteriors(classes.astype(np.float32), log_alpha, np.cumsum(inc), along, float(log_z), not linear)


@dataclass
class FeaturePosteriors:
    """A decoded gene's posteriors: its CDS chain, each CDS segment and each intron between them
    exactly as decoded (UTR ends, which no splice site or codon pins down, are summed over)."""

    gene: float
    cds: list[float]
    introns: list[float]


def feature_posteriors(fb: Posteriors, path: np.ndarray, cds: list[tuple[int, int]],
                       intron: np.ndarray | None = None) -> FeaturePosteriors:
    """Posteriors of a gene whose CDS segments are `cds` (in the stretch's coordinates). A segment
    reaches from the base before it when an intron is there (its acceptor), else from its first
    base (a start or stop codon state, whatever came before); to the base after it when an intron
    is there (its donor), else to its last base (whatever follows). `intron`: the path's intron
    bases, when the caller has them for many genes of one stretch."""
    n = len(path)
    if intron is None:
        intron = STATE_CLASS[path] == Label.INTRON

    def left(s: int) -> int:
        return -1 if s == 0 else s - 1 if intron[s - 1] else s

    def right(e: int) -> int:
        return e if e < n and intron[e] else e - 1

    gene = fb.segment(left(cds[0][0]), right(cds[-1][1]))
    segs = [fb.segment(left(s), right(e)) for s, e in cds]
    introns = [fb.segment(a - 1, b) for (_, a), (b, _) in zip(cds[:-1], cds[1:])]
    return FeaturePosteriors(gene, segs, introns)


def piece_cuts(path: np.ndarray, piece: int = PIECE) -> list[int]:
    """Cut points every `piece` bases or so, each at an intergenic base of the path (no gene
    crosses one), from 0 to len(path)."""
    inter = np.flatnonzero((path == IG) | (path == IG_AFTER))
    cuts, target = [0], piece
    while target < len(path):
        i = int(np.searchsorted(inter, target))
        if i >= len(inter):
            break
        cuts.append(int(inter[i]))
        target = int(inter[i]) + piece
    return cuts + [len(path)]


def posteriors_in_pieces(path: np.ndarray, genes: list[list[tuple[int, int]]],
                         run: Callable[[int, int], Posteriors], piece: int = PIECE,
                         flank: int = FLANK) -> list[FeaturePosteriors]:
    """Posteriors of the genes (CDS segments in the path's coordinates) of a stretch whose forward-backward
    `run(a, b)` gives for bases a..b: in pieces cut at intergenic bases, each read `flank` bases
    beyond its ends. Pieces without genes are skipped."""
    n = len(path)
    cuts = piece_cuts(path, piece)
    starts = np.array([cds[0][0] for cds in genes], dtype=np.int64)
    out: list[FeaturePosteriors | None] = [None] * len(genes)
    for c0, c1 in zip(cuts[:-1], cuts[1:]):
        mine = np.flatnonzero((starts >= c0) & (starts < c1))
        if not len(mine):
            continue
        a, b = max(0, c0 - flank), min(n, c1 + flank)
        fb = run(a, b)
        intron = STATE_CLASS[path[a:b]] == Label.INTRON  # once per piece, not per gene
        for g in mine:
            out[g] = feature_posteriors(fb, path[a:b], [(s - a, e - a) for s, e in genes[g]], intron)
    assert all(p is not None for p in out)  # every gene starts in one core
    return out  # type: ignore[return-value]
