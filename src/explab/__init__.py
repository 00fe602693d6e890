"""explab: Hydra-composed experiments trained with Lightning, tracked in MLflow, swept with Optuna."""

__version__ = "0.1.0"
