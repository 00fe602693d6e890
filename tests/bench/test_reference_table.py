"""The README's experiments table is the rendering of the reference benchmark's results file."""

from __future__ import annotations

import json
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

import reference_table  # noqa: E402


def test_readme_table_is_rendered_from_the_results_file() -> None:
    results = json.loads(reference_table.RESULTS.read_text())
    assert reference_table.readme_table(reference_table.README.read_text()) == reference_table.render(results)


def test_every_row_shows_median_and_range_over_three_seeds_and_the_text_rows_a_baseline() -> None:
    results = json.loads(reference_table.RESULTS.read_text())["rows"]
    for experiment, row in results.items():
        assert sorted(row["seeds"]) == ["1", "2", "3"], experiment
        assert row["min"] <= row["median"] <= row["max"] and row["measured"]["commit"], experiment
    text_rows = [name for name in results if name.startswith(("rotten_tomatoes", "imdb"))]
    assert "rotten_tomatoes_fasttext" in text_rows and all("baseline" in results[name] for name in text_rows)
