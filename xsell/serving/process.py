"""``xsell serve`` in a process of its own: started, waited for, stopped (or killed).

What a test, a benchmark or a chapter needs to talk to a real server over HTTP::

    with ServerProcess(bundle_dir, events_file) as server:
        httpx.get(f"{server.url}/health")

The server binds to 127.0.0.1 on a free port; :meth:`ServerProcess.start` returns once
``/health`` answers and raises with the server's own output if it exits first or does
not come up in time. The output goes to a log file (a pipe nobody reads would block the
server once it filled).
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

__all__ = ["ServerProcess", "free_port"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerProcess:
    """``xsell serve BUNDLE --events EVENTS`` on 127.0.0.1, as a child process.

    Parameters
    ----------
    bundle : path-like
        A bundle of ``xsell fit --out``.
    events : path-like
        The event log (created when missing).
    workers : int
        Server processes (``--workers``).
    timeout : float
        Seconds to wait for ``/health`` (loading a bundle takes seconds).
    log : path-like, optional
        Where the server's output goes (default: a temporary file).
    env : dict, optional
        Extra environment variables of the server.
    args : sequence of str
        More ``xsell serve`` options (e.g. ``["--index", "ivf"]``).

    Attributes
    ----------
    url : str
        ``http://127.0.0.1:PORT`` once started.
    proc : subprocess.Popen
        The server process (its ``pid`` is the supervisor's with several workers).
    """

    def __init__(self, bundle, events, workers: int = 1, timeout: float = 120.0,
                 log=None, env: dict | None = None, args: Sequence[str] = ()):
        self.bundle, self.events = Path(bundle), Path(events)
        self.workers, self.timeout = workers, timeout
        self.log = Path(log) if log is not None else Path(
            tempfile.mkstemp(prefix="xsell-serve-", suffix=".log")[1])
        self.env = dict(env or {})
        self.args = list(args)
        self.url = ""
        self.proc: subprocess.Popen | None = None

    def start(self) -> ServerProcess:
        """Start the server and wait until ``/health`` answers.

        Raises
        ------
        RuntimeError
            With the server's output, if it exits or is not up within ``timeout``.
        """
        import httpx

        port = free_port()
        with open(self.log, "w") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "xsell.cli", "serve", str(self.bundle), "--port",
                 str(port), "--events", str(self.events), "--workers", str(self.workers),
                 *self.args],
                stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **self.env})
        self.url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + self.timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"xsell serve exited ({self.proc.returncode}):\n"
                                   f"{self.output()}")
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"xsell serve did not answer in {self.timeout:.0f} s:\n"
                                   f"{self.output()}")
            time.sleep(0.25)

    def output(self) -> str:
        """What the server wrote so far."""
        return self.log.read_text(errors="replace") if self.log.is_file() else ""

    @property
    def load_seconds(self) -> float:
        """The bundle's load time, as the server reported it (nan if it did not)."""
        found = re.search(r"loaded .* in ([0-9.]+) s", self.output())
        return float(found.group(1)) if found else float("nan")

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the server as an operator would (SIGTERM), killing it if it hangs."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """Kill the server at once (SIGKILL: a crash; no shutdown code runs)."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
