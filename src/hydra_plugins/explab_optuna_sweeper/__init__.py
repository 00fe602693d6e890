"""explab's Optuna sweeper for Hydra: ask/tell, pruning, resume, parallel workers, MLflow parent runs."""
