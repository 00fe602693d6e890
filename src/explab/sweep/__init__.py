"""What sweeps need: opening Optuna storages and studies, search spaces, pruning, the sweep's summary."""
