"""Put the resolved config and the MLflow run id into every checkpoint, so a checkpoint stands on its own."""

from __future__ import annotations

from typing import Any

import lightning as L

from explab.checkpoints import CHECKPOINT_KEY


class RecordInCheckpoint(L.Callback):
    """Stores plain data only (dicts, strings), so checkpoints still load with ``weights_only=True``."""

    def __init__(self, config: dict[str, Any], run_id: str | None) -> None:
        self.config = config
        self.run_id = run_id

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        checkpoint[CHECKPOINT_KEY] = {"config": self.config, "mlflow_run_id": self.run_id}
