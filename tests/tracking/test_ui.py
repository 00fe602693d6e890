"""The links explab prints into the MLflow UI."""

from __future__ import annotations

import pytest

from explab.tracking.ui import server_ui


@pytest.mark.parametrize(
    ("tracking_uri", "ui"),
    [
        ("http://lab:s3cret@10.0.0.5:5000", "http://10.0.0.5:5000"),  # the browser asks for the password itself
        ("https://tracking.lab.org/mlflow/", "https://tracking.lab.org/mlflow/"),  # a server behind a path
        ("http://[::1]:5000?x=1", "http://[::1]:5000"),
        ("sqlite:////home/me/explab/mlruns/mlflow.db", None),  # `make ui` serves it
        ("postgresql://lab:s3cret@db/mlflow", None),
        ("/home/me/mlruns", None),
    ],
)
def test_a_tracking_server_serves_its_own_ui_without_the_uris_password(tracking_uri: str, ui: str | None) -> None:
    assert server_ui(tracking_uri) == ui
