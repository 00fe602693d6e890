"""A tracking server with accounts (MLflow's basic-auth app, as a lab puts its server behind logins): explab
trains with an account's credentials and records its password nowhere, and a refusal says what to set or ask
for instead of ending in MLflow's traceback."""

from __future__ import annotations

import base64
import json
import os
import secrets
import signal
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import BIN, run_cli
from tests.support.network import free_port, wait_until_answering

pytestmark = pytest.mark.slow
ADMIN = ("admin", "s3cret-Admin-1")
READER = ("reader", "s3cret-Reader-1")  # an account whose default on others' experiments is READ


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The server's URI, with an experiment ``digits_cnn`` that the admin made and a second account."""
    folder = tmp_path_factory.mktemp("auth")
    (folder / "auth.ini").write_text(
        "[mlflow]\ndefault_permission = READ\n"
        f"database_uri = sqlite:///{folder}/basic_auth.db\n"
        f"admin_username = {ADMIN[0]}\nadmin_password = {ADMIN[1]}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_TRACKING_")}
    env |= {"MLFLOW_AUTH_CONFIG_PATH": str(folder / "auth.ini"), "MLFLOW_FLASK_SERVER_SECRET_KEY": secrets.token_hex()}
    port = free_port()
    log = folder / "server.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [
                str(BIN / "mlflow"), "server", "--app-name", "basic-auth",
                "--backend-store-uri", f"sqlite:///{folder}/mlflow.db",
                "--artifacts-destination", str(folder / "artifacts"),
                "--serve-artifacts", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
            ],
            cwd=folder, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    uri = f"http://127.0.0.1:{port}"
    try:
        wait_until_answering(f"{uri}/health", proc, log.read_text)
        as_admin(uri, "/api/2.0/mlflow/users/create", {"username": READER[0], "password": READER[1]})
        as_admin(uri, "/api/2.0/mlflow/experiments/create", {"name": "digits_cnn"})
        yield uri
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)


def as_admin(uri: str, endpoint: str, payload: dict) -> dict:
    token = base64.b64encode(":".join(ADMIN).encode()).decode()
    request = urllib.request.Request(
        f"{uri}{endpoint}",
        data=json.dumps(payload).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Basic {token}"},
    )
    with urllib.request.urlopen(request, timeout=30) as answer:
        return json.load(answer)


def account(uri: str, user: str | None = None, password: str | None = None) -> dict[str, str]:
    """The environment a member's shell gives explab for the server."""
    given = {"MLFLOW_TRACKING_USERNAME": user, "MLFLOW_TRACKING_PASSWORD": password} if user and password else {}
    return {"MLFLOW_TRACKING_URI": uri, **given}


def train(tmp_path: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return run_cli(
        "explab-train", "trainer.max_epochs=1", "log_model=false", "trainer.enable_progress_bar=false",
        cwd=tmp_path, env=env,
    )  # fmt: skip


def runs_of_digits_cnn(uri: str, monkeypatch: pytest.MonkeyPatch) -> list:
    with monkeypatch.context() as admin:  # this process's environment is the commands' too: set only here
        admin.setenv("MLFLOW_TRACKING_USERNAME", ADMIN[0])
        admin.setenv("MLFLOW_TRACKING_PASSWORD", ADMIN[1])
        client = MlflowClient(uri)
        return client.search_runs([client.get_experiment_by_name("digits_cnn").experiment_id])


def test_an_account_trains_and_its_password_is_recorded_nowhere(
    server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    done = train(tmp_path, account(server, *ADMIN))
    assert done.returncode == 0, done.stderr[-3000:]
    assert ADMIN[1] not in done.stdout + done.stderr
    [run] = [r for r in runs_of_digits_cnn(server, monkeypatch) if r.info.status == "FINISHED"]
    recorded = [*run.data.params.values(), *run.data.tags.values()]
    assert recorded and not [value for value in recorded if ADMIN[1] in value]


@pytest.mark.parametrize(
    ("who", "message"),
    [
        ((), "refuses the request: it asks who you are. Set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD"),
        (
            (ADMIN[0], "not-the-password"),
            "refuses the request: it does not take the account given (MLFLOW_TRACKING_USERNAME=admin) "
            "with its password",
        ),
        (
            READER,
            "does not let reader write here (/api/2.0/mlflow/runs/create): ask its admin for EDIT permission",
        ),
    ],
)
def test_a_refusal_says_what_to_set_or_ask_for_and_leaves_no_run(
    server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, who: tuple[str, ...], message: str
) -> None:
    """MLflow's own error came as a traceback: "API request to endpoint /api/2.0/mlflow/runs/create failed
    with error code 403 != 200"."""
    before = len(runs_of_digits_cnn(server, monkeypatch))
    done = train(tmp_path, account(server, *who))
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert f"The MLflow tracking server {server} {message}" in done.stderr
    assert len(runs_of_digits_cnn(server, monkeypatch)) == before, "refused before a run was made"
