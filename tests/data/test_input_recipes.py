"""Each data module's input recipe (what the logged model does to a raw input) gives exactly the tensors the
data module trained on, from raw values read straight from the files; and the recipe runs backwards."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.datasets import load_diabetes

from explab.data import DigitsDataModule
from explab.data.base import TensorDataModule, stratified_split
from explab.data.cifar import CIFAR10DataModule, read_batch
from explab.data.idx import IDXDataModule, read_idx
from explab.data.tabular import DiabetesDataModule
from explab.serving import InputScaleError, RawInputModel, check_training_scale, network_input, outputs, raw_example
from tests.support.formats import write_cifar, write_mnist


def _mnist(tmp_path: Path) -> tuple[TensorDataModule, np.ndarray]:
    folder = write_mnist(tmp_path / "mnist", gz=False)
    module = IDXDataModule(str(folder), val_size=20, mean=0.1307, std=0.3081)
    return module, read_idx(folder / "t10k-images-idx3-ubyte", 0x00000803)  # the test split, in file order


def _cifar(tmp_path: Path) -> tuple[TensorDataModule, np.ndarray]:
    folder = write_cifar(tmp_path / "cifar")
    images, _ = read_batch(folder / "test_batch")
    return CIFAR10DataModule(str(folder)), images.transpose(0, 2, 3, 1)  # raw images are channels last


def _diabetes(tmp_path: Path) -> tuple[TensorDataModule, np.ndarray]:
    x, y = load_diabetes(return_X_y=True, scaled=False)
    _, _, test = stratified_split(y, (0.15, 0.15), seed=0, stratify=False)
    return DiabetesDataModule(), x[test]


def _digits(tmp_path: Path) -> tuple[TensorDataModule, np.ndarray]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    _, _, test = stratified_split(digits.target, (0.15, 0.15), seed=0)
    return DigitsDataModule(), digits.images[test]


@pytest.mark.parametrize("source", [_mnist, _cifar, _diabetes, _digits], ids=["mnist", "cifar", "diabetes", "digits"])
def test_raw_inputs_become_the_training_tensors(source, tmp_path: Path) -> None:
    module, raw = source(tmp_path)
    module.setup()
    recipe = module.input_recipe()
    expected = module.splits["test"].x.numpy()
    assert np.allclose(network_input(raw, recipe), expected, atol=1e-5)
    assert np.allclose(network_input(raw_example(torch.from_numpy(expected), recipe), recipe), expected, atol=1e-5)
    assert check_training_scale(raw, recipe) is None, "raw inputs are on the training data's scale"
    assert check_training_scale(raw_example(torch.from_numpy(expected), recipe), recipe) is None


def test_features_scaled_already_are_named_with_the_training_data_they_miss(caplog) -> None:
    """scikit-learn's load_diabetes() scales its features; a model trained on the raw ones answered them with
    nonsense (-232 for targets of 75 to 206), as it did a table whose columns came in another order, without a
    word (MLflow hands a DataFrame's columns to a tensor signature by position)."""
    module = DiabetesDataModule()
    recipe = module.input_recipe()
    raw = load_diabetes(scaled=False).data
    assert check_training_scale(raw[:1], recipe) is None
    warning = check_training_scale(load_diabetes().data[:20], recipe)
    assert warning is not None and warning.startswith("most inputs lie 4 standard deviations or more from the")
    assert re.search(r"in bmi \(median -?0\.\d+; training mean 26\.\d+, sd 4\.\d+\)", warning), warning
    assert "age (" not in warning, "a column within 4 deviations is not named"
    served = RawInputModel()
    served.recipe, served.network = recipe, torch.nn.Linear(10, 1)
    with caplog.at_level(logging.WARNING, logger="explab.serving"):
        served.predict(None, raw[:20, ::-1].copy())  # the features in reverse order
    assert "in sex (median " in caplog.text and "takes the features age, sex, bmi, bp" in caplog.text


def test_pixels_off_the_models_scale_are_refused_or_warned_of() -> None:
    from sklearn.datasets import load_digits

    images, recipe = load_digits().images, DigitsDataModule().input_recipe()  # raw pixels of 0..16
    with pytest.raises(InputScaleError, match=r"the inputs' values run from 0 to 255, but this model takes raw pix"):
        check_training_scale(images * 255 / 16, recipe)
    warning = check_training_scale(images / 16, recipe)
    assert warning is not None and "every value of the inputs lies in 0..1" in warning and "divided by 16" in warning


def test_a_regression_answer_comes_back_in_the_targets_unit() -> None:
    module = DiabetesDataModule()
    module.setup()
    standardised = module.splits["test"].y.numpy()
    _, y = load_diabetes(return_X_y=True, scaled=False)
    _, _, test = stratified_split(y, (0.15, 0.15), seed=0, stratify=False)
    assert np.allclose(outputs(standardised, module.input_recipe()), y[test], atol=1e-3)


def test_a_module_without_a_recipe_takes_its_tensors_as_raw_float64_inputs() -> None:
    """A lab's data module need not describe its inputs: its logged model then takes the training tensors as they
    are, as float64 (JSON and explab-predict's files give it; a float32 signature refused it)."""
    features, token_ids = torch.rand(4, 13), torch.randint(0, 50, (4, 7))
    raw = raw_example(features, {})
    assert raw.dtype == np.float64 and np.array_equal(network_input(raw, {}), features.numpy())
    assert raw_example(token_ids, {}).dtype == np.int64, "integer inputs stay integers"
