"""A plain Hydra app, unrelated to explab's train: the sweeper must work for any app returning a number."""

import time

import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path=".", config_name="quadratic")
def main(cfg: DictConfig) -> float:
    trial = cfg.get("optuna_trial") or {}
    if trial and int(trial.get("number", -1)) == cfg.fail_on_trial:
        raise RuntimeError(f"trial {trial['number']} fails on purpose")
    time.sleep(cfg.sleep)
    return (cfg.x - 2.0) ** 2 + cfg.y


if __name__ == "__main__":
    main()
