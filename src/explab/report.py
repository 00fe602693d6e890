"""``explab-report experiment=NAME``: mean +- std over seeds of every configuration an experiment ran.

Runs are grouped by their params minus the seed (and minus what only says where a run wrote); each group
gets n, mean and standard deviation of the chosen metrics. Written as Markdown and CSV, printed, and logged
on a ``report`` run of the experiment. The documented way to report a result:

    explab-train -m experiment=digits_cnn seed=1,2,3 && explab-report experiment=digits_cnn
"""

from __future__ import annotations

import math
import statistics
import tempfile
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig

from explab.cli import report_user_errors
from explab.config import config_dir
from explab.errors import UsageError
from explab.tracking.params import describes_training
from explab.utils.logging import get_logger

log = get_logger(__name__)

# besides where a run wrote: params that differ between repeats of one configuration without changing it
REPEAT_KEYS = ("seed", "data.seed", "run_name", "test")
REPEAT_PREFIXES = ("optuna_trial.", "logger.")


def _configuration(params: dict[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple(
        sorted(
            (k, v)
            for k, v in params.items()
            if describes_training(k) and k not in REPEAT_KEYS and not k.startswith(REPEAT_PREFIXES)
        )
    )


def aggregate(runs: Sequence[Any], metrics: Sequence[str]) -> list[dict[str, Any]]:
    """One row per configuration: what sets it apart, n, and mean/std of each metric."""
    groups: dict[tuple, list[Any]] = defaultdict(list)
    for run in runs:
        groups[_configuration(run.data.params)].append(run)
    keys = [dict(k) for k in groups]
    varying = sorted({name for config in keys for name in config if len({c.get(name) for c in keys}) > 1})
    rows = []
    for config, members in groups.items():
        settings = dict(config)
        row: dict[str, Any] = {
            "configuration": ", ".join(f"{k}={settings.get(k)}" for k in varying) or "all",
            "n": len(members),
            "seeds": " ".join(sorted(r.data.params.get("seed", "?") for r in members)),
        }
        for metric in metrics:
            values = [r.data.metrics[metric] for r in members if metric in r.data.metrics]
            row[f"{metric} mean"] = statistics.fmean(values) if values else math.nan
            row[f"{metric} std"] = statistics.stdev(values) if len(values) > 1 else math.nan
        rows.append(row)
    return sorted(rows, key=lambda r: r["configuration"])


def to_markdown(rows: list[dict[str, Any]], metrics: Sequence[str]) -> str:
    header = ["configuration", "n", *metrics]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [row["configuration"], str(row["n"])]
        for metric in metrics:
            mean, std = row[f"{metric} mean"], row[f"{metric} std"]
            cells.append("n/a" if math.isnan(mean) else f"{mean:.4f}" + ("" if math.isnan(std) else f" ± {std:.4f}"))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def to_csv(rows: list[dict[str, Any]], path: Path) -> None:
    import csv

    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def report(cfg: DictConfig) -> str:
    from explab.tracking import TrackedRun
    from explab.tracking.store import open_client

    client = open_client(cfg.tracking_uri)
    experiment = client.get_experiment_by_name(cfg.experiment_name)
    if experiment is None:
        names = sorted(e.name for e in client.search_experiments())
        raise UsageError(f"no experiment '{cfg.experiment_name}' in {cfg.tracking_uri}; there are: {names}")
    found = client.search_runs(
        [experiment.experiment_id], filter_string="attributes.status = 'FINISHED'", max_results=5000
    )
    runs = [r for r in found if "explab.sweep" not in r.data.tags and "explab.report" not in r.data.tags]
    if not runs:
        raise UsageError(f"experiment '{cfg.experiment_name}' has no FINISHED training runs to report")
    metrics = list(cfg.metrics)
    rows = aggregate(runs, metrics)
    markdown = f"# {cfg.experiment_name}: mean ± std over seeds\n\n" + to_markdown(rows, metrics)
    print(markdown)
    run = TrackedRun.create(
        cfg.tracking_uri,
        cfg.experiment_name,
        run_name="report",
        tags={"explab.report": "true", "explab.report.runs": str(len(runs))},
    )
    with run.lifecycle(), tempfile.TemporaryDirectory(prefix="explab-report-") as folder:
        (Path(folder) / "report.md").write_text(markdown)
        to_csv(rows, Path(folder) / "report.csv")
        run.log_file(Path(folder) / "report.md", "report")
        run.log_file(Path(folder) / "report.csv", "report")
    log.info("report logged on MLflow run %s", run.run_id)
    return markdown


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="report")
@report_user_errors
def _hydra_main(cfg: DictConfig) -> str:
    return report(cfg)


def main() -> None:
    """Console script ``explab-report``; ``experiment=NAME`` means ``experiment_name=NAME``.

    explab-train chooses an experiment with ``experiment=NAME`` and tracks it under that name; here
    ``experiment`` would be taken for the config group of that name, so the words a user already knows are
    turned into the key this config has.
    """
    import sys

    from explab.cli import run_hydra_app

    sys.argv = [f"experiment_name={a.split('=', 1)[1]}" if a.startswith("experiment=") else a for a in sys.argv]
    run_hydra_app(_hydra_main, config_name="report")


if __name__ == "__main__":
    main()
