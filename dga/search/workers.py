"""The worker loop: trials until the study holds `n_trials`, waiting for (and taking over) trials
held by dead workers, re-queueing preempted ones."""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    import optuna

import signal
import time
import warnings

from dga.search.space import SearchConfig
from dga.search.storage import budget_lock, counted_trials
from dga.training.fit import Preempted


def run_worker(study: "optuna.Study", objective: Callable, sc: SearchConfig, deadline: float,
               log: Callable[[str], None] = print) -> int:
    """Run trials until the study holds n_trials COMPLETE/PRUNED/RUNNING trials or the deadline passes.
    Returns the number of trials this worker ran; raises Preempted after a SIGTERM mid-trial
    (the trial is checkpointed and queued again)."""
    url = sc.storage_url()
    stop = getattr(objective, "stop", {"flag": False})
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.update(flag=True))
    try:
        return _worker_loop(study, objective, sc, deadline, log, url, stop)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _requeue(study, trial) -> None:
    """A preempted trial goes back to the queue with its parameters; its folds resume from checkpoints."""
    import optuna

    origin = trial.system_attrs.get("failed_trial", trial.number)
    attrs = {k: v for k, v in trial.user_attrs.items() if k not in ("preempted", "fail_reason", "mlflow_run_id", "cv")}
    study.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.WAITING, params=trial.params,
                                              distributions=trial.distributions, user_attrs=attrs,
                                              system_attrs={"failed_trial": origin, "preempted_trial": trial.number}))


def _worker_loop(study, objective, sc, deadline, log, url, stop) -> int:
    import optuna
    from optuna.exceptions import ExperimentalWarning
    from optuna.trial import TrialState

    ran, failed_in_a_row, duplicates, waiting = 0, 0, 0, False
    while not stop["flag"]:
        if deadline and time.time() > deadline:
            held = counted_trials(study)
            if held < sc.n_trials:
                log(f"STOPPED BY THE TIMEOUT: [search] timeout = {sc.timeout:g} s passed with {held} of "
                    f"{sc.n_trials} trials; {sc.n_trials - held} were not run (run the same command again to "
                    f"continue the study, or raise or remove the timeout)")
            break
        with budget_lock(url, sc.study_name) as release:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ExperimentalWarning)
                optuna.storages.fail_stale_trials(study)
            if counted_trials(study) >= sc.n_trials:
                running = [t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))]
                if not running:
                    log(f"stopping: the study has its n_trials = {sc.n_trials} complete or pruned trials")
                    break
                # trials held by other workers, or by a dead one: wait, and take a dead one over once its
                # heartbeat is stale (fail_stale_trials above fails it; the next pass re-queues it)
                if not waiting:
                    log(f"waiting for trial(s) {running}, held by other workers or by a dead one: a trial whose "
                        f"heartbeat is older than grace_period = {sc.grace_period} s is taken over")
                waiting = True
                release()
                time.sleep(sc.heartbeat_interval)
                continue
            waiting = False

            started: dict[str, int] = {}

            def gated(trial):
                release()  # the trial exists (RUNNING) now: let other workers count it and go on
                started["number"] = trial.number
                return objective(trial)

            study.optimize(gated, n_trials=1, catch=(Exception,))
        ran += 1
        if "number" in started:
            trial = study.get_trials(deepcopy=False)[started["number"]]
            if trial.user_attrs.get("preempted"):
                _requeue(study, trial)
                raise Preempted(f"trial {trial.number} preempted and queued again")
            if trial.user_attrs.get("duplicate_of") is not None:
                duplicates += 1
                if duplicates >= 20:
                    log("20 proposals in a row repeated complete configurations: the search space looks "
                        "exhausted; this worker stops")
                    break
                continue
            duplicates = 0
            failed_in_a_row = failed_in_a_row + 1 if trial.state.name == "FAIL" else 0
        if failed_in_a_row >= 3:
            log("3 trials in a row failed: this worker stops (the reasons are above and in MLflow)")
            break
    return ran
