"""The MLflow UI as a new user meets it: started by ``make ui`` over a store of explab runs, opened in headless
Chromium (Debian's ``chromium``, driven by Playwright), through the links explab and ``make ui`` print.

Screenshots of every page are saved and their folder printed (``pytest -s`` shows it).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import ROOT, run_cli, runs_in, tracking_uri_for
from tests.support.network import free_port, wait_until_answering

CHROMIUM = shutil.which("chromium")
try:
    from playwright.sync_api import Page, sync_playwright
except ImportError:  # the dev extra installs it
    sync_playwright = None  # type: ignore[assignment]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed: .ci/run installs it"),
    pytest.mark.skipif(sync_playwright is None, reason="playwright is not installed: make dev installs it"),
]
SEEDS = (1, 2, 3)
LINK = re.compile(r"http://127\.0\.0\.1:5000/\S+")
SERVE = re.compile(r"UI: (make [^,]*), then http")


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A store with a three-seed group and a two-trial sweep, and the run links the training printed."""
    folder = tmp_path_factory.mktemp("ui")
    common = [f"paths.mlruns_dir={folder}/mlruns", f"paths.log_dir={folder}/logs", "log_model=false"]
    seeds = run_cli(
        "explab-train", "-m", f"seed={','.join(map(str, SEEDS))}", "trainer.max_epochs=2", *common, cwd=folder
    )
    assert seeds.returncode == 0, seeds.stderr[-3000:]
    sweep = run_cli(
        "explab-train",
        "-m",
        "hparams_search=digits_optuna",
        "hydra.sweeper.n_trials=2",
        "trainer.max_epochs=2",
        *common,
        cwd=folder,
    )
    assert sweep.returncode == 0, sweep.stderr[-3000:]
    return {
        "folder": folder,
        "run_links": LINK.findall(seeds.stdout + seeds.stderr),
        "serve": SERVE.findall(seeds.stdout + seeds.stderr),
        "sweep_links": LINK.findall(sweep.stdout + sweep.stderr),
    }


@pytest.fixture(scope="module")
def ui(project: dict) -> Iterator[dict]:
    """``make ui`` on a free port over the project's store, as each run's last line says to start it; its
    printed links; stopped afterwards."""
    [serve] = set(project["serve"])
    # the runs were trained in their own folder: the command names the checkout, and the store outside it
    assert serve == f"make -C {ROOT} ui MLRUNS={project['folder'].resolve()}/mlruns"
    port = free_port()
    log = project["folder"] / "ui.log"
    with log.open("w") as out:
        server = subprocess.Popen(
            [*serve.split(), f"PORT={port}"],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"},
        )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_answering(f"{base}/health", server, log.read_text)
        links = re.findall(rf"{re.escape(base)}/\S+", log.read_text())
        yield {"base": base, "links": links, "port": port}
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    assert sync_playwright is not None
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield chromium
        chromium.close()


@pytest.fixture
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.getbasetemp() / "mlflow-ui-screenshots"
    folder.mkdir(exist_ok=True)
    print(f"screenshots of the MLflow UI: {folder}")
    return folder


def _open(browser, url: str) -> Page:
    # a fresh context per page: nothing remembered from an earlier visit, as for a new user
    page = browser.new_context(viewport={"width": 2000, "height": 1000}).new_page()
    page.set_default_timeout(60_000)  # the first page of a fresh UI compiles its queries; CI is shared
    page.goto(url)  # the UI keeps polling, so each test waits for what it looks for, not for a quiet network
    return page


def _in_training_view(page: Page) -> None:
    """The model-training view's side bar (Runs, Models), not the GenAI one (Evaluation runs, Judges)."""
    body = page.inner_text("body")
    assert "Models" in body and "Evaluation runs" not in body and "Judges" not in body, body[:800]


def test_a_second_make_ui_on_the_same_port_says_the_port_is_taken(ui: dict, project: dict) -> None:
    """MLflow logged its bind error and exited 0, after make ui had printed links to the other program."""
    [serve] = set(project["serve"])
    done = subprocess.run([*serve.split(), f"PORT={ui['port']}"], capture_output=True, text=True, timeout=120)
    assert done.returncode != 0, done.stdout[-2000:]
    assert f"{ui['base']} is taken by another program" in done.stderr and f"PORT={ui['port'] + 1}" in done.stderr
    assert ui["base"] not in done.stdout, "no links to the other program"


def test_the_link_explab_prints_opens_the_run_in_the_training_view(browser, ui, project, screenshots) -> None:
    [link, *_] = project["run_links"]
    page = _open(browser, link.replace("http://127.0.0.1:5000", ui["base"]))
    page.get_by_text("explab-train").first.wait_for()
    page.screenshot(path=screenshots / "run.png")
    _in_training_view(page)
    body = page.inner_text("body")
    assert "digits-train" in body and "Training" in body, "the run's datasets are shown"


def test_make_ui_lists_the_runs_with_their_params_metrics_datasets_and_source(
    browser, ui, project, screenshots
) -> None:
    [experiment_link] = [link for link in ui["links"] if "/runs?" in link]
    page = _open(browser, experiment_link)
    seeds = {
        r.info.run_id: r
        for r in runs_in(project["folder"] / "mlruns", "digits_cnn")
        if "explab.sweep" not in r.data.tags and "optuna_trial.number" not in r.data.params
    }
    assert len(seeds) == len(SEEDS)
    page.locator(f"[role=row][row-id='{next(iter(seeds))}']").first.wait_for()
    _in_training_view(page)
    # what MLflow 3 shows only on request: pick a metric and a param as a user would, from "Columns"
    page.get_by_role("button", name="Columns").click()
    for name in ("test/acc", "optimizer.lr"):
        page.get_by_text(name, exact=True).first.click()
    page.keyboard.press("Escape")
    page.screenshot(path=screenshots / "runs.png")
    for run_id, run in seeds.items():
        row = " ".join(r.inner_text() for r in page.locator(f"[role=row][row-id='{run_id}']").all())
        assert str(run.data.metrics["test/acc"]) in row and run.data.params["optimizer.lr"] in row, row
        assert "digits-train" in row and "explab-train" in row, "the Dataset and Source columns are filled"


def test_the_sweeps_trials_are_nested_under_its_parent_run(browser, ui, project, screenshots) -> None:
    client = MlflowClient(tracking_uri_for(project["folder"] / "mlruns"))
    runs = runs_in(project["folder"] / "mlruns", "digits_cnn")
    [parent] = [r for r in runs if r.data.tags.get("explab.sweep") == "parent"]
    trials = [r.info.run_id for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(trials) == 2, client.get_run(parent.info.run_id).data.tags
    [link] = [link for link in project["sweep_links"] if parent.info.run_id in link]
    experiment = f"{ui['base']}/#/experiments/{parent.info.experiment_id}/runs?workflowType=machine_learning"
    page = _open(browser, experiment)
    row = page.locator(f"[role=row][row-id='{parent.info.run_id}']").first
    row.wait_for()
    assert not page.locator(f"[role=row][row-id='{trials[0]}']").count(), "trials are folded under the parent"
    row.locator("button[data-component-id*=runnamecellrenderer]").first.click()  # the run name's expander
    for trial in trials:
        page.locator(f"[role=row][row-id='{trial}']").first.wait_for()
    page.screenshot(path=screenshots / "sweep.png")
    assert "workflowType=machine_learning" in link, "the sweep's printed link opens the training view"


def test_the_comparison_of_two_runs_shows_their_params_and_metrics(browser, ui, project, screenshots) -> None:
    seeds = [
        r
        for r in runs_in(project["folder"] / "mlruns", "digits_cnn")
        if "explab.sweep" not in r.data.tags and "optuna_trial.number" not in r.data.params
    ][:2]
    ids = json.dumps([r.info.run_id for r in seeds], separators=(",", ":"))
    experiment = json.dumps([seeds[0].info.experiment_id])
    page = _open(browser, f"{ui['base']}/#/compare-runs?runs={ids}&experiments={experiment}")
    page.get_by_text("Comparing 2 Runs").first.wait_for()
    page.screenshot(path=screenshots / "compare.png", full_page=True)
    body = page.inner_text("body")
    for run in seeds:
        assert run.info.run_name in body and run.data.params["seed"] in body
    assert "optimizer.lr" in body and "test/acc" in body, body[:2000]
