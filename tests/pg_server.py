"""A throwaway PostgreSQL server, for the test suite and the benchmarks.

    with running_postgres() as server:
        url = server.create_database()      # postgresql://postgres@127.0.0.1:PORT/test_...
        ...
        server.drop_database(url)

The server lives in a fresh temporary folder (data directory, unix socket, log), listens on
127.0.0.1 on a free port, trusts every local connection, and is stopped with `pg_ctl stop -m
immediate` and deleted on exit. It is not for real data: with fsync=False (the default, which
makes tests fast) a crash of the machine can lose committed transactions.

PostgreSQL refuses to run as root, and tests run as root in containers and CI: as root the
server runs as the `postgres` user (else `nobody`) through `runuser`, in a folder it owns.
initdb, pg_ctl and postgres are looked up on PATH, then in Debian's /usr/lib/postgresql/*/bin.
"""

from __future__ import annotations

import os
import pwd
import re
import secrets
import shlex
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg2
from sqlalchemy.engine import make_url

SUPERUSER = "postgres"
UNPRIVILEGED_USERS = ("postgres", "nobody")
START_ATTEMPTS = 3


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL server could be started here (binaries missing, no user to run it as)."""


def find_postgres_bin() -> Path | None:
    """The folder holding initdb, pg_ctl and postgres, or None if they are not installed."""
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).resolve().parent
    # Debian keeps the server binaries off PATH, one folder per major version; prefer the newest.
    candidates = Path("/usr/lib/postgresql").glob("*/bin/initdb")
    versions = sorted(
        candidates, key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0
    )
    return versions[-1].parent if versions else None


def _run_as_user() -> str | None:
    if os.geteuid() != 0:
        return None
    for name in UNPRIVILEGED_USERS:
        try:
            pwd.getpwnam(name)
        except KeyError:
            continue
        return name
    raise PostgresUnavailable(f"running as root and none of the users {', '.join(UNPRIVILEGED_USERS)} exists")


def _find_runuser() -> str:
    # root's PATH usually has sbin, but a trimmed PATH (CI, sudo) may not.
    found = shutil.which("runuser") or next(
        (path for path in ("/usr/sbin/runuser", "/sbin/runuser") if os.access(path, os.X_OK)), None
    )
    if found is None:
        raise PostgresUnavailable(
            "running as root needs runuser (util-linux) to start PostgreSQL as another user"
        )
    return found


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class PostgresServer:
    root: Path
    port: int
    bin_dir: Path
    run_as: str | None
    runuser: str | None = None

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def log_path(self) -> Path:
        return self.root / "server.log"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def _command(self, *args: str) -> list[str]:
        command = [str(self.bin_dir / args[0]), *args[1:]]
        return [self.runuser or "runuser", "-u", self.run_as, "--", *command] if self.run_as else command

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        # cwd: the server's user may not be allowed into the caller's working directory.
        return subprocess.run(
            self._command(*args), cwd=self.root, capture_output=True, text=True, check=False
        )

    def _execute(self, sql: str) -> None:
        connection = psycopg2.connect(host="127.0.0.1", port=self.port, user=SUPERUSER, dbname="postgres")
        try:
            # CREATE and DROP DATABASE cannot run inside a transaction.
            connection.autocommit = True
            with connection.cursor() as cursor:
                cursor.execute(sql)
        finally:
            connection.close()

    def create_database(self, name: str | None = None) -> str:
        """Create an empty database (named test_<random> unless given); returns its URL."""
        name = name or f"test_{secrets.token_hex(6)}"
        if not re.fullmatch(r"[a-z_][a-z0-9_]*", name):
            raise ValueError(f"database name {name!r} must be a lowercase SQL identifier")
        self._execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def drop_database(self, name_or_url: str) -> None:
        """Drop a database by name or URL, closing any connections still open to it."""
        name = make_url(name_or_url).database if "://" in name_or_url else name_or_url
        if not name or not re.fullmatch(r"[a-z_][a-z0-9_]*", name):
            raise ValueError(f"database name {name!r} must be a lowercase SQL identifier")
        self._execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    def stop(self) -> None:
        """Stop the server at once (nothing in it is worth a clean shutdown) and delete its folder."""
        try:
            if (self.data_dir / "postmaster.pid").exists():
                self._run("pg_ctl", "stop", "-D", str(self.data_dir), "-m", "immediate", "-w")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


def start_postgres(*, fsync: bool = False) -> PostgresServer:
    """Initialise and start a server in a new temporary folder; call .stop() when done."""
    bin_dir = find_postgres_bin()
    if bin_dir is None:
        raise PostgresUnavailable("initdb was not found on PATH or in /usr/lib/postgresql/*/bin")
    run_as = _run_as_user()
    runuser = _find_runuser() if run_as is not None else None
    root = Path(tempfile.mkdtemp(prefix="gen-pg-"))
    if run_as is not None:
        user = pwd.getpwnam(run_as)
        os.chown(root, user.pw_uid, user.pw_gid)
    server = PostgresServer(root=root, port=0, bin_dir=bin_dir, run_as=run_as, runuser=runuser)
    try:
        initdb = server._run(
            "initdb",
            *("-D", str(server.data_dir), "-U", SUPERUSER, "--auth=trust"),
            *("--encoding=UTF8", "--locale=C", "--no-sync", "--no-instructions"),
        )
        if initdb.returncode != 0:
            raise PostgresUnavailable(f"initdb failed: {(initdb.stderr or initdb.stdout).strip()[-2000:]}")
        durability = [] if fsync else ["-c fsync=off", "-c full_page_writes=off", "-c synchronous_commit=off"]
        for _ in range(START_ATTEMPTS):
            # Another process may take the free port before the server binds it; try a new one.
            server.port = _free_port()
            options = " ".join(
                [
                    f"-p {server.port}",
                    "-c listen_addresses=127.0.0.1",
                    f"-k {shlex.quote(str(root))}",
                    *durability,
                ]
            )
            data, log = str(server.data_dir), str(server.log_path)
            started = server._run("pg_ctl", "start", "-D", data, "-l", log, "-w", "-t", "60", "-o", options)
            if started.returncode == 0:
                return server
        tail = server.log_path.read_text(errors="replace")[-2000:] if server.log_path.exists() else ""
        raise PostgresUnavailable(f"pg_ctl start failed: {(started.stderr or started.stdout).strip()} {tail}")
    except BaseException:
        server.stop()
        raise


@contextmanager
def running_postgres(*, fsync: bool = False) -> Iterator[PostgresServer]:
    """A started server for the duration of the block; stopped and deleted afterwards."""
    server = start_postgres(fsync=fsync)
    try:
        yield server
    finally:
        server.stop()
