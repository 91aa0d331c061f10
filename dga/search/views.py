"""Where a user compares a study's trials in the MLflow UI: the links `dga ui` prints.

For every experiment holding trial runs: its runs table filtered to the trials and sorted by the
CV score (best first), and MLflow's own comparison view of those trials in the same order (the
searched parameters as rows, the CV mean, spread and per-fold scores below them). Experiments
made before DGA tagged them as model training get the tag, so the UI opens them on their runs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from urllib.parse import quote

from dga.tracking import EXPERIMENT_KIND, TRAINING_KIND

TRIALS = "tags.`dga.kind` = 'trial'"


@dataclass(frozen=True)
class StudyView:
    """The links to one experiment's trials."""

    experiment: str
    trials: int
    metric: str
    best: str  # the best trial's run name and score
    runs_url: str
    compare_url: str


def study_views(base: str, tracking_uri: str, limit: int = 100) -> list[StudyView]:
    """The trial views of every experiment with trials in the store at `tracking_uri`, for a UI at
    `base` (e.g. http://127.0.0.1:5000); at most `limit` trials in a comparison (its best)."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri)
    views = []
    for exp in client.search_experiments():
        runs = client.search_runs([exp.experiment_id], TRIALS, max_results=5000)
        if not runs:
            continue
        if exp.tags.get(EXPERIMENT_KIND) != TRAINING_KIND:
            client.set_experiment_tag(exp.experiment_id, EXPERIMENT_KIND, TRAINING_KIND)
        objective = next((r.data.tags["dga.objective"] for r in runs if "dga.objective" in r.data.tags), "genic_f1")
        metric = f"cv_{objective}_mean"
        scored = sorted((r for r in runs if metric in r.data.metrics), key=lambda r: -r.data.metrics[metric])
        if not scored:
            continue
        ids = [r.info.run_id for r in scored[:limit]]
        runs_url = (f"{base}/#/experiments/{exp.experiment_id}/runs?searchFilter={quote(TRIALS)}"
                    f"&orderByKey={quote(f'metrics.`{metric}`')}&orderByAsc=false")
        compare_url = (f"{base}/#/compare-runs?runs={quote(json.dumps(ids))}"
                       f"&experiments={quote(json.dumps([exp.experiment_id]))}")
        top = scored[0]
        views.append(StudyView(exp.name, len(runs), metric, f"{top.info.run_name} {top.data.metrics[metric]:.4f}",
                               runs_url, compare_url))
    return views


def view_lines(views: list[StudyView]) -> list[str]:
    """The views as the lines `dga ui` prints."""
    lines = []
    for v in views:
        lines += [f"study {v.experiment!r}: {v.trials} trials, best {v.best} ({v.metric})",
                  f"  trials by CV score:   {v.runs_url}",
                  f"  compare the trials:   {v.compare_url}"]
    return lines
