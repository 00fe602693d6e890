"""Open an MLflow tracking store once per process, safely when several processes start on a new store."""

from __future__ import annotations

import contextlib
import fcntl
import functools
import os
import shlex
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from explab.errors import ExplabError, UsageError, first_line, no_room_behind
from explab.tracking.relocation import follow_moved_artifacts

if TYPE_CHECKING:
    from mlflow.entities import Run
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

SQLITE_PREFIX = "sqlite:///"
# the database servers MLflow keeps a tracking store in, through SQLAlchemy (dialect and dialect+driver)
DATABASE_SCHEMES = ("postgresql", "mysql", "mssql")
# what marks a folder as MLflow's file store besides its experiments' numbered folders (as `mlflow
# migrate-filestore` finds one)
FILE_STORE_FOLDERS = frozenset({".trash", "models", "mlruns"})
PROBE_SECONDS = 5


def shown_url(url: str) -> str:
    """``url`` as it may be printed or logged: a password in it (``postgresql://lab:***@host/db``,
    ``http://lab:***@host:5000``) masked; any other URL as it is."""
    from sqlalchemy.engine import make_url

    try:
        parsed = make_url(url)
    except Exception:  # not a URL SQLAlchemy reads, so none with a password it knows of
        return url
    return url if parsed.password is None else parsed.render_as_string(hide_password=True)


class TrackingStoreError(ExplabError):
    """The tracking URI names no MLflow store explab can use; the message says which URI and the fix."""


_STORES: set[str] = set()  # the SQLite files open_client has opened (resolved paths)


@functools.cache
def open_client(tracking_uri: str) -> MlflowClient:
    """An ``MlflowClient`` whose store exists and is migrated.

    Two sweep workers that start on a fresh SQLite store would both run MLflow's schema migrations and one
    would crash; an exclusive lock beside the database lets the first create it and the second find it.
    Every connection to the store is put in write-ahead-log mode with ``synchronous=NORMAL`` as it opens
    (``_tune_store_connection``).
    """
    from mlflow.tracking import MlflowClient

    check_store(tracking_uri)
    if not tracking_uri.startswith(SQLITE_PREFIX):
        # MLflow prints "View run ... at: URL" with the tracking URI as typed, a password included (into job
        # logs on a cluster); explab's own line for each run links the server's page without it
        os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
        client = MlflowClient(tracking_uri)
        if tracking_uri.startswith(("http://", "https://")):
            with server_access(tracking_uri):  # a server that asks who is there refuses every command alike
                client.search_experiments(max_results=1)
        return client
    database = Path(tracking_uri.removeprefix(SQLITE_PREFIX))
    database.parent.mkdir(parents=True, exist_ok=True)
    _tune_connections_to(database)
    with _store_lock(database, fcntl.LOCK_EX):
        follow_moved_artifacts(database)
        client = MlflowClient(tracking_uri)
        client.search_experiments(max_results=1)
    return client


@contextlib.contextmanager
def server_access(tracking_uri: str) -> Iterator[None]:
    """Inside, a tracking server's refusal (MLflow's auth app: 401 for no or a wrong account, 403 for no
    permission) is raised as a ``TrackingStoreError`` that says what to set or ask for; MLflow's own error,
    "API request to endpoint /api/2.0/mlflow/runs/create failed with error code 403 != 200", came as a
    traceback."""
    from mlflow.exceptions import MlflowException

    try:
        yield
    except MlflowException as error:
        refused = _refused_access(tracking_uri, error)
        if refused is None:
            raise
        raise refused from None


def _refused_access(tracking_uri: str, error: MlflowException) -> TrackingStoreError | None:
    import re

    # MLflow raises a JSON answer's error code as it is, and a plain-text answer with its HTTP status
    code, said = getattr(error, "error_code", ""), str(error)
    user = os.environ.get("MLFLOW_TRACKING_USERNAME")
    server = shown_url(tracking_uri)
    if code == "UNAUTHENTICATED" or "failed with error code 401" in said:
        who = (
            f"it does not take the account given (MLFLOW_TRACKING_USERNAME={user}) with its password"
            if user
            else "it asks who you are"
        )
        return TrackingStoreError(
            f"The MLflow tracking server {server} refuses the request: {who}. Set MLFLOW_TRACKING_USERNAME and "
            "MLFLOW_TRACKING_PASSWORD to your account there (or MLFLOW_TRACKING_TOKEN to a token it issued)."
        )
    if code == "PERMISSION_DENIED" or "failed with error code 403" in said:
        endpoint = re.search(r"endpoint (\S+)", said)
        return TrackingStoreError(
            f"The MLflow tracking server {server} does not let {user or 'this account'} write here"
            f"{f' ({endpoint.group(1)})' if endpoint else ''}: ask its admin for EDIT permission on the experiment."
        )
    return None


def every_run(client: MlflowClient, experiment_ids: list[str], filter_string: str, page_size: int = 5000) -> list[Run]:
    """Every run of ``experiment_ids`` that ``filter_string`` selects, page after page: one call returns at most
    ``page_size`` runs, and an experiment a lab has trained in for months holds more, which a report or a warm
    start would otherwise leave out without a word."""
    runs: list[Run] = []
    token = None
    while True:
        page = client.search_runs(experiment_ids, filter_string, max_results=page_size, page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def find_run(tracking_uri: str, run_id: str) -> Run:
    """The run ``run_id`` of the store at ``tracking_uri``.

    Raises:
        UsageError: no such run there, named with the store (a run id from another store is the usual cause).
    """
    from mlflow.exceptions import MlflowException

    from explab.tracking.ui import server_ui, ui_command

    try:
        return open_recorded_store(tracking_uri).get_run(run_id)
    except MlflowException as error:
        raise UsageError(
            f"no MLflow run {run_id} in {shown_url(tracking_uri)} ({first_line(error)}); the runs' ids are in the UI "
            f"({server_ui(tracking_uri) or ui_command(tracking_uri)}) and in each run's last log line"
        ) from None


def deleted_experiment(tracking_uri: str, name: str, experiment_id: str, otherwise: str = "") -> UsageError:
    """The error for experiment ``name`` found in the MLflow trash (MLflow keeps its name taken and refuses runs
    in it): the command that restores it, then ``otherwise``, what else to do."""
    url = shown_url(tracking_uri)
    return UsageError(
        f"experiment '{name}' is deleted (in the MLflow trash of {url}): restore it with "
        f"MLFLOW_TRACKING_URI={url} mlflow experiments restore --experiment-id {experiment_id}{otherwise}"
    )


def find_trained_run(tracking_uri: str, run_id: str, to_write: bool = True) -> Run:
    """The run ``run_id``, as ``find_run`` gives it, when it is one explab-train trained a model in; with
    ``to_write`` (a resume or an eval logs into it), one that is not in the MLflow trash.

    Raises:
        UsageError: no such run; a sweep's parent run or a report run, which train nothing, named with the
            run to give instead (the sweep's best trial's); a deleted run to write to, with how to restore it.
    """
    run = find_run(tracking_uri, run_id)
    if to_write and run.info.lifecycle_stage == "deleted":
        # MLflow refuses any write to a deleted run: the resume or eval would fail once it had done its work
        raise UsageError(
            f"run {run_id} is deleted (in the MLflow trash of {shown_url(tracking_uri)}): restore it first, with "
            f"MLFLOW_TRACKING_URI={shown_url(tracking_uri)} mlflow runs restore --run-id {run_id}, or the UI's "
            f"trash; or train it again as a new run with explab-train reproduce={run_id}"
        )
    tags = run.data.tags
    if tags.get("explab.sweep") == "parent":
        best = _best_trial_run(tracking_uri, run)
        raise UsageError(
            f"run {run_id} is the parent run of the sweep '{tags.get('optuna.study_name')}', which trains nothing "
            f"itself: give the run of one of its trials{f' (the best: {best})' if best else ''}"
        )
    if tags.get("explab.report"):
        raise UsageError(f"run {run_id} is a report of explab-report, which trains nothing: give a run it compares")
    return run


def _best_trial_run(tracking_uri: str, parent: Run) -> str | None:
    """The run of the best trial a sweep's parent run names (tag ``optuna.best_trial``), if it has one."""
    number = parent.data.tags.get("optuna.best_trial")
    if number is None:
        return None
    found = open_client(tracking_uri).search_runs(
        [parent.info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}' and tags.optuna.trial_number = '{number}'",
        max_results=1,
    )
    return found[0].info.run_id if found else None


def open_recorded_store(tracking_uri: str, named_by: str = "MLFLOW_TRACKING_URI, or paths.mlruns_dir") -> MlflowClient:
    """``open_client`` for a store that must hold runs already (a report, a warm start, a run looked up by id);
    ``named_by`` is how the command at hand is told another store.

    Raises:
        TrackingStoreError: a SQLite store whose file does not exist. ``open_client`` would create it, tables
            and folder, so a mistyped path or a command started from another folder left an empty store
            behind and answered that it held no such experiment or run.
    """
    if tracking_uri.startswith(SQLITE_PREFIX):
        database = Path(tracking_uri.removeprefix(SQLITE_PREFIX))
        if not database.is_file():
            raise TrackingStoreError(
                f"There is no MLflow store at {database}: nothing was recorded there. Give the store that holds "
                f"the runs ({named_by}), or train a run first."
            )
    return open_client(tracking_uri)


@contextlib.contextmanager
def _store_lock(database: Path, operation: int) -> Iterator[None]:
    """Hold the lock beside ``database``: exclusive while a store is created, shared while one is inspected.

    The file is opened to read: ``flock`` needs no more, and a colleague's lock file in a shared folder, made
    with their umask, is one this account may only read.
    """
    descriptor = os.open(database.parent / f".{database.name}.lock", os.O_RDONLY | os.O_CREAT, 0o666)
    try:
        fcntl.flock(descriptor, operation)
        try:
            yield
        finally:
            fcntl.flock(descriptor, fcntl.LOCK_UN)
    finally:
        os.close(descriptor)


def check_store(tracking_uri: str) -> None:
    """Raise ``TrackingStoreError`` within seconds when ``tracking_uri`` cannot be an MLflow store.

    MLflow itself retries an unreachable server for minutes and would turn any SQLite file, another
    application's database included, into an MLflow store. A server must answer on its ``/health``; a
    SQLite file must be empty, new, or already an MLflow store; a database server (PostgreSQL, MySQL) must
    have its driver installed and take one connection; a folder, MLflow 2's file store, is refused as MLflow
    3 refuses it, with how its runs move into a SQLite store.
    """
    if tracking_uri.startswith(("http://", "https://")):
        _probe_server(tracking_uri)
    elif tracking_uri.startswith(SQLITE_PREFIX):
        _check_sqlite_folder(tracking_uri, Path(tracking_uri.removeprefix(SQLITE_PREFIX)))
        _check_sqlite_file(tracking_uri, Path(tracking_uri.removeprefix(SQLITE_PREFIX)))
    elif tracking_uri.startswith(DATABASE_SCHEMES):
        _probe_database(tracking_uri)
    elif (folder := _folder_store(tracking_uri)) is not None:
        _check_folder_store(tracking_uri, folder)


def _folder_store(tracking_uri: str) -> Path | None:
    """The folder of an MLflow file store (``file:///path``, or a bare path such as ``./mlruns``); None for
    any other URI."""
    from urllib.parse import urlsplit
    from urllib.request import url2pathname

    scheme = urlsplit(tracking_uri).scheme
    if scheme == "file":
        return Path(url2pathname(urlsplit(tracking_uri).path)).resolve()
    # MLflow reads "databricks" and "databricks-uc" as names of its own, not as folders
    is_folder = not scheme and not tracking_uri.startswith("databricks")
    return Path(tracking_uri).resolve() if is_folder else None


def _check_folder_store(tracking_uri: str, folder: Path) -> None:
    """MLflow 3 refuses a file store, in a traceback, unless ``MLFLOW_ALLOW_FILE_STORE=true`` (a habit of
    MLflow 2, whose default it was): say what to use instead, and how the runs already there move along."""
    from mlflow.environment_variables import MLFLOW_ALLOW_FILE_STORE

    if MLFLOW_ALLOW_FILE_STORE.get():
        return
    database = f"{SQLITE_PREFIX}{folder}/mlflow.db"
    if (folder / "mlflow.db").is_file():  # explab's own store folder, given as the folder
        instead = (
            f"That folder holds an MLflow database: set MLFLOW_TRACKING_URI={database}, or unset it and give "
            f"paths.mlruns_dir={folder}"
        )
    elif folder.is_dir() and any(
        entry.name.isdigit() or entry.name in FILE_STORE_FOLDERS for entry in folder.iterdir()
    ):
        instead = (
            f"To go on with the runs recorded there, move them into a database once (mlflow migrate-filestore "
            f"--source {folder} --target {database}), then unset MLFLOW_TRACKING_URI and give "
            f"paths.mlruns_dir={folder}"
        )
    else:
        instead = (
            f"Set MLFLOW_TRACKING_URI={database}, or unset it to record in the SQLite store under paths.mlruns_dir"
        )
    raise TrackingStoreError(
        f"The MLflow tracking store {tracking_uri} is a folder of files (MLflow's file store), which MLflow 3 no "
        f"longer writes to. {instead}."
    )


def _probe_server(tracking_uri: str) -> None:
    import urllib.error
    import urllib.request
    from urllib.parse import urlsplit, urlunsplit

    # urllib takes no credentials in the URL (user:password@host); /health answers without them
    parts = urlsplit(tracking_uri)
    bare = urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))
    try:
        with urllib.request.urlopen(f"{bare.rstrip('/')}/health", timeout=PROBE_SECONDS):
            return
    except urllib.error.HTTPError:
        return  # it answered: what it answers to MLflow's own calls is MLflow's to report
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise TrackingStoreError(
            f"The MLflow tracking server {shown_url(tracking_uri)} does not answer ({reason}): start it (make server) "
            "or set MLFLOW_TRACKING_URI to a server that is up (unset it to use the local store under mlruns/)."
        ) from None


def _probe_database(tracking_uri: str) -> None:
    from sqlalchemy import create_engine
    from sqlalchemy.exc import SQLAlchemyError
    from sqlalchemy.pool import NullPool

    # psycopg and PyMySQL wait for a host that drops the packets as long as the OS lets them without this
    timeout = {"connect_timeout": PROBE_SECONDS} if tracking_uri.startswith(("postgresql", "mysql")) else {}
    try:
        engine = create_engine(tracking_uri, poolclass=NullPool, connect_args=timeout)
    except ImportError as error:
        raise TrackingStoreError(f"The MLflow tracking store {missing_driver(tracking_uri, error)}") from None
    try:
        with engine.connect():
            return
    except SQLAlchemyError as error:
        reason = first_line(getattr(error, "orig", None) or error)
        raise TrackingStoreError(
            f"The MLflow tracking store {shown_url(tracking_uri)} does not answer ({reason}): start the database "
            "or correct the URI in MLFLOW_TRACKING_URI (unset it to use the local store under mlruns/)."
        ) from None
    finally:
        engine.dispose()


def missing_driver(url: str, error: ImportError) -> str:
    """``"<url> needs the database driver <module>, which this environment lacks: <how to install it>"``, for
    the ImportError SQLAlchemy (or Optuna, whose own error names no module) raised opening ``url``."""
    module = getattr(error, "name", None) or getattr(error.__cause__, "name", None) or "its driver"
    fix = "pip install 'explab[postgres]'" if url.startswith("postgresql") else f"pip install {module}"
    return f"{shown_url(url)} needs the database driver {module}, which this environment lacks: {fix}"


def _check_sqlite_folder(tracking_uri: str, database: Path) -> None:
    """A store's folder must be writable, even to read the store: SQLite keeps a write-ahead-log database's
    shared-memory index beside it, and explab its lock. Without, the lock file's OSError or SQLite's "unable
    to open database file" came as a traceback."""
    from explab.utils.folders import unwritable

    folder = database.parent
    refused = unwritable(folder)
    if refused is None:
        return
    nearest, why = refused
    if database.is_file():
        raise TrackingStoreError(
            f"The MLflow store {tracking_uri} is in a folder {why} ({folder}), and SQLite writes beside a store "
            f"even to read it. To read it, copy the folder where you can write (cp -r {shlex.quote(str(folder))} "
            "$HOME/store-copy, then "
            "paths.mlruns_dir=$HOME/store-copy); to record, give another store: paths.mlruns_dir=FOLDER or "
            "MLFLOW_TRACKING_URI"
        )
    raise TrackingStoreError(
        f"The MLflow store {tracking_uri} cannot be created: {nearest} is {why}. Give a folder you can write: "
        "paths.mlruns_dir=FOLDER or MLFLOW_TRACKING_URI"
    )


def check_recordable(tracking_uri: str) -> None:
    """Raise ``TrackingStoreError`` when this account may read a SQLite store but not record into it: files
    another account made there with its umask (the database, its write-ahead log, the artifacts' folders) in
    a shared folder. Reading works; the first write failed in MLflow's traceback of "attempt to write a
    readonly database" or of a PermissionError."""
    if not tracking_uri.startswith(SQLITE_PREFIX):
        return
    database = Path(tracking_uri.removeprefix(SQLITE_PREFIX))
    folder = database.parent
    shared = [database, *(database.with_name(f"{database.name}{end}") for end in ("-wal", "-shm"))]
    # the folders every run writes into: its artifacts', MLflow's logged models', a sweep's study journals
    shared += [folder / "artifacts", folder / "artifacts" / "models", folder / "optuna"]
    refused = [path for path in shared if path.exists() and not os.access(path, os.W_OK)]
    if not refused:
        return
    owners = sorted({_account_name(path.stat().st_uid) for path in refused})
    names = ", ".join(str(path.relative_to(folder)) + ("/" if path.is_dir() else "") for path in refused)
    raise TrackingStoreError(
        f"The MLflow store {tracking_uri} can be read but not recorded into by this account: {names} in {folder} "
        f"belong to {' and '.join(owners)} and are not writable by it. To share the store, its owner lets the "
        f"group write it (chmod -R g+w {shlex.quote(str(folder))}, and records with umask 002); or record into "
        "another store: paths.mlruns_dir=FOLDER or MLFLOW_TRACKING_URI"
    )


def _account_name(uid: int) -> str:
    """The account's name, or ``uid N`` for one this machine has no name for (a file server's account)."""
    import pwd

    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def _check_sqlite_file(tracking_uri: str, database: Path) -> None:
    if not database.is_file() or database.stat().st_size == 0:
        return
    with open(database, "rb") as handle:
        if handle.read(16) != b"SQLite format 3\x00":
            raise TrackingStoreError(
                f"The MLflow tracking store {tracking_uri} is not a database: {database} holds something else. "
                "Point MLFLOW_TRACKING_URI (or paths.mlruns_dir) at an MLflow store or a new file."
            )
    # Another explab process may be creating this store right now, table by table, under the exclusive
    # lock; a half-made store would read as a foreign one, so look only once it is complete.
    with _store_lock(database, fcntl.LOCK_SH):
        connection = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
        try:
            tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        except sqlite3.Error as error:
            reason = no_room_behind(error)
            if reason is not None:
                from explab.tracking.full_store import out_of_room

                raise out_of_room(tracking_uri, reason, "it cannot even be opened until there is room") from error
            if isinstance(error, sqlite3.DatabaseError) and "malformed" in str(error):
                raise damaged_store(tracking_uri, database, error) from error
            raise
        finally:
            connection.close()
    if tables and not {"experiments", "runs"} <= tables:
        raise TrackingStoreError(
            f"The MLflow tracking store {tracking_uri} is another application's database (tables: "
            f"{', '.join(sorted(tables)[:6])}); explab leaves it untouched. Point MLFLOW_TRACKING_URI (or "
            "paths.mlruns_dir) at an MLflow store or a new file."
        )


def damaged_store(tracking_uri: str, database: Path, error: sqlite3.Error) -> TrackingStoreError:
    """The error for a SQLite store whose file SQLite cannot read: cut short (every truncation reads as
    "database disk image is malformed", its header counting pages the file lacks) or otherwise corrupted. Its
    runs cannot be read or added to, so nothing trains into it; the file is left as it is, for a backup's
    restore or SQLite's own tools."""
    return TrackingStoreError(
        f"The MLflow store {tracking_uri} is damaged ({error}): {database} was cut short or corrupted (a copy "
        "stopped partway, a full disk, or one SQLite file written from several machines over a network file "
        "system). explab leaves it as it is and records nothing into it: restore it from a backup, or record "
        "into another store with paths.mlruns_dir=FOLDER or MLFLOW_TRACKING_URI"
    )


def _tune_connections_to(database: Path) -> None:
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    if not _STORES:
        event.listen(Engine, "connect", _tune_store_connection)
    _STORES.add(str(database.resolve()))


def _tune_store_connection(dbapi_connection: object, _record: object) -> None:
    """Write-ahead logging and ``synchronous=NORMAL`` on each new connection to a store of ``open_client``.

    WAL (kept in the file): readers (the UI, other workers) never block a run's writes, and a commit costs
    one sync instead of several. ``synchronous=NORMAL`` is SQLite's advice for WAL: a commit survives the
    process being killed, and only a power cut or OS crash can lose the last commits, never the database;
    commits take about a quarter less, so sweep workers sharing one store hold its write lock that much
    shorter. The setting lives per connection, hence SQLAlchemy's connect event; other SQLite files of the
    process are left as they are.
    """
    if not isinstance(dbapi_connection, sqlite3.Connection):
        return
    main = dbapi_connection.execute("PRAGMA database_list").fetchone()
    if main is None or main[2] not in _STORES:
        return
    dbapi_connection.execute("PRAGMA journal_mode=WAL")
    dbapi_connection.execute("PRAGMA synchronous=NORMAL")
