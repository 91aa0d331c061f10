"""Optuna study over training configurations, each trial scored by blocked k-fold cross-validation.

One experiment file holds both the training config (top level) and a `[search]` table: study
name, budget, sampler, pruner, objective, search space (names are Config fields), baseline trials
and storage. A trial trains and validates on every fold (never the test region), reports the
running mean after each fold (so the pruner can stop it early) and returns the mean.

MLflow layout: one experiment per study; a parent run per trial (params, mean and std over folds
of every metric, the summed confusion matrix, the Optuna state) with a nested run per fold, and a
`study-summary` run holding Optuna's plots and the trial table.

Workers (processes or machines) share the study through its storage (SQLite under mlruns/ by
default, PostgreSQL on a cluster). Heartbeats mark a trial whose worker died FAILED (in Optuna
and in MLflow) and queue it again; its folds resume from their checkpoints.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

from dga.config import config_values, load_config
from dga.errors import InputError
from dga.redact import redact
from dga.search.files import study_checkpoint_root
from dga.search.space import load_search
from dga.search.storage import make_sampler, open_study, sampler_seed_for
from dga.search.summary import all_intergenic_cv, format_table, log_study_summary, trial_table
from dga.search.trial import TrialContext, make_objective
from dga.search.workers import run_worker
from dga.training.finetune import adopt_architecture
from dga.training.fit import EXIT_PREEMPTED, Preempted


def run_search(path: str, overrides: list[str], n_trials: int | None = None, workers: int = 1,
               worker_only: bool = False) -> int:
    """`dga search`: create or load the study, run trials in `workers` processes, summarise. Returns
    the exit status: 0 when the study has a complete trial (`dga register` can take it from there)."""
    from dga import tracking
    from dga.data.windows import splits_for
    from dga.training.distributed import setup_distributed, store_for_config

    sc = load_search(path, n_trials)
    base = adopt_architecture(load_config(path, overrides), config_values(path, overrides))
    if sc.held_out_genomes:  # a held-out genome that is also trained on fails now, not after the trials
        from dga.lifecycle.heldout import held_out_inputs

        held_out_inputs(sc.held_out_genomes, base)
    if workers > 1 and not base.threads:
        from dga.software import usable_cpus

        base = replace(base, threads=max(1, usable_cpus() // workers))
    folds = list(sc.folds) or list(range(base.k_folds))
    if any(not 0 <= f < base.k_folds for f in folds):
        raise InputError(path, f"[search] folds {folds} must lie in 0..{base.k_folds - 1}")
    tracking.setup()
    study = open_study(sc, base)
    seed, reproducible = sampler_seed_for(sc, study, worker_only)
    study.sampler = make_sampler(sc, seed)
    if not reproducible:
        print(f"sampler seed {seed} (this process joins a study that has started, or is an extra worker: its own "
              f"seed keeps its proposals apart from the others')", flush=True)
    if "experiment_file" not in study.user_attrs:
        study.set_user_attr("experiment_file", Path(path).as_posix())
    experiment_id = tracking.experiment_id(sc.mlflow_experiment)
    dist = setup_distributed(base.device, base.threads if sc.processes_per_trial == 1 else 1)
    store = store_for_config(base, dist)
    splits = splits_for(store, base)
    if not worker_only:
        print(f"study {sc.study_name!r}: {sc.n_trials} trials, {len(folds)}-fold CV on {store.path} "
              f"(objective: mean {sc.objective}), Optuna {redact(sc.storage_url())}, "
              f"MLflow {redact(tracking.default_tracking_uri())} "
              f"experiment {sc.mlflow_experiment!r}", flush=True)
    ctx = TrialContext(sc, base, store, splits, dist, experiment_id,
                       study_checkpoint_root(base, sc.study_name), folds,
                       log=(lambda s: print(f"[worker {os.getpid()}] {s}", flush=True)) if workers > 1 or worker_only
                       else (lambda s: print(s, flush=True)))
    deadline = time.time() + sc.timeout if sc.timeout else 0.0
    children = []
    if workers > 1 and not worker_only:  # more workers on this machine: the same function, in processes
        spawn = multiprocessing.get_context("spawn")  # fresh interpreters: no forked torch thread pools
        args = (str(path), [*overrides, f"threads={base.threads}"], sc.n_trials)
        children = [spawn.Process(target=worker_process, args=args) for _ in range(workers - 1)]
        for child in children:
            child.start()
    t0 = time.perf_counter()
    try:
        ran = run_worker(study, make_objective(ctx), sc, deadline, log=ctx.log)
    except Preempted as exc:
        print(f"dga: {exc}; run the same command again (or let SLURM requeue the job) to resume it", flush=True)
        return EXIT_PREEMPTED
    finally:
        for child in children:
            child.join()
        codes = [child.exitcode for child in children]
    if worker_only:
        return 0
    if any(codes):
        print(f"dga: warning: worker exit codes {codes}", file=sys.stderr)
    print(f"\nthis run: {ran} trial(s) here, {len(children)} more worker(s), {time.perf_counter() - t0:.0f} s")
    baseline = all_intergenic_cv(store, splits, folds, base.labels)
    rows = trial_table(study)
    print(format_table(rows, sc.objective))
    print(f"all-intergenic baseline on the same folds: CV {sc.objective} {baseline[sc.objective]:.4f}")
    summary_run = log_study_summary(study, sc, experiment_id, baseline)
    print(f"MLflow: experiment {sc.mlflow_experiment!r}, study summary run {summary_run} "
          f"(see it with `dga ui`)")
    from optuna.trial import TrialState

    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        print("no trial completed: nothing to register", file=sys.stderr)
        return 1
    print(f"best: trial {study.best_trial.number}, CV {sc.objective} {study.best_value:.4f}")
    return 0


def worker_process(path: str, overrides: list[str], n_trials: int) -> None:
    """An extra local worker (a spawned process): the same loop as `dga search --worker-only`."""
    sys.exit(run_search(path, overrides, n_trials=n_trials, worker_only=True))
