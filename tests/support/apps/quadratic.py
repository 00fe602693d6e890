"""A plain Hydra app, unrelated to explab's train: the sweeper must work for any app returning a number."""

import os
import sys
import time

import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path=".", config_name="quadratic")
def main(cfg: DictConfig) -> float:
    trial = cfg.get("optuna_trial") or {}
    number = int(trial.get("number", -1)) if trial else -1
    # QUADRATIC_FAIL_ON_TRIAL fails a trial from outside the config: a bug fixed in code, not in the command
    if number == cfg.fail_on_trial or str(number) == os.environ.get("QUADRATIC_FAIL_ON_TRIAL"):
        raise RuntimeError(f"trial {number} fails on purpose")
    if str(number) == os.environ.get("QUADRATIC_EXIT_ON_TRIAL"):
        sys.exit(3)  # code that exits instead of raising (a library's command-line parsing, say)
    time.sleep(cfg.slow_sleep if number in cfg.slow_trials else cfg.sleep)
    if cfg.record:
        with open(cfg.record, "a") as record:
            record.write(f"{number},{os.environ.get('SLURM_JOB_ID', '')}\n")
    return (cfg.x - 2.0) ** 2 + cfg.y


if __name__ == "__main__":
    main()
