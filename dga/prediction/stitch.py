"""Genes of a long sequence annotated as segments (`dga.prediction.plan.segmented`), joined.

Neighbouring segments both read and decode the 2 * FLANK bases around their joint. They are joined
at the point nearest the joint where neither decoding has a gene: the left segment keeps its genes
that start before it, the right one those that start at or after it. No gene is kept twice and
none is cut; where the two decodings agree there (the usual case: a Viterbi path through
intergenic forgets what came before), the genes are those of the sequence decoded whole. Where
every base of the overlap lies in a gene of one of them (a gene longer than the overlap), the
joint itself is used and the right segment's genes that overlap a kept left gene are dropped.
"""

from __future__ import annotations

import numpy as np

from dga.decoding.genes import GeneModel
from dga.prediction.jobs import UnitResult
from dga.prediction.plan import Plan


def joint(left: list[GeneModel], right: list[GeneModel], lo: int, hi: int, middle: int) -> int | None:
    """The position in (lo, hi) nearest `middle` that no gene of `left` or `right` covers, or None."""
    covered = np.zeros(hi - lo, dtype=bool)
    for g in left + right:
        a, b = max(g.start, lo), min(g.end, hi)
        if a < b:
            covered[a - lo: b - lo] = True
    free = np.flatnonzero(~covered[1:]) + 1 + lo  # strictly after lo: a right gene touching lo is cut there
    if not len(free):
        return None
    return int(free[np.argmin(np.abs(free - middle))])


def _keep(result: UnitResult, start: int, end: int, after: int) -> UnitResult:
    """The genes of `result` starting in [start, end), and not before `after` (a kept left gene's end)."""
    pairs = [(g, c) for g, c in zip(result.genes, result.cds) if start <= g.start < end and g.start >= after]
    return UnitResult(result.unit, [g for g, _ in pairs], [c for _, c in pairs])


def stitch(plan: Plan, results: list[UnitResult]) -> list[UnitResult]:
    """`results` (in unit order) with each segmented sequence's segments joined."""
    by_unit = {r.unit: r for r in results}
    segment_unit = {plan.units[u][0]: u for u in range(len(plan.units)) if plan.pieces[plan.units[u][0]].segments > 1}
    out = dict(by_unit)
    for i, p in enumerate(plan.pieces):
        if p.segments == 1 or p.segment + 1 == p.segments:
            continue
        right = plan.pieces[i + 1]
        ul, ur = segment_unit[i], segment_unit[i + 1]
        left_genes, right_genes = by_unit[ul].genes, by_unit[ur].genes
        t = joint(left_genes, right_genes, right.lo, p.hi, p.end)
        after = 0
        if t is None:  # a gene spans the whole overlap: join at the segments' border
            t = p.end
            after = max((g.end for g in left_genes if g.start < t), default=0)
        out[ul] = _keep(out[ul], -1, t, 0)
        out[ur] = _keep(out[ur], t, right.hi, after)
    return [out[u] for u in sorted(out)]
