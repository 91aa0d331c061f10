"""SLURM scale-out on a real two-node cluster (nodes n1 and n2 on this machine, one core each) with a
real PostgreSQL server (both started here): DDP training with one rank per node under srun and
under torchrun, a study as a job array spread over both nodes on PostgreSQL with an MLflow tracking
server, a requeued trial resuming from its checkpoint, a node that dies mid-study, and the database
and tracking server restarted under running workers. Skipped, with the reason, where the Debian
packages (slurmctld slurmd slurm-client munge postgresql) or root are missing."""

import os
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from cluster import (
    Postgres,
    kill_node,
    node_state,
    postgres_missing,
    slurm_missing,
    start_slurm,
    stop_slurm,
    wait_job,
)
from test_search import write_study

ROOT = Path(__file__).resolve().parents[1]
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
def postgres(tmp_path_factory):
    why = postgres_missing()
    if why:
        pytest.skip(f"no PostgreSQL: {why}")
    pg = Postgres(tmp_path_factory.mktemp("pg") / "cluster")
    pg.start()
    yield pg
    pg.stop()


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
    from dga.train import DistInfo, validate

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


def _start_mlflow_server(workdir: Path, backend: str) -> tuple[subprocess.Popen, str]:
    with __import__("socket").socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "dga.cli", "mlflow-server", "--backend-store-uri", backend,
                             "--artifacts", str(workdir / "artifacts"), "--host", "127.0.0.1", "--port", str(port)],
                            env=job_env(workdir), stdout=open(workdir / "mlflow-server.log", "w"),
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

    exp = write_study(tmp_path / "rq.toml", dmel_store, "requeue", n_trials=2, folds="[0, 1, 2, 3]", epochs=2,
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


def test_plain_http_to_another_host_is_warned_about():
    from dga.cli import build_parser
    from dga.slurm import plain_http_warning

    assert "basic authentication" in plain_http_warning("http://tracking.cluster:5000")
    for uri in ("http://127.0.0.1:5000", "http://localhost:5000", "https://tracking.cluster", "sqlite:///x/m.db"):
        assert plain_http_warning(uri) == ""
    args = build_parser().parse_args(["mlflow-server", "--backend-store-uri", "sqlite:///m.db", "--artifacts", "a"])
    assert args.host == "127.0.0.1" and args.allowed_hosts == ""  # loopback unless a host is named
