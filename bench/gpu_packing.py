"""Trial packing on one GPU: trials per hour of a sweep with ``hydra.sweeper.trials_per_gpu=1, 2, 4``.

    .venv/bin/python bench/gpu_packing.py [digits mnist_cnn]   # on a machine with a GPU; elsewhere it says so

The digits and mnist_cnn searches (pruning off, so every trial does the same work) run once per packing,
alternately, ``REPEATS`` rounds; trials per hour from the first trial's start to the last trial's end in
Optuna's records. Target: packing 4 trials on the GPU gives the small model (digits) >= 2.5x the trials
per hour of one.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from explab.sweep.workers import visible_gpus
from harness import BIN, QUICK, interleaved, ratio_line
from sweeps import trials_per_hour

PACKINGS = (1, 2, 4)
SEARCHES = {
    "digits": (["hparams_search=digits_optuna"], 4 if QUICK else 24, 2 if QUICK else 5),
    "mnist_cnn": (
        ["experiment=mnist_cnn", "hparams_search=mnist_optuna", "data.val_size=5000"],
        4 if QUICK else 8,
        1 if QUICK else 2,
    ),
}
counter = itertools.count()


def packed_sweep(folder: Path, search: str, per_gpu: int, gpu: str) -> float:
    args, trials, epochs = SEARCHES[search]
    name = f"{search}{next(counter)}"
    storage = f"journal:///{folder}/{name}.journal"
    command = [
        str(BIN / "explab-train"), "-m", *args, "hydra/sweeper/pruner=none", "trainer=gpu",
        f"hydra.sweeper.trials_per_gpu={per_gpu}", f"hydra.sweeper.n_trials={trials}",
        f"hydra.sweeper.storage={storage}", f"hydra.sweeper.study_name={name}", f"hydra.sweep.dir={folder}/{name}",
        f"paths.mlruns_dir={folder}/mlruns", f"paths.log_dir={folder}/logs", f"trainer.max_epochs={epochs}",
    ]  # fmt: skip
    one_gpu = {**os.environ, "CUDA_VISIBLE_DEVICES": gpu}
    done = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=one_gpu, check=False)
    if done.returncode:
        raise SystemExit(f"sweep failed ({done.returncode}):\n{done.stderr.decode()[-3000:]}")
    rate = trials_per_hour(storage, name)
    # each sweep as it ends: a run cut short by its time limit still leaves what it measured
    print(f"  {search}, {per_gpu} per GPU: {rate:.0f} trials/hour", flush=True)
    return rate


def main() -> None:
    unknown = set(sys.argv[1:]) - SEARCHES.keys()
    if unknown:
        raise SystemExit(f"unknown search {sorted(unknown)}: choose from {sorted(SEARCHES)}")
    gpus = visible_gpus()
    if not gpus:
        print("gpu packing: not measured (no GPU visible)")
        return
    with tempfile.TemporaryDirectory(prefix="explab-packing-bench-") as tmp:
        for search in sys.argv[1:] or SEARCHES:
            cases = {str(k): (lambda s=search, k=k: packed_sweep(Path(tmp), s, k, gpus[0])) for k in PACKINGS}
            median = interleaved(cases)
            for k in PACKINGS[1:]:
                target = ">= 2.5x" if search == "digits" and k == 4 else None
                ratio_line(
                    f"gpu packing, {search}, {k} trials per GPU",
                    median[str(k)],
                    median["1"],
                    target,
                    f"{median[str(k)]:.0f} vs {median['1']:.0f} trials/hour on GPU {gpus[0]}",
                )


if __name__ == "__main__":
    main()
