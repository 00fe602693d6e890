"""RunLogger against a real SQLite MLflow store: values held and written in batches, none twice at a step."""

from __future__ import annotations

from pathlib import Path

from mlflow.tracking import MlflowClient

from explab.tracking.logger import RunLogger
from tests.conftest import tracking_uri_for


def test_a_value_handed_over_again_at_a_step_already_written_is_not_written_twice(tmp_path: Path) -> None:
    """Lightning hands ``epoch`` over with an epoch's validation values and again with its training values; a
    write between the two (the flush timer, before the first last.ckpt) wrote it twice at that step."""
    uri = tracking_uri_for(tmp_path / "mlruns")
    client = MlflowClient(uri)
    run = client.create_run(client.create_experiment("logged"))
    logger = RunLogger(tracking_uri=uri, run_id=run.info.run_id, flush_seconds=3600)
    logger.log_metrics({"val/acc": 0.5, "epoch": 0}, step=9)
    logger.flush()
    logger.log_metrics({"train/loss": 0.7, "epoch": 0}, step=9)
    logger.log_metrics({"epoch": 1}, step=19)
    logger.finalize()
    history = {
        key: [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, key)]
        for key in ("epoch", "val/acc", "train/loss")
    }
    assert history == {"epoch": [(9, 0.0), (19, 1.0)], "val/acc": [(9, 0.5)], "train/loss": [(9, 0.7)]}
