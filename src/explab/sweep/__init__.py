"""What sweeps need: opening Optuna storages and studies, search spaces, pruning, the sweep's summary."""

# a trial whose sampled values repeat a COMPLETE trial's: told that trial's value (its number here), not trained
REPEATS_ATTR = "explab.repeats_trial"
