"""Fixtures shared by the test modules.

Database tests take `database_url` and run twice: once on a SQLite file and once on a real
PostgreSQL 15 server that the suite starts itself (tests/pg_server.py). Without PostgreSQL installed
those runs are skipped, except in CI (the CI variable is set), where they must run and so fail.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import pytest
import torch

from tests.pg_server import PostgresServer, PostgresUnavailable, find_postgres_bin, start_postgres


def _no_postgres(reason: str) -> NoReturn:
    if os.environ.get("CI"):
        pytest.fail(f"PostgreSQL tests must run in CI: {reason}", pytrace=False)
    pytest.skip(f"PostgreSQL is not available: {reason}")


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One throwaway PostgreSQL server for the whole test run."""
    if find_postgres_bin() is None:
        _no_postgres("initdb is not on PATH (install postgresql-15)")
    try:
        server = start_postgres()
    except PostgresUnavailable as exc:
        _no_postgres(str(exc))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database per test: a SQLite file, or a new database on the shared server."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'gen.db'}"
        return
    server: PostgresServer = request.getfixturevalue("postgres_server")
    url = server.create_database()
    try:
        yield url
    finally:
        server.drop_database(url)


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """Tiny batches run several times faster on one torch thread than on two when other
    processes share a two-core machine; the results are the same (test_sample checks it)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


# `gen train` without --preset trains the best recipe for the device (cpu here), which is far
# too slow for tests: the suite's runs take the test preset, tiny, unless a test says otherwise
# (tests/test_presets.py checks the real default with the variable removed).
os.environ["GEN_PRESET"] = "tiny"
