"""Links into the MLflow UI that open its model-training view.

MLflow 3's UI opens an experiment on its GenAI page (traces, evaluations) unless the address asks for the
training view with ``?workflowType=machine_learning``; the choice is not remembered between visits, so every
link explab prints carries it. ``python -m explab.tracking.ui STORE_URI BASE_URL`` (run by ``make ui``)
prints one link per experiment of a store.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from explab.errors import ExplabError

TRAINING_VIEW = "workflowType=machine_learning"
LOCAL_UI = "http://127.0.0.1:5000"  # where ``make ui`` serves a store on disk
# how `make ui` is told another store than the checkout's mlruns/
STORE_SETTINGS = "MLRUNS=FOLDER or STORE=URI, as the make ui command a run's last log line prints"


def server_ui(tracking_uri: str) -> str | None:
    """The UI of the tracking server at ``tracking_uri`` (it serves its own), without the user and password
    the URI may carry: a browser asks for those itself, and a printed link must not show them. None for a
    store on disk or in a database, which ``ui_command`` serves at ``LOCAL_UI``."""
    parts = urlsplit(tracking_uri)
    if parts.scheme not in ("http", "https"):
        return None
    return urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, "", ""))


def mlruns_folder(tracking_uri: str) -> Path | None:
    """The folder ``tracking_uri`` names when it is explab's SQLite store in one (``paths.mlruns_dir``)."""
    from explab.config import sqlite_store

    folder = Path(tracking_uri.removeprefix("sqlite:///")).parent
    return folder if tracking_uri == sqlite_store(folder) else None


def ui_command(tracking_uri: str) -> str:
    """The command that serves the store at ``tracking_uri`` in the UI at ``LOCAL_UI``, as typed where the
    process runs.

    From a source checkout, its ``make ui``: plain for the checkout's own ``mlruns/``, told the folder
    (``MLRUNS=``) or the store (``STORE=``) of any other, since a run kept elsewhere (``paths.root_dir`` on
    scratch space, ``MLFLOW_TRACKING_URI`` naming a file) is not in the UI a plain ``make ui`` serves; with
    ``-C`` and the checkout when the working directory is another (a lab's own repository). A wheel install
    has no Makefile: MLflow's own ``mlflow ui``, which serves ``LOCAL_UI`` as well.
    """
    from explab.config import checkout_root, sqlite_store
    from explab.tracking.store import shown_url

    checkout = checkout_root()
    if checkout is None:
        return f"mlflow ui --backend-store-uri {shlex.quote(shown_url(tracking_uri))}"
    make = "make" if Path.cwd().resolve() == checkout else f"make -C {shlex.quote(str(checkout))}"
    if tracking_uri == sqlite_store(checkout / "mlruns"):
        return f"{make} ui"
    folder = mlruns_folder(tracking_uri)
    if folder is not None:
        return f"{make} ui MLRUNS={shlex.quote(str(folder))}"
    return f"{make} ui STORE={shlex.quote(shown_url(tracking_uri))}"


def report_command(experiment_name: str, tracking_uri: str, shell_uri: str | None) -> str:
    """The ``explab-report`` command for ``experiment_name`` in the store at ``tracking_uri``, as typed in the
    shell that trained it, whose ``MLFLOW_TRACKING_URI`` was ``shell_uri``: told the store only when the
    shell's default (that URI, or the project's ``mlruns/``) is another. The shell's value is given, since
    MLflow sets the variable in this process once a run has been tracked."""
    from explab.config import project_root, sqlite_store
    from explab.tracking.store import shown_url

    command = f"explab-report experiment={experiment_name}"
    if tracking_uri == (shell_uri or sqlite_store(project_root() / "mlruns")):
        return command
    folder = mlruns_folder(tracking_uri)
    if folder is not None:
        return f"{command} {shlex.quote(f'paths.mlruns_dir={folder}')}"
    return f"{command} {shlex.quote(f'tracking_uri={shown_url(tracking_uri)}')}"


def run_link(base_url: str, experiment_id: str, run_id: str) -> str:
    return f"{base_url.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}?{TRAINING_VIEW}"


def runs_link(base_url: str, experiment_id: str) -> str:
    """The experiment's list of runs, where runs are compared."""
    return f"{base_url.rstrip('/')}/#/experiments/{experiment_id}/runs?{TRAINING_VIEW}"


def experiment_links(tracking_uri: str, base_url: str) -> list[str]:
    """``name: link`` for every experiment with runs in the store, newest first; empty for the checkout's own
    ``mlruns/`` before its first run.

    Raises:
        TrackingStoreError: any other SQLite store whose file does not exist (``make ui MLRUNS=`` with a
            mistyped folder), which MLflow's UI would create and serve empty.
    """
    from explab.config import checkout_root, sqlite_store
    from explab.tracking.store import open_client, open_recorded_store

    checkout = checkout_root()
    if checkout is not None and tracking_uri == sqlite_store(checkout / "mlruns"):
        client = open_client(tracking_uri)  # a fresh clone's `make ui`: an empty UI until the first run
    else:
        client = open_recorded_store(tracking_uri, named_by=STORE_SETTINGS)
    experiments = [
        e for e in client.search_experiments() if e.name != "Default" or client.search_runs([e.experiment_id])
    ]
    experiments.sort(key=lambda e: e.last_update_time or 0, reverse=True)
    return [f"{e.name}: {runs_link(base_url, e.experiment_id)}" for e in experiments]


def port_taken(base_url: str) -> bool:
    """Whether another program listens where ``base_url`` would be served (bound as uvicorn binds, with
    ``SO_REUSEADDR``, so a port an earlier server just left counts as free)."""
    import socket

    parts = urlsplit(base_url)
    host = parts.hostname or "127.0.0.1"
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, parts.port or 80))
        except OSError:
            return True
    return False


def main(argv: list[str] | None = None) -> None:
    tracking_uri, base_url = (argv if argv is not None else sys.argv[1:])[:2]
    if port_taken(base_url):
        # MLflow would only log the bind error and exit 0, after these links had named the other program
        port = urlsplit(base_url).port
        print(
            f"Error: {base_url} is taken by another program (an earlier make ui still running?): stop it, or "
            f"serve on another port, adding PORT={(port or 5000) + 1} to the make ui command",
            file=sys.stderr,
        )
        raise SystemExit(1)
    try:
        links = experiment_links(tracking_uri, base_url)
    except ExplabError as error:  # a store that is not one, or does not answer: its message, not a traceback
        print(f"Error: {error}", file=sys.stderr)
        raise SystemExit(1) from None
    print(f"MLflow UI on {base_url}; each experiment's runs (the model-training view):")
    for line in links or [f"(no runs yet) {base_url.rstrip('/')}/#/experiments?{TRAINING_VIEW}"]:
        print(f"  {line}")


if __name__ == "__main__":
    main()
