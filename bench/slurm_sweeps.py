"""How idle the workers of a SLURM sweep are: ``n_jobs=2`` workers submitting digits trials to a real
one-node SLURM cluster (started here, as the tests start it; root and Debian's slurm-wlm + munge needed).

    sudo .venv/bin/python bench/slurm_sweeps.py      # part of `make bench` where SLURM is installed

Two figures from one sweep:
- worker idle fraction: the time a worker spends between telling one trial and launching the next (Optuna's
  ask, sampling, composing the job), over its time from its first trial's start to its last one's end;
- slot idle fraction: the time no job of a worker's slot is running in SLURM (submission, scheduling and
  submitit's polling included), over the sweep's span times the two slots, from squeue's start and end times
  (whole seconds).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections import defaultdict
from datetime import datetime
from pathlib import Path

import optuna

from explab.config import project_root
from explab.sweep.heartbeat import WORKER_ATTR
from explab.sweep.storage import open_storage
from harness import BIN, QUICK

sys.path.insert(0, str(project_root()))  # the test suite's cluster, so bench and tests run the same one
import itertools

from tests.support.slurm import SlurmCluster, why_not_available

TRIALS = 4 if QUICK else 12
EPOCHS = 1 if QUICK else 3
CPU_JOB = ["hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=1", "hydra.launcher.gpus_per_node=0",
           "hydra.launcher.tasks_per_node=1"]  # fmt: skip


def worker_idle_fraction(study: optuna.Study) -> float:
    by_worker: dict[str, list[optuna.trial.FrozenTrial]] = defaultdict(list)
    for trial in study.trials:
        if trial.datetime_complete is not None:
            by_worker[str(trial.user_attrs.get(WORKER_ATTR))].append(trial)
    idle = span = 0.0
    for trials in by_worker.values():
        trials.sort(key=lambda t: t.datetime_start)
        span += (trials[-1].datetime_complete - trials[0].datetime_start).total_seconds()
        idle += sum((b.datetime_start - a.datetime_complete).total_seconds() for a, b in itertools.pairwise(trials))
    return idle / span


def slot_idle_fraction(jobs: list[dict[str, str]], slots: int) -> float:
    spans = [(datetime.fromisoformat(j["start"]), datetime.fromisoformat(j["end"])) for j in jobs]
    busy = sum((end - start).total_seconds() for start, end in spans)
    whole = (max(end for _, end in spans) - min(start for start, _ in spans)).total_seconds()
    return 1 - busy / (slots * whole)


def main() -> None:
    reason = why_not_available()
    if reason:
        print(f"slurm sweep idle fractions: not measured ({reason})")
        return
    with tempfile.TemporaryDirectory(prefix="explab-slurm-bench-") as tmp:
        folder = Path(tmp)
        cluster = SlurmCluster(folder / "slurm")
        cluster.start()
        try:
            storage = f"journal:///{folder}/optuna.journal"
            command = [
                str(BIN / "explab-train"), "-m", "hparams_search=digits_optuna", "hydra/sweeper/pruner=none",
                "hydra/launcher=slurm", *CPU_JOB, "hydra.sweeper.n_jobs=2", f"hydra.sweeper.n_trials={TRIALS}",
                f"hydra.sweeper.storage={storage}", "hydra.sweeper.study_name=idle",
                f"paths.mlruns_dir={folder}/mlruns", f"paths.log_dir={folder}/logs", f"trainer.max_epochs={EPOCHS}",
            ]  # fmt: skip
            env = {**os.environ, **cluster.env}
            subprocess.run(command, check=True, capture_output=True, env=env)
            study = optuna.load_study(study_name="idle", storage=open_storage(storage))
            worker_idle = worker_idle_fraction(study)
            jobs = [j for j in cluster.settled_jobs() if j["state"] == "COMPLETED"]
        finally:
            cluster.stop()
    print(
        f"slurm sweep, n_jobs=2: worker idle {worker_idle:.2%}, slot idle "
        f"{slot_idle_fraction(jobs, 2):.1%}  [{TRIALS} digits trials of {EPOCHS} epochs, {len(jobs)} SLURM jobs, "
        "one-node cluster on this machine]",
        flush=True,
    )


if __name__ == "__main__":
    main()
