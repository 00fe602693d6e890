"""How a run's outcome maps to its MLflow status."""

from __future__ import annotations

from explab.tracking.run import run_status_for


def test_run_status_mapping() -> None:
    assert run_status_for(None) == "FINISHED"
    assert run_status_for(KeyboardInterrupt()) == "KILLED"
    assert run_status_for(SystemExit(1)) == "KILLED"
    assert run_status_for(ValueError()) == "FAILED"
