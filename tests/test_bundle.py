"""The model bundle: one form for every trained model, checksummed, and never able to run code when
loaded (from a folder, a zoo name, a checkpoint or a shared MLflow registry)."""

import json
import time
from pathlib import Path

import pytest
import torch

import dga.bundle as bundle_io
from dga.config import load_config
from dga.errors import InputError
from dga.nets.registry import build_model


class Evil:
    """Unpickling this creates a marker file: proof that loading ran code."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def tiny_bundle(tmp_path: Path, name: str = "b") -> Path:
    cfg = load_config(None, {"hidden_size": 8, "num_layers": 1, "window": 40})
    b = bundle_io.from_model(build_model(cfg), cfg, provenance={"data": {"dataset": "x"}})
    return bundle_io.write(b, tmp_path / name)


def plant(folder: Path, marker: Path, name: str = bundle_io.WEIGHTS) -> None:
    """Replace a file with a malicious pickle and re-sign the folder (an attacker controls both)."""
    torch.save({"w": Evil(marker)}, folder / name)
    listing = json.loads((folder / bundle_io.CHECKSUMS).read_text())
    listing[name] = bundle_io.sha256(folder / name)
    (folder / bundle_io.CHECKSUMS).write_text(json.dumps(listing))


def test_round_trip_keeps_weights_config_decoder_and_provenance(tmp_path):
    folder = tiny_bundle(tmp_path)
    b = bundle_io.load(str(folder))
    assert b.config.hidden_size == 8 and b.provenance["data"]["dataset"] == "x"
    assert b.decoder["tuned"] is None and b.hmm_params().gene < 0
    model = b.build_model()
    assert model(torch.zeros(1, 40, 4)).shape == (1, 40, 4)
    assert set(json.loads((folder / bundle_io.CHECKSUMS).read_text())) == {
        "weights.pt", "config.json", "decoder.json", "provenance.json"}


def test_a_changed_file_is_named(tmp_path):
    folder = tiny_bundle(tmp_path)
    cfg = json.loads((folder / "config.json").read_text())
    cfg["hidden_size"] = 9
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(InputError, match=r"config.json.*SHA-256 .* does not match checksums.json"):
        bundle_io.load(str(folder))


def test_write_never_replaces_what_is_not_a_bundle(tmp_path):
    keep = tmp_path / "data"
    keep.mkdir()
    (keep / "precious.txt").write_text("mine")
    cfg = load_config(None, {"hidden_size": 4, "num_layers": 1})
    with pytest.raises(InputError, match="not a bundle DGA wrote"):
        bundle_io.write(bundle_io.from_model(build_model(cfg), cfg), keep)
    assert (keep / "precious.txt").read_text() == "mine"
    assert [p.name for p in tmp_path.iterdir()] == ["data"]  # no temporary folder left behind


def test_a_malicious_weights_file_does_not_run(tmp_path):
    folder = tiny_bundle(tmp_path)
    marker = tmp_path / "pwned"
    plant(folder, marker)
    with pytest.raises(InputError, match="not a plain state dict"):
        bundle_io.load(str(folder))
    assert not marker.exists()


def test_zoo_names_are_names_not_paths(tmp_path, monkeypatch):
    folder = tiny_bundle(tmp_path, "evil")
    plant(folder, tmp_path / "pwned")
    for ref in ("zoo:../evil", f"zoo:{folder}", "zoo:a/b", "zoo:..", "zoo:Evil"):
        with pytest.raises(InputError, match="a zoo name is"):
            bundle_io.load(ref)
    # a zoo folder with a planted pickle: the name is fine, the loading still runs nothing
    monkeypatch.setenv("DGA_ZOO_DIR", str(tmp_path))
    with pytest.raises(InputError, match="not a plain state dict"):
        bundle_io.load("zoo:evil")
    assert not (tmp_path / "pwned").exists()


def test_a_malicious_checkpoint_is_not_resumed(tmp_path, dmel_store):
    from dga.data.windows import load_or_make_splits
    from dga.training.distributed import DistInfo
    from dga.training.fit import fit

    ckpt = tmp_path / "checkpoint.pt"
    marker = tmp_path / "pwned"
    torch.save({"model": Evil(marker)}, ckpt)
    cfg = load_config(None, {"store": str(dmel_store.path), "k_folds": 4, "hidden_size": 4, "num_layers": 1,
                             "window": 400, "bases_per_step": 4, "epochs": 1, "threads": 1})
    splits = load_or_make_splits(dmel_store, 4, 0.1, 0)
    with pytest.raises(InputError, match="cannot be read as a plain checkpoint"):
        fit(cfg, dmel_store, splits, DistInfo(), checkpoint=ckpt, resume=True)
    assert not marker.exists()


def test_a_malicious_registered_model_does_not_run(tmp_path, monkeypatch):
    import mlflow

    from dga import tracking
    from dga.prediction.model import load_model

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlruns/mlflow.db")
    tracking.setup()
    folder = tiny_bundle(tmp_path)
    marker = tmp_path / "pwned"
    plant(folder, marker)
    with mlflow.start_run(experiment_id=tracking.experiment_id("shared")):
        uri = tracking.log_bundle(bundle_io.files(folder))
    mlflow.register_model(uri, "dga-shared")
    with pytest.raises(InputError, match="not a plain state dict"):
        load_model("models:/dga-shared/1")
    assert not marker.exists()
    # and the version's files hold no pickled module: only the bundle and MLflow's own metadata
    files = {p.name for p in Path(mlflow.artifacts.download_artifacts(uri, dst_path=str(tmp_path / "dl"))).iterdir()}
    allowed = {"MLmodel", "registered_model_meta", *bundle_io.REQUIRED, bundle_io.CHECKSUMS, "signals.npz", "card.json"}
    assert files <= allowed


def test_an_unknown_registry_model_is_a_clear_error_and_leaves_no_db(tmp_path, monkeypatch):
    from dga.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    fa = tmp_path / "x.fa"
    fa.write_text(">x\nACGT\n")
    assert main(["predict", str(fa), "--model", "models:/nope@champion", "-o", str(tmp_path / "o.gff3")]) == 2
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "mlruns").exists()


def test_train_without_tracking_writes_the_same_bundle(tmp_path, monkeypatch, dmel_store):
    from dga.lifecycle.train_command import run_training

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    overrides = {"store": str(dmel_store.path), "k_folds": 4, "hidden_size": 8, "num_layers": 1, "window": 400,
                 "bases_per_step": 4, "epochs": 2, "bases_per_epoch": 100_000, "threads": 1, "tracking": "none",
                 "checkpoint_dir": str(tmp_path / "ck")}
    assert run_training(None, overrides) == 0
    assert not (tmp_path / "mlruns").exists() and not (tmp_path / "mlflow.db").exists()
    b = bundle_io.load(str(tmp_path / "ck" / "bundle"))
    assert b.signals is not None and b.provenance["training"]["epochs_run"] == 2
    assert b.provenance["training"]["stopped"] == "completed" and "mlflow" not in b.provenance
    assert b.provenance["data"]["store_checksum"] == dmel_store.checksum


@pytest.mark.parametrize("budget,said", [("deadline_minutes", "deadline"), ("cpu_minutes", "CPU budget")])
def test_deadline_stops_training_and_keeps_the_best_epoch(tmp_path, dmel_store, budget, said):
    from dataclasses import replace

    from dga.data.windows import load_or_make_splits
    from dga.training.distributed import DistInfo
    from dga.training.fit import fit

    cfg = load_config(None, {"store": str(dmel_store.path), "k_folds": 4, "hidden_size": 8, "num_layers": 1,
                             "window": 400, "bases_per_step": 4, "epochs": 1000, "threads": 1,
                             budget: 0.05})
    splits = load_or_make_splits(dmel_store, 4, 0.1, 0)
    lines = []
    cpu0 = time.process_time()
    result = fit(cfg, dmel_store, splits, DistInfo(), log=lines.append)
    assert result.stopped.startswith(said) and 1 <= len(result.history) < 1000
    if budget == "cpu_minutes":  # 0.05 minutes of this process's CPU time at least, however busy the machine
        assert time.process_time() - cpu0 >= 3.0
    assert result.best_epoch >= 1 and result.metrics  # the best validated epoch's weights and metrics
    assert any("keeping the best validated epoch" in s for s in lines)
    assert replace(cfg, deadline_minutes=0).deadline_minutes == 0
