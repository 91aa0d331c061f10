"""The best configuration of a study -> one model on all non-test data -> test-region metrics ->
MLflow Model Registry `dga-<dataset>`, alias `champion` moved only on a better CV score.

Why retrain rather than keep the k fold models as an ensemble: one model on all non-test data
sees k/(k-1) times the training data of any fold model and predicts k times faster; the fold
models' CV score is the estimate of how well this configuration generalises, which is what the
champion comparison uses.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from dga.config import OBJECTIVES, Config
from dga.errors import InputError
from dga.redact import redact
from dga.search.space import SearchConfig

if TYPE_CHECKING:
    import optuna

    from dga.data.store import Store
    from dga.data.windows import Splits
    from dga.lifecycle.heldout import Judgement
    from dga.training.distributed import DistInfo

ALIAS = "champion"


def model_name(cfg: Config, store: "Store") -> str:
    return f"dga-{cfg.dataset or store.manifest.get('dataset') or store.path.name}"


def registered_version_of(name: str, study: str, trial: int) -> str | None:
    """The version of `name` registered from this study's trial, if there is one."""
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        versions = mlflow.MlflowClient().search_model_versions(f"name = '{name}'")
    except MlflowException:
        return None
    for mv in versions:
        if mv.tags.get("optuna_study") == study and mv.tags.get("optuna_trial") == str(trial):
            return str(mv.version)
    return None


def promote_if_better(name: str, version: str, objective: str, score: float) -> tuple[bool, float | None, str | None]:
    """Move the `champion` alias to `version` if its CV score beats the current champion's.

    Returns (moved, champion's score or None, champion's version or None)."""
    import mlflow
    from mlflow.exceptions import MlflowException

    client = mlflow.MlflowClient()
    try:
        champ = client.get_model_version_by_alias(name, ALIAS)
    except MlflowException:
        champ = None
    if champ is None:
        client.set_registered_model_alias(name, ALIAS, version)
        return True, None, None
    old = champ.tags.get(f"cv_{objective}")
    if old is None:  # scored on another objective only: not comparable, keep it
        return False, None, str(champ.version)
    if score > float(old):
        client.set_registered_model_alias(name, ALIAS, version)
        return True, float(old), str(champ.version)
    return False, float(old), str(champ.version)


def register_model_version(model_uri: str, name: str, tags: dict[str, str], description: str = "") -> str:
    import mlflow

    mv = mlflow.register_model(model_uri, name, tags=tags)
    if description:
        mlflow.MlflowClient().update_model_version(name, mv.version, description=description)
    return mv.version


def cv_record(study: "optuna.Study", trial: "optuna.trial.FrozenTrial", sc: "SearchConfig",
              fold_models: list, splits: "Splits | None" = None) -> dict:
    """The study's part of a bundle's provenance: which trial, its CV mean and spread, each fold."""
    from optuna.trial import TrialState

    cv = trial.user_attrs.get("cv", {})
    assert trial.value is not None  # a COMPLETE trial
    per_fold = [{"fold": b.config.fold, **({"name": splits.fold_name(b.config.fold)} if splits is not None and
                                           splits.fold_names else {}),
                 **{k[4:]: v for k, v in b.provenance.get("training", {})
                                          .get("validation", {}).items() if k.startswith("val_")}}
                for b in fold_models]
    states = [t.state for t in study.get_trials(deepcopy=False)]
    return {"name": sc.study_name, "trial": trial.number, "objective": sc.objective,
            "cv_mean": float(trial.value), "cv_std": cv.get(f"cv_{sc.objective}_std"),
            "n_folds": len(per_fold), "folds": per_fold, "params": dict(trial.params),
            "baseline": trial.user_attrs.get("baseline"),
            "experiment_file": study.user_attrs.get("experiment_file", ""),
            "trials_complete": states.count(TrialState.COMPLETE), "trials_pruned": states.count(TrialState.PRUNED),
            "trials_failed": states.count(TrialState.FAIL),
            "space": study.user_attrs.get("search", {}).get("space", [])}


def next_steps(name: str, cfg: Config) -> str:
    """Commands that use the champion, runnable as printed from any directory of a fresh shell."""
    import shlex

    import mlflow

    uri = f"MLFLOW_TRACKING_URI={shlex.quote(redact(mlflow.get_tracking_uri()))}"
    from dga.data.prepare import genome_from_arg
    from dga.data.sources import SOURCES, resolve

    fasta = ""
    if cfg.fasta:
        fasta = str(Path(cfg.fasta).resolve())
    elif cfg.genomes:  # several genomes: the first one's FASTA
        fasta = str(Path(genome_from_arg(cfg.genome_args[0]).fasta).resolve())
    elif cfg.dataset in SOURCES:
        fasta = str(resolve(cfg.dataset)[0])
    py = f"import dga.api as dga; m = dga.load('models:/{name}@{ALIAS}'); print(m.source, m.config.hidden_size)"
    python, dga_cmd = _commands()
    return ("use it (from any directory, in any shell):\n"
            f"  {uri} {dga_cmd} predict {shlex.quote(fasta or 'genome.fa')} --model models:/{name}@{ALIAS} "
            f"-o champion.gff3\n"
            f"  {uri} {python} -c {shlex.quote(py)}")


def _commands() -> tuple[str, str]:
    """(python, dga) as full paths of this installation's interpreter and command: a fresh shell
    has neither its virtual environment on PATH nor `dga` installed elsewhere."""
    import shlex
    import sys

    python = Path(sys.executable).absolute()  # not resolved: a venv's python is a link that selects the venv
    script = python.parent / "dga"
    dga_cmd = shlex.quote(str(script)) if script.is_file() else f"{shlex.quote(str(python))} -m dga.cli"
    return shlex.quote(str(python)), dga_cmd


def register_study(study_name: str, storage: str | None = None) -> int:
    """`dga register STUDY` (and `dga search` once its trials are done): the study's search settings
    come from its storage; its best configuration is made into a model and registered."""
    from dga import tracking
    from dga.search.storage import open_study

    tracking.setup()
    sc = SearchConfig(study_name=study_name, storage=storage or "")
    study = open_study(sc, create=False)
    saved = study.user_attrs.get("search", {})
    if "base_config" not in study.user_attrs:
        raise InputError(None, f"study {study_name!r} in {redact(sc.storage_url())} was not created by `dga search`")
    sc = replace(sc, objective=saved.get("objective", sc.objective), experiment=saved.get("experiment", ""),
                 decoder_trials=saved.get("decoder_trials", sc.decoder_trials),
                 decoder_bases=saved.get("decoder_bases", sc.decoder_bases),
                 decoder_objective=saved.get("decoder_objective", sc.decoder_objective),
                 sampler_seed=saved.get("sampler_seed", 0),
                 held_out_genomes=tuple(saved.get("held_out_genomes", ())))
    register_best(study, sc)
    return 0


def final_config(study: "optuna.Study", trial: "optuna.trial.FrozenTrial", sc: SearchConfig) -> tuple[Config, Config]:
    """(the study's base config, the trial's config for all non-test data)."""
    from dga.config import load_config

    base = load_config(None, study.user_attrs["base_config"])
    overrides = {**trial.user_attrs.get("overrides", {}), **trial.params}
    cfg = replace(load_config(None, {**base.to_dict(), **overrides}), fold=-1, log_model=True,
                  run_name=f"{sc.study_name}-trial-{trial.number:03d}-final")
    return base, cfg


def register_best(study: "optuna.Study", sc: SearchConfig, *, dist: "DistInfo | None" = None,
                  store: "Store | None" = None, splits: "Splits | None" = None) -> dict:
    """Make the study's best configuration into a model (`make_model`: retrained on all non-test
    data, tested once, its decoder tuned on the trial's fold models' validation folds) and register it."""
    from dga.data.windows import splits_for
    from dga.search.storage import budget_lock
    from dga.training.distributed import setup_distributed, store_for_config

    best = study.best_trial
    assert best.value is not None  # best_trial is a COMPLETE trial
    base, cfg = final_config(study, best, sc)
    dist = dist or setup_distributed(cfg.device, cfg.threads)
    store = store or store_for_config(cfg, dist)
    splits = splits or splits_for(store, cfg)
    name = model_name(cfg, store)
    # one registration of a trial at a time: a second `dga register` (or a second search process ending)
    # waits here, then finds the version registered
    with budget_lock(sc.storage_url(), sc.study_name, purpose="register"):
        existing = registered_version_of(name, sc.study_name, best.number)
        if existing is not None:
            print(f"\ntrial {best.number} of study {sc.study_name!r} is registered already as {name} v{existing}: "
                  f"nothing to do (the champion alias stays where it is)")
            return {"name": name, "version": existing, "moved": False, "score": float(best.value)}
        made, version, moved, old, old_version, judgement = _make_and_register(study, sc, base, cfg, dist, store,
                                                                               splits, name)
    assert made.test is not None and made.bundle is not None
    test, score = made.test, float(best.value)
    print(f"test region ({sum(len(r) for r in splits.test):,} bases): genic F1 {test['test_genic_f1']:.4f}, "
          f"sub-genic F1 {test['test_subgenic_f1']:.4f}, macro F1 {test['test_macro_f1']:.4f}, "
          f"accuracy {test['test_accuracy']:.4f}")
    print(f"registry: {_decision(name, sc.objective, score, version, moved, old, old_version)}")
    print(next_steps(name, cfg))
    if judgement is not None:  # the last lines: what a user reads first
        from dga.lifecycle.heldout import format_judgement

        print(format_judgement(judgement))
    return {"name": name, "version": version, "moved": moved, "previous_score": old, "score": score,
            "test": test, "confusion": np.asarray(made.test_confusion).tolist(), "bundle": str(made.bundle),
            "held_out": judgement.to_dict() if judgement is not None else None}


def _make_and_register(study, sc: SearchConfig, base: Config, cfg: Config, dist, store, splits, name: str):
    """Inside the registration lock: the trial's fold models, `make_model` in the final MLflow run, and
    the registered version."""
    import mlflow

    import dga.bundle as bundle_io
    from dga import tracking
    from dga.lifecycle.pipeline import ModelJob, Tuning, make_model
    from dga.search.files import fold_bundles, study_checkpoint_root

    best = study.best_trial
    folds = [bundle_io.read(p) for p in fold_bundles(best, base, sc.study_name)]
    if not folds:
        raise InputError(None, f"trial {best.number}'s fold models are missing under "
                               f"{study_checkpoint_root(base, sc.study_name)}: the decoder cannot be tuned on its CV "
                               f"folds (run `dga register` where the study's checkpoints are)")
    score = float(best.value)
    print(f"\nregistering trial {best.number} (CV {sc.objective} {score:.4f}): retraining on all non-test data "
          f"({cfg.epochs} epochs), tuning the decoder on its {len(folds)} fold model(s), then one evaluation on "
          f"the held-out test region", flush=True)
    tags = {"optuna_study": sc.study_name, "optuna_trial": str(best.number), "dga.kind": "final",
            "store_checksum": store.checksum}
    experiment_id = tracking.experiment_id(sc.mlflow_experiment)
    for run_id in tracking.end_orphaned_runs(experiment_id, {k: tags[k] for k in ("optuna_study", "optuna_trial",
                                                                                 "dga.kind")}):
        print(f"MLflow run {run_id} of an earlier registration of this trial, whose process was killed: ended as "
              f"KILLED")
    with mlflow.start_run(experiment_id=experiment_id, run_name=cfg.run_name, tags=tags) as run:
        mlflow.log_params(cfg.to_dict())
        mlflow.set_tags(tracking.run_tags(str(dist.device), dist.world_size, store.checksum))
        tracking.log_store_input(store)
        job = ModelJob(cfg, store, splits, dist, study_checkpoint_root(base, sc.study_name) /
                       f"final-trial-{best.number:04d}", resume=True, test=True,
                       tuning=Tuning(folds, sc.decoder_trials, sc.decoder_bases, sc.sampler_seed, sc.decoder_objective),
                       provenance={"study": cv_record(study, best, sc, folds, splits),
                                   "mlflow": {"run_id": run.info.run_id, "experiment": sc.mlflow_experiment}},
                       on_epoch=tracking.log_epoch, log=lambda s: print(s, flush=True))
        made = make_model(job)
        judgement = None
        if sc.held_out_genomes:
            assert made.bundle is not None
            judgement = judge_held_out(study, sc, made.bundle, dist, store, splits)
            mlflow.log_dict(judgement.to_dict(), "held_out.json")
        version, moved, old, old_version = _log_and_register(made, study, sc, cfg, store, name, tags, len(folds),
                                                             judgement)
    return made, version, moved, old, old_version, judgement


def judge_held_out(study: "optuna.Study", sc: SearchConfig, champion: Path, dist, store: "Store",
                   splits: "Splits") -> "Judgement":
    """The champion and every completed baseline configuration (made the same way: retrained on all
    non-test data, decoder tuned on its own fold models) on the study's held-out genomes."""
    from optuna.trial import TrialState

    from dga.lifecycle.heldout import held_out_inputs, judge

    base = final_config(study, study.best_trial, sc)[0]
    genomes = held_out_inputs(sc.held_out_genomes, base)
    models = [("champion", f"champion (trial {study.best_trial.number})", champion)]
    for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        if trial.user_attrs.get("baseline") and trial.number != study.best_trial.number:
            name = str(trial.user_attrs["baseline"])
            models.append((re.sub(r"\W+", "_", name), f"{name} (trial {trial.number})",
                           baseline_model(study, sc, trial, dist, store, splits)))
    return judge(models, genomes, log=lambda s: print(s, flush=True))


def baseline_model(study: "optuna.Study", sc: SearchConfig, trial: "optuna.trial.FrozenTrial", dist,
                   store: "Store", splits: "Splits") -> Path:
    """A baseline trial's configuration made as the champion is (not registered): its bundle folder."""
    import dga.bundle as bundle_io
    from dga.lifecycle.pipeline import ModelJob, Tuning, make_model
    from dga.search.files import fold_bundles, study_checkpoint_root

    base, cfg = final_config(study, trial, sc)
    folds = [bundle_io.read(p) for p in fold_bundles(trial, base, sc.study_name)]
    print(f"making baseline {trial.user_attrs['baseline']!r} (trial {trial.number}) as the champion was made, "
          f"to judge both on the held-out genomes", flush=True)
    folder = study_checkpoint_root(base, sc.study_name) / f"final-trial-{trial.number:04d}"
    tuning = (Tuning(folds, sc.decoder_trials, sc.decoder_bases, sc.sampler_seed, sc.decoder_objective)
              if folds else None)
    job = ModelJob(cfg, store, splits, dist, folder, resume=True, tuning=tuning, log=lambda s: print(s, flush=True))
    made = make_model(job)
    assert made.bundle is not None  # registration runs on rank 0
    return made.bundle


def _log_and_register(made, study, sc: SearchConfig, cfg: Config, store: "Store", name: str, tags: dict,
                      n_folds: int, judgement: "Judgement | None" = None) -> tuple[str, bool, float | None, str | None]:
    """Inside the final run: log what `make_model` made, register its bundle, maybe move the alias."""
    import mlflow

    import dga.bundle as bundle_io
    from dga import tracking
    from dga.training.teacher import lineage_tags

    best, result, test, dec = study.best_trial, made.result, made.test, made.decoder
    cv = best.user_attrs.get("cv", {})
    score = float(best.value)
    tracking.log_curves(result.history)
    mlflow.log_metrics({**test, **cv, "train_seconds": result.train_seconds})
    mlflow.log_param("n_parameters", result.n_parameters)
    tracking.log_confusion(made.test_confusion, "test_confusion", f"held-out test region, trial {best.number} "
                                                                  f"retrained")
    mlflow.log_metrics({"decoder_objective": dec["value"], "decoder_objective_defaults": dec["start_value"],
                        "decoder_tuning_seconds": dec["seconds"]})
    shipped = bundle_io.read(made.bundle)  # read (and verified) once: its decoder and weights' checksum
    mlflow.log_dict(shipped.decoder, "decoder.json")
    model_uri = tracking.log_bundle(bundle_io.files(made.bundle))
    run = mlflow.active_run()
    assert run is not None  # called inside the final run
    run_id = run.info.run_id
    mv_tags = {**tags, "config": json.dumps(cfg.to_dict(), sort_keys=True), "cv_objective": sc.objective,
               "cv_score": repr(score), "cv_std": f"{cv.get(f'cv_{sc.objective}_std', float('nan')):.6f}",
               "cv_folds": str(n_folds), "n_parameters": str(result.n_parameters), "run_id": run_id,
               "decoder_tuned_on": ", ".join(dec["regions"]),
               "weights_sha256": shipped.weights_sha256,  # checked whenever it is loaded
               "inputs": json.dumps(store.manifest.get("inputs", {}), sort_keys=True)}
    # full precision: the champion comparison reads these back and must not see a rounded score
    mv_tags.update({f"cv_{o}": repr(float(cv[f"cv_{o}_mean"])) for o in OBJECTIVES if f"cv_{o}_mean" in cv})
    mv_tags[f"cv_{sc.objective}"] = repr(score)
    mv_tags.update({k: f"{v:.6f}" for k, v in test.items()})
    if judgement is not None:  # the champion's and the floor's scores on the held-out genomes
        held = {**judgement.rows[0].as_metrics("held_out"), "held_out_floor_accuracy": judgement.floor_accuracy}
        mlflow.log_metrics({**held, **{k: v for r in judgement.rows[1:] for k, v in
                                       r.as_metrics(f"held_out_{r.key}").items()}})
        mv_tags.update({k: f"{v:.6f}" for k, v in held.items()})
        mv_tags["held_out_genomes"] = ", ".join(judgement.genomes)
    lineage = lineage_tags(result.parent, result.teacher)
    mv_tags.update(lineage)
    mlflow.set_tags(lineage)
    description = (f"Study {sc.study_name!r}, trial {best.number}: CV {sc.objective} {score:.4f} over "
                   f"{n_folds} folds; retrained on all non-test data; decoder tuned on the trial's fold "
                   f"models ({dec['objective']} {dec['value']:.4f}); test genic F1 (before decoding) "
                   f"{test['test_genic_f1']:.4f}.")
    version = register_model_version(model_uri, name, mv_tags, description)
    moved, old, old_version = promote_if_better(name, version, sc.objective, score)
    return version, moved, old, old_version


def _decision(name: str, objective: str, score: float, version: str, moved: bool, old: float | None,
              old_version: str | None) -> str:
    if moved and old_version is None:
        return f"no champion yet: {name} v{version} is now @{ALIAS}"
    if moved:
        return f"CV {objective} {score:.4f} > champion v{old_version}'s {old:.4f}: v{version} is now @{ALIAS}"
    if old is None:
        return (f"champion v{old_version} has no CV {objective} to compare with: it stays @{ALIAS}; "
                f"v{version} registered without the alias")
    return (f"CV {objective} {score:.4f} <= champion v{old_version}'s {old:.4f}: champion stays; "
            f"v{version} registered without the alias")
