"""What an annotation looks like at a glance, printed and written as JSON (`dga predict --summary`):
genes per Mb, exons per gene, the single-exon share, gene lengths and the confidence histogram, the
figures a user compares with BUSCO's or a related genome's before trusting a run."""

from __future__ import annotations

import numpy as np

from dga.decoding.genes import GeneModel

CONFIDENCE_BINS = 10


def summarize(genes: list[GeneModel], bases: int, per_genome: dict[str, tuple[int, int]] | None = None) -> dict:
    """Figures of `genes` predicted on `bases` bases; `per_genome`: name -> (genes, bases)."""
    n = len(genes)
    exons = np.array([len(g.exons) for g in genes], dtype=np.int64)
    spans = np.array([g.end - g.start for g in genes], dtype=np.int64)
    cds_len = np.array([sum(e - s for s, e, _ in g.cds) for g in genes], dtype=np.int64)
    scores = np.array([g.score for g in genes if g.score is not None], dtype=np.float64)
    counts, edges = np.histogram(scores, bins=CONFIDENCE_BINS, range=(0.0, 1.0))

    def quantiles(a: np.ndarray) -> dict:
        if not len(a):
            return {}
        q = np.percentile(a, [10, 50, 90])
        return {"mean": round(float(a.mean()), 1), "p10": int(q[0]), "median": int(q[1]), "p90": int(q[2])}

    return {
        "genes": n,
        "complete_genes": int(sum(not g.partial for g in genes)),
        "partial_genes": int(sum(g.partial for g in genes)),
        "bases": int(bases),
        "genes_per_mb": round(n / max(bases, 1) * 1e6, 2),
        "exons_per_gene": round(float(exons.mean()), 2) if n else 0.0,
        "single_exon_share": round(float((exons == 1).mean()), 4) if n else 0.0,
        "gene_length": quantiles(spans),
        "cds_length": quantiles(cds_len),
        "confidence_histogram": {"edges": [round(float(x), 2) for x in edges], "counts": counts.tolist(),
                                 "unscored": n - len(scores)},
        "per_genome": {name: {"genes": g, "bases": b} for name, (g, b) in (per_genome or {}).items()},
    }


def summary_lines(s: dict) -> list[str]:
    """The summary as a few plain lines."""
    lines = [f"{s['genes']:,} genes ({s['complete_genes']:,} complete, {s['partial_genes']:,} partial) on "
             f"{s['bases']:,} bases: {s['genes_per_mb']} per Mb, {s['exons_per_gene']} exons per gene, "
             f"{100 * s['single_exon_share']:.1f} % single-exon"]
    if s["gene_length"]:
        gl, cl = s["gene_length"], s["cds_length"]
        lines.append(f"gene length median {gl['median']:,} (10-90 %: {gl['p10']:,}-{gl['p90']:,}); CDS median "
                     f"{cl['median']:,} bases")
    h = s["confidence_histogram"]
    if sum(h["counts"]):
        lines.append("confidence " + " ".join(f"{a:.1f}-{b:.1f}:{c}" for a, b, c in
                                              zip(h["edges"], h["edges"][1:], h["counts"])))
    for name, g in s["per_genome"].items():
        lines.append(f"  {name}: {g['genes']:,} gene models on {g['bases']:,} bases")
    return lines
