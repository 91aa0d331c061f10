"""Gene-confidence calibrations: fitted on genes' features, stored as plain numbers, probabilities."""

import json
from pathlib import Path

import numpy as np
import pytest

from dga.decoding.confidence import CALIBRATORS, apply_calibration, fit_calibration, reliability


def _genes(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Synthetic genes whose chance of being exact is a known function of raw score and CDS segments."""
    raw = rng.uniform(0.2, 0.99, n)
    segments = rng.integers(1, 12, n)
    p = 1 / (1 + np.exp(-(4 * (raw - 0.6) - 0.25 * (segments - 5))))
    features = np.column_stack([raw, segments, segments * 200, raw ** 2, raw ** 1.5, segments * 400])
    return features, rng.random(n) < p


@pytest.mark.parametrize("kind", CALIBRATORS)
def test_calibrations_are_json_probabilities_and_calibrated_on_new_genes(kind):
    rng = np.random.default_rng(0)
    f, y = _genes(4000, rng)
    cal = json.loads(json.dumps(fit_calibration(f, y, kind)))  # plain numbers survive JSON
    f2, y2 = _genes(4000, rng)
    conf = apply_calibration(f2, cal)
    assert conf.shape == (4000,) and (conf >= 0).all() and (conf <= 1).all()
    assert reliability(conf, y2)["ece"] < 0.05
    assert reliability(f2[:, 0], y2)["ece"] > 0.1  # the raw score itself is not calibrated here


def test_the_features_calibration_uses_what_the_raw_score_misses():
    rng = np.random.default_rng(1)
    f, y = _genes(4000, rng)
    f2, y2 = _genes(4000, rng)
    brier = {k: float(np.mean((apply_calibration(f2, fit_calibration(f, y, k)) - y2) ** 2)) for k in CALIBRATORS}
    assert brier["logistic-features"] < brier["logistic-raw"] - 0.005


def test_a_calibration_written_before_kinds_existed_is_isotonic():
    cal = {"x": [0.2, 0.8], "y": [0.1, 0.9], "genes": 10, "exact": 5}
    conf = apply_calibration(np.array([[0.5, 1, 1, 1, 1, 1], [0.9, 1, 1, 1, 1, 1]]), cal)
    assert conf.tolist() == pytest.approx([0.5, 0.9])
    assert apply_calibration(np.array([[0.37, 1, 1, 1, 1, 1]]), None).tolist() == [0.37]


@pytest.mark.slow
def test_tune_decoder_fits_the_calibration_asked_for(dmel_store, tmp_path, monkeypatch):
    """`dga tune-decoder --calibration logistic-features` on a real fold model: the bundle's decoder
    carries that calibration, fitted on its validation fold, and predictions carry its confidences."""
    from dga.cli import main
    from dga.lifecycle.train_command import run_training

    monkeypatch.chdir(tmp_path)
    tiny = Path(__file__).resolve().parents[2] / "experiments" / "tiny.toml"
    overrides = {"store": str(dmel_store.path), "epochs": 3, "hidden_size": 32, "bases_per_epoch": 1_200_000,
                 "checkpoint_dir": str(tmp_path / "ck"), "lr": 0.02, "tracking": "none", "fold": 0}
    assert run_training(str(tiny), overrides) == 0
    bundle = tmp_path / "ck" / "bundle"
    assert main(["tune-decoder", str(bundle), "--fold-model", str(bundle), "--trials", "2",
                 "--calibration", "logistic-features", "-o", str(tmp_path / "tuned")]) == 0
    cal = json.loads((tmp_path / "tuned" / "decoder.json").read_text())["calibration"]
    assert cal["kind"] == "logistic-features" and len(cal["coef"]) == 6 and cal["genes"] >= 10
    assert cal["fit_on"] and "fold 0" in cal["fit_on"][0]
