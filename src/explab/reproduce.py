"""``explab-train reproduce=RUN_ID`` and ``explab-train resume=RUN_ID``: a run rebuilt from its own record.

Both compose the config again from the overrides the run recorded (plus any given now), so paths point at
this job, not the old one. Reproduce trains into a new run tagged with its source; resume continues the
same run from its last checkpoint.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import yaml
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from explab.config import hydra_overrides, override_key
from explab.errors import UsageError, first_line
from explab.resume_checks import check_resumable, last_checkpoint_in, run_folder_here
from explab.search_path import search_path_of
from explab.tracking.environment import (
    checkout_state,
    code_checkouts,
    hardware_differences,
    tells_code_apart,
    versions,
)
from explab.tracking.params import RESUMED_PARAMS_TAG, RESUMED_WITH_TAG
from explab.utils.logging import get_logger

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run

    from explab.tracking import TrackedRun

log = get_logger(__name__)

# overrides that say how a job was started, not what it trains: the recorded ones are dropped, and of this
# job's own only its trial (a sweep's job that continues its trial's run) is kept
MODE_PREFIXES = ("resume=", "reproduce=", "hydra.")
DROPPED_PREFIXES = ("++optuna_trial.", "+optuna_trial.", "optuna_trial.", *MODE_PREFIXES)


def logger_tracking_uri(cfg: DictConfig) -> str | None:
    """The tracking URI ``cfg``'s MLflow logger records into; None with ``logger=none``."""
    # the logger that names a tracking URI is MLflow's: read from the config, without importing Lightning's
    # loggers to tell, so that a run id naming no run is answered before torch is imported
    for node in (cfg.get("logger") or {}).values():
        if isinstance(node, DictConfig) and node.get("tracking_uri"):
            return str(node.tracking_uri)
    return None


def _store_of(cfg: DictConfig) -> str:
    """The tracking URI of the store ``cfg`` records into, where its ``resume=``/``reproduce=`` run lives."""
    from explab.config import tracking_uri

    return logger_tracking_uri(cfg) or tracking_uri(cfg.paths.mlruns_dir)


REPRODUCED = " (reproduced)"


def reproduction_name(cfg: DictConfig) -> str | None:
    """``<source run's name> (reproduced)`` for a ``reproduce=`` job, so that the UI's list of runs says what
    it reproduces (a reproduction of a reproduction keeps one suffix); None for any other job."""
    if not cfg.get("reproduce"):
        return None
    from explab.tracking.store import open_client

    source = open_client(_store_of(cfg)).get_run(str(cfg.reproduce)).info.run_name or str(cfg.reproduce)
    return source.removesuffix(REPRODUCED) + REPRODUCED


def _recorded(cfg: DictConfig, run_id: str) -> tuple[Any, list[str]]:
    from explab.tracking.store import find_trained_run

    uri = _store_of(cfg)
    run = find_trained_run(uri, run_id, to_write=bool(cfg.get("resume")))  # reproduce= only reads its record
    return run, recorded_overrides(uri, run_id)


@functools.cache
def _overrides_file(uri: str, run_id: str) -> tuple[str, ...]:
    """``config/overrides.yaml`` of a run, read once per process: the job composes its config from it and
    then records it again (a resume that changed settings rewrites it, after this job has composed its own)."""
    from mlflow.exceptions import MlflowException

    from explab.tracking import TrackedRun
    from explab.tracking.relocation import missing_artifacts

    run = TrackedRun(uri, run_id)
    try:
        text = run.load_text("config/overrides.yaml")
    except MlflowException:
        gone = missing_artifacts(run_id, run.client.get_run(run_id).info.artifact_uri)
        if gone:
            raise UsageError(f"{gone}; they hold its config/overrides.yaml, from which the job is composed") from None
        raise UsageError(
            f"run {run_id} has no config/overrides.yaml: it was not recorded by explab-train, so there is no job "
            "to compose again from it"
        ) from None
    return tuple(yaml.safe_load(text) or [])


def recorded_overrides(uri: str, run_id: str, links: int = 20) -> list[str]:
    """The overrides run ``run_id`` recorded. A reproduction recorded before reproductions kept their
    source's overrides holds only ``reproduce=SOURCE`` and its own: the source's are merged back in, along
    the chain (at most ``links`` runs)."""
    recorded = list(_overrides_file(uri, run_id))
    source = next((o.partition("=")[2] for o in recorded if o.startswith("reproduce=")), None)
    if source is None or links == 0:
        return recorded
    return merged_overrides(
        [o for o in recorded_overrides(uri, source, links - 1) if not o.startswith(DROPPED_PREFIXES)],
        [o for o in recorded if not o.startswith(MODE_PREFIXES)],
    )


def job_overrides(cfg: DictConfig) -> list[str]:
    """The overrides this job's config is composed from: the command line's, and for ``reproduce=`` or
    ``resume=`` the run's merged with them (without ``reproduce=`` or ``resume=`` itself; the tag
    ``explab.reproduced_from`` keeps the source), so that reproducing a reproduced run, or resuming a resumed
    one, trains the same config again. A password in a URL is masked: the run's record is read by the team."""
    from explab.tracking.params import masked_override

    mode = _mode(cfg)
    overrides = (
        hydra_overrides() if mode is None else _with_recorded(recorded_overrides(_store_of(cfg), str(cfg[mode])))
    )
    return [masked_override(o) for o in overrides]  # a password in a URL is not recorded


def _mode(cfg: DictConfig) -> str | None:
    """``resume`` or ``reproduce``: which of the two rebuilds this job from a run's record; None for neither."""
    return "resume" if cfg.get("resume") else "reproduce" if cfg.get("reproduce") else None


def _with_recorded(recorded: list[str]) -> list[str]:
    """A run's ``recorded`` overrides, less how it was started, merged with what this command adds."""
    return merged_overrides(_replayed(recorded), [o for o in hydra_overrides() if not o.startswith(MODE_PREFIXES)])


def _replayed(recorded: list[str]) -> list[str]:
    """The ``recorded`` overrides that compose a run's config again: less how it was started, and less a URL
    recorded without its password, which cannot reach its server (this command's own setting applies)."""
    from explab.tracking.params import has_masked_password

    return [o for o in recorded if not o.startswith(DROPPED_PREFIXES) and not has_masked_password(o)]


def merged_overrides(recorded: list[str], now: list[str]) -> list[str]:
    """``recorded`` with each key given again ``now`` replaced by its new value, then the new keys.

    Hydra refuses the same ``+key=`` twice, which a job that repeats its run's overrides (a continued
    sweep trial, ``resume=ID +callbacks.x=...``) would otherwise give it.
    """
    merged = {override_key(o): o for o in recorded}
    merged.update({override_key(o): o for o in now})
    return list(merged.values())


def config_from_recorded_run(cfg: DictConfig) -> DictConfig:
    """The config a ``resume=`` or ``reproduce=`` job runs; ``cfg`` itself when it is neither."""
    from hydra import compose
    from hydra.errors import MissingConfigException

    from explab.monitor_mode import settle_modes

    mode = _mode(cfg)
    if mode is None:
        return cfg
    if cfg.get("resume") and cfg.get("reproduce"):
        raise UsageError(
            "resume= and reproduce= were both given: resume=RUN_ID continues that run from its last checkpoint, "
            "reproduce=RUN_ID trains its config again into a new run. Give one"
        )
    run_id = str(cfg[mode])
    run, recorded = _recorded(cfg, run_id)
    overrides = _with_recorded(recorded)
    search_path = search_path_of(run)
    try:
        rebuilt = compose(
            config_name="train", overrides=[*search_path, *overrides, f"{mode}={run_id}"], return_hydra_config=True
        )
    except MissingConfigException as error:  # an option of the run's that no config folder here holds
        raise UsageError(
            f"run {run_id} was composed from an option this command cannot find: {first_line(error)}. If it came "
            "from a lab's own configs, give their folder as hydra.searchpath=[file://PATH]; if it was removed "
            "since, give the option to use instead on the command line"
        ) from error
    _hydra_config_of_the_job(rebuilt)
    settle_modes(rebuilt)  # as the run recorded them: min or max, where the config may say auto
    with open_dict(rebuilt):
        rebuilt.paths.output_dir = cfg.paths.output_dir
        if mode == "resume":
            recorded_folder = run.data.params.get("paths.output_dir") or ""
            folder = run_folder_here(run, cfg.paths.log_dir)
            checkpoint = last_checkpoint_in(folder)
            check_resumable(run, rebuilt, checkpoint)  # the checkpoint found must name this run
            if folder != Path(recorded_folder):
                log.warning(
                    "run %s recorded its folder as %s, which holds no last.ckpt; it is at %s now (its project "
                    "moved, or is mounted elsewhere here), and the run goes on there",
                    run_id,
                    recorded_folder,
                    folder,
                )
            rebuilt.paths.output_dir = str(folder)
            rebuilt.ckpt_path = str(checkpoint)
    _warn_about_drift(
        run, rebuilt, lambda: _composed_as_recorded([*search_path, *_replayed(recorded), f"{mode}={run_id}"])
    )
    log.info("%s of run %s with overrides %s", mode, run_id, overrides)
    return rebuilt


def _hydra_config_of_the_job(rebuilt: DictConfig) -> None:
    """Make the job's ``hydra.runtime.choices`` and ``hydra.searchpath`` those the ``rebuilt`` config it trains
    was composed with, and drop its Hydra node: the command composed explab's default experiment around
    ``reproduce=ID``, and its run's tags (``explab.choice.*``, which a warm start reads a run's options from;
    ``explab.searchpath``) are to name the config and the folders of the run it reproduces."""
    from hydra.core.hydra_config import HydraConfig

    composed = rebuilt.hydra
    with open_dict(rebuilt):
        del rebuilt["hydra"]
    if HydraConfig.initialized():
        job = cast(DictConfig, HydraConfig.get())  # typed as Hydra's dataclass, a DictConfig here
        with read_write(job):
            job.runtime.choices = composed.runtime.choices
            job.searchpath = composed.searchpath


def _composed_as_recorded(overrides: list[str]) -> DictConfig | None:
    """The config the run's own ``overrides`` compose today, without this command's: what the command changes
    and what conf/ changed since the run are told apart by it. None when they no longer compose alone (an
    option since removed, which this command replaces)."""
    from hydra import compose
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from explab.monitor_mode import settle_modes

    try:
        composed = compose(config_name="train", overrides=overrides)
    except (HydraException, OmegaConfBaseException):
        return None
    settle_modes(composed)
    return composed


def _warn_about_drift(run: Run, rebuilt: DictConfig, as_recorded: Callable[[], DictConfig | None]) -> None:
    """Warn of each difference between the run's record and the ``rebuilt`` config that this command did not
    ask for (a library, a commit or uncommitted change of the code, a default of conf/ that moved since the
    run: they move its results); a setting the command changes, given or following one given (``monitor=``
    moves the checkpoint's monitor and mode), is an info line. ``as_recorded`` composes the config of the
    run's own overrides now; it is called only for a difference no override of this command names."""
    from explab.config import project_root
    from explab.tracking.params import flatten_params, recordable

    tags = run.data.tags
    # the checkout as this run will record it: its process's first look, not a second one
    root = project_root()
    now = {
        **{f"version.{k}": v for k, v in versions().items()},
        **checkout_state(root)[0],
        **code_checkouts(rebuilt, root),
    }
    for key in sorted(k for k in now if k.startswith("version.") or tells_code_apart(k)):
        if key in tags and tags[key] != now[key]:
            log.warning("%s differs from the source run: %s then, %s now", key, tags[key], now[key])
    given = [override_key(o) for o in hydra_overrides() if not o.startswith(MODE_PREFIXES)]
    changes = config_changes(run.data.params, rebuilt)
    unnamed = [key for key in changes if not any(key == name or key.startswith(f"{name}.") for name in given)]
    composed = as_recorded() if unnamed else None  # a second composition, only where it can tell anything
    composed_then = flatten_params(recordable(composed)) if composed is not None else {}
    for key, (then, value) in changes.items():
        followed = key in composed_then and composed_then[key] == then  # the run's overrides still give `then`
        if key not in unnamed or followed:
            log.info("config %s: %s then, %s now, as this command gives it", key, then, value)
        else:  # nobody asked for it here: a default in conf/ changed since the run, which moves its results
            log.warning("config %s differs from the source run: %s then, %s now", key, then, value)


def config_changes(params: dict[str, str], cfg: DictConfig) -> dict[str, tuple[str, str]]:
    """Each training setting of ``cfg`` whose value differs from a run's ``params``, or that the run did not
    have (``+callbacks.x=...``, then ``(none)``): key -> (then, now)."""
    from explab.tracking.params import describes_training, flatten_params, recordable

    now = flatten_params(recordable(cfg))
    return {
        key: (params.get(key, "(none)"), value)
        for key, value in now.items()
        if describes_training(key) and params.get(key) != value
    }


RESUMED_VALUE_LENGTH = 200  # a few dozen changed settings stay within MLflow's 8000 characters of a tag


def record_resumed_config(run: TrackedRun, cfg: DictConfig) -> None:
    """What a resume that trains on changed, on its run (MLflow keeps a run's params as first logged).

    The tag ``explab.resumed_with`` lists each training setting that now differs from the params
    (``optimizer.lr=0.1 (was 0.003)``), ``explab.resumed_params`` their new values as JSON for the comparisons
    (``explab-report`` counts the run as a configuration of its own), ``config/resumed.yaml`` is the config the
    run now trains with, and ``config/overrides.yaml`` becomes the overrides that compose it: a later resume goes
    on with these settings instead of falling back to the first ones, and ``reproduce=`` trains them from the
    start. A resume that changes nothing leaves the record as it is. ``resume=`` of a sweep trial's run (not
    its sweep continuing the trial) warns that the study keeps the trial as it ended.
    """
    from explab.tracking.params import recordable

    recorded = run.client.get_run(run.run_id).data
    params = recorded.params
    if "optuna_trial.number" in params and not cfg.get("optuna_trial"):
        # resume= of a trial's run trains it alone (its sweep continuing the trial keeps optuna_trial): the
        # study, the parent run and any search warm-started from it keep what the trial had when it ended
        log.warning(
            "run %s is trial %s of study %s, %s there: the study keeps the trial as it ended, and its best trial "
            "and summary do not see what this resume trains",
            run.run_id,
            params["optuna_trial.number"],
            params.get("optuna_trial.study_name", "?"),
            recorded.tags.get("optuna.trial_state", "ended"),
        )
    changes = config_changes(params, cfg)
    if not changes:
        return
    said = ", ".join(f"{key}={now} (was {then})" for key, (then, now) in changes.items())
    # the same as data, for the comparisons (tracking.params.trained_params); a value cut short still tells apart
    trained = json.dumps({key: now[:RESUMED_VALUE_LENGTH] for key, (_, now) in changes.items()})
    run.set_tags({RESUMED_WITH_TAG: said[:5000], RESUMED_PARAMS_TAG: trained})
    run.log_text(OmegaConf.to_yaml(OmegaConf.create(recordable(cfg))), "config/resumed.yaml")
    run.log_text(yaml.safe_dump(job_overrides(cfg), sort_keys=False), "config/overrides.yaml")
    log.info("run %s resumed with %s", run.run_id, said)


# "identical", "differ: " and the metrics that differ, or "none recorded" by a source that stopped before them
REPRODUCED_TAG = "explab.reproduced_metrics"
UNCOMPARED_PREFIXES = ("perf/", "system/")  # timings and machine load differ between any two runs


def compare_with_source(run: TrackedRun, source_run_id: str) -> None:
    """Say whether a reproduced run's final metrics, as MLflow holds them, are the source run's, in the log and
    in the tag ``explab.reproduced_metrics``. Exact equality: a deterministic run on the same machine and
    libraries reproduces every bit; anything else shows by how much it moved.

    A source that did not finish (stopped, failed, or still training) is compared where it stopped: its last
    value of each metric against this run's value at the same step. Its last values are not final ones: set
    against this run's final values, every one would differ however exactly the run was reproduced.
    """
    source, reproduced = run.client.get_run(source_run_id), run.client.get_run(run.run_id)
    then, now = source.data.metrics, reproduced.data.metrics
    compared = sorted(k for k in now if k in then and not k.startswith(UNCOMPARED_PREFIXES))
    if not compared:  # a source that failed before its first epoch ended: "all 0 are the source's" says nothing
        log.info("reproduced run %s: it recorded no final metrics to compare with", source_run_id)
        run.set_tags({REPRODUCED_TAG: "none recorded"})
        return
    ended = source.info.status
    what = "final metrics"
    if ended != "FINISHED":
        then, now, step = _at_the_steps_the_source_reached(run.client, source_run_id, run.run_id, compared)
        compared = sorted(now)
        state = "is RUNNING" if ended == "RUNNING" else f"ended {ended}"
        what = f"metrics at the last steps the source reached (up to step {step}; it {state})"
        if not compared:
            log.info(
                "reproduced run %s: it %s, and this run logged none of its metrics at the steps it reached",
                source_run_id,
                state,
            )
            run.set_tags({REPRODUCED_TAG: "none recorded at the source's steps"})
            return
    differ = [k for k in compared if then[k] != now[k]]
    if not differ:
        log.info("reproduced run %s: its %d %s are the source's, to the bit", source_run_id, len(compared), what)
        run.set_tags({REPRODUCED_TAG: "identical"})
        return
    moved = hardware_differences(source.data.tags, reproduced.data.tags)
    settings = _other_settings(source.data.params, reproduced.data.params)
    # a reproduction given other settings (reproduce=ID seed=7) is expected to move: said, not warned of
    (log.info if settings else log.warning)(
        "reproduced run %s: %d of %d %s differ from the source's: %s%s%s",
        source_run_id,
        len(differ),
        len(compared),
        what,
        "; ".join(f"{k} {then[k]:.6g} then, {now[k]:.6g} now" for k in differ),
        f" (it trained with other settings: {'; '.join(f'{k} {a} then, {b} now' for k, (a, b) in settings.items())})"
        if settings
        else "",
        f" (it trained on other hardware: {'; '.join(moved)})" if moved else "",
    )
    other = f"; other settings: {', '.join(settings)}" if settings else ""
    run.set_tags({REPRODUCED_TAG: f"differ: {', '.join(differ)}{other}"[:5000]})


def _other_settings(then: dict[str, str], now: dict[str, str]) -> dict[str, tuple[str, str]]:
    """Each training setting that differs between the source's params and the reproduction's, key -> (then,
    now): this command's own (``seed=7``), or a default of conf/ that moved since the source."""
    from explab.tracking.params import describes_training

    return {
        key: (then.get(key, "(none)"), now.get(key, "(none)"))
        for key in sorted(then.keys() | now.keys())
        if describes_training(key) and then.get(key) != now.get(key)
    }


def _at_the_steps_the_source_reached(
    client: MlflowClient, source_run_id: str, run_id: str, names: list[str]
) -> tuple[dict[str, float], dict[str, float], int]:
    """The source's last value of each of ``names`` and the run's value at that same step (the last it logged
    there), for the names the run logged at that step; and the source's last step."""
    then: dict[str, float] = {}
    now: dict[str, float] = {}
    reached = 0
    for name in names:
        last = max(client.get_metric_history(source_run_id, name), key=lambda m: (m.step, m.timestamp))
        reached = max(reached, last.step)
        there = [m for m in client.get_metric_history(run_id, name) if m.step == last.step]
        if there:
            then[name] = last.value
            now[name] = max(there, key=lambda m: m.timestamp).value
    return then, now, reached


def check_hardware(source_tags: dict[str, str], now: dict[str, str]) -> None:
    """Warn where this machine computes differently from the one the source run (its ``source_tags``) trained
    on (another CPU kind, thread count or GPU): the metrics can then move however deterministic the run."""
    moved = hardware_differences(source_tags, now)
    if moved:
        log.warning(
            "hardware differs from the source run: %s. Floats round differently here, so the metrics can move "
            "from the source's even with trainer.deterministic=true",
            "; ".join(moved),
        )


def check_fingerprint(source_tags: dict[str, str], fingerprint: str) -> None:
    """Warn when the data's fingerprint is not the one the source run (its ``source_tags``) recorded."""
    then = source_tags.get("data.fingerprint")
    if then and then != fingerprint:
        log.warning(
            "data fingerprint differs from the source run: %s then, %s now: the data changed", then, fingerprint
        )
