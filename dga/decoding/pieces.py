"""Gene models of whole sequences from the gene-structure HMM (`dga.decoding.hmm`): long sequences decoded
in overlapping pieces joined where both paths are intergenic, state paths turned into genes.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from dga.decoding.genes import GeneModel, runs, shift_genes
from dga.decoding.hmm import HMMParams, Progress, kernel_inputs, viterbi_path
from dga.decoding.hmm_kernel import IG, IG_AFTER, STATE_CLASS, STATE_CODON, STATE_STRAND
from dga.decoding.posteriors import FLANK, Posteriors, forward_backward, posteriors_in_pieces
from dga.decoding.signals import SignalModel
from dga.labels import Label


class Rows(Protocol):
    """Per-base probabilities [L, 4] as the decoder reads them: anything sliced by rows into an
    array (an array, or a lazy view of memory-mapped reads that computes a slice when asked)."""

    def __getitem__(self, rows: slice, /) -> np.ndarray: ...


def _segments(mask: np.ndarray, offset: int) -> list[tuple[int, int]]:
    s, e, v = runs(mask.astype(np.uint8))
    return [(int(a) + offset, int(b) + offset) for a, b, x in zip(s, e, v) if x]


def path_to_genes(path: np.ndarray, seqid: str, offset: int = 0, min_cds: int = 0) -> list[GeneModel]:
    """Gene models from a state path: each maximal run of non-intergenic states is one gene; one that
    runs into either end of the path is marked partial (it may lack its start or stop codon)."""
    starts, ends, vals = runs(((path != IG) & (path != IG_AFTER)).astype(np.uint8))
    genes: list[GeneModel] = []
    for a, b, genic in zip(starts, ends, vals):
        if not genic:
            continue
        seg = path[a:b]
        strand_sign = STATE_STRAND[seg[0]]
        strand = "+" if strand_sign > 0 else "-"
        cls = STATE_CLASS[seg]
        exon = cls != Label.INTRON
        cds_mask = cls == Label.CDS
        if cds_mask.sum() < max(min_cds, 1):
            continue
        a, b = int(a), int(b)
        exons = _segments(exon, a)
        cds_segs = _segments(cds_mask, a)
        codon = STATE_CODON[seg]
        cds = []
        for s, e in cds_segs:
            # GFF3 phase: bases to skip at the segment's 5' end to reach a codon's first base
            k = codon[(s - a) if strand == "+" else (e - 1 - a)]
            cds.append((s, e, int((3 - k) % 3)))
        cs, ce = cds_segs[0][0], cds_segs[-1][1]
        before = [(s, min(e, cs)) for s, e in exons if s < cs]
        after = [(max(s, ce), e) for s, e in exons if e > ce]
        # a gene that runs off an end of the path is partial, and its span reaches that end (it may
        # begin or end inside an intron there); any other gene spans its first to its last exon
        at_start, at_end = a == 0, b == len(path)
        gene = GeneModel(seqid, strand, a if at_start else exons[0][0], b if at_end else exons[-1][1], exons, cds,
                         before if strand == "+" else after, after if strand == "+" else before,
                         partial=at_start or at_end)
        genes.append(gene)
    return shift_genes(genes, offset)


CHUNK = 1_000_000  # bases per decoded piece (about): the HMM's memory is ~450 bytes per base of a piece
OVERLAP = 25_000  # bases each side of a joint that both neighbouring pieces decode


def stitch_point(left: np.ndarray, right: np.ndarray) -> int | None:
    """Where two decodings of the same stretch (state paths of equal length) can be joined: the
    position nearest the middle at which both are intergenic (no gene crosses it in either), or
    None when they never agree on one."""
    both = np.flatnonzero((left == IG) & (right == IG))
    if not len(both):
        return None
    return int(both[np.argmin(np.abs(both - len(left) // 2))])


def hmm_decode(plus_probs: Rows, minus_probs: Rows | None, codes: np.ndarray, seqid: str, *,
               params: HMMParams = HMMParams(), signals: SignalModel | None = None, offset: int = 0,
               chunk: int = CHUNK, overlap: int = OVERLAP, min_cds: int = 30, progress: Progress = None,
               tables: tuple[np.ndarray, np.ndarray] | None = None, posteriors: bool = True) -> list[GeneModel]:
    """Gene models of one sequence by Viterbi decoding, in overlapping pieces of about `chunk` bases
    (memory: about 450 bytes per base of a piece, plus one byte per base of the sequence for the
    path). Neighbouring pieces both decode 2 * `overlap` bases around their joint, each with open
    ends, and are joined where both paths are intergenic, nearest the middle. Intergenic is a state
    whose continuation does not depend on what came before, so the joined path is the best path
    through intergenic at the joint; where the two pieces' paths have coalesced there, the whole
    sequence's Viterbi path passes it too (tests decode a chromosome whole and in pieces: the same
    genes). Where they never agree (a gene longer than the overlap sits there), the piece is decoded
    again twice as long from the last joint, held intergenic there. The probabilities are read a
    piece at a time (`Rows`). `progress(bases)` is called as the path is completed. With
    `posteriors`, each gene carries its forward-backward posteriors (`dga.decoding.posteriors`)."""
    n = len(codes)
    chunk = max(chunk, 4 * overlap)

    def decode(a: int, b: int, open_start: bool = True) -> np.ndarray:
        return viterbi_path(plus_probs[a:b], None if minus_probs is None else minus_probs[a:b], codes[a:b],
                            params, signals, (open_start, True),
                            None if tables is None else (tables[0][a:b], tables[1][a:b]))

    path = np.empty(n, dtype=np.int8)
    a, done, size = 0, 0, chunk  # the current piece starts at a; path[:done] is final
    cur = decode(0, min(n, chunk))
    while a + len(cur) < n:
        end = a + len(cur)
        nxt_a = end - 2 * overlap
        nxt = decode(nxt_a, min(n, nxt_a + chunk))
        t = stitch_point(cur[nxt_a - a:], nxt[: end - nxt_a])
        if t is None:  # no joint here: decode on from the last joint, longer, starting in intergenic
            size *= 2  # there (as the path does), so a longer piece cannot move what is already joined
            a, cur = done, decode(done, min(n, done + size), open_start=done == 0)
            continue
        t += nxt_a
        path[done:t] = cur[done - a: t - a]
        if progress is not None:
            progress(t - done)
        a, done, cur, size = nxt_a, t, nxt, chunk
    path[done:] = cur[done - a:]
    if progress is not None:
        progress(n - done)
    genes = path_to_genes(path, seqid, 0, min_cds)
    if posteriors:
        hot = params.tempered()

        def run(a: int, b: int) -> Posteriors:
            k = kernel_inputs(plus_probs[a:b], None if minus_probs is None else minus_probs[a:b], codes[a:b],
                              hot, signals, None if tables is None else (tables[0][a:b], tables[1][a:b]))
            return forward_backward(k, hot, path[a:b])

        # pieces as long as the Viterbi's with their flanks: the same memory (~450 bytes a base)
        found = posteriors_in_pieces(path, [[(s, e) for s, e, _ in g.cds] for g in genes], run,
                                     piece=max(chunk - 2 * FLANK, 2 * FLANK))
        for g, p in zip(genes, found):
            g.posterior, g.cds_posteriors, g.intron_posteriors = p.gene, p.cds, p.introns
    return shift_genes(genes, offset)
