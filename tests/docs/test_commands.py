"""Every explab and make command shown in the README, docs/ and examples/, and in the examples each console
script's ``--help`` ends with, composes as written.

Single runs go through their console script with ``--cfg job`` appended (Hydra composes the config and
prints it without running the job); multiruns compose their fixed overrides with Hydra and check that every
swept key exists, since Hydra refuses ``--cfg`` beside ``-m``. What the commands then do is tested where
their behaviour is: a wrong key or group in a documented command fails here.
"""

from __future__ import annotations

import contextlib
import re
import shlex
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from explab.config import config_dir
from tests.conftest import run_cli

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *sorted((ROOT / "examples").rglob("*.md"))]
SCRIPTS = {"explab-train": "train", "explab-eval": "eval", "explab-report": "report", "explab-predict": "predict"}
# scripts that pass their arguments on to a console script (examples/slurm/train.sbatch: to srun explab-train)
WRAPPERS = {"train.sbatch": "explab-train"}
# what a reader replaces by hand
PLACEHOLDERS = {
    "<RUN_ID>": "0123456789abcdef0123456789abcdef",
    "RUN_ID": "0123456789abcdef0123456789abcdef",
    "$SLURM_JOB_ID": "1",
}


@dataclass(frozen=True)
class Command:
    document: str
    line: str
    cwd: Path


def documented_commands() -> list[Command]:
    """The lines of every ``bash`` block, continuation lines joined, comments dropped, ``cd`` followed."""
    commands = []
    for document in DOCUMENTS:
        for block in re.findall(r"```bash\n(.*?)```", document.read_text(), flags=re.S):
            cwd = ROOT
            for raw in block.replace("\\\n", " ").splitlines():
                line = re.sub(r"\s+#.*$", "", raw).strip()
                if not line or line.startswith("#"):
                    continue
                if line.startswith("cd "):
                    cwd = ROOT / line.split()[1]
                    continue
                commands.append(Command(str(document.relative_to(ROOT)), line, cwd))
    return commands


def help_examples() -> list[Command]:
    """The example lines each console script's ``--help`` ends with (``  explab-train ...``)."""
    commands = []
    for script in SCRIPTS:
        done = run_cli(script, "--help", cwd=ROOT)
        for raw in done.stdout.splitlines():
            if raw.startswith(f"  {script} "):
                commands.append(Command(f"{script} --help", re.sub(r"\s+#.*$", "", raw).strip(), ROOT))
    return commands


def explab_args(command: Command) -> tuple[str, list[str]] | None:
    """(console script, its arguments) of a command that runs one, wherever it starts (srun, torchrun...)."""
    line = command.line
    for placeholder, value in PLACEHOLDERS.items():
        line = line.replace(placeholder, value)
    words = shlex.split(line)
    for i, word in enumerate(words):
        name = WRAPPERS.get(Path(word).name, Path(word).name)
        if name in SCRIPTS:
            return name, words[i + 1 :]
    return None


COMMANDS = documented_commands()
EXPLAB = [c for c in [*COMMANDS, *help_examples()] if explab_args(c)]
MAKE = [c for c in COMMANDS if c.line.startswith("make ")]
SWEEP_CLI = [c for c in COMMANDS if Path(shlex.split(c.line)[0]).name == "explab-sweep"]


def test_the_documents_show_commands() -> None:
    assert len(EXPLAB) >= 20 and len(MAKE) >= 5, [c.line for c in COMMANDS]
    assert {Path(c.document).name for c in EXPLAB} >= {"README.md", "sweeps.md", "reproduce-and-resume.md"}
    assert {c.document for c in EXPLAB} >= {f"{script} --help" for script in SCRIPTS}, "each --help shows examples"


def _compose_multirun(script: str, args: list[str], cwd: Path) -> None:
    parser = OverridesParser.create()
    overrides = parser.parse_overrides([a for a in args if a not in ("-m", "--multirun")])
    fixed = [o.input_line for o in overrides if not o.is_sweep_override()]
    searchpath = [o.value() for o in overrides if o.get_key_element() == "hydra.searchpath"]
    GlobalHydra.instance().clear()
    try:
        with contextlib.chdir(cwd), initialize_config_dir(str(config_dir()), version_base="1.3"):
            cfg = compose(SCRIPTS[script], overrides=[str(o) for o in fixed], return_hydra_config=True)
    finally:
        GlobalHydra.instance().clear()
    for override in overrides:
        if not override.is_sweep_override():
            continue
        key = override.get_key_element()
        group = config_dir() / key
        lab_group = [cwd / str(path).removeprefix("file://") / key for paths in searchpath for path in paths]
        assert OmegaConf.select(cfg, key) is not None or group.is_dir() or any(p.is_dir() for p in lab_group), (
            f"swept key {key} is neither a config key nor a group"
        )


def _check(command: Command) -> str | None:
    """None when the command composes; else what went wrong."""
    script, args = explab_args(command)  # type: ignore[misc]
    if "-m" in args or "--multirun" in args:
        try:
            _compose_multirun(script, args, command.cwd)
        except Exception as error:
            return f"{command.document}: {command.line}\n  {type(error).__name__}: {error}"
        return None
    env = {"PYTHONPATH": str(command.cwd)} if command.cwd != ROOT else None
    shows = {"--cfg", "-c"} & set(args)  # a command that only shows a config runs as written
    done = run_cli(script, *args, *([] if shows else ["--cfg", "job"]), cwd=command.cwd, env=env, timeout=120)
    if done.returncode != 0 or not done.stdout.strip():
        return f"{command.document}: {command.line}\n  {done.stderr.strip()[-800:]}"
    return None


@pytest.mark.slow
def test_every_documented_explab_command_composes() -> None:
    # multiruns compose in this process; Hydra's global state allows one at a time
    multiruns = [c for c in EXPLAB if {"-m", "--multirun"} & set(explab_args(c)[1])]  # type: ignore[index]
    singles = [c for c in EXPLAB if c not in multiruns]
    failures = [error for error in map(_check, multiruns) if error]
    with ThreadPoolExecutor(max_workers=2) as pool:
        failures += [error for error in pool.map(_check, singles) if error]
    assert not failures, "\n".join(failures)


def test_every_documented_make_target_exists() -> None:
    for command in MAKE:
        target = shlex.split(command.line)[1]
        done = subprocess.run(["make", "-n", "-C", str(ROOT), target], capture_output=True, text=True, check=False)
        assert done.returncode == 0, f"{command.document}: {command.line}\n{done.stderr}"


def test_every_documented_explab_sweep_command_parses(tmp_path: Path) -> None:
    """Its arguments are accepted (argparse exits 2 otherwise); the study itself need not exist here."""
    assert SWEEP_CLI, "the documents show explab-sweep"
    for command in SWEEP_CLI:
        args = shlex.split(command.line)[1:]
        done = run_cli("explab-sweep", *args, "--mlruns-dir", str(tmp_path), cwd=tmp_path, timeout=60)
        assert done.returncode in (0, 1) and "usage:" not in done.stderr, f"{command.line}\n{done.stderr}"
        assert done.returncode == 0 or "no study" in done.stderr, done.stderr


def test_the_ci_entry_point_parses_and_runs_the_readme_test_command() -> None:
    """CI runs ``.ci/run`` on a clean checkout; a shell syntax error there fails CI before any test runs."""
    script = ROOT / ".ci" / "run"
    done = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    readme_commands = {c.line for c in COMMANDS if c.document == "README.md"}
    assert "make test" in readme_commands and re.search(r"^make test$", script.read_text(), flags=re.M)
