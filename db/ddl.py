"""The schema as plain SQL, one file per dialect, generated from db/models.py.

The files in schema/ddl/ let a reader (or a consumer of the published data set) see every
table without Python. They are generated, never edited: after changing the models run

    python -m db.ddl --write

and tests/test_schema.py fails whenever the files and the models disagree.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.schema import CreateIndex, CreateTable

from db.models import Base
from db.session import SCHEMA_DIR

DDL_DIR = SCHEMA_DIR / "ddl"
DIALECTS: dict[str, Dialect] = {"postgresql": postgresql.dialect(), "sqlite": sqlite.dialect()}


def render_ddl(dialect_name: str) -> str:
    """CREATE TABLE and CREATE INDEX statements for every model, parents before children."""
    if dialect_name not in DIALECTS:
        raise ValueError(f"unknown dialect {dialect_name!r}; expected one of {', '.join(DIALECTS)}")
    dialect = DIALECTS[dialect_name]
    statements = []
    for table in Base.metadata.sorted_tables:
        statements.append(str(CreateTable(table).compile(dialect=dialect)))
        for index in sorted(table.indexes, key=lambda index: index.name or ""):
            statements.append(str(CreateIndex(index).compile(dialect=dialect)))
    # The compiler leaves a space before each line break; strip it so the files stay clean.
    body = "\n\n".join("\n".join(line.rstrip() for line in s.strip().splitlines()) + ";" for s in statements)
    header = (
        f"-- gen database schema for {dialect_name}, generated from db/models.py.\n"
        "-- Do not edit: regenerate with `python -m db.ddl --write`.\n"
        "-- Databases made by gen also hold Alembic's alembic_version table (the schema revision).\n"
    )
    return f"{header}\n{body}\n"


def ddl_path(dialect_name: str) -> Path:
    return DDL_DIR / f"{dialect_name}.sql"


def write_ddl() -> list[Path]:
    """Regenerate every dialect's file; returns the paths written."""
    DDL_DIR.mkdir(parents=True, exist_ok=True)
    written = []
    for dialect_name in DIALECTS:
        path = ddl_path(dialect_name)
        path.write_text(render_ddl(dialect_name), encoding="utf-8")
        written.append(path)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m db.ddl", description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="rewrite schema/ddl/*.sql from the models")
    parser.add_argument("--dialect", choices=sorted(DIALECTS), default="postgresql", help="what to print")
    arguments = parser.parse_args()
    if arguments.write:
        for path in write_ddl():
            print(f"wrote {path}")
    else:
        print(render_ddl(arguments.dialect), end="")


if __name__ == "__main__":
    main()
