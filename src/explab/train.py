"""``explab-train``: compose an experiment, fit and test it, record it in MLflow, return its metrics.

``train(cfg)`` is the whole job and is what sweeps call; ``main`` is the thin Hydra entry point.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable

import hydra
from omegaconf import DictConfig

from explab.cli import report_user_errors
from explab.config import config_dir, paths_from_launch_folder
from explab.errors import UsageError


def train(cfg: DictConfig) -> dict[str, float]:
    """Fit the model described by ``cfg``, test its best checkpoint, and return every final metric.

    Values are checked before the run exists; from then on its lifecycle ends it FINISHED, FAILED or KILLED.
    """
    # imported here, not above: Lightning and torch take seconds to import, and `--help`, `--cfg job` and a
    # mistyped override are answered by Hydra before the job runs
    from explab.build import build_job
    from explab.compiled import compiled_for_this_run
    from explab.fit import fit_and_test
    from explab.machine_checks import check_machine, check_output_folder_free
    from explab.memory import memory_named
    from explab.precision import float32_matmul
    from explab.sweep.trial import TrialJob
    from explab.tracking import TrackedRun, run_lifecycle
    from explab.tracking.record import announce_finished, open_run, record_end, record_start, tracked_here
    from explab.utils.distributed import ddp_launch_scoped_to_job
    from explab.utils.exits import exit_is_an_error
    from explab.utils.torch_settings import torch_settings_scoped_to_job
    from explab.validation import validate_config

    paths_from_launch_folder(cfg)  # again: a resume's or reproduction's config is composed anew from its record
    validate_config(cfg)
    check_machine(cfg)
    check_output_folder_free(cfg)
    trial = TrialJob(cfg)
    trial.check_open()  # before a run exists: a job for a trial that is over records nothing
    lifecycle: contextlib.AbstractContextManager[TrackedRun | None] = (
        run_lifecycle(lambda: open_run(cfg, trial), continued_by=None if trial else _continued_by(cfg))
        if tracked_here(cfg)
        else contextlib.nullcontext()
    )
    with (
        lifecycle as run,
        trial.record_state(run),
        trial.study_writes(),
        ddp_launch_scoped_to_job(),
        torch_settings_scoped_to_job(),
        memory_named(),
        float32_matmul(cfg.get("matmul_precision")),
        compiled_for_this_run(bool(cfg.model.get("compile"))),
        exit_is_an_error(),  # innermost: the run's end and the sweep see the job's exit as its error
    ):
        job = build_job(cfg, run, trial)
        record_start(run, job)
        metrics = fit_and_test(job, trial, run)
        record_end(run, job)
    announce_finished(run, metrics)
    return metrics


def _continued_by(cfg: DictConfig) -> Callable[[str], str]:
    """How the command continues a run of ``cfg`` that stopped (a sweep's trial is not continued: its sweep
    goes on with the next), as a clause."""
    from explab.resume_checks import last_checkpoint_in

    def continued(run_id: str) -> str:
        if last_checkpoint_in(str(cfg.paths.output_dir)).is_file():
            return f"explab-train resume={run_id} continues it from its last checkpoint"
        return f"explab-train reproduce={run_id} trains it again (it stopped before its first checkpoint)"

    return continued


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="train")
@report_user_errors
def _hydra_main(cfg: DictConfig) -> dict[str, float]:
    from explab.validation import check_values

    paths_from_launch_folder(cfg, files=("ckpt_path",))
    _check_a_search_is_a_multirun()
    if cfg.get("resume") is None and cfg.get("reproduce") is None:
        # a mistyped value is answered now, not after the seconds torch and Lightning take to import; a
        # resumed or reproduced run's config is the recorded one, composed below and checked in train()
        check_values(cfg)

    from explab.reproduce import config_from_recorded_run
    from explab.requeue import earlier_attempt
    from explab.sweep.continuation import continue_interrupted_trial, outcome_of_ended_trial

    ended = outcome_of_ended_trial(cfg)
    if ended is not None:
        return ended
    requeued = earlier_attempt(cfg)
    if requeued is None:
        return train(config_from_recorded_run(continue_interrupted_trial(cfg)))
    if requeued.finished_metrics is not None:
        return requeued.finished_metrics
    return train(config_from_recorded_run(requeued.continued(cfg)))


def _check_a_search_is_a_multirun() -> None:
    """``hparams_search=NAME`` configures Hydra's sweeper, which Hydra runs only with ``-m``: without it the
    command would train one run with the recipe's values and no search, as if it had worked."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if os.environ.get("LOCAL_RANK", "0") != "0":
        return  # a DDP rank started for a trial's job, run as that job alone (utils.distributed): rank 0 checked
    hydra_cfg = HydraConfig.get()
    search = hydra_cfg.runtime.choices.get("hparams_search")
    if search and hydra_cfg.mode == RunMode.RUN:
        raise UsageError(
            f"hparams_search={search} is an Optuna search, and a search runs only as a multirun: add -m "
            f"(explab-train -m hparams_search={search} ...). Without it this would train one run and search nothing"
        )


def main() -> None:
    """Console script ``explab-train``."""
    from explab.cli import run_hydra_app

    run_hydra_app(_hydra_main, config_name="train")


if __name__ == "__main__":
    main()
