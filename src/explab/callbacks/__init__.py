"""Callbacks explab always installs, beside the configurable ones in ``conf/callbacks``."""

from explab.callbacks.finite_loss import NonFiniteLossError, NonFiniteLossGuard
from explab.callbacks.record import RecordInCheckpoint

__all__ = ["NonFiniteLossError", "NonFiniteLossGuard", "RecordInCheckpoint"]
