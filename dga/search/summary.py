"""After the trials: the trial table, the all-intergenic floor, and the `study-summary` MLflow run
with Optuna's plots."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import optuna

    from dga.data.store import Store
    from dga.data.windows import Splits

import warnings

import numpy as np

from dga.evaluation.metrics import metrics_from_confusion
from dga.labels import N_CLASSES, Label
from dga.search.space import SearchConfig
from dga.search.trial import describe


def all_intergenic_cv(store: "Store", splits: "Splits", folds: list[int], labels: str) -> dict[str, float]:
    """CV metrics of calling every base intergenic, on the same folds (the floor any model must beat)."""
    offsets = {s["id"]: s["offset"] for s in store.seqids}
    tracks = ["label"] if labels == "merged" else ["label_plus", "label_minus"]
    per_fold = []
    for fold in folds:
        cm = np.zeros((N_CLASSES, N_CLASSES), dtype=np.int64)
        for name in tracks:
            lab = store.track(name)
            for r in splits.validation(fold):
                o = offsets[r.seqid]
                cm[:, Label.INTERGENIC] += np.bincount(lab[o + r.start: o + r.end], minlength=N_CLASSES)
        per_fold.append(metrics_from_confusion(cm))
    return {k: float(np.mean([m[k] for m in per_fold])) for k in per_fold[0]}


def trial_table(study: "optuna.Study") -> list[dict]:
    rows = []
    for t in study.get_trials(deepcopy=False):
        overrides = {**t.user_attrs.get("overrides", {}), **t.params}
        cv = t.user_attrs.get("cv", {})
        rows.append({"trial": t.number, "state": t.state.name, "value": t.value,
                     "baseline": t.user_attrs.get("baseline", ""), "params": overrides,
                     "folds": int(len(t.intermediate_values)), "seconds": (t.duration.total_seconds()
                                                                           if t.duration else None),
                     "cv": cv, "fail_reason": t.user_attrs.get("fail_reason", "")})
    return rows


def format_table(rows: list[dict], objective: str) -> str:
    lines = [f"{'trial':>5}  {'state':<8} {'CV ' + objective:>15}  {'folds':>5}  {'seconds':>7}  params"]
    for r in rows:
        value = "" if r["value"] is None else f"{r['value']:.4f}"
        if r["state"] == "PRUNED" and r["cv"]:
            value = f"({r['cv'].get(f'cv_{objective}_mean', float('nan')):.4f})"
        secs = "" if r["seconds"] is None else f"{r['seconds']:.0f}"
        extra = f"[{r['baseline']}] " if r["baseline"] else ""
        why = f"  ({r['fail_reason'][:60]})" if r["fail_reason"] else ""
        lines.append(f"{r['trial']:>5}  {r['state']:<8} {value:>15}  {r['folds']:>5}  {secs:>7}  "
                     f"{extra}{describe(r['params'])}{why}")
    return "\n".join(lines)


def log_study_summary(study: "optuna.Study", sc: SearchConfig, experiment_id: str, baseline: dict[str, float]) -> str:
    """(Re)write the `study-summary` run: Optuna's plots, the trial table, best score and baselines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import mlflow
    from optuna.exceptions import ExperimentalWarning
    from optuna.trial import TrialState
    from optuna.visualization import matplotlib as ovm

    client = mlflow.MlflowClient()
    existing = client.search_runs([experiment_id], "tags.`dga.kind` = 'study_summary'", max_results=1)
    run_id = existing[0].info.run_id if existing else None
    rows = trial_table(study)
    states = [r["state"] for r in rows]
    with mlflow.start_run(run_id=run_id, experiment_id=None if run_id else experiment_id,
                          run_name=None if run_id else "study-summary",
                          tags=None if run_id else {"dga.kind": "study_summary", "optuna_study": sc.study_name}) as run:
        mlflow.log_dict({"search": sc.to_dict(), "trials": rows}, "trials.json")
        mlflow.log_text(format_table(rows, sc.objective), "trials.txt")
        metrics = {f"n_{s.lower()}": float(states.count(s)) for s in ("COMPLETE", "PRUNED", "FAIL")}
        metrics.update({f"all_intergenic_cv_{k}": v for k, v in baseline.items()})
        complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if complete:
            metrics[f"best_cv_{sc.objective}"] = float(study.best_value)
            mlflow.set_tag("best_trial", str(study.best_trial.number))
        mlflow.log_metrics(metrics)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ExperimentalWarning)
            warnings.simplefilter("ignore", UserWarning)  # "few trials per regime" notes of importance plots
            for name, plot in (("optimization_history", ovm.plot_optimization_history),
                               ("param_importances", ovm.plot_param_importances),
                               ("parallel_coordinate", ovm.plot_parallel_coordinate),
                               ("intermediate_values", ovm.plot_intermediate_values)):
                try:
                    ax = plot(study)
                except (ValueError, RuntimeError, ZeroDivisionError) as exc:
                    print(f"(plot {name} skipped: {exc})")
                    continue
                axes = ax if isinstance(ax, np.ndarray) else np.array([ax])
                fig = axes.ravel()[0].figure
                fig.set_size_inches(10, 6)
                fig.tight_layout()
                mlflow.log_figure(fig, f"optuna/{name}.png")
                plt.close(fig)
        return run.info.run_id
