"""The raw inputs ``explab-predict`` reads, as the logged model takes them (it holds the data module's
preprocessing): a ``.npy`` array or a numeric ``.csv`` of raw values, a folder of images (converted and resized
to the model's raw shape), or for a text model a ``.txt`` file of texts (one per line), a ``.csv`` file's
``text`` column or a folder of ``.txt`` files (one text each). Each reader returns the inputs and a name per
input for the output, and refuses what it cannot read with the fix."""

from __future__ import annotations

import io
import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from explab.errors import UsageError
from explab.utils.logging import get_logger

log = get_logger(__name__)

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".pgm"}


def utf8_text(path: Path) -> str:
    """The content of ``path``, refused with the offending byte and the fix when it is not UTF-8 (the encoding
    the model's vocabulary was built from)."""
    raw = path.read_bytes()
    try:
        # utf-8-sig: the byte-order mark spreadsheets write is not part of the first text or number
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = raw[: error.start].count(b"\n") + 1
        raise UsageError(
            f"{path} is not UTF-8 text (byte 0x{raw[error.start]:02x} on line {line}): save it as UTF-8, for "
            f"instance iconv -f latin1 -t utf-8 {path.name} > utf8_{path.name}"
        ) from None


def read_texts(path: Path) -> tuple[Any, list[str]]:
    """One text per line, as the text column the model takes."""
    texts = _with_text([line.strip() for line in utf8_text(path).splitlines()], path, "line")
    if not texts:
        raise UsageError(f"{path} holds no text: give one review per line")
    return _text_inputs(texts)


def _with_text(texts: list[str], path: Path, position: str, detail: str = "") -> list[str]:
    """The ``texts`` that hold any. Those that hold none before the last text are warned of by ``position``
    (``line``, ``row``) and number from 1: they get no row, so the output's rows are no longer one per input
    line; blank lines at the end shift nothing."""
    kept = [text for text in texts if text]
    last = max((i for i, text in enumerate(texts) if text), default=-1)
    skipped = [str(i + 1) for i, text in enumerate(texts[:last]) if not text]
    if skipped:
        several = len(skipped) > 1
        log.warning(
            "%s: %s %s%s %s no text%s and %s no prediction: the output's rows are the %d inputs with text, in order",
            path,
            position + ("s" if several else ""),
            ", ".join(skipped[:10]),
            ", ..." if len(skipped) > 10 else "",
            "hold" if several else "holds",
            detail,
            "get" if several else "gets",
            len(kept),
        )
    return kept


def read_text_files(folder: Path) -> tuple[Any, list[str]]:
    """Each ``.txt`` file of ``folder`` as one text, named by its file name (the aclImdb layout, one review per
    file); subfolders are not entered, so ``aclImdb/test/pos`` is read and ``aclImdb/test``'s lists are not."""
    files = sorted(p for p in folder.iterdir() if p.suffix == ".txt" and p.is_file())
    texts = [utf8_text(p).strip() for p in files]
    if not any(texts):
        raise UsageError(f"{folder} holds no .txt file with text: give a folder of .txt files, one text each")
    kept = [(p.name, text) for p, text in zip(files, texts, strict=True) if text]
    empty = [p.name for p, text in zip(files, texts, strict=True) if not text]
    if empty:
        log.warning(
            "%s: %s no text and %s no prediction: %s",
            folder,
            "1 file holds" if len(empty) == 1 else f"{len(empty)} files hold",
            "gets" if len(empty) == 1 else "get",
            ", ".join(empty[:10]) + (", ..." if len(empty) > 10 else ""),
        )
    frame, _ = _text_inputs([text for _, text in kept])
    return frame, [name for name, _ in kept]


def _text_inputs(texts: list[str]) -> tuple[Any, list[str]]:
    """``texts`` as the text column the model takes, and each text whole as its name in the output: a review
    cut to its start could read as another that starts alike, and would not join back to the inputs."""
    import pandas as pd

    from explab.serving import TEXT_COLUMN

    return pd.DataFrame({TEXT_COLUMN: texts}), list(texts)


def read_text_column(path: Path) -> tuple[Any, list[str]]:
    """The ``text`` column of a .csv file (with a header row; other columns, such as labels, are left out)."""
    import pandas as pd

    from explab.serving import TEXT_COLUMN

    table = pd.read_csv(io.StringIO(utf8_text(path)), dtype=str, keep_default_na=False)
    if TEXT_COLUMN not in table.columns:
        raise UsageError(
            f"{path} has no column named {TEXT_COLUMN} (its header: {', '.join(map(str, table.columns)) or 'none'}); "
            f"head the column of texts {TEXT_COLUMN!r}, or give a .txt file with one text per line"
        )
    texts = _with_text(
        [t.strip() for t in table[TEXT_COLUMN]],
        path,
        "row",
        f" in its {TEXT_COLUMN} column (counting below the header)",
    )
    if not texts:
        raise UsageError(f"{path} holds no text in its {TEXT_COLUMN} column")
    return _text_inputs(texts)


def read_images(folder: Path, recipe: dict[str, Any]) -> tuple[np.ndarray, list[str]]:
    """Each image converted and resized to the model's raw shape, its pixels on the data's own scale."""
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise UsageError(f"{folder} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    shape = list(recipe.get("raw_shape", []))
    if recipe.get("kind") != "numeric" or len(shape) not in (2, 3):
        raise UsageError(f"this model takes inputs of shape {shape or 'unknown'}, not images")
    height, width = shape[:2]
    mode = "RGB" if len(shape) == 3 else "L"
    # an image file's pixels are 0..255; the model's raw pixels are on its data's scale (0..16 for digits)
    arrays = [np.asarray(_image(p, folder).convert(mode).resize((width, height)), dtype=np.float64) for p in files]
    return np.stack(arrays).reshape(len(files), *shape) / 255.0 * recipe["scale"], [p.name for p in files]


def _image(path: Path, folder: Path) -> Any:
    """The decoded image at ``path``, refused by name when PIL cannot read it (not an image, or cut short)."""
    from PIL import Image

    try:
        image = Image.open(path)
        image.load()  # PIL decodes lazily: a file cut short fails here, not at open
    except OSError as error:  # PIL's UnidentifiedImageError and "image file is truncated" are OSErrors
        raise UsageError(
            f"{path} cannot be read as an image ({error}): save it again, or move it out of {folder}"
        ) from None
    return image


def read_inputs(path: Path, recipe: dict[str, Any]) -> tuple[Any, list[str]]:
    """Raw inputs from ``path``: texts from a ``.txt`` file, a ``.csv`` file's ``text`` column or a folder of
    ``.txt`` files; a folder of images, or a ``.npy`` / numeric ``.csv`` array of raw values (digit pixels of
    0..16, image pixels of 0..255, features in their units)."""
    if recipe.get("kind") == "text":
        from explab.serving import TEXT_COLUMN

        if path.suffix == ".csv" and path.is_file():
            return read_text_column(path)
        if path.is_dir():
            return read_text_files(path)
        if path.suffix != ".txt" or not path.is_file():
            raise UsageError(
                f"input={path}: this is a text model; give a .txt file with one text per line, a .csv file "
                f"with a column named {TEXT_COLUMN}, or a folder of .txt files with one text each"
            )
        return read_texts(path)
    shape = list(recipe.get("raw_shape", []))
    if path.is_dir():
        return read_images(path, recipe)
    if not path.is_file():
        raise UsageError(f"input={path} does not exist; give a .npy array, a numeric .csv or a folder of images")
    if path.suffix == ".npy":
        x = _npy(path)
    elif path.suffix == ".csv":
        # ndmin=2: a one-row file is one input, not a column of numbers; an empty file is refused below
        text = utf8_text(path)
        header = _header(text)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*Empty input file.*")
            x = np.genfromtxt(
                io.StringIO(text), delimiter=",", dtype=np.float64, skip_header=int(header is not None), ndmin=2
            )
        if header is not None and recipe.get("columns") and x.size:
            x = _by_column_names(path, x, header, list(recipe["columns"]))
    else:
        raise UsageError(
            f"{path}: give a .npy array, a numeric .csv or a folder of images (text models take .txt files)"
        )
    inputs = _as_model_inputs(path, x, shape)
    return inputs, [str(i) for i in range(len(inputs))]


def _npy(path: Path) -> np.ndarray:
    """The numbers of a ``.npy`` file as float64, refused by name when it is cut short, not a ``.npy`` file, or
    holds objects or text (read without pickle, which would run what the file holds)."""
    try:
        return np.load(path, allow_pickle=False).astype(np.float64)
    except (ValueError, OSError, EOFError) as error:
        raise UsageError(
            f"{path} cannot be read as an array of numbers ({error}): save the inputs again with numpy.save, "
            "as numbers, or give a numeric .csv"
        ) from None


def _as_model_inputs(path: Path, x: np.ndarray, shape: list[int]) -> np.ndarray:
    """``x`` as a batch of the model's input shape; empty input, empty or non-numeric cells and a wrong
    number of values per input are refused with the shape the model expects."""
    expected = f"{math.prod(shape)} numbers per input (shape {shape})" if shape else "numbers"
    if x.size == 0 or len(x) == 0:
        raise UsageError(f"{path} holds no inputs: give one row per input, {expected}")
    if np.isnan(x).any():
        rows = sorted({int(i) + 1 for i in np.argwhere(np.isnan(x.reshape(len(x), -1)))[:, 0]})[:10]
        raise UsageError(f"{path}: input(s) {rows} have empty or non-numeric values; every value must be a number")
    if not shape or list(x.shape[1:]) == shape:
        return x
    if list(x.shape) == shape:  # one input, as the model takes it (a single image, one row of features)
        return x[None]
    if x[0].size != math.prod(shape):
        raise UsageError(f"{path} gives {x[0].size} values per input; this model takes {expected}")
    return x.reshape(len(x), *shape)


def _header(text: str) -> list[str] | None:
    """The column names of a first row of names only (no cell is a number); None for a row with some numbers,
    which is data."""
    first = text.partition("\n")[0].strip()
    if not first:
        return None
    cells = [cell.strip().strip('"').strip() for cell in first.split(",")]
    return None if any(_is_number(cell) for cell in cells) else cells


def _by_column_names(path: Path, x: np.ndarray, header: list[str], columns: list[str]) -> np.ndarray:
    """The columns of ``x`` in the order the model takes them, found by their names in ``header``: a table
    whose columns come in another order, or with more (a target beside the features), is read right."""
    missing = [name for name in columns if name not in header]
    if missing:
        raise UsageError(
            f"{path} has no column {', '.join(missing)} (its header: {', '.join(header)}); this model takes the "
            f"columns {', '.join(columns)}, by name in any order (others are left out), or a file without a "
            "header whose rows hold them in that order"
        )
    return x[:, [header.index(name) for name in columns]]


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True
