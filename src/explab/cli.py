"""Shared console-script plumbing: run a Hydra app, turn a bad override into advice, and print a user's
mistake as one message instead of a traceback."""

from __future__ import annotations

import difflib
import functools
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn, TypeVar

from omegaconf import DictConfig

from explab.config import config_dir, config_groups, override_key
from explab.errors import ExplabError, Stopped, first_line
from explab.utils.signals import interrupted_by_ctrl_c

Result = TypeVar("Result")
SEARCH_SPACE_PREFIX = "hydra.sweeper.params."


class ReportedError(SystemExit):
    """Exit after a user's mistake was printed: nothing is left to advise."""


def report_user_errors(task: Callable[[DictConfig], Result]) -> Callable[[DictConfig], Result]:
    """Wrap a Hydra task function: an ``ExplabError`` is printed as its message and exits with status 1.

    ``HYDRA_FULL_ERROR=1`` keeps the traceback. Inside a multirun the error is raised as it is, so the
    sweep records the job as failed and goes on; any other exception keeps its traceback.
    """

    @functools.wraps(task)
    def run(cfg: DictConfig) -> Result:
        try:
            return task(cfg)
        except ExplabError as error:
            if _in_multirun():
                raise
            exit_with_message(error)

    return run


def exit_with_message(error: ExplabError) -> NoReturn:
    """Print ``error`` as one line and exit with status 1; with ``HYDRA_FULL_ERROR=1``, raise it instead.

    A stop every DDP rank raises at once (``Stopped``: the decision is broadcast) is printed by rank 0
    alone; any other error is printed by each rank that meets it, since it may be that rank's alone.
    """
    if os.environ.get("HYDRA_FULL_ERROR") == "1":
        raise error
    from explab.utils.logging import global_rank

    if not (isinstance(error, Stopped) and global_rank() != 0):
        print(f"Error: {error}", file=sys.stderr)
    raise ReportedError(1) from None


def unread_additions(cfg: DictConfig, config_name: str) -> list[str]:
    """The overrides that added a top-level section the command's root config does not have (``+data.x=1`` to
    explab-eval): the command reads none of it, and Hydra's advice for such a key is to add it with ``+``."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    root = OmegaConf.load(config_dir() / f"{config_name}.yaml")
    assert isinstance(root, DictConfig)  # a root config is a mapping
    own = {str(key) for key in root if key != "defaults"}
    for entry in root.get("defaults", []):  # "paths: default", "optional local: default", "_self_"
        names = [entry] if isinstance(entry, str) else list(entry)
        own.update(str(name).split()[-1].split("@")[0] for name in names)
    added = {str(key) for key in cfg} - own
    return [o for o in HydraConfig.get().overrides.task if override_key(o).split(".")[0] in added]


def refuse_unread_additions(
    cfg: DictConfig, config_name: str, instead: Callable[[list[str]], str] | None = None
) -> None:
    """A ``UsageError`` naming the ``unread_additions`` of a command that reads only its own settings, and what
    to do: ``instead(unread)``, or where its settings are listed."""
    from explab.errors import UsageError

    unread = unread_additions(cfg, config_name)
    if unread:
        said = instead(unread) if instead else f"explab-{config_name} --help lists its settings"
        raise UsageError(f"explab-{config_name} does not read {' '.join(unread)}: {said}")


def _in_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


# a plain multirun's sweeper runs its jobs one after another; the Optuna sweeper's grid runs the same jobs K at a time
PARALLEL_MULTIRUN = (
    "{setting} is a setting of explab's Optuna sweeper (-m hparams_search=NAME). A plain multirun (-m seed=1,2,3) "
    "runs its jobs one after another; to run them K at a time on this machine, give them as a grid: "
    "-m hydra/sweeper=explab_optuna hydra/sweeper/sampler=grid 'seed=choice(1,2,3)' hydra.sweeper.n_jobs=K "
    "hydra.sweeper.metric=val/acc_best hydra.sweeper.direction=maximize (docs/sweeps.md, Jobs in parallel)."
)


def _override_advice(config_name: str, overrides: list[str]) -> str | None:
    """Compose again to find the bad override; suggest the nearest valid keys. None when it composes."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.object_type import ObjectType
    from omegaconf import OmegaConf

    pooled = next(
        (o for o in overrides if o.startswith(("hydra.sweeper.n_jobs=", "hydra.sweeper.trials_per_gpu="))), None
    )
    if pooled is not None and not any(o.startswith(("hparams_search=", "hydra/sweeper=")) for o in overrides):
        return PARALLEL_MULTIRUN.format(setting=pooled.partition("=")[0])
    searched = next((o for o in overrides if o.lstrip("+~").startswith(SEARCH_SPACE_PREFIX) and _is_sweep(o)), None)
    if searched is not None:  # Hydra refuses sweeping its own node; the space is given on the key itself
        key, _, space = searched.lstrip("+~").partition("=")
        name = key.removeprefix(SEARCH_SPACE_PREFIX)
        return (
            f"To search {name}, give its space as a sweep override of the key itself: '{name}={space}' "
            "(it adds to hydra.sweeper.params and wins over it)."
        )
    unparsable = next((o for o in overrides if _parse_error(o)), None)
    if unparsable is not None:
        key, _, value = unparsable.partition("=")
        if value.startswith("[") and "=" in value:  # a list of overrides, such as explab-eval's config_overrides
            return (
                f"Bad value in '{unparsable}': {_parse_error(unparsable)}\n"
                f"Quote each item that holds '=', and the whole argument for the shell: "
                f"'{key}=[\"{value[1:].split(',')[0].rstrip(']')}\"]'"
            )
        return (
            f"Bad value in '{unparsable}': {_parse_error(unparsable)}\n"
            "The key is fine; write the value as Hydra's override grammar allows (quote it if it holds spaces, "
            "commas or brackets), and sweeps such as interval(a, b) only with -m."
        )
    sweep_free = [o for o in overrides if not o.startswith(("hydra.", "hydra/", "-")) and not _is_sweep(o)]
    # a lab's conf/ (hydra.searchpath) holds options of its own: without it, its experiment= would be the
    # mistake, and the nearest option of explab's the advice
    searchpath = [o for o in overrides if override_key(o) == "hydra.searchpath"]
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(str(config_dir()), version_base="1.3"):
            bad = next(
                (i for i in range(len(sweep_free)) if not _composes(config_name, [*searchpath, *sweep_free[: i + 1]])),
                None,
            )
            if bad is None:
                return None
            good = compose(config_name, overrides=[*searchpath, *sweep_free[:bad]], return_hydra_config=True)
            groups = config_groups(good.hydra.runtime.choices)
            override = sweep_free[bad]
            key = override.split("=", 1)[0].lstrip("+~")
            options = sorted(
                GlobalHydra.instance()
                .config_loader()
                .get_group_options(
                    key.split("@")[0], results_filter=ObjectType.CONFIG, config_name=config_name, overrides=searchpath
                )
            )
    except Exception:
        return None
    finally:
        GlobalHydra.instance().clear()
    if options and not override.startswith(("+", "~")) and key not in groups:
        # Hydra answers "use +key=..."; that would merge the group's keys into a config this command never reads
        return (
            f"explab-{config_name} has no config group '{key}': it composes {', '.join(groups)} "
            f"(explab-{config_name} --help lists its settings)."
        )
    if options and override.startswith("+") and not override.startswith("++") and key in groups:
        # Hydra's answer ("use 'override optimizer: sgd'") is the defaults list's syntax, not a command line's
        chosen_now = good.hydra.runtime.choices.get(key)
        return f"{key} is chosen already ({chosen_now}): choose another without the +, '{override[1:]}'."
    if options:  # a config group: Hydra's own message already lists its options; name the nearest
        chosen = override.partition("=")[2]
        named = Path(chosen).stem if chosen.endswith((".yaml", ".yml")) else chosen
        if named != chosen and named in options:  # a file's path given for the option's name
            return f"Give the option's name, not its file: {key}={named}"
        close = difflib.get_close_matches(chosen, options, n=3)
        if chosen in options or not close:
            return None
        return f"Did you mean: {', '.join(f'{key}={option}' for option in close)}?"
    if override.startswith("+") and not override.startswith("++") and _holds(good, key):
        # Hydra refuses adding a key the config has; the advice below ("write +key=...") would repeat it
        return f"{key} is in the config already: change it without the +, '{override[1:]}'."
    parent = key.rpartition(".")[0]
    node = OmegaConf.select(good, parent) if parent else good
    if not hasattr(node, "keys"):
        top = key.split(".")[0]
        if config_name == "eval" and top not in good:  # a setting of the run's own config, not of this command's
            return (
                f"explab-eval tests with the run's recorded config, which this command line does not compose: give "
                f"the change as 'config_overrides=[\"{override.lstrip('+~')}\"]' (+{key}=... would not be read)."
            )
        if config_name != "train" and top not in good:  # Hydra's "+key" would add a setting nothing reads
            return f"explab-{config_name} has no setting '{top}': explab-{config_name} --help lists its settings."
        return f"'{override}': '{parent}' is not a config group or mapping."
    valid = sorted(str(k) for k in node)
    return (
        f"Bad override '{override}'.{did_you_mean(good, key)}\n"
        f"Valid keys under '{parent or '<root>'}': {', '.join(valid)}\nTo add a new key on purpose, write +{key}=..."
    )


def _holds(config: DictConfig, key: str) -> bool:
    """Whether ``config`` has the dotted ``key`` (set to anything, null included)."""
    from omegaconf import OmegaConf

    parent, _, leaf = key.rpartition(".")
    node = OmegaConf.select(config, parent, default=None) if parent else config
    return isinstance(node, DictConfig) and leaf in node


def did_you_mean(config: DictConfig, key: str) -> str:
    """`` Did you mean: a.b, a.c?`` for the keys of ``config`` beside a mistyped dotted ``key`` that are
    nearest to it; "" when none is near, or ``key``'s parent is not a mapping of ``config``."""
    from omegaconf import OmegaConf

    parent, _, leaf = key.rpartition(".")
    node = OmegaConf.select(config, parent, default=None) if parent else config
    siblings = [str(k) for k in node] if isinstance(node, DictConfig) else []
    close = difflib.get_close_matches(leaf, siblings, n=3)
    return f" Did you mean: {', '.join(f'{parent}.{c}' if parent else c for c in close)}?" if close else ""


def _parse_error(override: str) -> str | None:
    """Why Hydra's grammar rejects ``override`` (the first line of its message); None when it parses."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        OverridesParser.create().parse_override(override)
    except Exception as error:
        return first_line(error)
    return None


def _is_sweep(override: str) -> bool:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        return OverridesParser.create().parse_override(override).is_sweep_override()
    except Exception:
        return False


def _composes(config_name: str, overrides: list[str]) -> bool:
    from hydra import compose

    try:
        compose(config_name, overrides=overrides)
    except Exception:
        return False
    return True


# Hydra's options: those that take a value, and --info, whose value is optional and one of these names
_VALUE_OPTIONS = frozenset(
    [
        "--cfg", "-c", "--package", "-p", "--config-path", "-cp", "--config-name", "-cn", "--config-dir", "-cd",
        "--experimental-rerun",
    ]
)  # fmt: skip
_INFO_OPTIONS = frozenset(["--info", "-i"])
_INFO_TOPICS = frozenset(["all", "config", "defaults", "defaults-tree", "plugins", "searchpath"])


def _options_first(arguments: list[str]) -> list[str]:
    """``arguments`` with Hydra's options (``-m``, ``--cfg job``, ...) ahead of the overrides, in their order.

    Hydra's argparse takes the overrides as one list, so an option between two overrides
    (``explab-train seed=1,2 -m experiment=x``, ``explab-train experiment=x --cfg job seed=2``) was refused as
    "unrecognized arguments"; options and overrides mean the same wherever they stand.
    """
    options: list[str] = []
    overrides: list[str] = []
    index = 0
    while index < len(arguments):
        argument = arguments[index]
        index += 1
        if not argument.startswith("-"):
            overrides.append(argument)
            continue
        options.append(argument)
        takes_value = argument in _VALUE_OPTIONS or (
            argument in _INFO_OPTIONS and index < len(arguments) and arguments[index] in _INFO_TOPICS
        )
        if takes_value and index < len(arguments):
            options.append(arguments[index])
            index += 1
    return [*options, *overrides]


def _hydra_cfg_resolvable(options: list[str]) -> list[str]:
    """``--cfg hydra --resolve`` as ``--cfg all --package hydra --resolve``, which prints the same node resolved.

    Hydra resolves ``--cfg hydra`` apart from the job's config, where ``hydra.run.dir`` finds
    ``paths.log_dir``: it ended in a traceback ("Interpolation key 'paths.log_dir' not found").
    """
    if "--resolve" not in options:
        return options
    shown = next((i + 1 for i, option in enumerate(options[:-1]) if option in ("--cfg", "-c")), None)
    if shown is None or options[shown] != "hydra":
        return options
    rewritten = [*options[:shown], "all", *options[shown + 1 :]]
    if not any(option in ("--package", "-p") for option in options):
        rewritten += ["--package", "hydra"]
    return rewritten


# what Hydra raises, as a traceback, for ``-m`` given with ``--cfg`` or ``--info``
_ONE_MODE = "Only one of --run, --multirun, --cfg, --info and --shell_completion can be specified"


CTRL_C_EXIT = 130  # 128 + SIGINT, what a shell reports for a command stopped by Ctrl-C


def _say_what_is_missing(config_name: str, arguments: list[str]) -> None:
    """Exit with one message when the command line leaves a value the command needs unset (``???`` in its root
    config: ``explab-predict``'s ``model_uri`` and ``input``). Unchecked, Hydra met it as a traceback, inside
    the task or, for a key the job folder's name uses, while formatting its own error."""
    from omegaconf import OmegaConf

    if any(a.startswith("-") and a not in ("-m", "--multirun") for a in arguments):
        return  # --help, --cfg, --info: they show the config, ??? included
    root = OmegaConf.load(config_dir() / f"{config_name}.yaml")
    given = {override_key(a) for a in arguments if "=" in a}
    missing = [str(key) for key in root if OmegaConf.is_missing(root, key) and key not in given]
    if not missing:
        return
    command = Path(sys.argv[0]).name
    footer = str(OmegaConf.select(root, "hydra.help.footer", default=""))
    example = next((line.strip() for line in footer.splitlines() if line.strip().startswith(command)), None)
    print(
        f"Error: {command} needs {' and '.join(f'{key}=...' for key in missing)} on its command line"
        + (f", for example: {example}" if example else "")
        + f" ({command} --help lists its settings)",
        file=sys.stderr,
    )
    raise SystemExit(1)


def _say_a_group_takes_an_option(arguments: list[str]) -> None:
    """Exit with one message when the command line gives a config group of explab's ``null``
    (``scheduler=null``): Hydra answered with a traceback of its own ("Config group override must be a string
    or a list. Got NoneType"). A group leaves its part out with its ``none`` option, where it has one."""
    for argument in arguments:
        key, _, value = argument.partition("=")
        name = key.lstrip("+")
        group = config_dir() / name
        if value != "null" or "." in name or name.startswith("hydra") or not group.is_dir():
            continue
        options = sorted(p.stem for p in group.glob("*.yaml"))
        instead = (
            f"{name}=none leaves it out" if "none" in options else f"give one of its options: {', '.join(options)}"
        )
        print(f"Error: {argument}: {name} is a config group and takes an option's name; {instead}", file=sys.stderr)
        raise SystemExit(1)


# launcher options that only an optional extra's plugin provides: Hydra, lacking it, answered "In
# 'hydra/launcher/slurm': Could not load 'hydra/launcher/submitit_slurm'", which names neither the package
# nor the extra
_EXTRA_LAUNCHERS = {
    option: ("hydra_plugins.hydra_submitit_launcher", "hydra-submitit-launcher", "slurm")
    for option in ("slurm", "submitit_slurm", "submitit_local")
}
_SLURM_LAUNCHERS = frozenset({"slurm", "submitit_slurm"})


def _say_what_the_launcher_lacks(arguments: list[str]) -> None:
    """Exit with one message when the command line picks a launcher this machine cannot run: its plugin is
    not installed (named with the extra that installs it), or it submits to SLURM and SLURM's commands are
    not here (submitit's RuntimeError ended a plain multirun in a traceback)."""
    from importlib.util import find_spec

    launcher = next(
        (a.partition("=")[2] for a in arguments if a.partition("=")[0].lstrip("+") == "hydra/launcher"), None
    )
    if launcher in _EXTRA_LAUNCHERS:
        module, package, extra = _EXTRA_LAUNCHERS[launcher]
        if find_spec(module) is None:
            print(
                f"Error: hydra/launcher={launcher} submits through {package}, which this environment lacks: "
                f"pip install 'explab[{extra}]' (in a checkout: .venv/bin/pip install -e '.[{extra}]')",
                file=sys.stderr,
            )
            raise SystemExit(1)
    multirun = bool({"-m", "--multirun"} & set(arguments))
    # explab's sweeper checks SLURM itself, after its own settings and before its study exists
    own_sweeper = any(a.startswith(("hparams_search=", "hydra/sweeper=explab_optuna")) for a in arguments)
    if launcher in _SLURM_LAUNCHERS and multirun and not own_sweeper:
        from explab.sweep.slurm import check_slurm_here

        try:
            check_slurm_here()
        except ExplabError as error:
            print(f"Error: {error}", file=sys.stderr)
            raise SystemExit(1) from None


def run_hydra_app(app: Callable[[], object], config_name: str) -> None:
    """Run a ``@hydra.main`` app; on a composition error, print which key is wrong and what is valid."""
    from explab.utils.shutdown import finish_at_exit

    finish_at_exit()
    sys.argv = [sys.argv[0], *_hydra_cfg_resolvable(_options_first(sys.argv[1:]))]
    _say_what_is_missing(config_name, sys.argv[1:])
    _say_a_group_takes_an_option(sys.argv[1:])
    _say_what_the_launcher_lacks(sys.argv[1:])
    try:
        app()
    except ReportedError:
        raise
    except KeyboardInterrupt:
        # Ctrl-C: whatever was open (a run, a trial, a sweep's workers) is closed and said so in the log by now;
        # the traceback would only say where the interrupt landed. 130: the shell's code for it.
        raise SystemExit(CTRL_C_EXIT) from None
    except ValueError as error:
        if str(error) != _ONE_MODE or os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        print(
            "Error: -m (--multirun) runs the jobs, while --cfg and --info only show a config: give one of them. "
            "To see one job of the sweep, drop -m and give each swept key one value (seed=1,2,3 as seed=1); "
            "an hparams_search's search space shows with --cfg hydra",
            file=sys.stderr,
        )
        raise SystemExit(1) from None
    except SystemExit as exit_:
        if interrupted_by_ctrl_c(exit_):  # Lightning answers Ctrl-C in a fit with exit(1)
            raise SystemExit(CTRL_C_EXIT) from None
        if exit_.code not in (0, None):
            advice = _override_advice(config_name, [a for a in sys.argv[1:] if "=" in a])
            if advice:
                print(advice, file=sys.stderr)
        raise
