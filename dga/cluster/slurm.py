"""SLURM scale-out: `dga slurm submit` renders and submits the study's job array (plus a final job that
summarises the study and registers the best model), `dga slurm predict` annotates a genome as a job
array plus a merge job, and `dga mlflow-server` starts a tracking server for a cluster. The job
scripts are package data, dga/cluster/sbatch/*.sbatch (linked from slurm/ at the top
of the repository).
"""

from __future__ import annotations

import math
import os
import shlex
import shutil
import socket
import subprocess
import sys
from pathlib import Path

from dga.errors import InputError
from dga.redact import redact

SLURM_DIR = Path(__file__).resolve().parent / "sbatch"  # package data (slurm/ at the top links here)


def _minutes(m: float) -> str:
    m = max(1, int(math.ceil(m)))
    return f"{m // 1440}-{(m % 1440) // 60:02d}:{m % 60:02d}:00"


def render_submit(experiment: str, workers: int, *, gpus_per_trial: int = 0, partition: str = "",
                  overrides: list[str] | None = None, python: str = "") -> list[list[str]]:
    """The sbatch command lines for a study: the worker array, then the summary/registration job."""
    from dga.search.space import load_search

    sc = load_search(experiment)
    if workers < 1:
        raise InputError(None, "--workers must be >= 1")
    cpus = max(1, sc.processes_per_trial) * max(1, sc.cpus_per_process)
    trials_per_worker = math.ceil(sc.n_trials / workers)
    common = [f"--partition={partition}"] if partition else []
    array = ["sbatch", "--parsable", f"--array=0-{workers - 1}", f"--job-name=dga-{sc.study_name}",
             f"--cpus-per-task={cpus}", f"--mem={sc.slurm_mem}",
             f"--time={_minutes(sc.trial_minutes * trials_per_worker + 10)}", *common]
    if gpus_per_trial:
        array.append(f"--gpus-per-task={gpus_per_trial}")
    sets = [x for item in (overrides or []) for x in ("--set", item)]
    array += [str(SLURM_DIR / "search-array.sbatch"), str(Path(experiment).resolve()), *sets]
    final = ["sbatch", "--parsable", "--dependency=afterany:{array_job}", f"--job-name=dga-{sc.study_name}-final",
             f"--cpus-per-task={cpus}", f"--mem={sc.slurm_mem}", f"--time={_minutes(sc.trial_minutes + 10)}",
             *common, f"--output=slurm-dga-{sc.study_name}-final-%j.out",
             "--wrap", shlex.join([python or sys.executable, "-m", "dga.cli", "search",
                                   str(Path(experiment).resolve()), *sets])]
    return [array, final]


def submit(experiment: str, workers: int, *, gpus_per_trial: int = 0, partition: str = "",
           overrides: list[str] | None = None, dry_run: bool = False) -> int:
    from dga import tracking
    from dga.search.space import load_search

    sc = load_search(experiment)
    storage = sc.storage_url()
    uri = tracking.default_tracking_uri()
    if storage.startswith("sqlite") or uri.startswith("sqlite"):
        print("note: SQLite stores are fine for workers on one node; across nodes set DGA_OPTUNA_STORAGE="
              "postgresql://... and MLFLOW_TRACKING_URI=http://... (see `dga mlflow-server`)", file=sys.stderr)
    warning = plain_http_warning(uri)
    if warning:
        print(f"dga: warning: {warning}", file=sys.stderr)
    array, final = render_submit(experiment, workers, gpus_per_trial=gpus_per_trial, partition=partition,
                                 overrides=overrides)
    env = {**os.environ, "DGA_OPTUNA_STORAGE": storage, "MLFLOW_TRACKING_URI": uri,
           "DGA_PYTHON": os.environ.get("DGA_PYTHON", sys.executable)}
    if dry_run:
        print(f"# environment: DGA_OPTUNA_STORAGE={redact(storage)} MLFLOW_TRACKING_URI={redact(uri)} "
              f"DGA_PYTHON={env['DGA_PYTHON']}")
        print(redact(shlex.join(array)))
        print(redact(shlex.join(final)))
        return 0
    if shutil.which("sbatch") is None:
        raise InputError(None, "sbatch not found: run this on a SLURM login node (or use --dry-run)")
    # create the study (and its tables) once, before workers race to do it
    from dga.config import load_config
    from dga.search.storage import open_study

    tracking.setup(uri)
    open_study(sc, load_config(experiment, overrides or []))
    tracking.experiment_id(sc.mlflow_experiment)
    job = subprocess.run(array, env=env, capture_output=True, text=True, check=True).stdout.strip().split(";")[0]
    final = [a.replace("{array_job}", job) for a in final]
    fin = subprocess.run(final, env=env, capture_output=True, text=True, check=True).stdout.strip().split(";")[0]
    print(f"submitted study {sc.study_name!r}: worker array job {job} ({workers} tasks), final job {fin} "
          f"(summary + registration after the array)")
    print(f"follow it:  squeue -j {job},{fin}   tail -f slurm-dga-{sc.study_name}-{job}_*.out")
    print(f"results:    MLflow {redact(uri)} (experiment {sc.mlflow_experiment!r}); Optuna {redact(storage)}")
    return 0


def render_predict(predict_args: list[str], tasks: int, *, cpus: int = 2, mem: str = "4G", minutes: float = 240,
                   partition: str = "", python: str = "") -> list[list[str]]:
    """The sbatch command lines of `dga slurm predict`: the array of `tasks` chunks, then the merge job
    (after every task has ended, however: it names a chunk that is missing)."""
    if tasks < 1:
        raise InputError(None, f"--tasks {tasks}: give 1 or more array tasks")
    common = [f"--partition={partition}"] if partition else []
    array = ["sbatch", "--parsable", f"--array=0-{tasks - 1}", f"--cpus-per-task={cpus}", f"--mem={mem}",
             f"--time={_minutes(minutes)}", *common, str(SLURM_DIR / "predict-array.sbatch"), str(tasks),
             *predict_args]
    merge = ["sbatch", "--parsable", "--dependency=afterany:{array_job}", "--job-name=dga-predict-merge",
             "--cpus-per-task=1", f"--mem={mem}", f"--time={_minutes(30)}", *common,
             "--output=slurm-dga-predict-merge-%j.out",
             "--wrap", shlex.join([python or sys.executable, "-m", "dga.cli", "predict", *predict_args,
                                   "--merge-chunks", str(tasks)])]
    return [array, merge]


def submit_predict(predict_args: list[str], out: str, tasks: int, *, cpus: int = 2, mem: str = "4G",
                   minutes: float = 240, partition: str = "", dry_run: bool = False) -> int:
    """`dga slurm predict`: submit the array and its merge job; print how to follow them."""
    python = os.environ.get("DGA_PYTHON", sys.executable)
    array, merge = render_predict(predict_args, tasks, cpus=cpus, mem=mem, minutes=minutes, partition=partition,
                                  python=python)
    if dry_run:
        print(shlex.join(array))
        print(shlex.join(merge))
        return 0
    if shutil.which("sbatch") is None:
        raise InputError(None, "sbatch not found: run this on a SLURM login node (or use --dry-run)")
    env = {**os.environ, "DGA_PYTHON": python}
    job = subprocess.run(array, env=env, capture_output=True, text=True, check=True).stdout.strip().split(";")[0]
    merge = [a.replace("{array_job}", job) for a in merge]
    fin = subprocess.run(merge, env=env, capture_output=True, text=True, check=True).stdout.strip().split(";")[0]
    print(f"submitted: array job {job} ({tasks} chunks), merge job {fin} -> {out}")
    print(f"follow it:  squeue -j {job},{fin}   tail -f slurm-dga-predict-{job}_*.out "
          f"slurm-dga-predict-merge-{fin}.out")
    return 0


def plain_http_warning(uri: str) -> str:
    """A warning when workers would talk to a tracking server over plain http on another host:
    anyone on that network can read runs and register models there."""
    from urllib.parse import urlparse

    parsed = urlparse(uri)
    if parsed.scheme != "http" or parsed.hostname in (None, "localhost", "127.0.0.1", "::1"):
        return ""
    return (f"MLFLOW_TRACKING_URI {redact(uri)} is plain http on a non-loopback host: anyone who reaches it can "
            f"register models. Put MLflow's basic authentication or a TLS reverse proxy in front of it "
            f"(docs/security.md)")


def mlflow_server(backend: str, artifacts: str, host: str, port: int, allowed_hosts: str) -> int:
    """Start `mlflow server` for a cluster (PostgreSQL backend, shared artifact directory) and print
    the tracking URI the workers should use."""
    from dga.tracking import exec_mlflow_server

    Path(artifacts).mkdir(parents=True, exist_ok=True)
    name = socket.getfqdn() if host in ("0.0.0.0", "::") else host
    if host not in ("127.0.0.1", "localhost", "::1"):
        print(f"dga: warning: the server listens on {host} without authentication; put MLflow's basic "
              f"authentication or a TLS reverse proxy in front of it (README, Security)", file=sys.stderr)
    print(f"export MLFLOW_TRACKING_URI=http://{name}:{port}", flush=True)
    server_args = ["--backend-store-uri", backend, "--registry-store-uri", backend,
                   "--artifacts-destination", str(Path(artifacts).resolve()),
                   "--serve-artifacts", "--host", host, "--port", str(port), "--workers", "2"]
    if allowed_hosts:
        server_args += ["--allowed-hosts", allowed_hosts]
    exec_mlflow_server(server_args)
    return 0
