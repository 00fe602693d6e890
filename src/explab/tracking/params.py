"""Turn a nested config into what a run records: MLflow params without ever tripping MLflow's size limits,
and no password from a URL."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any, cast

from omegaconf import DictConfig, OmegaConf

# MLflow's limits (mlflow.utils.validation): a param key up to 250 chars, a value up to 6000.
MAX_KEY_LENGTH = 250
MAX_VALUE_LENGTH = 6000
TRUNCATION_MARK = "...[truncated; see config.yaml]"


# params that only say where a job wrote or how it was started, not what it trained
LOCATION_PREFIXES = ("paths.", "trainer.default_root_dir")
LOCATION_SUFFIXES = (".dirpath",)  # any checkpoint callback's folder
START_KEYS = ("ckpt_path", "resume", "reproduce")

# on a run resumed with other settings (MLflow keeps a run's params as first logged): each one changed, for people
# ("optimizer.lr=0.1 (was 0.003)"), and as a JSON object of the values it trains on with, for the comparisons
RESUMED_WITH_TAG = "explab.resumed_with"
RESUMED_PARAMS_TAG = "explab.resumed_params"
# settings explab gained after runs were recorded without them, with what those runs trained in: the absent
# param means that value, so a recipe's seeds trained before and after stay one configuration
ABSENT_MEANS = {"matmul_precision": "highest", "model.init": "default"}


def describes_training(key: str) -> bool:
    """False for params that differ between two runs of the very same training (output folders, resume)."""
    return key not in START_KEYS and not key.startswith(LOCATION_PREFIXES) and not key.endswith(LOCATION_SUFFIXES)


def trained_params(params: Mapping[str, str], tags: Mapping[str, str]) -> dict[str, str]:
    """A run's params as it trained: a setting a resume changed reads ``20 (resumed from 10)``.

    A run resumed to 20 epochs from 10, or at another learning rate, trained neither setting throughout: it is
    a configuration of its own, not one more seed of the runs its params name. A setting the run was recorded
    without, from before explab had it, reads as what the run trained in (``ABSENT_MEANS``).
    """
    params = {**ABSENT_MEANS, **params}
    changed = json.loads(tags.get(RESUMED_PARAMS_TAG) or "{}")
    if not changed:
        return params
    return {**params, **{key: f"{now} (resumed from {params.get(key, '(none)')})" for key, now in changed.items()}}


def _walk(node: Any, prefix: str) -> Iterator[tuple[str, Any]]:
    if isinstance(node, dict) and node:  # plain containers (to_container): cheaper than an ABC check
        for key, value in node.items():
            yield from _walk(value, f"{prefix}.{key}" if prefix else str(key))
    else:
        yield prefix, node


def flatten_params(config: Mapping[str, Any], skip: tuple[str, ...] = ("hydra",)) -> dict[str, str]:
    """``{"model.backbone.depth": "2", ...}``; lists stay whole, over-long values are truncated and marked."""
    params: dict[str, str] = {}
    for key, value in _walk(config, ""):
        if not key or key.split(".")[0] in skip:
            continue
        text = "None" if value is None else str(value)
        if len(text) > MAX_VALUE_LENGTH:
            text = text[: MAX_VALUE_LENGTH - len(TRUNCATION_MARK)] + TRUNCATION_MARK
        params[key[:MAX_KEY_LENGTH]] = text
    return params


def masked_value(text: str) -> str:
    """``text`` as a run may record it: a URL's password masked (``http://lab:***@host:5000``)."""
    from explab.tracking.store import shown_url

    return shown_url(text) if "://" in text and "@" in text else text


def masked_override(override: str) -> str:
    """A command-line override (``key=value``) or argument as a run may record it, its value ``masked_value``."""
    key, equals, value = override.partition("=")
    return f"{key}={masked_value(value)}" if equals else masked_value(override)


def has_masked_password(override: str) -> bool:
    """Whether a recorded override carries a URL whose password ``masked_override`` took out: it cannot be
    used again as it stands."""
    return ":***@" in override


def recordable(cfg: DictConfig) -> dict[str, Any]:
    """``cfg`` resolved, as a run records it (params, ``config.yaml``, checkpoints, the logged model): a
    password in a URL value masked, such as the tracking URI ``logger.mlflow.tracking_uri`` resolves from
    ``MLFLOW_TRACKING_URI`` (``postgresql://lab:***@host/db``)."""

    def masked(node: Any) -> Any:
        if isinstance(node, dict):
            return {key: masked(value) for key, value in node.items()}
        if isinstance(node, list):
            return [masked(value) for value in node]
        return masked_value(node) if isinstance(node, str) else node

    return cast(dict[str, Any], masked(OmegaConf.to_container(cfg, resolve=True)))
