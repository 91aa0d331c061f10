import numpy as np
import pytest
from sklearn.metrics import accuracy_score, precision_recall_fscore_support

from dga.evaluation.metrics import confusion, metrics_from_confusion
from dga.nets.infer import tiles


def test_metrics_match_scikit_learn():
    rng = np.random.default_rng(0)
    truth = rng.choice(4, 5000, p=[0.3, 0.2, 0.1, 0.4])
    pred = np.where(rng.random(5000) < 0.7, truth, rng.integers(0, 4, 5000))
    m = metrics_from_confusion(confusion(truth, pred))
    p, r, f, _ = precision_recall_fscore_support(truth, pred, labels=[0, 1, 2, 3], zero_division=0)
    assert m["accuracy"] == pytest.approx(accuracy_score(truth, pred))
    for i, name in enumerate(["CDS", "intron", "UTR", "intergenic"]):
        assert m[f"precision_{name}"] == pytest.approx(p[i])
        assert m[f"recall_{name}"] == pytest.approx(r[i])
        assert m[f"f1_{name}"] == pytest.approx(f[i])
    assert m["macro_f1"] == pytest.approx(f.mean())
    # genic / sub-genic: micro-averaged F1 over the genic classes only
    for key, classes in (("genic_f1", [0, 1, 2]), ("subgenic_f1", [0, 1])):
        _, _, micro, _ = precision_recall_fscore_support(truth, pred, labels=classes, average="micro")
        assert m[key] == pytest.approx(micro)


def test_genic_f1_by_hand():
    cm = np.array([[8, 1, 1, 0], [0, 5, 0, 5], [0, 0, 0, 0], [2, 0, 0, 10]])
    tp, fp, fn = 8 + 5, (2 + 1) + 0 + 1, (1 + 1) + 5
    assert metrics_from_confusion(cm)["genic_f1"] == pytest.approx(2 * tp / (2 * tp + fp + fn))
    all_intergenic = np.array([[0, 0, 0, 10], [0, 0, 0, 5], [0, 0, 0, 2], [0, 0, 0, 20]])
    m = metrics_from_confusion(all_intergenic)
    assert m["genic_f1"] == 0 and m["macro_f1"] == pytest.approx(2 * 20 / (40 + 17) / 4)


@pytest.mark.parametrize("length", [1, 7, 100, 101, 999, 1000, 1001, 1234, 5000, 10_007])
def test_tiles_partition_region_and_keep_centres(length):
    window, margin = 100, 25
    ts = tiles(length, window, margin)
    covered = np.zeros(length, int)
    for t in ts:
        covered[t.keep_from:t.keep_to] += 1
        assert t.start <= t.keep_from <= t.keep_to <= t.start + window
        if length > window:
            assert t.keep_from == 0 or t.keep_from - t.start >= margin
            assert t.keep_to == length or t.start + window - t.keep_to >= margin
    assert (covered == 1).all()
