"""Dataset inputs logged by runs that start together, as a sweep's workers do (a real sqlite store)."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

from tests.conftest import tracking_uri_for

ROUNDS = 4  # each round a fresh experiment, so its datasets are new to the store again


def _log_together(uri: str, start: multiprocessing.synchronize.Barrier, errors: multiprocessing.Queue) -> None:
    """One worker: in each round, a run of experiment ``round-<k>`` logs the digits' splits at the barrier."""
    from explab.data.digits import DigitsDataModule
    from explab.tracking.datasets import log_dataset_inputs
    from explab.tracking.run import TrackedRun

    datamodule = DigitsDataModule()
    datamodule.setup()
    failures = []
    for k in range(ROUNDS):
        run = TrackedRun.create(uri, f"round-{k}")
        start.wait(timeout=60)
        try:
            log_dataset_inputs(run, datamodule)
        except Exception as err:  # reported to the test, which names it
            failures.append(f"round {k}: {err}"[:300])
        run.finish("FINISHED")
    errors.put(failures)


def test_runs_that_log_the_same_new_dataset_at_once_both_get_it(tmp_path: Path) -> None:
    """MLflow inserts a dataset an experiment lacks after looking it up, so both workers insert it; the later
    insert hits the unique key. Without the second ask nearly every round fails one worker."""
    uri = tracking_uri_for(tmp_path)
    from explab.tracking.store import open_client

    client = open_client(uri)  # made once here, so the workers race on datasets, not on the schema
    context = multiprocessing.get_context("spawn")
    start, errors = context.Barrier(2), context.Queue()
    workers = [context.Process(target=_log_together, args=(uri, start, errors)) for _ in range(2)]
    for worker in workers:
        worker.start()
    failures = [failure for _ in workers for failure in errors.get(timeout=300)]
    for worker in workers:
        worker.join(timeout=60)
    assert failures == []
    for k in range(ROUNDS):
        experiment = client.get_experiment_by_name(f"round-{k}")
        runs = client.search_runs([experiment.experiment_id])
        assert len(runs) == 2
        for run in runs:
            inputs = run.inputs.dataset_inputs
            assert sorted(i.dataset.name for i in inputs) == ["digits-test", "digits-train", "digits-val"]
        ids = {(i.dataset.name, i.dataset.digest) for run in runs for i in run.inputs.dataset_inputs}
        assert len(ids) == 3, "the two runs share one dataset per split"
