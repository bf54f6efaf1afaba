"""Fixtures shared by the test modules.

Database tests take `database_url` and run twice: once on a SQLite file and once on a real
PostgreSQL 15 server that the suite starts itself (tests/pg_server.py). Without PostgreSQL installed
those runs are skipped, except in CI (the CI variable is set), where they must run and so fail.

The tests of the commands take `trained`: their own copy of one tiny model that the whole run
trains once (`tiny_model`, tests/cli_support.py).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn

import pytest
import torch
from cli_support import Trained, copy_trained, train_tiny_model

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


@contextmanager
def torch_threads(count: int) -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """Tiny batches run several times faster on one torch thread than on two when other
    processes share a two-core machine; the results are the same (test_sample checks it)."""
    with torch_threads(1):
        yield


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    """The commands' tests' tiny model, trained once for the whole run (on one torch thread, as
    those tests run); tests take `trained`, a copy of it, and never this one."""
    with torch_threads(1):
        return train_tiny_model(tmp_path_factory)


@pytest.fixture
def trained(tiny_model: Trained, tmp_path_factory: pytest.TempPathFactory) -> Trained:
    """This test's own copy of the tiny model's data and run folder."""
    return copy_trained(tiny_model, tmp_path_factory.mktemp("trained"))


# `gen train` without --preset trains the best recipe for the device (cpu here), which is far
# too slow for tests: the suite's runs take the test preset, tiny, unless a test says otherwise
# (tests/test_presets.py checks the real default with the variable removed).
os.environ["GEN_PRESET"] = "tiny"
