"""Fast unit tests of the search's parts without training: study storage, the worker loop, the trial
objective's bookkeeping (CV summary, duplicates, pruning) with its folds stubbed."""

from pathlib import Path

import numpy as np
import optuna
import pytest

from dga.config import Config
from dga.errors import InputError
from dga.search import storage, trial, workers
from dga.search.space import ParamSpec, SearchConfig
from dga.training.fit import Preempted


def study_config(tmp_path: Path, **kw) -> SearchConfig:
    return SearchConfig(study_name="unit", storage=f"sqlite:///{tmp_path}/optuna.db", sampler="random",
                        pruner="none", heartbeat_interval=1, grace_period=5, **kw)


def test_a_new_study_remembers_its_base_config_and_refuses_another(tmp_path):
    sc = study_config(tmp_path, baselines=(("seed", (("hidden_size", 8),)),))
    study = storage.open_study(sc, Config(hidden_size=16))
    assert study.user_attrs["base_config"]["hidden_size"] == 16
    assert [t.user_attrs["baseline"] for t in study.get_trials()] == ["seed"]  # queued first
    assert storage.open_study(sc, Config(hidden_size=16, threads=3)).study_name == "unit"  # runtime fields free
    with pytest.raises(InputError, match="different config .*hidden_size"):
        storage.open_study(sc, Config(hidden_size=32))
    with pytest.raises(InputError, match="no study 'other'"):
        storage.open_study(SearchConfig(study_name="other", storage=sc.storage), create=False)


def test_the_sampler_seed_is_the_files_only_for_the_first_process_of_a_new_study(tmp_path):
    sc = study_config(tmp_path, sampler_seed=7)
    study = storage.open_study(sc, Config())
    assert storage.sampler_seed_for(sc, study, worker_only=False) == (7, True)
    assert storage.sampler_seed_for(sc, study, worker_only=True)[1] is False
    study.optimize(lambda t: 0.0, n_trials=1)
    assert storage.sampler_seed_for(sc, study, worker_only=False)[1] is False  # a restart draws its own


def test_counted_trials_are_complete_pruned_and_running(tmp_path):
    study = storage.open_study(study_config(tmp_path), Config())
    study.optimize(lambda t: 1.0, n_trials=2)

    def prune(t):
        raise optuna.TrialPruned()

    study.optimize(prune, n_trials=1)
    study.optimize(lambda t: float("nan"), n_trials=1, catch=(Exception,))  # FAIL: not counted
    assert storage.counted_trials(study) == 3


def test_the_worker_stops_at_n_trials_and_after_three_failures_in_a_row(tmp_path):
    sc = study_config(tmp_path, n_trials=3)
    study = storage.open_study(sc, Config())
    lines: list[str] = []
    assert workers.run_worker(study, lambda t: t.suggest_float("x", 0, 1), sc, 0.0, log=lines.append) == 3
    assert storage.counted_trials(study) == 3 and "n_trials = 3" in lines[-1]

    sc2 = study_config(tmp_path, n_trials=10)
    study2 = storage.open_study(SearchConfig(**{**sc2.__dict__, "study_name": "failing"}), Config())

    def broken(t):
        raise RuntimeError("boom")

    assert workers.run_worker(study2, broken, sc2, 0.0, log=lines.append) == 3
    assert "3 trials in a row failed" in lines[-1]


def test_a_preempted_trial_goes_back_to_the_queue_with_its_parameters(tmp_path):
    sc = study_config(tmp_path, n_trials=2)
    study = storage.open_study(sc, Config())

    def preempted(t):
        t.suggest_float("x", 0, 1)
        t.set_user_attr("preempted", "SIGTERM")
        raise Preempted("SIGTERM")

    with pytest.raises(Preempted):
        workers.run_worker(study, preempted, sc, 0.0, log=lambda s: None)
    first, queued = study.get_trials()
    assert queued.state.name == "WAITING" and queued.params == first.params
    assert queued.system_attrs["failed_trial"] == first.number


def test_cv_summary_is_the_mean_and_sample_spread_of_the_folds():
    results = [trial.FoldResult(0, {"val_genic_f1": 0.5}, np.zeros((4, 4)), 1.0),
               trial.FoldResult(1, {"val_genic_f1": 0.7}, np.zeros((4, 4)), 1.0)]
    summary = trial.cv_summary(results)
    assert summary["cv_genic_f1_mean"] == pytest.approx(0.6)
    assert summary["cv_genic_f1_std"] == pytest.approx(np.std([0.5, 0.7], ddof=1))
    assert trial.describe({"hidden_size": 16, "lr": 0.0123}) == "h=16 lr=0.0123"


@pytest.fixture
def local_mlflow(tmp_path):
    import mlflow

    before = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db")
    yield
    mlflow.set_tracking_uri(before)


def stub_context(tmp_path, sc, scores, monkeypatch):
    """A TrialContext whose folds return fixed scores instead of training."""
    from dga import tracking
    from dga.training.distributed import DistInfo

    calls = []

    def fold(ctx, cfg, ckpt_dir, tags):
        calls.append((cfg.fold, cfg.hidden_size))
        cm = np.diag([10, 10, 10, 10])
        return trial.FoldResult(cfg.fold, {"val_genic_f1": scores[cfg.fold], "val_accuracy": 1.0}, cm, 1.0)

    monkeypatch.setattr(trial, "_fold_in_process", fold)

    class Store:
        checksum = "0" * 16

    class Splits:
        fold_names: list = []

    ctx = trial.TrialContext(sc, Config(), Store(), Splits(), DistInfo(), tracking.experiment_id("unit"),
                             tmp_path / "ckpt", [0, 1], log=lambda s: None)
    return ctx, calls


def test_the_objective_averages_its_folds_and_refuses_a_configuration_already_complete(tmp_path, monkeypatch,
                                                                                           local_mlflow):
    sc = study_config(tmp_path, space=(ParamSpec("hidden_size", "categorical", choices=(8,)),))
    ctx, calls = stub_context(tmp_path, sc, {0: 0.4, 1: 0.6}, monkeypatch)
    study = storage.open_study(sc, Config())
    objective = trial.make_objective(ctx)
    study.optimize(objective, n_trials=1)
    assert study.best_value == pytest.approx(0.5) and calls == [(0, 8), (1, 8)]
    assert study.best_trial.user_attrs["cv"]["cv_genic_f1_mean"] == pytest.approx(0.5)
    study.optimize(objective, n_trials=1, catch=(Exception,))  # the same (only) configuration again
    again = study.get_trials()[-1]
    assert again.state.name == "FAIL" and again.user_attrs["duplicate_of"] == 0 and len(calls) == 2


def test_the_ui_links_list_a_studys_trials_best_first_and_tag_it_as_training(tmp_path):
    import json
    from urllib.parse import unquote

    from mlflow import MlflowClient

    from dga.search.views import study_views, view_lines

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    c = MlflowClient(uri)
    exp = c.create_experiment("s")
    ids = {}
    for name, score in (("trial-000", 0.50), ("trial-001", 0.56), ("trial-002", 0.53)):
        run = c.create_run(exp, run_name=name, tags={"dga.kind": "trial", "dga.objective": "genic_f1"})
        c.log_metric(run.info.run_id, "cv_genic_f1_mean", score)
        ids[name] = run.info.run_id
    c.create_run(exp, run_name="trial-001-fold-0", tags={"dga.kind": "fold"})  # not a trial
    c.create_experiment("no trials")
    (view,) = study_views("http://h:1", uri)
    assert view.trials == 3 and view.best == "trial-001 0.5600" and view.metric == "cv_genic_f1_mean"
    runs = json.loads(unquote(view.compare_url.split("runs=")[1].split("&")[0]))
    assert runs == [ids["trial-001"], ids["trial-002"], ids["trial-000"]]
    assert "searchFilter=tags.`dga.kind` = 'trial'" in unquote(view.runs_url)
    assert "orderByKey=metrics.`cv_genic_f1_mean`&orderByAsc=false" in unquote(view.runs_url)
    assert c.get_experiment(exp).tags["mlflow.experimentKind"] == "custom_model_development"
    assert view_lines([view])[0] == "study 's': 3 trials, best trial-001 0.5600 (cv_genic_f1_mean)"
