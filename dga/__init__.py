"""DGA: deep genome annotation. Importing the package imports nothing heavy (no torch, mlflow, optuna)."""

__version__ = "0.1.0"
