"""examples/slurm/train.sbatch outside a job; tests/test_slurm.py submits it to the suite's SLURM cluster."""

from __future__ import annotations

import subprocess

from tests.conftest import ROOT

SCRIPT = ROOT / "examples" / "slurm" / "train.sbatch"


def test_the_batch_job_without_explab_on_its_path_says_to_activate_the_environment(tmp_path) -> None:
    done = subprocess.run(
        ["bash", str(SCRIPT), "experiment=mnist_cnn"],
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "SLURM_JOB_ID": "7"},
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert "explab-train is not on PATH: run 'source .venv/bin/activate'" in done.stderr
    assert not list(tmp_path.iterdir()), "nothing is written"
