"""Per-base classes -> gene models (a documented rule set, vectorised over runs of equal class).

Rules, applied to one strand of one sequence (classes in forward coordinates):
1. Smoothing: a run shorter than its class minimum (`DecodeRules`) takes the class of its longer
   neighbour; repeated until no short run is left. This removes 1-2 bp micro-exons, 1-bp introns
   and short intergenic gaps inside genes.
2. Genes: maximal stretches of non-intergenic bases. Leading and trailing introns are dropped
   (an intron needs an exon on each side); a stretch without CDS, or with less than `min_gene_cds`
   CDS bases, is not a gene.
3. State order UTR5 -> CDS (-> intron -> CDS)* -> UTR3: inside the span from the first to the last
   CDS base every exon base is CDS; exon bases before it are the 5' UTR (+ strand) and after it
   the 3' UTR, and vice versa on the - strand. Introns between UTR exons are kept.
4. Signals (with the sequence, `snap` > 0): each intron end moves to the nearest canonical splice
   site within `snap` bases (donor GT/GC, acceptor AG, read on the gene's strand), the CDS start to
   the nearest ATG and the CDS end to the nearest stop codon; a boundary with no such site nearby,
   or whose move would empty an exon, stays where the classes put it.
5. Reading frame: of the three frames, the one with the fewest in-frame stop codons in the spliced
   CDS sets the first CDS segment's phase; the phases of later segments follow from the lengths.
   With a strand-agnostic model the strand is chosen the same way (fewer stops wins; ties '+').
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dga.data.windows import COMPLEMENT
from dga.decoding.genes import GeneModel, runs, shift_genes
from dga.labels import Label

# Codes A C G T -> stop codons TAA TAG TGA as code triplets (A=0 C=1 G=2 T=3).
_STOPS = {(3, 0, 0), (3, 0, 2), (3, 2, 0)}
_STOP_INDEX = np.zeros(125, dtype=bool)
for _a, _b, _c in _STOPS:
    _STOP_INDEX[_a * 25 + _b * 5 + _c] = True


@dataclass(frozen=True)
class DecodeRules:
    min_cds: int = 3  # shortest CDS run (shorter: micro-exon noise)
    min_intron: int = 20
    min_utr: int = 3
    min_intergenic: int = 20  # shorter intergenic gaps inside a gene are joined into it
    min_gene_cds: int = 30  # a gene model needs this many CDS bases
    snap: int = 15  # move exon/CDS boundaries up to this many bases to a splice site / start / stop (0 = off)

    def minimum(self) -> np.ndarray:
        out = np.zeros(4, dtype=np.int64)
        out[Label.CDS], out[Label.INTRON], out[Label.UTR], out[Label.INTERGENIC] = (
            self.min_cds, self.min_intron, self.min_utr, self.min_intergenic)
        return out


def _motif(text: str) -> np.ndarray:
    return np.array(["ACGT".index(c) for c in text], dtype=np.uint8)


# (motif at the boundary, where it sits relative to the boundary position)
_SITES = {
    ("+", "donor"): ([_motif("GT"), _motif("GC")], 0), ("+", "acceptor"): ([_motif("AG")], -2),
    ("-", "donor"): ([_motif("AC"), _motif("GC")], -2), ("-", "acceptor"): ([_motif("CT")], 0),
    ("+", "start"): ([_motif("ATG")], 0), ("+", "stop"): ([_motif("TAA"), _motif("TAG"), _motif("TGA")], -3),
    ("-", "start"): ([_motif("CAT")], -3), ("-", "stop"): ([_motif("TTA"), _motif("CTA"), _motif("TCA")], 0),
}


def _snap(codes: np.ndarray, pos: int, kind: tuple[str, str], radius: int, lo: int, hi: int) -> int:
    """Nearest position p in [lo, hi] within `radius` of pos where the site's motif sits at p + shift."""
    motifs, shift = _SITES[kind]
    a, b = max(lo, pos - radius), min(hi, pos + radius)
    if a > b:
        return pos
    cand = np.arange(a, b + 1)
    start = cand + shift
    ok = (start >= 0) & (start + 3 <= len(codes) + (3 - len(motifs[0])))
    cand, start = cand[ok], start[ok]
    hit = np.zeros(cand.shape, dtype=bool)
    for m in motifs:
        match = np.ones(cand.shape, dtype=bool)
        for i, base in enumerate(m):
            idx = start + i
            inside = idx < len(codes)
            match &= inside & (codes[np.minimum(idx, len(codes) - 1)] == base)
        hit |= match
    if not hit.any():
        return pos
    c = cand[hit]
    return int(c[np.argmin(np.abs(c - pos) * 2 + (c > pos))])  # nearest; ties to the left


def smooth(cls: np.ndarray, rules: DecodeRules = DecodeRules(), max_rounds: int = 50) -> np.ndarray:
    """Rule 1: short runs take the class of their longer neighbour (vectorised per round)."""
    minimum = rules.minimum()
    starts, ends, vals = runs(cls)
    for _ in range(max_rounds):
        lengths = ends - starts
        short = lengths < minimum[vals]
        if len(vals) < 2 or not short.any():
            break
        # Fix only short runs whose neighbours are not short themselves, shortest first in spirit:
        # a run and its neighbour both short would otherwise swap classes forever.
        left_len = np.concatenate([[-1], lengths[:-1]])
        right_len = np.concatenate([lengths[1:], [-1]])
        left_val = np.concatenate([[vals[0]], vals[:-1]])
        right_val = np.concatenate([vals[1:], [vals[-1]]])
        fix = short & ~(np.concatenate([[False], short[:-1]]) & (left_len < lengths)) \
            & ~(np.concatenate([short[1:], [False]]) & (right_len <= lengths))
        if not fix.any():
            fix = short & (lengths == lengths[short].min())
            fix &= np.concatenate([[True], ~fix[:-1]])  # never two neighbours in one round
        vals = vals.copy()
        vals[fix] = np.where(left_len[fix] >= right_len[fix], left_val[fix], right_val[fix])
        keep = np.concatenate([[True], vals[1:] != vals[:-1]])  # merge equal neighbours
        idx = np.flatnonzero(keep)
        starts, ends, vals = starts[idx], np.concatenate([starts[idx[1:]], [ends[-1]]]), vals[idx]
    out = np.repeat(vals, ends - starts).astype(cls.dtype)
    return out


def _frame_stops(codes: np.ndarray) -> np.ndarray:
    """In-frame stop codons of a spliced CDS (codes 0-4) for frames 0, 1, 2."""
    out = np.zeros(3, dtype=np.int64)
    for f in range(3):
        n = (len(codes) - f) // 3
        if n <= 0:
            continue
        c = codes[f: f + 3 * n].reshape(n, 3).astype(np.int64)
        ok = (c < 4).all(axis=1)
        idx = c[:, 0] * 25 + c[:, 1] * 5 + c[:, 2]
        # the last codon may be the real stop: count stops before it
        out[f] = int((_STOP_INDEX[idx] & ok)[:-1].sum())
    return out


def _spliced(codes: np.ndarray, segs: list[tuple[int, int]], strand: str) -> np.ndarray:
    seq = np.concatenate([codes[s:e] for s, e in segs]) if segs else np.zeros(0, np.uint8)
    return seq if strand == "+" else COMPLEMENT[seq[::-1]]


def _assemble(seqid: str, strand: str, pieces: list[tuple[int, int, int]], codes: np.ndarray | None,
              rules: DecodeRules, choose_strand: bool) -> GeneModel | None:
    """Rules 2-4 for one genic stretch given as (start, end, class) runs."""
    while pieces and pieces[0][2] == Label.INTRON:
        pieces = pieces[1:]
    while pieces and pieces[-1][2] == Label.INTRON:
        pieces = pieces[:-1]
    cds_runs = [p for p in pieces if p[2] == Label.CDS]
    if not cds_runs:
        return None
    cs, ce = cds_runs[0][0], cds_runs[-1][1]
    exons: list[list[int]] = []
    for s, e, v in pieces:
        if v == Label.INTRON:
            continue
        if exons and exons[-1][1] == s:
            exons[-1][1] = e
        else:
            exons.append([s, e])
    cds = [(max(s, cs), min(e, ce)) for s, e in exons if s < ce and e > cs]
    if sum(e - s for s, e in cds) < rules.min_gene_cds:
        return None
    stops_by_strand = {}
    if codes is not None:
        if choose_strand:
            for st in ("+", "-"):
                stops_by_strand[st] = _frame_stops(_spliced(codes, cds, st))
            strand = min(("+", "-"), key=lambda st: (stops_by_strand[st].min(), st == "-"))
        if rules.snap:
            exons, cs, ce = _snap_gene(codes, exons, cs, ce, strand, rules)
            cds = [(max(s, cs), min(e, ce)) for s, e in exons if s < ce and e > cs]
        stops_by_strand = {strand: _frame_stops(_spliced(codes, cds, strand))}
    before = [(s, min(e, cs)) for s, e in exons if s < cs]
    after = [(max(s, ce), e) for s, e in exons if e > ce]
    frame = int(np.argmin(stops_by_strand[strand])) if stops_by_strand else 0
    order = cds if strand == "+" else cds[::-1]
    phased, done = [], 0
    for i, (s, e) in enumerate(order):
        phase = frame if i == 0 else (3 - (done - frame) % 3) % 3
        phased.append((s, e, phase))
        done += e - s
    phased.sort()
    gene = GeneModel(seqid, strand, exons[0][0], exons[-1][1], [(int(a), int(b)) for a, b in exons], phased,
                     before if strand == "+" else after, after if strand == "+" else before,
                     int(stops_by_strand[strand][frame]) if stops_by_strand else 0)
    return gene


def _snap_gene(codes: np.ndarray, exons: list[list[int]], cs: int, ce: int, strand: str,
               rules: DecodeRules) -> tuple[list[list[int]], int, int]:
    """Rule 4: intron ends to splice sites, CDS ends to start / stop codons (forward coordinates)."""
    r, ex = rules.snap, [list(x) for x in exons]
    left_kind, right_kind = (("donor", "acceptor") if strand == "+" else ("acceptor", "donor"))
    for i in range(len(ex) - 1):  # intron between ex[i] and ex[i + 1]
        a, b = ex[i][1], ex[i + 1][0]
        a2 = _snap(codes, a, (strand, left_kind), r, ex[i][0] + 1, b - rules.min_intron)
        b2 = _snap(codes, b, (strand, right_kind), r, a2 + rules.min_intron, ex[i + 1][1] - 1)
        ex[i][1], ex[i + 1][0] = a2, b2
    first = next(i for i, (s, e) in enumerate(ex) if e > cs)
    last = max(i for i, (s, e) in enumerate(ex) if s < ce)
    kinds = ("start", "stop") if strand == "+" else ("stop", "start")
    # a CDS end that is also the gene's end (no UTR there) may move outwards, taking the exon along
    lo = ex[first][0] - (r if cs == ex[first][0] and first == 0 else 0)
    hi = ex[last][1] + (r if ce == ex[last][1] and last == len(ex) - 1 else 0)
    cs2 = _snap(codes, cs, (strand, kinds[0]), r, max(lo, 0), ex[first][1] - 1)
    ce2 = _snap(codes, ce, (strand, kinds[1]), r, ex[last][0] + 1, min(hi, len(codes)))
    if ce2 - cs2 >= rules.min_gene_cds:
        cs, ce = cs2, ce2
        ex[first][0], ex[last][1] = min(ex[first][0], cs), max(ex[last][1], ce)
    return ex, cs, ce


def decode(cls: np.ndarray, seqid: str, strand: str, *, codes: np.ndarray | None = None,
           rules: DecodeRules = DecodeRules(), offset: int = 0) -> list[GeneModel]:
    """Gene models from per-base classes of one strand ('+', '-', or '.' = strand-agnostic: the
    strand of each gene is then chosen by its reading frame). Coordinates are shifted by `offset`."""
    smoothed = smooth(np.asarray(cls, dtype=np.uint8), rules)
    starts, ends, vals = runs(smoothed)
    genic = vals != Label.INTERGENIC
    genes: list[GeneModel] = []
    if not genic.any():
        return genes
    # group consecutive genic runs: a new group starts after every intergenic run
    group = np.cumsum(~genic)[genic]
    idx = np.flatnonzero(genic)
    bounds = np.flatnonzero(np.diff(group)) + 1
    for chunk in np.split(idx, bounds):
        pieces = [(int(starts[i]), int(ends[i]), int(vals[i])) for i in chunk]
        gene = _assemble(seqid, "+" if strand == "." else strand, pieces, codes, rules, choose_strand=strand == ".")
        if gene is not None:
            genes.append(gene)
    return shift_genes(genes, offset)
