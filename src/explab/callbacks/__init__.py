"""Callbacks explab always installs, beside the configurable ones in ``conf/callbacks``."""

from explab.callbacks.finite_loss import NonFiniteLossError, NonFiniteLossGuard
from explab.callbacks.last_checkpoint import LastCheckpoint
from explab.callbacks.record import RecordInCheckpoint
from explab.callbacks.resume import ResumedTraining
from explab.callbacks.stock import EarlyStopping, ModelCheckpoint
from explab.callbacks.timing import EpochTimer

__all__ = [
    "EarlyStopping",
    "EpochTimer",
    "LastCheckpoint",
    "ModelCheckpoint",
    "NonFiniteLossError",
    "NonFiniteLossGuard",
    "RecordInCheckpoint",
    "ResumedTraining",
]
