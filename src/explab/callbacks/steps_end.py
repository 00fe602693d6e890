"""Validation of the steps a fit trains after its last validation when ``trainer.max_steps`` ends it mid-epoch."""

from __future__ import annotations

from typing import Any

import lightning as L

from explab.callbacks.stock import StateKeyOnce


class ValidateWhereStepsEnd(StateKeyOnce, L.Callback):
    """Asks the fit to stop at its ``trainer.max_steps``-th optimizer step, so that Lightning validates there.

    Lightning validates at an epoch's end (or every ``val_check_interval``) and when a callback stops the fit,
    but not when ``max_steps`` ends it inside an epoch: the steps trained since the last validation go
    unvalidated. A fit shorter than one epoch then never validates (an ``EarlyStopping`` on a ``val/`` metric
    fails the run, and no best checkpoint exists), and a longer one tests the weights of its last epoch's end
    rather than those it trained to. Every rank reaches the step at once, so they all stop together.
    """

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any, **kwargs: Any) -> None:
        if trainer.global_step >= trainer.max_steps:
            # Lightning validates a stop only once min_epochs is met (explab's trainers ask for 1), but max_steps
            # ends the fit here whatever min_epochs says
            trainer.fit_loop.min_epochs = None
            trainer.should_stop = True
