"""Starting `gen serve` as a real process on a free loopback port, for the tests that need a
server rather than the test client (tests/test_serve.py, tests/test_serve_browser.py)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[1]
GEN = [sys.executable, "-c", "from gen.cli import main; main()"]
START_S = 600  # a limit that only a broken server reaches, not a speed expectation


def child_env() -> dict[str, str]:
    path = os.pathsep.join(filter(None, [str(REPOSITORY), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1"}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def gen_serve(url: str, folder: Path, *options: str) -> Iterator[str]:
    """`gen serve` on a free port, run in folder; yields its address, stops it afterwards."""
    port = free_port()
    server = subprocess.Popen(
        [*GEN, "serve", "--port", str(port), "--db", url, "--cache", str(folder / ".cache"), *options],
        cwd=folder,
        env=child_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    address = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_S
        while True:
            try:
                urllib.request.urlopen(address + "/api/summary", timeout=30).close()
                break
            except (urllib.error.URLError, ConnectionError):
                if server.poll() is not None or time.monotonic() > deadline:
                    server.kill()
                    raise RuntimeError(f"gen serve did not start: {server.communicate()[0]}") from None
                time.sleep(0.2)
        yield address
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
