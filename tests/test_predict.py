"""explab-predict: predictions from arrays, image folders and texts, with the run's preprocessing."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from explab.train import train
from tests.conftest import run_cli, runs_in


@pytest.mark.slow
def test_predict_cli_reads_arrays_and_image_folders(logged_run: str, store: Path, tmp_path: Path) -> None:
    from sklearn.datasets import load_digits

    digits = load_digits()
    (tmp_path / "images").mkdir()
    for i in range(6):
        Image.fromarray((digits.images[i] * 255 / 16).astype(np.uint8)).save(tmp_path / "images" / f"d{i}.png")
    np.save(tmp_path / "x.npy", digits.images[:6])  # raw pixels of 0..16, as the data set holds them
    common = [f"paths.mlruns_dir={store}", f"paths.log_dir={tmp_path}/logs"]
    # the run id alone, as the logs and the UI show it, names the model that run logged
    uris = (f"runs:/{logged_run}/model", logged_run)
    for uri, (source, output) in zip(uris, (("x.npy", "from_array.csv"), ("images", "from_images.csv")), strict=True):
        done = run_cli(
            "explab-predict",
            f"model_uri={uri}",
            f"input={tmp_path / source}",
            f"output={tmp_path / output}",
            *common,
            cwd=tmp_path,
        )
        assert done.returncode == 0, done.stderr[-2000:]
    rows = [(tmp_path / name).read_text().splitlines() for name in ("from_array.csv", "from_images.csv")]
    assert rows[0][0].startswith("input,prediction,prob_0") and len(rows[0]) == 7
    array_predictions = [line.split(",")[1] for line in rows[0][1:]]
    image_predictions = [line.split(",")[1] for line in rows[1][1:]]
    assert array_predictions == image_predictions, "an image's pixels are put on the data's own scale"
    assert sum(p == str(t) for p, t in zip(array_predictions, digits.target[:6], strict=True)) >= 3
    # pixels of 0..255 for digits of 0..16 gave answers that meant nothing
    np.save(tmp_path / "x255.npy", digits.images[:6] * 255 / 16)
    done = run_cli(
        "explab-predict",
        f"model_uri={logged_run}",
        f"input={tmp_path / 'x255.npy'}",
        f"output={tmp_path / 'from_255.csv'}",
        *common,
        cwd=tmp_path,
    )
    assert done.returncode == 1 and "the inputs' values run from 0 to 255" in done.stderr, done.stderr[-2000:]
    assert not (tmp_path / "from_255.csv").exists()


@pytest.mark.slow
def test_predict_cli_encodes_text_with_the_runs_vocabulary(compose_cfg, store: Path, tmp_path: Path) -> None:
    from tests.support.formats import NEGATIVE, POSITIVE, write_snippets

    snippets = write_snippets(tmp_path / "snippets.csv.gz", count=200)
    train(
        compose_cfg(
            "experiment=rotten_tomatoes_sentiment",
            f"data.path={snippets}",
            "data.min_freq=1",
            "log_model=true",
            "trainer.max_epochs=6",
            "trainer.enable_progress_bar=false",
        )
    )
    [run] = runs_in(store, "rotten_tomatoes_sentiment")
    texts = tmp_path / "reviews.txt"
    texts.write_text("\n".join([POSITIVE[0], NEGATIVE[0], "a word never seen before"]) + "\n")
    done = run_cli(
        "explab-predict",
        f"model_uri=runs:/{run.info.run_id}/model",
        f"input={texts}",
        f"output={tmp_path / 'out.csv'}",
        f"paths.mlruns_dir={store}",
        f"paths.log_dir={tmp_path}/logs",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    lines = (tmp_path / "out.csv").read_text().splitlines()
    assert lines[0] == "input,prediction,prob_0,prob_1" and len(lines) == 4
    assert [line.split(",")[-3] for line in lines[1:3]] == ["1", "0"], lines

    # the same texts as the text column of a table, beside its labels; a table without one is refused
    table = tmp_path / "reviews.csv"
    table.write_text(
        "label,text\n" + "".join(f'{label},"{text}"\n' for label, text in [(1, POSITIVE[0]), (0, NEGATIVE[0])])
    )
    where = [f"paths.mlruns_dir={store}", f"paths.log_dir={tmp_path}/logs"]
    model = f"model_uri=runs:/{run.info.run_id}/model"
    done = run_cli("explab-predict", model, f"input={table}", f"output={tmp_path / 'table.csv'}", *where, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "table.csv").read_text().splitlines()[1:] == lines[1:3]
    # and as a folder of one review per file, named by file
    (tmp_path / "pos").mkdir()
    (tmp_path / "pos" / "0_9.txt").write_text(POSITIVE[0])
    (tmp_path / "pos" / "1_2.txt").write_text(NEGATIVE[0])
    done = run_cli(
        "explab-predict", model, f"input={tmp_path / 'pos'}", f"output={tmp_path / 'files.csv'}", *where, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr[-2000:]
    by_text = list(csv.reader(lines[1:3]))
    by_file = list(csv.reader((tmp_path / "files.csv").read_text().splitlines()[1:]))
    assert by_file == [["0_9.txt", *by_text[0][1:]], ["1_2.txt", *by_text[1][1:]]]
    table.write_text("review\ngood\n")
    done = run_cli("explab-predict", model, f"input={table}", f"output={tmp_path / 'no.csv'}", *where, cwd=tmp_path)
    assert done.returncode == 1 and "has no column named text (its header: review)" in done.stderr, done.stderr


def test_an_input_that_is_not_there_is_named_before_the_model_is_fetched(compose_cfg, tmp_path: Path) -> None:
    from explab.errors import UsageError
    from explab.predict import predict

    cfg = compose_cfg("model_uri=runs:/0123456789abcdef/model", f"input={tmp_path}/gone.csv", config_name="predict")
    with pytest.raises(UsageError, match=r"input=.*/gone.csv does not exist; give a .npy array, a numeric .csv"):
        predict(cfg)


@pytest.mark.parametrize(
    ("output", "message"),
    [
        ("out", r"output=.*/out is a folder; give a file in it, e.g. output=.*/out/predictions.csv"),
        ("p.json", r"output=p.json: explab-predict writes a CSV table .* give a .csv file, e.g. output=p.csv"),
    ],
)
def test_an_output_that_cannot_take_a_csv_is_refused_before_the_model_runs(tmp_path: Path, output, message) -> None:
    """A folder failed with IsADirectoryError once the model had run; p.json received CSV."""
    np.save(tmp_path / "x.npy", np.zeros((2, 8, 8), dtype=np.float32))
    (tmp_path / "out").mkdir()
    given = str(tmp_path / output) if output == "out" else output
    # no such model: the output is checked before anything is fetched
    where = [f"paths.mlruns_dir={tmp_path}/mlruns", f"paths.log_dir={tmp_path}/logs"]
    done = run_cli(
        "explab-predict", "model_uri=runs:/0123/model", "input=x.npy", f"output={given}", *where, cwd=tmp_path
    )
    assert done.returncode == 1 and re.search(message, done.stderr), done.stderr[-2000:]
