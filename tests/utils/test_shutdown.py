"""A console script's exit: what the interpreter's teardown would have done is done, and its collections skipped."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
from contextlib import closing
from pathlib import Path


def test_an_exit_closes_databases_flushes_files_and_finalises_garbage_then_freezes(tmp_path: Path) -> None:
    """Each resource sits in a reference cycle, which only a collection reaches: the teardown's collections
    are what ``finish_before_teardown`` lets the process skip."""
    script = textwrap.dedent(
        """
        import atexit, gc, sqlite3
        from explab.utils.shutdown import finish_at_exit

        atexit.register(lambda: print("frozen:", gc.get_freeze_count() > 0))  # runs after finish_at_exit's
        finish_at_exit()

        class Finalised:
            def __del__(self):
                with open("finalised.txt", "w") as marker:
                    marker.write("yes")

        database = sqlite3.connect("store.db")
        database.execute("PRAGMA journal_mode=WAL")
        database.execute("CREATE TABLE runs (name TEXT)")
        database.execute("INSERT INTO runs VALUES ('kept')")
        database.commit()
        report = open("report.txt", "w")
        report.write("line\\n" * 1000)  # held in the file's buffer until a flush
        kept = {"database": database, "report": report}
        kept["self"] = kept  # reachable to the end, in a cycle
        garbage = [Finalised()]
        garbage.append(garbage)
        del garbage  # unreachable, in a cycle: only a collection frees it
        """
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, check=False)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    assert done.stdout == "frozen: True\n", "the teardown's collections are skipped"
    assert not (tmp_path / "store.db-wal").exists() and not (tmp_path / "store.db-shm").exists()
    with closing(sqlite3.connect(tmp_path / "store.db")) as reader:
        assert reader.execute("SELECT name FROM runs").fetchall() == [("kept",)]
    assert (tmp_path / "report.txt").read_text() == "line\n" * 1000
    assert (tmp_path / "finalised.txt").read_text() == "yes"
