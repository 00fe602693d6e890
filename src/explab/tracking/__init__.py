"""MLflow tracking: the run lifecycle, what goes into a run's record, and the Lightning logger bridge."""

from explab.tracking.run import TrackedRun, is_trial_pruned, run_lifecycle, run_status_for

__all__ = ["TrackedRun", "is_trial_pruned", "run_lifecycle", "run_status_for"]
