"""Writers for small data files in the real on-disk formats, so loaders are tested against the real thing.

Image content comes from scikit-learn's real 8x8 digits, upscaled; text from a few real-looking reviews.
"""

from __future__ import annotations

import csv
import gzip
import io
import pickle
import struct
from pathlib import Path

import numpy as np


def digit_images(count: int, size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``count`` real digits from scikit-learn, upscaled to ``size`` x ``size`` uint8 images; more than its 1,797
    repeat some."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    idx = np.random.default_rng(seed).choice(len(digits.images), count, replace=count > len(digits.images))
    small = (digits.images[idx] * 255 / 16).astype(np.uint8)
    factor = -(-size // 8)
    big = small.repeat(factor, axis=1).repeat(factor, axis=2)[:, :size, :size]
    return np.ascontiguousarray(big), digits.target[idx].astype(np.uint8)


def write_idx(path: Path, array: np.ndarray, gz: bool = True) -> Path:
    magic = 0x00000800 | array.ndim
    payload = struct.pack(">I", magic) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()
    path = path.with_name(path.name + ".gz") if gz else path
    path.write_bytes(gzip.compress(payload) if gz else payload)
    return path


def write_mnist(folder: Path, n_train: int = 240, n_test: int = 80, gz: bool = True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    train_x, train_y = digit_images(n_train, 28, seed=1)
    test_x, test_y = digit_images(n_test, 28, seed=2)
    write_idx(folder / "train-images-idx3-ubyte", train_x, gz)
    write_idx(folder / "train-labels-idx1-ubyte", train_y, gz)
    write_idx(folder / "t10k-images-idx3-ubyte", test_x, gz)
    write_idx(folder / "t10k-labels-idx1-ubyte", test_y, gz)
    return folder


def cifar_batch(count: int, seed: int) -> dict[bytes, object]:
    images, labels = digit_images(count, 32, seed)
    rgb = np.stack([images, 255 - images, images // 2], axis=1)  # [N, 3, 32, 32]
    return {
        b"batch_label": b"testing batch",
        b"labels": [int(v) for v in labels],
        b"data": rgb.reshape(count, 3072),
        b"filenames": [f"img_{i}.png".encode() for i in range(count)],
    }


def write_cifar(folder: Path, per_batch: int = 40, n_test: int = 60) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(1, 6):
        (folder / f"data_batch_{i}").write_bytes(pickle.dumps(cifar_batch(per_batch, i), protocol=2))
    (folder / "test_batch").write_bytes(pickle.dumps(cifar_batch(n_test, 9), protocol=2))
    return folder


POSITIVE = [
    "a wonderful, moving film with great acting",
    "brilliant and funny, I loved every minute",
    "superb direction and a beautiful score",
    "one of the best films this year, truly great",
]
NEGATIVE = [
    "a boring, awful mess of a film",
    "terrible acting and a dull, stupid plot",
    "the worst movie I have seen, a waste of time",
    "bad script, bad jokes, awful pacing",
]


def write_aclimdb(root: Path, per_class: int = 24) -> Path:
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for label, pool in (("pos", POSITIVE), ("neg", NEGATIVE)):
            folder = root / split / label
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                text = ("testonlyword " if split == "test" else "") + "<br /><br />".join(rng.choice(pool, 2))
                (folder / f"{i}_{7 if label == 'pos' else 2}.txt").write_text(text)
    return root


def write_snippets(path: Path, count: int = 120) -> Path:
    rng = np.random.default_rng(0)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["id", "sentiment", "text"])
    for i in range(count):
        positive = i % 2 == 0
        score = 0.0 if i % 10 == 5 else round(float(rng.uniform(0.5, 3.5)) * (1 if positive else -1), 5)
        writer.writerow([i + 1, score, rng.choice(POSITIVE if positive else NEGATIVE)])
    path.write_bytes(gzip.compress(buffer.getvalue().encode()))
    return path
