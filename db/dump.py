"""A self-contained SQL dump of the rows behind an exported data set.

    sql = dump_sql(session, gan_id, image_ids=ids, dialect="postgresql", file_paths=relative)

The text creates every table of db.models (db.ddl.render_ddl) plus Alembic's alembic_version
stamp, so it loads into an EMPTY database and that database is then a gen database at this
schema revision (`gen models show --db ...` works on it):

    psql -v ON_ERROR_STOP=1 -d empty_database -f database.sql      # --dialect postgresql
    sqlite3 new.db < database.sql                                  # --dialect sqlite

It holds one model's rows only: its gan_architectures row, all its class_names, its
training_parameters, the checkpoints the dumped images come from, the curation runs that kept
them (if any), the dumped images and the model's reports, inserted parents first inside one
transaction. Local bookkeeping stays out: the registered data set (training_parameters.dataset
is written NULL; dataset_fingerprint identifies the images), jobs and searches. On PostgreSQL
the id sequences are moved past the inserted ids afterwards, so rows can be added later.

Values are written as SQL literals by `render_literal`, one small function per value kind
rather than the database driver's quoting: the dump is made without a connection to the target
and must be byte-for-byte reproducible. Strings are single-quoted with quotes doubled (standard
SQL; the PostgreSQL dump sets standard_conforming_strings so backslashes stay literal), JSON is
written as its text, timestamps in UTC, floats with Python's round-trip repr.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Collection, Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, Column, Table, select
from sqlalchemy.orm import Session

from db import queries
from db.ddl import DIALECTS, render_ddl
from db.models import (
    Base,
    Checkpoint,
    ClassName,
    Curation,
    GanArchitecture,
    Image,
    Report,
    TrainingParameters,
)
from db.session import head_revision

# Rows per INSERT statement: one statement per row would make loading slow; SQLite's default
# limit on a compound statement is 500 terms.
ROWS_PER_INSERT = 500
# How SQLAlchemy stores a DateTime on SQLite (naive text, here always UTC); written the same
# way so that a loaded SQLite dump reads back exactly like a database gen wrote itself.
SQLITE_DATETIME_FORMAT = "%Y-%m-%d %H:%M:%S.%f"
ALEMBIC_VERSION_DDL = (
    "CREATE TABLE alembic_version (\n"
    "\tversion_num VARCHAR(32) NOT NULL,\n"
    "\tCONSTRAINT alembic_version_pkc PRIMARY KEY (version_num)\n"
    ");"
)


def render_literal(value: Any, dialect: str) -> str:
    """value (None, bool, int, float, str) as an SQL literal for dialect "postgresql" or "sqlite"."""
    if dialect not in DIALECTS:
        raise ValueError(f"unknown dialect {dialect!r}; expected one of {', '.join(DIALECTS)}")
    if value is None:
        return "NULL"
    if isinstance(value, bool):  # before int: bool is an int
        if dialect == "postgresql":
            return "TRUE" if value else "FALSE"
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isfinite(value):
            return repr(value)  # the shortest text that reads back as the same double
        if dialect == "postgresql":
            return "'NaN'" if math.isnan(value) else ("'Infinity'" if value > 0 else "'-Infinity'")
        # SQLite reads an overflowing literal as +-infinity and stores NaN as NULL.
        return "NULL" if math.isnan(value) else ("9e999" if value > 0 else "-9e999")
    if isinstance(value, str):
        if "\x00" in value:
            raise ValueError("a NUL character cannot be written to an SQL dump")
        return "'" + value.replace("'", "''") + "'"
    raise TypeError(f"cannot write a {type(value).__name__} as an SQL literal")


def _is_json(column: Column[Any]) -> bool:
    # JSONType is JSON with a JSONB variant for PostgreSQL; both are JSON subclasses.
    return isinstance(column.type, JSON)


def column_value(value: Any, column: Column[Any], dialect: str) -> Any:
    """A value as read through the models (dict, aware datetime, ...) as the plain value the
    dialect stores: JSON as its text, timestamps as UTC text."""
    if value is None:
        return None
    if _is_json(column):
        return json.dumps(value, ensure_ascii=False, allow_nan=False)
    if isinstance(value, datetime):
        utc = value.astimezone(UTC)
        if dialect == "postgresql":
            return utc.isoformat(sep=" ", timespec="microseconds")
        return utc.strftime(SQLITE_DATETIME_FORMAT)
    return value


def _insert_statements(table: Table, rows: list[dict[str, Any]], dialect: str) -> list[str]:
    if not rows:
        return []
    preparer = DIALECTS[dialect].identifier_preparer
    columns = list(table.columns)
    names = ", ".join(preparer.quote(column.name) for column in columns)
    head = f"INSERT INTO {preparer.format_table(table)} ({names}) VALUES"
    statements = []
    for start in range(0, len(rows), ROWS_PER_INSERT):
        lines = [
            "("
            + ", ".join(render_literal(column_value(row[c.name], c, dialect), dialect) for c in columns)
            + ")"
            for row in rows[start : start + ROWS_PER_INSERT]
        ]
        statements.append(head + "\n" + ",\n".join(lines) + ";")
    return statements


def _rows(session: Session, table: Table, *conditions: Any) -> list[dict[str, Any]]:
    """Rows keyed by column name (the source's names), oldest id first."""
    query = select(table).where(*conditions).order_by(table.c.id)
    return [dict(row) for row in session.execute(query).mappings()]


def dump_rows(
    session: Session, gan_id: int, image_ids: Collection[int] | None = None
) -> dict[str, list[dict[str, Any]]]:
    """table name -> the rows a dump of model gan_id holds, parents first, as read through the
    models. image_ids selects the images (None: all of the model's)."""
    queries.get_model(session, gan_id)  # UserError naming the models that exist if unknown
    tables = Base.metadata.tables
    class_ids = select(ClassName.id).where(ClassName.gan_id == gan_id)
    # One query for all the model's images, filtered here: an IN list of thousands of ids would
    # run into SQLite's limit on bound parameters.
    images = _rows(
        session, tables[Image.__tablename__], tables[Image.__tablename__].c.class_name.in_(class_ids)
    )
    if image_ids is not None:
        wanted = set(image_ids)
        images = [row for row in images if row["id"] in wanted]
    checkpoint_ids = {row["checkpoint"] for row in images}
    curation_ids = {row["curation"] for row in images}
    checkpoints = [
        row
        for row in _rows(session, tables[Checkpoint.__tablename__], Checkpoint.gan_id == gan_id)
        if row["id"] in checkpoint_ids
    ]
    rows = {
        GanArchitecture.__tablename__: _rows(
            session, tables[GanArchitecture.__tablename__], GanArchitecture.id == gan_id
        ),
        ClassName.__tablename__: _rows(session, tables[ClassName.__tablename__], ClassName.gan_id == gan_id),
        # The data set link is the local catalog's (gen data): its row names a local folder, and
        # its name is often that folder's, so the dump keeps only the fingerprint.
        TrainingParameters.__tablename__: [
            {**row, "dataset": None}
            for row in _rows(
                session, tables[TrainingParameters.__tablename__], TrainingParameters.gan_id == gan_id
            )
        ],
        Checkpoint.__tablename__: checkpoints,
        # The curation runs that kept the dumped images (their settings and per-class counts).
        Curation.__tablename__: [
            row
            for row in _rows(session, tables[Curation.__tablename__], Curation.gan_id == gan_id)
            if row["id"] in curation_ids
        ],
        Image.__tablename__: images,
        Report.__tablename__: _rows(session, tables[Report.__tablename__], Report.gan_id == gan_id),
    }
    # Insert in the schema's foreign-key order, whatever the order above.
    return {table.name: rows[table.name] for table in Base.metadata.sorted_tables if table.name in rows}


def _schema_ddl(dialect: str) -> str:
    """render_ddl's statements without its header, which speaks of the repository's files."""
    lines = render_ddl(dialect).splitlines()
    while lines and (lines[0].startswith("--") or not lines[0].strip()):
        lines.pop(0)
    return "\n".join(lines).strip()


def dump_sql(
    session: Session,
    gan_id: int,
    *,
    image_ids: Collection[int] | None = None,
    dialect: str = "postgresql",
    file_paths: Mapping[int, str] | None = None,
    publish: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
) -> str:
    """The SQL text that recreates model gan_id's rows (see the module's docstring).

    image_ids: the images to include (None: all of the model's). file_paths: image id -> the
    file_path to write instead of the stored one (an export's paths relative to its root).
    publish: applied to every row before it is written (an export removes local paths).
    """
    if dialect not in DIALECTS:
        raise ValueError(f"unknown dialect {dialect!r}; expected one of {', '.join(DIALECTS)}")
    rows = dump_rows(session, gan_id, image_ids)
    if file_paths is not None:
        rows[Image.__tablename__] = [
            {**row, "file_path": file_paths.get(row["id"], row["file_path"])}
            for row in rows[Image.__tablename__]
        ]
    if publish is not None:
        rows = {name: [publish(row) for row in table_rows] for name, table_rows in rows.items()}
    revision = head_revision()
    counts = ", ".join(f"{name} {len(table_rows)}" for name, table_rows in rows.items())
    load = (
        "psql -v ON_ERROR_STOP=1 -d DATABASE -f database.sql"
        if dialect == "postgresql"
        else "sqlite3 new.db < database.sql"
    )
    parts = [
        f"-- gen data set: the rows behind model {gan_id}'s images ({dialect}, schema revision {revision}).\n"
        f"-- Rows: {counts}.\n"
        "-- images.file_path is relative to the data set's root folder.\n"
        f"-- Load into an EMPTY database: {load}"
    ]
    if dialect == "postgresql":
        # Independent of the server's and the client's defaults: the file is UTF-8 and its
        # backslashes are plain characters.
        parts += ["SET client_encoding = 'UTF8';", "SET standard_conforming_strings = on;"]
    parts += ["BEGIN;", _schema_ddl(dialect), ALEMBIC_VERSION_DDL]
    parts.append(f"INSERT INTO alembic_version (version_num) VALUES ({render_literal(revision, dialect)});")
    tables = Base.metadata.tables
    for name, table_rows in rows.items():
        parts.extend(_insert_statements(tables[name], table_rows, dialect))
    if dialect == "postgresql":
        # Explicit ids leave the sequences at 1; the next insert would collide without this.
        # One SELECT, so that psql prints one result row rather than one per table.
        moves = [
            f"setval(pg_get_serial_sequence({render_literal(name, dialect)}, 'id'), "
            f"{max(row['id'] for row in table_rows)})"
            for name, table_rows in rows.items()
            if table_rows
        ]
        parts.append("SELECT\n" + ",\n".join(f"\t{move}" for move in moves) + ";")
    parts.append("COMMIT;")
    return "\n\n".join(parts) + "\n"
