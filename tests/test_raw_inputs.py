"""The raw inputs explab-predict reads: what it says of inputs that get no prediction."""

from __future__ import annotations

import logging
from pathlib import Path

from explab.raw_inputs import read_text_column, read_text_files, read_texts


def test_texts_that_get_no_prediction_are_named_where_they_shift_the_rows(caplog, tmp_path: Path) -> None:
    """A blank line was skipped without a word: four lines gave three predictions, and a researcher who joined
    them back to the file by row read every prediction after the blank against the wrong review."""
    lines = tmp_path / "reviews.txt"
    lines.write_text("a gorgeous film\n\n  \nthe worst film of the year\n\n\n")
    with caplog.at_level(logging.WARNING, logger="explab.raw_inputs"):
        _, names = read_texts(lines)
    assert names == ["a gorgeous film", "the worst film of the year"]
    assert f"{lines}: lines 2, 3 hold no text and get no prediction: the output's rows are the 2 inputs with text" in (
        caplog.text
    ), caplog.text

    caplog.clear()
    table = tmp_path / "reviews.csv"
    table.write_text('label,text\n1,good\n0,""\n1,fine\n')
    with caplog.at_level(logging.WARNING, logger="explab.raw_inputs"):
        _, names = read_text_column(table)
    assert names == ["good", "fine"]
    assert f"{table}: row 2 holds no text in its text column (counting below the header) and gets no" in caplog.text

    caplog.clear()
    folder = tmp_path / "pos"
    folder.mkdir()
    (folder / "0_9.txt").write_text("good")
    (folder / "1_2.txt").write_text("\n")
    with caplog.at_level(logging.WARNING, logger="explab.raw_inputs"):
        _, names = read_text_files(folder)
    assert names == ["0_9.txt"] and f"{folder}: 1 file holds no text and gets no prediction: 1_2.txt" in caplog.text

    # trailing blank lines shift no row, and every text kept says nothing
    caplog.clear()
    lines.write_text("good\nbad\n\n\n")
    with caplog.at_level(logging.WARNING, logger="explab.raw_inputs"):
        read_texts(lines)
    assert "no prediction" not in caplog.text


def test_each_text_is_named_by_the_whole_of_it(tmp_path: Path) -> None:
    """Texts were named by their first 60 characters: two reviews that open alike read as one in the output,
    and neither joined back to the file it came from."""
    opening = "This is a film that takes its time, and it earns every minute of "
    reviews = [opening + "it.", opening + 'your patience, then wastes them, "sadly".']
    lines = tmp_path / "reviews.txt"
    lines.write_text("\n".join(reviews) + "\n")
    _, names = read_texts(lines)
    assert names == reviews
