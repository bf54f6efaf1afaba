"""gen's group (gen/cli.py): a database another process holds locked is waited for, then said
in one sentence.

End to end through click's CliRunner; each test that takes `database_url` runs on SQLite and
on PostgreSQL (see conftest).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from cli_support import (
    SAMPLE,
    Trained,
    assert_user_error,
    gen,
    image_rows,
    ok,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_a_locked_sqlite_database_is_waited_for_then_said(
    trained: Trained, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process holding the write lock longer than sqlite3's 5 s default: gen waits; past
    its own limit it says so in one sentence, and a rerun completes the request."""
    import sqlite3
    import threading

    import db.session

    url = f"sqlite:///{tmp_path / 'gen.db'}"
    out = tmp_path / "samples"
    checkpoint, name = trained.checkpoints[-1], trained.classes[0]
    request = f"sample --checkpoint {checkpoint} --n 2 --class {name} --out {out} {SAMPLE}"
    ok(gen(url, request.replace("--n 2", "--n 1")))

    def hold_the_lock(seconds: float) -> threading.Thread:
        locked = threading.Event()

        def hold() -> None:
            connection = sqlite3.connect(tmp_path / "gen.db", timeout=0)
            connection.execute("BEGIN EXCLUSIVE")
            locked.set()
            time.sleep(seconds)
            connection.rollback()
            connection.close()

        thread = threading.Thread(target=hold)
        thread.start()
        locked.wait(5)
        return thread

    holder = hold_the_lock(6.5)  # past sqlite3's default 5 s
    ok(gen(url, request))
    holder.join()
    assert len(image_rows(url, out)) == 2

    monkeypatch.setattr(db.session, "DATABASE_BUSY_TIMEOUT_S", 0.5)
    holder = hold_the_lock(3)
    result = gen(url, request.replace("--n 2", "--n 3"))
    holder.join()
    assert_user_error(result, "the database stayed locked by another gen process")
    monkeypatch.undo()
    ok(gen(url, request.replace("--n 2", "--n 3")))
    assert len(image_rows(url, out)) == 3
