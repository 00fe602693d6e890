"""What a run needs recorded to be reproduced: git state, library versions, the hardware that computes it, and
a safe slice of the environment."""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
import platform
import re
import socket
import subprocess
import sys
from collections import Counter
from collections.abc import Iterable, Mapping
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from explab.errors import counted
from explab.targets import target_packages

if TYPE_CHECKING:
    import lightning as L

TRACKED_PACKAGES = ("explab", "torch", "lightning", "hydra-core", "mlflow", "optuna", "torchmetrics", "numpy")

# Only these environment variables are ever recorded: they shape a run and carry no secrets.
ENV_ALLOW_LIST = (
    "CUDA_VISIBLE_DEVICES",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "CUBLAS_WORKSPACE_CONFIG",
    "PYTHONHASHSEED",
    "SLURM_JOB_ID",
    "SLURM_JOB_NAME",
    "SLURM_NNODES",
    "SLURM_NTASKS",
    "WORLD_SIZE",
)


def _git(root: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


# the MLflow UI's Source column: which program made a run (its commit comes with git_state)
SOURCE_TAGS = {"mlflow.source.name": "explab-train", "mlflow.source.type": "LOCAL"}


# files an uncommitted change of which does not change what trains: prose and notebooks
NOT_CODE = ("*.md", "*.rst", "*.ipynb")


def git_state(root: Path) -> dict[str, str]:
    """Commit, branch and dirty flag as MLflow tags, and where the uncommitted change touches more than
    ``NOT_CODE`` files ``git.diff_sha256``, the first 12 hex digits of that change's hash; empty outside a git
    checkout."""
    commit = _git(root, "rev-parse", "HEAD")
    if commit is None:
        return {}
    status = _git(root, "status", "--porcelain", "--untracked-files=no") or ""
    state = {
        "mlflow.source.git.commit": commit,
        "git.commit": commit,
        "git.branch": _git(root, "rev-parse", "--abbrev-ref", "HEAD") or "",
        "git.dirty": str(bool(status)).lower(),
    }
    # the whole repository, as git.dirty: the code that trains may sit beside the project's folder
    change = _git(root, "diff", "HEAD", "--", ":/", *(f":(top,exclude){glob}" for glob in NOT_CODE)) if status else ""
    if change:  # two dirty runs of one commit trained the same code only where their diffs are the same
        state["git.diff_sha256"] = hashlib.sha256(change.encode()).hexdigest()[:12]
    return state


@functools.cache
def checkout_state(root: Path) -> tuple[dict[str, str], str]:
    """``git_state`` and ``git_diff`` of ``root`` as this process first found them: the code a process trains
    with is what it imported then, however the checkout moves while a multirun or a sweep worker goes on (a
    commit, an edit between two jobs). What runs record, and what ``reproduce=`` compares with its source."""
    return git_state(root), git_diff(root)


def code_checkouts(cfg: Any, root: Path) -> dict[str, str]:
    """``git.PACKAGE.commit``, ``.dirty`` and ``.diff_sha256`` for each package the config builds from (the
    top-level package of a ``_target_``) whose files a git checkout other than ``root``'s tracks, as this
    process first found it: a lab's own package, trained by an explab installed from elsewhere, whose edits
    the ``git.*`` tags of explab's checkout would not show. Installed libraries are tracked by no checkout."""
    tags: dict[str, str] = {}
    for package, (state, _) in package_checkouts(cfg, root).items():
        tags.update({f"git.{package}.{key[4:]}": state[key] for key in CHECKOUT_KEYS if key in state})
    return tags


def package_checkouts(cfg: Any, root: Path) -> dict[str, tuple[dict[str, str], str]]:
    """``checkout_state`` of the checkout of each package ``code_checkouts`` records, by package name: its
    ``git_state`` and uncommitted change, which the run logs as ``config/git_diff.PACKAGE.patch``."""
    return _checkouts_of(target_packages(cfg), root)


def _checkouts_of(packages: Iterable[str], root: Path) -> dict[str, tuple[dict[str, str], str]]:
    """``checkout_state`` of each of ``packages`` that a git checkout other than ``root``'s tracks."""
    own = _toplevel(root)
    checkouts = {}
    for package in sorted(packages):
        top = _package_checkout(package)
        if top is not None and top != own:
            checkouts[package] = checkout_state(Path(top))
    return checkouts


# what tells two checkouts' code apart (the branch names it, and does not change it)
CHECKOUT_KEYS = ("git.commit", "git.dirty", "git.diff_sha256")
# one of them, of explab's checkout (``git.commit``) or of a package's own (``git.PACKAGE.commit``): the prefix
# that names the checkout, and the key
CHECKOUT_TAG = re.compile(r"(git\.(?:[^.]+\.)?)(commit|dirty|diff_sha256)")


def tells_code_apart(key: str) -> bool:
    """Whether the tag ``key`` is the commit, dirty flag or change of a checkout a run's code came from."""
    return CHECKOUT_TAG.fullmatch(key) is not None


def recorded_checkouts(tags: Mapping[str, str]) -> list[str]:
    """The tag prefix of each checkout whose commit a run's ``tags`` record: ``git.`` for explab's own,
    ``git.PACKAGE.`` for a package's (``code_checkouts``)."""
    found = (CHECKOUT_TAG.fullmatch(key) for key in tags)
    return [checkout.group(1) for checkout in found if checkout is not None and checkout.group(2) == "commit"]


def checkouts_moved(packages: Iterable[str], root: Path) -> list[str]:
    """Those of ``packages`` whose checkout (one other than ``root``'s) is no longer as this process first found
    it (a commit since, an edit, an edit undone): its files now are not those the process imported."""
    moved = []
    for package, (first, _) in _checkouts_of(packages, root).items():
        top = _package_checkout(package)
        now = git_state(Path(top)) if top is not None else {}
        if any(first.get(key) != now.get(key) for key in CHECKOUT_KEYS):
            moved.append(package)
    return moved


@functools.cache
def _toplevel(folder: Path) -> str | None:
    return _git(folder, "rev-parse", "--show-toplevel")


@functools.cache
def _package_checkout(package: str) -> str | None:
    """The top folder of the checkout whose git tracks ``package``'s files; None for a package in none (an
    installed library: a venv inside a checkout is ignored by it, not tracked)."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    places = [spec.origin] if spec is not None and spec.origin and os.path.isfile(spec.origin) else []
    if not places and spec is not None and spec.submodule_search_locations:
        places = list(spec.submodule_search_locations)  # a namespace package
    for place in places:
        folder = Path(place) if os.path.isdir(place) else Path(place).parent
        top = _toplevel(folder)
        if top is not None and _git(folder, "ls-files", "--error-unmatch", place):
            return top
    return None


def git_diff(root: Path) -> str:
    """The uncommitted change against HEAD (tracked files), so a dirty run can still be reproduced."""
    return _git(root, "diff", "HEAD") or ""


def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in TRACKED_PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def host_tags() -> dict[str, str]:
    from explab.tracking.params import masked_override

    command = " ".join(masked_override(argument) for argument in sys.argv)  # a password in a URL never leaves
    return {"hostname": socket.gethostname(), "platform": platform.platform(), "command": command}


def allowed_environment() -> dict[str, str]:
    return {name: os.environ[name] for name in ENV_ALLOW_LIST if name in os.environ}


HARDWARE_PREFIX = "hardware."


def cpu_model() -> str:
    """The CPU's model name as the OS reports it (``/proc/cpuinfo`` on Linux)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def hardware(trainer: L.Trainer) -> dict[str, str]:
    """What computes the run's numbers, as ``hardware.*`` tags: the CPU model, the kernel family torch
    dispatches to on it (``AVX2``, ``AVX512``), torch's thread count, and where the trainer uses CUDA the GPU
    model with the CUDA and cuDNN versions.

    The same seed and libraries on another CPU kind, thread count or GPU round floats differently (another
    kernel, another split of a reduction), and training drifts from there: these tell a reproduction that
    moved why it did.
    """
    import torch

    found = {
        "hardware.cpu": cpu_model(),
        "hardware.cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "hardware.torch_threads": str(torch.get_num_threads()),
    }
    device = trainer.strategy.root_device
    if device.type == "cuda":
        found["hardware.gpu"] = torch.cuda.get_device_name(device)
        found["hardware.cuda"] = f"CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}"
    return found


def hardware_differences(then: dict[str, str], now: dict[str, str]) -> list[str]:
    """``KEY THEN then, NOW now`` for each ``hardware.*`` value of a run's tags (``then``) that ``now``
    differs from; a run recorded before these tags existed has nothing to compare."""
    keys = sorted(k for k in {*then, *now} if k.startswith(HARDWARE_PREFIX))
    if not any(k in then for k in keys):
        return []
    return [
        f"{key} {then.get(key, '(none)')} then, {now.get(key, '(none)')} now"
        for key in keys
        if then.get(key) != now.get(key)
    ]


# what tells machines apart in runs' records; the CUDA version alone does not move a timing or a result as these do
HARDWARE_KINDS = ("hardware.cpu", "hardware.cpu_capability", "hardware.torch_threads", "hardware.gpu")


def hardware_mix(tags_of_runs: Iterable[Mapping[str, str]]) -> str:
    """``hardware.gpu A (2 runs), B (1 run)`` for each kind of hardware the runs' tags differ in, "; "
    between kinds; "" when they share it (runs recorded before these tags are left out)."""
    counts: dict[str, Counter[str]] = {key: Counter() for key in HARDWARE_KINDS}
    for tags in tags_of_runs:
        for key in HARDWARE_KINDS:
            if key in tags:
                counts[key][tags[key]] += 1
    return _differing(counts)


def code_mix(tags_of_runs: Iterable[Mapping[str, str]]) -> str:
    """``git.commit 1a2b3c4 (2 runs), 5d6e7f8 with uncommitted changes 0a1b2c3d4e5f (1 run)``, the same for
    each ``git.PACKAGE.commit`` (``code_checkouts``) and each ``version.*`` (python, torch, ...) the runs' tags
    differ in, "; " between kinds; "" when they trained from the same code (a run recorded outside a git
    checkout has no commit to count)."""
    counts: dict[str, Counter[str]] = {"git.commit": Counter()}
    for tags in tags_of_runs:
        for checkout in recorded_checkouts(tags):
            counts.setdefault(f"{checkout}commit", Counter())[_code_of(tags, checkout)] += 1
        for key, value in tags.items():
            if key.startswith("version."):
                counts.setdefault(key, Counter())[value] += 1
    return _differing(counts)


def _code_of(tags: Mapping[str, str], checkout: str) -> str:
    # a run recorded before git.diff_sha256 is counted by its commit alone
    commit, changed = tags[f"{checkout}commit"][:7], tags.get(f"{checkout}diff_sha256")
    return f"{commit} with uncommitted changes {changed}" if changed else commit


def _differing(counts: Mapping[str, Counter[str]]) -> str:
    return "; ".join(
        f"{key} " + ", ".join(f"{value} ({counted(n, 'run')})" for value, n in sorted(found.items()))
        for key, found in counts.items()
        if len(found) > 1
    )
