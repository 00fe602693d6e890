"""Time to accuracy: ``explab-train experiment=mnist_fast`` from process start to its test accuracy.

    make data && .venv/bin/python bench/time_to_accuracy.py        # part of `make bench`

The real command a researcher runs (MLflow on, checkpoints, test of the best checkpoint, logged model) on
real MNIST; the wall time covers everything from process start to exit. Target: >= 99.0 % test accuracy in
<= 45 s on 2 cores. The store is created beforehand, as it exists on any machine that has run explab once.
"""

from __future__ import annotations

import tempfile

from explab.tracking.store import open_client
from harness import BIN, mnist_available, wall

TARGET_ACCURACY, TARGET_SECONDS = 0.99, 45.0


def main() -> None:
    if not mnist_available():
        print("time to accuracy (mnist_fast): skipped, real MNIST not found (run `make data`)")
        return
    with tempfile.TemporaryDirectory(prefix="explab-tta-") as tmp:
        uri = f"sqlite:///{tmp}/mlruns/mlflow.db"
        client = open_client(uri)
        command = [
            str(BIN / "explab-train"),
            "experiment=mnist_fast",
            f"paths.mlruns_dir={tmp}/mlruns",
            f"paths.log_dir={tmp}/logs",
            "trainer.enable_progress_bar=false",
        ]
        seconds = wall(command)
        experiment = client.get_experiment_by_name("mnist_fast")
        [run] = client.search_runs([experiment.experiment_id])
    accuracy = run.data.metrics["test/acc"]
    met = accuracy >= TARGET_ACCURACY and seconds <= TARGET_SECONDS
    print(
        f"time to accuracy (mnist_fast): {seconds:.1f} s to test/acc {accuracy:.4f} "
        f"(target >= {TARGET_ACCURACY:.3f} in <= {TARGET_SECONDS:.0f} s, {'met' if met else 'NOT met'})",
        flush=True,
    )


if __name__ == "__main__":
    main()
