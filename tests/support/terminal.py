"""A command on a terminal of its own, hung up as a dropped ssh session hangs up the shell's."""

from __future__ import annotations

import os
import pty
import select
import signal
import threading
import time
from pathlib import Path


class Terminal:
    """``command`` started in ``cwd`` as the session leader of a new pseudo-terminal, with SIGHUP and SIGINT
    as a login shell leaves them (a suite run under ``nohup`` would pass SIGHUP on ignored). Its output is
    read as it comes, so a full terminal never blocks it."""

    def __init__(self, command: list[str], cwd: Path, env: dict[str, str]) -> None:
        self.pid, self.master = pty.fork()
        if self.pid == 0:  # the child: only exec from here
            os.chdir(cwd)
            signal.signal(signal.SIGHUP, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            os.execve(command[0], command, env)
        self.output = bytearray()
        self._hung_up = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.exit_code: int | None = None

    def _read(self) -> None:
        # never blocked in read() for long: a read in progress holds the terminal open, and the kernel hangs it
        # up only once the last hold is released, which would put the hang-up off until the command next writes
        while not self._hung_up.is_set():
            if not select.select([self.master], [], [], 0.05)[0]:
                continue
            try:
                chunk = os.read(self.master, 65536)
            except OSError:  # the command's side is closed
                return
            if not chunk:
                return
            self.output += chunk

    def hang_up(self) -> None:
        """Close the terminal: the kernel sends SIGHUP to the command at once, as when an ssh session drops."""
        self._hung_up.set()
        self._reader.join()
        os.close(self.master)

    def wait(self, timeout: float) -> int | None:
        """The command's exit code (``128 + N`` for death by signal N, as a shell shows it); None while it still
        runs after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while self.exit_code is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                code = os.waitstatus_to_exitcode(status)
                self.exit_code = 128 - code if code < 0 else code
            elif time.monotonic() > deadline:
                return None
            else:
                time.sleep(0.2)
        return self.exit_code
