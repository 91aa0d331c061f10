"""Training on real data (D. melanogaster chr4): learning, MLflow records, DDP equivalence, resume, NaN."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from dga.config import load_config
from dga.data.windows import load_or_make_splits
from dga.lifecycle.train_command import run_training
from dga.training.distributed import DistInfo
from dga.training.fit import EXIT_DIVERGED, EXIT_PREEMPTED, validate

TINY = Path(__file__).resolve().parents[2] / "experiments" / "tiny.toml"


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlruns/mlflow.db")  # undone afterwards
    return tmp_path


def _env(workdir):
    env = dict(os.environ, PYTHONUNBUFFERED="1", MLFLOW_TRACKING_URI=f"sqlite:///{workdir}/mlruns/mlflow.db")
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
    return env


@pytest.mark.slow
def test_tiny_model_learns_and_mlflow_has_everything(dmel_store, workdir):
    from mlflow import MlflowClient

    overrides = {"store": str(dmel_store.path), "epochs": 3, "hidden_size": 32, "bases_per_epoch": 1_200_000,
                 "checkpoint_dir": str(workdir / "ck"), "lr": 0.02}
    assert run_training(str(TINY), overrides) == 0
    result = json.loads((workdir / "ck" / "result.json").read_text())
    cm = np.array(result["confusion"])
    # all-intergenic baseline on the same validation bases: only intergenic has a non-zero F1
    p_int = cm[3].sum() / cm.sum()
    baseline_macro = 2 * p_int / (1 + p_int) / 4
    assert result["metrics"]["val_macro_f1"] > baseline_macro + 0.05
    assert result["metrics"]["val_genic_f1"] > 0.5

    client = MlflowClient(f"sqlite:///{workdir}/mlruns/mlflow.db")
    run = client.get_run(result["run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.params["hidden_size"] == "32" and run.data.params["n_parameters"] == str(result["n_parameters"])
    for key in ("val_f1_CDS", "val_precision_UTR", "val_recall_intron", "val_genic_f1", "val_subgenic_f1",
                "val_macro_f1", "train_loss", "val_loss", "best_val_genic_f1"):
        assert key in run.data.metrics, key
    assert len(client.get_metric_history(run.info.run_id, "val_loss")) == 3
    assert run.data.tags["world_size"] == "1" and run.data.tags["store_checksum"] == dmel_store.checksum
    assert run.inputs.dataset_inputs[0].dataset.digest == dmel_store.checksum
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"val_confusion.png", "val_confusion.json", "curves.png", "confusion"} <= artifacts
    per_epoch = {a.path for a in client.list_artifacts(run.info.run_id, "confusion")}
    assert {f"confusion/epoch_00{e}.{ext}" for e in (1, 2, 3) for ext in ("png", "json")} == per_epoch
    logged = json.loads(Path(client.download_artifacts(run.info.run_id, "val_confusion.json")).read_text())
    assert logged["matrix"] == result["confusion"]
    # the run's model is the bundle written beside the checkpoint: weights, config, the decoder's
    # signal models (fitted on the training region) and provenance, identical in both places
    from dga import bundle
    from dga.prediction.model import load_model

    local = bundle.load(str(workdir / "ck" / "bundle"))
    logged = bundle.load(result["model_uri"])
    assert local.signals is not None and local.signals.counts["donor"] > 100
    assert logged.signals.counts == local.signals.counts and logged.config == local.config
    assert all(torch.equal(local.state[k], logged.state[k]) for k in local.state)
    assert logged.provenance["data"]["store_checksum"] == dmel_store.checksum
    assert logged.provenance["training"]["epochs_run"] == 3
    assert logged.provenance["mlflow"]["run_id"] == result["run_id"]
    assert logged.decoder["tuned"] is None  # nobody tuned it yet: it says so
    lm = load_model(result["model_uri"])
    x = torch.zeros(2, 800, 4)
    x[:, :, 0] = 1
    assert lm.model(x).shape == (2, 800, 4)


@pytest.mark.slow
@pytest.mark.ddp
def test_two_process_gloo_matches_one_process_validation(dmel_store, workdir):
    ck = workdir / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "dga.cli",
           "train", str(TINY), "--set", f"store={dmel_store.path}", "--set", "epochs=1", "--set", "log_model=false",
           "--set", f"checkpoint_dir={ck}", "--set", "threads=1"]
    proc = subprocess.run(cmd, env=_env(workdir), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "on 2 process(es)" in proc.stdout
    result = json.loads((ck / "result.json").read_text())
    cfg = load_config(TINY, {"store": str(dmel_store.path)})
    from dga import bundle

    model = bundle.read(ck / "bundle").build_model()
    splits = load_or_make_splits(dmel_store, cfg.k_folds, cfg.test_fraction, cfg.split_seed)
    cm, _ = validate(model, dmel_store, splits.validation(cfg.fold), cfg, DistInfo())
    assert cm.tolist() == result["confusion"]
    from mlflow import MlflowClient

    run = MlflowClient(f"sqlite:///{workdir}/mlruns/mlflow.db").get_run(result["run_id"])
    assert run.data.tags["world_size"] == "2"


@pytest.mark.slow
def test_resume_after_sigterm_gives_identical_weights(dmel_store, workdir):
    common = ["--set", f"store={dmel_store.path}", "--set", "epochs=3", "--set", "bases_per_epoch=2000000",
              "--set", "log_model=false", "--set", "threads=1", "--set", "hidden_size=24"]
    base = [sys.executable, "-m", "dga.cli", "train", str(TINY)] + common
    env = _env(workdir)
    full = subprocess.run(base + ["--set", f"checkpoint_dir={workdir / 'full'}"], env=env, capture_output=True,
                          text=True, timeout=300)
    assert full.returncode == 0, full.stderr[-2000:]

    cut = base + ["--set", f"checkpoint_dir={workdir / 'cut'}"]
    proc = subprocess.Popen(cut, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for line in proc.stdout:
        if line.startswith("model:"):
            break
    time.sleep(1.0)  # mid-epoch
    proc.send_signal(signal.SIGTERM)
    out = proc.stdout.read()
    assert proc.wait(timeout=120) == EXIT_PREEMPTED, out
    assert "checkpoint saved" in out and (workdir / "cut" / "checkpoint.pt").is_file()
    assert not (workdir / "cut" / "bundle").exists()
    run_before = (workdir / "cut" / "mlflow_run_id").read_text().strip()
    resumed = subprocess.run(cut + ["--resume"], env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resumed from" in resumed.stdout
    from dga import bundle

    a = bundle.read(workdir / "full" / "bundle").state
    b = bundle.read(workdir / "cut" / "bundle").state
    assert all(torch.equal(a[k], b[k]) for k in a)
    ra = json.loads((workdir / "full" / "result.json").read_text())
    rb = json.loads((workdir / "cut" / "result.json").read_text())
    assert ra["confusion"] == rb["confusion"]
    # the resumed process continued the interrupted MLflow run instead of starting another
    assert rb["run_id"] == run_before != ra["run_id"]
    from mlflow import MlflowClient

    c = MlflowClient(f"sqlite:///{workdir}/mlruns/mlflow.db")
    run = c.get_run(run_before)
    assert run.info.status == "FINISHED" and len(c.get_metric_history(run_before, "val_loss")) == 3


def test_nan_loss_stops_with_failed_run(dmel_store, workdir, monkeypatch, capsys):
    from mlflow import MlflowClient

    original = torch.nn.CrossEntropyLoss.forward
    monkeypatch.setattr(torch.nn.CrossEntropyLoss, "forward", lambda self, a, b: original(self, a, b) * float("nan"))
    rc = run_training(str(TINY), {"store": str(dmel_store.path), "epochs": 1, "checkpoint_dir": str(workdir / "n")})
    assert rc == EXIT_DIVERGED
    assert "non-finite training loss" in capsys.readouterr().err
    client = MlflowClient(f"sqlite:///{workdir}/mlruns/mlflow.db")
    (run,) = client.search_runs([client.get_experiment_by_name("dga-tiny").experiment_id])
    assert run.info.status == "FAILED" and "non-finite" in run.data.tags["failure_reason"]


def test_bases_per_epoch_beyond_the_windows_reads_each_once_and_says_so(dmel_store):
    from dga.data.windows import WindowDataset
    from dga.training.distributed import setup_distributed
    from dga.training.fit import fit, training_regions

    cfg = load_config(None, {"store": str(dmel_store.path), "k_folds": 4, "fold": 0, "epochs": 1, "hidden_size": 8,
                             "num_layers": 1, "bases_per_step": 4, "window": 960, "batch_size": 64,
                             "bases_per_epoch": 10**9, "device": "cpu", "threads": 1})
    splits = load_or_make_splits(dmel_store, 4, 0.1, 0)
    lines = []
    result = fit(cfg, dmel_store, splits, setup_distributed("cpu", 1), log=lines.append)
    windows = len(WindowDataset(dmel_store, training_regions(cfg, splits), cfg.window,
                                reverse_complement=cfg.reverse_complement, labels=cfg.labels))
    warned = [s for s in lines if "reads every window once" in s]
    assert len(warned) == 1 and "1,000,000,000" in warned[0] and f"the {windows * cfg.window:,} bases" in warned[0]
    assert result.history[0]["epoch_seconds"] > 0
    model_line = next(s for s in lines if s.startswith("model:"))
    assert f"; {windows // cfg.batch_size} batches/epoch/rank" in model_line
