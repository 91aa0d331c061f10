"""A confidence on every gene: how likely the decoder finds its exact structure, calibrated on
validation folds so that a gene scored 0.8 has its whole CDS chain right about 80 % of the time.

Raw score of a gene decoded by the HMM: the posterior probability of its CDS chain exactly as
decoded (start codon, every splice site and phase, stop codon), from forward-backward over the
same HMM (`dga.decoding.posteriors`). It weighs the decoded structure against every valid rival,
so a gene whose splice sites have close competitors scores low even where the network backs its
bases strongly. Exon and CDS lines carry their own segment's posterior. Decoders without
posteriors (the "rules" decoder) get the network's support instead: the geometric mean over the
gene's bases of the probability of the class the decoder gave each base (`network_support`).
`benchmarks/calibration_cv.py` compares these scores (GENE_SCORES) on validation folds.

The calibration regresses "whole CDS chain matches the reference" on the genes that fold models
decode on their validation folds (`dga calibrate`, `dga tune-decoder`): isotonic regression on
the raw score (the default), or logistic regression (scikit-learn) on its logit or on the gene's
features (CALIBRATORS). It is stored in the bundle's `decoder.json` as plain numbers
(breakpoints, or standardisation and coefficients; no pickle), with the score it was fitted on:
a calibration fitted on the network's support (bundles made before posteriors) is applied to it.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Callable

import numpy as np

from dga.decoding.genes import GeneModel
from dga.labels import Label


class _GeneLogs:
    """Cumulative log-probabilities of each class over one gene's span, read from `probs` once per
    gene (a slice of a memory-mapped read, never the whole sequence), so each piece's geometric
    mean is two look-ups instead of a slice, a clip and a log per piece."""

    def __init__(self, probs: Any, start: int, end: int):
        logs = np.log(np.clip(np.asarray(probs[start:end], dtype=np.float64), 1e-6, 1.0))
        self.cum = np.concatenate([np.zeros((1, logs.shape[1])), np.cumsum(logs, axis=0)])
        self.start = start

    def geo_mean(self, segments: list[tuple[int, int]], cls: int) -> float:
        """exp(mean log p[class]) over the bases of `segments` (in the span's coordinates + start)."""
        n = sum(e - s for s, e in segments)
        if not n:
            return 0.0
        total = sum(self.cum[e - self.start, cls] - self.cum[s - self.start, cls] for s, e in segments)
        return float(np.exp(total / n))


def network_support(g: GeneModel, plus: Any, minus: Any | None, offset: int = 0) -> tuple[float, list, list]:
    """The network's support for a gene: over its bases (CDS, UTR, introns), per exon and per CDS
    segment, the geometric mean of the probability of the class the decoder gave each base, read
    from the gene's strand's probabilities (`minus` None: one strand-agnostic array)."""
    probs = plus if g.strand == "+" or minus is None else minus
    logs = _GeneLogs(probs, g.start - offset, g.end - offset)
    shift = [(s - offset, e - offset) for s, e in g.exons]
    introns = [(a, b) for (_, a), (b, _) in zip(shift[:-1], shift[1:]) if b > a]
    cds = [(s - offset, e - offset) for s, e, _ in g.cds]
    utr = [(s - offset, e - offset) for s, e in g.utr5 + g.utr3]
    n_bases = sum(e - s for s, e in shift) + sum(b - a for a, b in introns)
    total = sum(np.log(max(logs.geo_mean(segs, cls), 1e-6)) * sum(e - s for s, e in segs)
                for segs, cls in ((cds, Label.CDS), (utr, Label.UTR), (introns, Label.INTRON)) if segs)
    raw = float(np.exp(total / n_bases)) if n_bases else 0.0
    return raw, [_exon_score(logs, s, e, cds, utr) for s, e in shift], [logs.geo_mean([seg], Label.CDS) for seg in cds]


def _weakest(g: GeneModel) -> float:
    return float(min(g.cds_posteriors + g.intron_posteriors))


def _mean_feature(g: GeneModel) -> float:
    return float(np.mean(g.cds_posteriors + g.intron_posteriors))


# Candidate raw gene scores (`benchmarks/calibration_cv.py` compares them on validation folds);
# GENE_SCORE is the one genes with posteriors get.
GENE_SCORES: dict[str, Callable[[GeneModel], float]] = {
    "cds_chain_posterior": lambda g: float(g.posterior),  # type: ignore[arg-type]
    "weakest_feature_posterior": _weakest,
    "mean_feature_posterior": _mean_feature,
    "network_support": lambda g: float(g.support),  # type: ignore[arg-type]
}
GENE_SCORE = "cds_chain_posterior"


def _exon_posteriors(g: GeneModel) -> list[float | None]:
    """Each exon's posterior: that of the CDS segment in it (None for a UTR-only exon)."""
    out: list[float | None] = []
    for s, e in g.exons:
        inside = [p for (a, b, _), p in zip(g.cds, g.cds_posteriors) if a < e and b > s]
        out.append(min(inside) if inside else None)
    return out


def score_genes(genes: list[GeneModel], plus: Any, minus: Any | None, offset: int = 0,
                calibration: dict | None = None) -> list[GeneModel]:
    """Genes with `score` (calibrated when a calibration is given, else raw), `raw_score` (the
    calibration's score, else GENE_SCORE; the network's support for a gene without posteriors) and
    per-exon / per-CDS scores (posteriors, or the network's support). `plus` / `minus`: class
    probabilities [L, 4] that + / - strand genes are read from (`minus` None: one strand-agnostic
    array), the sequence starting at `offset`."""
    # the score the calibration was fitted on (one without a name: the network's support, as
    # calibrations were before posteriors); without a calibration, GENE_SCORE
    name = calibration.get("score", "network_support") if calibration else GENE_SCORE
    out = []
    for g in genes:
        support, exon_support, cds_support = network_support(g, plus, minus, offset)
        g = replace(g, support=support)
        if g.posterior is not None:
            # a UTR-only exon has no posterior of its own: it carries the network's support
            exon_scores = [sup if p is None else p for p, sup in zip(_exon_posteriors(g), exon_support)]
            g = replace(g, exon_scores=exon_scores, cds_scores=list(g.cds_posteriors))
        else:
            g = replace(g, exon_scores=exon_support, cds_scores=cds_support)
        raw = gene_features(g, name)[0]
        out.append(replace(g, raw_score=raw, score=raw))
    if calibration and out:  # one call for all genes: the calibration may use each gene's features
        conf = apply_calibration(np.array([gene_features(g, name) for g in out]), calibration)
        out = [replace(g, score=float(c)) for g, c in zip(out, conf)]
    return out


def _exon_score(logs: _GeneLogs, s: int, e: int, cds: list[tuple[int, int]], utr: list[tuple[int, int]]) -> float:
    """An exon's support: its CDS bases read as CDS, its UTR bases as UTR."""
    parts = [(max(s, a), min(e, b), Label.CDS) for a, b in cds if a < e and b > s]
    parts += [(max(s, a), min(e, b), Label.UTR) for a, b in utr if a < e and b > s]
    n = sum(b - a for a, b, _ in parts)
    if not n:
        return 0.0
    total = sum(np.log(max(logs.geo_mean([(a, b)], cls), 1e-6)) * (b - a) for a, b, cls in parts)
    return float(np.exp(total / n))


# Per-gene features a calibration may use (gene_features' columns).
FEATURES = ("raw", "cds_segments", "cds_bases", "min_cds_score", "min_exon_score", "span")
CALIBRATORS = ("isotonic", "logistic-raw", "logistic-features")


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, float), 1e-4, 1 - 1e-4)
    return np.log(p / (1 - p))


def gene_features(g: GeneModel, score: str | None = None) -> list[float]:
    """A scored gene's calibration features (FEATURES): its raw score (`score`, a GENE_SCORES name:
    that score, falling back to the network's support for a gene without posteriors; None: the
    gene's raw score), CDS segments, CDS bases, weakest CDS segment and exon, genomic span."""
    if score is None:
        raw = g.raw_score
    else:
        raw = GENE_SCORES[score](g) if g.posterior is not None or score == "network_support" else g.support
    exons = [x for x in g.exon_scores if x is not None]
    return [float(raw or 0.0), float(len(g.cds)), float(sum(e - s for s, e, _ in g.cds)),
            float(min(g.cds_scores, default=0.0)), float(min(exons, default=0.0)), float(g.end - g.start)]


def _design(features: np.ndarray, kind: str) -> np.ndarray:
    """Regression inputs: logits of the scores, logs of the counts and lengths."""
    f = np.atleast_2d(np.asarray(features, float))
    if kind == "logistic-raw":
        return _logit(f[:, :1])
    return np.column_stack([_logit(f[:, 0]), np.log1p(f[:, 1]), np.log1p(f[:, 2]), _logit(f[:, 3]),
                            _logit(f[:, 4]), np.log1p(f[:, 5])])


def apply_calibration(features: np.ndarray, calibration: dict | None) -> np.ndarray:
    """Calibrated confidences of genes (rows of gene_features); the raw scores without a calibration.
    A calibration without `kind` is isotonic (bundles written before the logistic kinds existed)."""
    f = np.atleast_2d(np.asarray(features, float))
    if not calibration or not (calibration.get("x") or calibration.get("coef")):
        return f[:, 0].copy()
    if calibration.get("kind", "isotonic") == "isotonic":
        return np.interp(f[:, 0], calibration["x"], calibration["y"])
    z = (_design(f, calibration["kind"]) - calibration["mean"]) / calibration["scale"]
    return 1.0 / (1.0 + np.exp(-(z @ np.asarray(calibration["coef"]) + calibration["intercept"])))


def fit_calibration(features: np.ndarray, exact: np.ndarray, kind: str = "isotonic") -> dict[str, Any]:
    """Fit a calibration of exactness (0/1) on the genes' features (rows of gene_features), as
    JSON-able numbers: isotonic regression on the raw score (breakpoints), or logistic regression
    on the raw score's logit or on all features (standardisation, coefficients, intercept)."""
    from sklearn.isotonic import IsotonicRegression
    from sklearn.linear_model import LogisticRegression

    f, y = np.atleast_2d(np.asarray(features, float)), np.asarray(exact, bool)
    out: dict[str, Any] = {"kind": kind, "genes": int(len(y)), "exact": int(y.sum())}
    if kind == "isotonic":
        iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(f[:, 0], y.astype(float))
        return {**out, "x": [float(v) for v in iso.X_thresholds_], "y": [float(v) for v in iso.y_thresholds_]}
    if kind not in CALIBRATORS:
        raise ValueError(f"unknown calibration {kind!r} (choose from {', '.join(CALIBRATORS)})")
    d = _design(f, kind)
    mean, scale = d.mean(axis=0), d.std(axis=0) + 1e-9
    lr = LogisticRegression(C=1.0).fit((d - mean) / scale, y)
    return {**out, "features": list(FEATURES) if kind == "logistic-features" else ["raw"],
            "mean": mean.tolist(), "scale": scale.tolist(), "coef": lr.coef_[0].tolist(),
            "intercept": float(lr.intercept_[0])}


def auroc(score: np.ndarray, exact: np.ndarray) -> float:
    """Area under the ROC curve of `score` for telling exact genes from the rest (NaN with one class)."""
    from sklearn.metrics import roc_auc_score

    exact = np.asarray(exact, bool)
    return float(roc_auc_score(exact, score)) if 0 < exact.sum() < len(exact) else float("nan")


def reliability(conf: np.ndarray, exact: np.ndarray, bins: int = 10) -> dict[str, Any]:
    """Reliability table (equal-width confidence bins: mean confidence, fraction exact, count), the
    expected calibration error, and gene-level precision / recall of keeping genes >= a threshold."""
    conf, exact = np.asarray(conf, float), np.asarray(exact, bool)
    edges = np.linspace(0, 1, bins + 1)
    idx = np.clip(np.digitize(conf, edges[1:-1]), 0, bins - 1)
    table, ece = [], 0.0
    for b in range(bins):
        sel = idx == b
        if sel.any():
            table.append({"bin": f"{edges[b]:.1f}-{edges[b + 1]:.1f}", "mean_confidence": float(conf[sel].mean()),
                          "fraction_exact": float(exact[sel].mean()), "genes": int(sel.sum())})
            ece += sel.mean() * abs(conf[sel].mean() - exact[sel].mean())
    return {"table": table, "ece": float(ece), "genes": int(len(conf))}


def threshold_curve(conf: np.ndarray, exact: np.ndarray, n_reference: int) -> list[dict[str, float]]:
    """Gene-level precision and recall when keeping predicted genes with confidence >= t."""
    out = []
    for t in np.round(np.linspace(0, 0.95, 20), 2):
        keep = conf >= t
        tp = int(exact[keep].sum())
        out.append({"threshold": float(t), "kept": int(keep.sum()), "precision": tp / max(int(keep.sum()), 1),
                    "recall": tp / max(n_reference, 1)})
    return out


def reliability_figure(cal: dict[str, Any], title: str, exon_cal: dict[str, Any] | None = None):
    """Reliability diagram (fraction exact against mean confidence per bin, counts as point size)
    beside precision / recall over the confidence threshold, for genes (and CDS exons when given)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4.3))
    a.plot([0, 1], [0, 1], "--", color="grey", label="perfectly calibrated")
    series = [("genes", cal, "C0")] + ([("CDS exons", exon_cal, "C2")] if exon_cal else [])
    for name, c, colour in series:
        rows = c["table"]
        scale = 400 / max(max(r["genes"] for r in rows), 1)
        a.scatter([r["mean_confidence"] for r in rows], [r["fraction_exact"] for r in rows], color=colour,
                  s=[10 + scale * r["genes"] for r in rows], alpha=0.6,
                  label=f"{name}: AUROC {c['auroc']:.2f}, ECE {c['ece']:.3f}")
        curve = c["curve"]
        b.plot([x["threshold"] for x in curve], [x["precision"] for x in curve], "o-", color=colour,
               label=f"{name} precision")
        b.plot([x["threshold"] for x in curve], [x["recall"] for x in curve], "s--", color=colour,
               label=f"{name} recall")
    a.set_xlabel("confidence"), a.set_ylabel("fraction exactly right")
    a.set_title("reliability (point size: count)"), a.legend(loc="upper left", fontsize=8)
    b.set_xlabel("keep features with confidence >="), b.set_ylim(0, 1), b.legend(fontsize=8)
    b.set_title("precision and recall")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def threshold_keeping(conf: np.ndarray, fraction: float) -> float:
    """The confidence threshold that keeps `fraction` of the predicted genes."""
    return float(np.quantile(conf, 1 - fraction)) if len(conf) else 0.0
