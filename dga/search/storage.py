"""A study's storage: opening it (RDB with heartbeats, PostgreSQL or SQLite), the sampler each
process uses, the lock that keeps a study at exactly `n_trials`, and stale-trial handling."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import optuna

import contextlib
import fcntl
import functools
import os
import socket
import time
import warnings
from pathlib import Path

from dga.config import Config
from dga.errors import InputError
from dga.redact import redact
from dga.search.space import RUNTIME_FIELDS, SearchConfig

DATABASE_OUTAGE_S = 120  # how long a worker waits for a restarted / unreachable database server


def _engine_kwargs(url: str) -> dict:
    # Several worker processes write one SQLite file: wait for the lock instead of failing at once.
    # A server database: test each pooled connection before use, so one that a database restart
    # closed is replaced instead of failing the query.
    return {"connect_args": {"timeout": 120}} if url.startswith("sqlite") else {"pool_pre_ping": True}


def wait_for_database(engine, seconds: float = DATABASE_OUTAGE_S) -> None:
    """New connections of `engine` retry for up to `seconds` while the database server is down
    (restarted, failing over), instead of failing the worker's next query at once."""
    from sqlalchemy import event

    @event.listens_for(engine, "do_connect")
    def _connect(dialect, conn_rec, cargs, cparams):
        deadline, delay, said = time.monotonic() + seconds, 0.5, False
        while True:
            try:
                return dialect.loaded_dbapi.connect(*cargs, **cparams)
            except dialect.loaded_dbapi.OperationalError as exc:
                refused = any(s in str(exc).lower() for s in ("password", "authentication", "does not exist"))
                if time.monotonic() > deadline or refused:  # a wrong password does not get better by waiting
                    raise
                if not said:
                    print(f"study storage unreachable ({redact(str(exc).splitlines()[0][:200])}): retrying for up to "
                          f"{seconds:.0f} s", flush=True)
                    said = True
                time.sleep(delay)
                delay = min(2 * delay, 5.0)


def _mark_stale_runs_failed(run_id: str | None, reason: str) -> None:
    """A dead worker's trial run and its RUNNING fold runs end FAILED in MLflow (not RUNNING forever)."""
    if not run_id:
        return
    import mlflow

    client = mlflow.MlflowClient()
    try:
        run = client.get_run(run_id)
    except mlflow.exceptions.MlflowException:
        return
    children = client.search_runs([run.info.experiment_id], f"tags.mlflow.parentRunId = '{run_id}'")
    for r in [run, *children]:
        if r.info.status == "RUNNING":
            client.set_tag(r.info.run_id, "failure_reason", reason)
            client.set_tag(r.info.run_id, "optuna_state", "FAIL")
            client.set_terminated(r.info.run_id, "FAILED")


def _on_stale_trial(study, trial, max_retry: int, grace: int) -> None:
    from optuna.storages import RetryHeartbeatStaleTrialCallback

    reason = f"worker stopped: no heartbeat for more than {grace} s (trial {trial.number})"
    _mark_stale_runs_failed(trial.user_attrs.get("mlflow_run_id"), reason)
    print(f"trial {trial.number}: {reason}; marked FAILED" + (", queued again" if max_retry else ""), flush=True)
    RetryHeartbeatStaleTrialCallback(max_retry=max_retry)(study, trial)


def make_sampler(sc: SearchConfig, seed: int):
    import optuna

    # multivariate TPE with the constant liar: Optuna's answer to parallel workers (a running trial counts
    # as a poor result, so another worker's proposal moves away from it)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return (optuna.samplers.TPESampler(seed=seed, n_startup_trials=max(3, len(sc.baselines) + 2),
                                           multivariate=True, constant_liar=True)
                if sc.sampler == "tpe" else optuna.samplers.RandomSampler(seed=seed))


def sampler_seed_for(sc: SearchConfig, study: "optuna.Study", worker_only: bool) -> tuple[int, bool]:
    """(seed, reproducible): `sampler_seed` for the first process of a new study, so one worker
    and no restart reproduces the same trials; any other worker or a restart draws its own seed,
    so parallel workers and restarts do not propose the configurations already proposed."""
    if not worker_only:
        with budget_lock(sc.storage_url(), sc.study_name, purpose="seed"):  # one process takes the file's seed
            started = any(t.state.name != "WAITING" for t in study.get_trials(deepcopy=False))
            if not started and not study.user_attrs.get("sampler_seed_taken_by"):
                study.set_user_attr("sampler_seed_taken_by", f"{socket.gethostname()}:{os.getpid()}")
                return sc.sampler_seed, True
    return int.from_bytes(os.urandom(4), "little"), False


def open_study(sc: SearchConfig, base: Config | None = None, create: bool = True):
    """Create or load the study (RDB storage with heartbeats). With `base`, the study remembers the
    base config and refuses to continue under a different one."""
    import optuna

    url = sc.storage_url()
    if not url.startswith(("sqlite:", "postgresql", "mysql")):
        raise InputError(None, f"Optuna storage {url!r}: use sqlite:///..., postgresql://... or mysql://...")
    if url.startswith("sqlite:///"):
        db = Path(url[len("sqlite:///"):])
        if not create and not db.is_file():  # looking a study up must not create an empty database
            raise InputError(None, f"no study {sc.study_name!r}: there is no Optuna database at {db} (run `dga "
                                   f"search` first, or give --storage, or run from the folder holding mlruns/)")
        db.parent.mkdir(parents=True, exist_ok=True)
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # failures: our one-line reason, not a traceback
    import sqlalchemy.exc

    for attempt in range(5):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # heartbeats: stable
                storage = optuna.storages.RDBStorage(
                    url, engine_kwargs=_engine_kwargs(url), heartbeat_interval=sc.heartbeat_interval,
                    grace_period=sc.grace_period,
                    heartbeat_stale_trial_callback=functools.partial(_on_stale_trial, max_retry=sc.max_retry,
                                                                     grace=sc.grace_period))
            if not url.startswith("sqlite"):
                wait_for_database(storage.engine)
            break
        except sqlalchemy.exc.SQLAlchemyError as exc:
            # another process is creating the same tables right now (first use of a shared storage);
            # anything still failing after the retries (a wrong password, no server) is the user's to fix
            if attempt == 4:
                first = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
                raise InputError(None, f"cannot open the Optuna storage {redact(url)}: {redact(first)} (check its "
                                       f"address, user and password)") from None
            time.sleep(1 + attempt)
    sampler = make_sampler(sc, sc.sampler_seed)
    pruner = (optuna.pruners.MedianPruner(n_startup_trials=sc.pruner_startup_trials, n_warmup_steps=0)
              if sc.pruner == "median" else optuna.pruners.NopPruner())
    if not create and sc.study_name not in optuna.study.get_all_study_names(storage=storage):
        raise InputError(None, f"no study {sc.study_name!r} in {redact(url)}")
    study = optuna.create_study(study_name=sc.study_name, storage=storage, sampler=sampler, pruner=pruner,
                                direction="maximize", load_if_exists=True)
    if base is None:
        return study
    attrs = study.user_attrs
    mine = {k: v for k, v in base.to_dict().items() if k not in RUNTIME_FIELDS}
    if "base_config" not in attrs:
        study.set_user_attr("base_config", base.to_dict())
        study.set_user_attr("search", sc.to_dict())
        for name, overrides in sc.baselines:
            study.enqueue_trial({}, user_attrs={"baseline": name, "overrides": dict(overrides)})
    else:
        theirs = {k: v for k, v in attrs["base_config"].items() if k not in RUNTIME_FIELDS}
        changed = sorted(k for k in mine if mine[k] != theirs.get(k))
        if changed:
            raise InputError(None, f"study {sc.study_name!r} in {redact(url)} was started with a different config "
                                   f"({', '.join(changed)}); give the experiment a new study_name")
    return study


@contextlib.contextmanager
def budget_lock(url: str, study_name: str = "", purpose: str = "budget"):
    """Serialise 'count trials, then start one' among a study's workers, so that they end with exactly
    the requested number of trials: a file lock next to a SQLite database, a PostgreSQL advisory lock
    on a server (other storages: no lock, at most workers - 1 extra trials). `purpose` names other
    such sections (taking the sampler seed, registering the best trial), each with a lock of its own."""
    held = {"on": True}
    if url.startswith("sqlite:///"):
        suffix = ".lock" if purpose == "budget" else f".{purpose}.lock"
        with open(url[len("sqlite:///"):] + suffix, "a+") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)

            def release() -> None:
                if held["on"]:
                    fcntl.flock(fh, fcntl.LOCK_UN)
                    held["on"] = False

            try:
                yield release
            finally:
                release()
    elif url.startswith("postgresql"):
        import hashlib

        import sqlalchemy

        key = int(hashlib.sha256(f"dga-{purpose}:{study_name}".encode()).hexdigest()[:15], 16)
        engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)
        wait_for_database(engine)
        conn = engine.connect()
        conn.execute(sqlalchemy.text("SELECT pg_advisory_lock(:k)"), {"k": key})

        def release() -> None:
            # Unlock and close at once: the session is not kept through the trial, so a database restart
            # during the trial cannot break it. A session the server already closed took its lock with it.
            if held["on"]:
                held["on"] = False
                with contextlib.suppress(sqlalchemy.exc.OperationalError):
                    conn.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                with contextlib.suppress(sqlalchemy.exc.OperationalError):
                    conn.close()
                engine.dispose()

        try:
            yield release
        finally:
            release()
    else:
        yield lambda: None


def counted_trials(study: "optuna.Study") -> int:
    from optuna.trial import TrialState

    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED,
                                                         TrialState.RUNNING)))
