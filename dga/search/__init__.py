"""The Optuna study: experiment file, trial objective over CV folds, workers, storage, summary."""
