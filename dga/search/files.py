"""Where a study keeps its files on disk: its trials' fold checkpoints and fold-model bundles, and
its final model's. Shared by the search (which writes them) and registration / decoder tuning
(which read them), so neither has to import the other."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import optuna

from pathlib import Path

from dga.config import Config


def study_checkpoint_root(cfg: Config, study_name: str) -> Path:
    """The study's folder: `<checkpoint_dir or checkpoints>/studies/<study>`."""
    return Path(cfg.checkpoint_dir or "checkpoints") / "studies" / study_name


def fold_checkpoint_dir(root: Path, origin: int, fold: int) -> Path:
    """A trial's fold folder (a re-queued trial resumes its origin's folders)."""
    return root / f"trial-{origin:04d}" / f"fold-{fold}"


def fold_bundles(trial: "optuna.trial.FrozenTrial", base: Config, study_name: str) -> list[Path]:
    """The bundle folders of a trial's fold models (written by cross-validation), by fold."""
    origin = trial.system_attrs.get("failed_trial", trial.number)
    root = study_checkpoint_root(base, study_name) / f"trial-{origin:04d}"
    return sorted(root.glob("fold-*/bundle"), key=lambda p: int(p.parent.name.split("-")[1]))
