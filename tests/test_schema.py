"""The schema's three descriptions agree: db/models.py, the Alembic migrations, schema/ddl/*.sql."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from db import generators as generator_rows
from db.ddl import DIALECTS, ddl_path, render_ddl
from db.models import Base
from db.session import alembic_config, head_revision, make_engine, migrate, open_database

TRAINING = {
    "g_optimizer": "adam",
    "d_optimizer": "adam",
    "loss": "hinge",
    "batch_size": 8,
    "g_lr": 1e-4,
    "d_lr": 4e-4,
}


def schema_differences(engine: Engine) -> list:
    """What Alembic's autogenerate would change to make the database match the models."""
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return compare_metadata(context, Base.metadata)


@pytest.mark.parametrize("dialect_name", sorted(DIALECTS))
def test_ddl_files_match_the_models(dialect_name: str) -> None:
    assert ddl_path(dialect_name).read_text(encoding="utf-8") == render_ddl(dialect_name), (
        f"{ddl_path(dialect_name)} is out of date; regenerate it with `python -m db.ddl --write`"
    )


def test_ddl_file_builds_the_models_schema(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        ddl = ddl_path(engine.dialect.name).read_text(encoding="utf-8")
        with engine.begin() as connection:
            # The raw DBAPI cursor, because sqlite3 runs several statements only via executescript.
            cursor = connection.connection.cursor()
            if engine.dialect.name == "sqlite":
                cursor.executescript(ddl)
            else:
                cursor.execute(ddl)
        assert schema_differences(engine) == []
    finally:
        engine.dispose()


def test_alembic_head_matches_the_models(database_url: str) -> None:
    engine = open_database(database_url)
    try:
        assert schema_differences(engine) == []
    finally:
        engine.dispose()


def test_migrations_form_one_line() -> None:
    script = ScriptDirectory.from_config(alembic_config())
    assert script.get_heads() == [head_revision()]
    revisions = list(script.walk_revisions())
    assert revisions[-1].down_revision is None
    assert all(r.revision.isdigit() and len(r.revision) == 4 for r in revisions)


def test_every_migration_downgrades_and_upgrades_again(database_url: str) -> None:
    engine = open_database(database_url)
    try:
        with Session(engine) as session:
            # Rows in the tables: downgrades must cope with data, not only with empty tables.
            generator_rows.record_model(
                session, preset="tiny", generator={}, discriminator={}, class_names=["a"], training=TRAINING
            )
        revisions = [r.revision for r in ScriptDirectory.from_config(alembic_config()).walk_revisions()]
        # Step down one revision at a time, then back up, checking the tables at each step.
        for revision in revisions[1:] + ["base"]:
            migrate(engine, revision, downgrade=True)
        assert set(inspect(engine).get_table_names()) == {"alembic_version"}
        for revision in reversed(revisions):
            migrate(engine, revision)
        assert schema_differences(engine) == []
    finally:
        engine.dispose()
    # A database taken down to base counts as empty: opening it creates the schema again.
    engine = open_database(database_url)
    engine.dispose()
