"""Confusion counts and the metrics derived from them (accuracy, per-class P/R/F1, macro, genic, sub-genic).

Metrics come from the 4x4 confusion matrix (rows = truth, columns = prediction) rather than from
per-base arrays: the counts are what DDP ranks all-reduce, and chromosome-scale label arrays are
too large to hand to scikit-learn each epoch (the tests check these formulas against scikit-learn).
"""

from __future__ import annotations

import numpy as np

from dga.labels import CLASS_NAMES, N_CLASSES, Label

GENIC = (Label.CDS, Label.INTRON, Label.UTR)
SUBGENIC = (Label.CDS, Label.INTRON)


def confusion(truth: np.ndarray, pred: np.ndarray, n: int = N_CLASSES) -> np.ndarray:
    """4x4 int64 confusion counts (rows = truth, columns = prediction), vectorised with bincount."""
    idx = truth.astype(np.int64, copy=False) * n + pred.astype(np.int64, copy=False)
    return np.bincount(idx.ravel(), minlength=n * n).reshape(n, n)


def _f1(tp: float, fp: float, fn: float) -> float:
    return 0.0 if tp == 0 else float(2 * tp / (2 * tp + fp + fn))  # plain floats: checkpoints hold them


def _composite_f1(cm: np.ndarray, classes) -> float:
    """Helixer's composite F1: TP, FP and FN summed over the given classes."""
    tp = sum(cm[c, c] for c in classes)
    fp = sum(cm[:, c].sum() - cm[c, c] for c in classes)
    fn = sum(cm[c, :].sum() - cm[c, c] for c in classes)
    return _f1(tp, fp, fn)


def metrics_from_confusion(cm: np.ndarray) -> dict[str, float]:
    """accuracy, recall_/precision_/f1_<class> (recall = per-class accuracy), macro_f1, genic_f1, subgenic_f1."""
    cm = np.asarray(cm, dtype=np.float64)
    total = cm.sum()
    out = {"accuracy": float(np.trace(cm) / total) if total else 0.0}
    f1s = []
    for c, name in enumerate(CLASS_NAMES):
        tp, row, col = cm[c, c], cm[c, :].sum(), cm[:, c].sum()
        out[f"recall_{name}"] = float(tp / row) if row else 0.0
        out[f"precision_{name}"] = float(tp / col) if col else 0.0
        out[f"f1_{name}"] = _f1(tp, col - tp, row - tp)
        f1s.append(out[f"f1_{name}"])
    out["macro_f1"] = float(np.mean(f1s))
    out["genic_f1"] = _composite_f1(cm, GENIC)
    out["subgenic_f1"] = _composite_f1(cm, SUBGENIC)
    return out
