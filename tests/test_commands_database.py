"""gen db upgrade: an older database brought to the schema this gen needs.

End to end through click's CliRunner; each test that takes `database_url` runs on SQLite and
on PostgreSQL (see conftest).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_support import (
    Trained,
    adopt,
    assert_user_error,
    gen,
    ok,
)

from db.session import head_revision, make_engine, migrate

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_db_upgrade_brings_an_older_database_to_head(
    database_url: str, trained: Trained, tmp_path: Path
) -> None:
    gan_id = adopt(database_url, trained, tmp_path / "first")
    engine = make_engine(database_url)
    migrate(engine, "0001", downgrade=True)
    engine.dispose()
    head = head_revision()
    assert head != "0001"

    assert_user_error(
        gen(database_url, "models list"),
        f"has schema revision 0001 but this gen needs {head}",
        "gen db upgrade",
    )
    upgraded = ok(gen(database_url, "db upgrade"))
    assert upgraded.stdout.strip() == f"upgraded {database_url} from schema revision 0001 to {head}"
    lines = ok(gen(database_url, "models list")).stdout.splitlines()
    assert lines[1].split()[:4] == [str(gan_id), "tiny", "2", "1"]  # the rows came through
    again = ok(gen(database_url, "db upgrade"))
    assert again.stdout.strip() == f"{database_url} is already at schema revision {head}"
