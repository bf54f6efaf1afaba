"""db.dump: SQL literals, and dumps that load into fresh SQLite and PostgreSQL databases with
every row equal to the source's (sources on SQLite and on PostgreSQL, see conftest)."""

from __future__ import annotations

import math
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg2
import pytest
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from db import generators as generator_rows
from db import images as image_rows
from db import reports as report_rows
from db.dump import DUMP_TABLES, DumpFormatError, column_value, dump_rows, dump_sql, read_dump, render_literal
from db.models import Base, Image
from db.session import open_database
from tests.pg_server import PostgresServer

NASTY_STRINGS = [
    "",
    "it's",
    "''",
    'double "quotes"',
    "back\\slash \\n \\' \\\\",
    "new\nline\r\nand\ttab",
    "unicode é ß ✓ 🧫 \u200b",
    "-- not a comment",
    "/* nor this */",
    "'; DROP TABLE images; --",
    "$$dollar$$ $tag$",
    ":psql_variable :'quoted' :\"ident\"",
    "\\copy images to '/tmp/x'",
    "E'escape'",
    "semi;\n;colon;",
]
FLOATS = [0.0, -0.0, 0.1, 1 / 3, 1e-300, 5e-324, 1.7976931348623157e308, -2.5e-8, 123456789.123456789]

# Awkward values in every kind of column, so that the round trip exercises the quoting.
CLASSES = ["it's", "back\\slash", "new\nline ✓", "semi;colon -- x", ":var $$"]
GENERATOR = {
    "kind": "generator",
    "text": "quote ' double \" backslash \\ newline \n tab \t unicode 🧫",
    "numbers": [1, 2.5, -0.0, 1e-300, None, True, False],
    "nested": {"empty": {}, "list": [], "key with 'quote'": "v"},
}
TRAINING: dict[str, Any] = {
    "g_optimizer": "adam",
    "d_optimizer": "adam'); --",
    "loss": "hinge",
    "batch_size": 16,
    "epochs": None,
    "g_lr": 0.1,
    "d_lr": 1 / 3,
    "betas": {"g": [0.0, 0.999], "d": [0.5, 0.9]},
    "ema_decay": 0.999,
    "diffaugment": "color,translation",
    "iterations": 200,
    "dataset_path": "/data/with space/and'quote",
    "dataset_fingerprint": "f" * 64,
    "device": "cpu",
    "seed": 2**31 - 1,
    "settings": {"note": "multi\nline\\path", "unicode": "µm", "big": 2**53, "small": 5e-324},
}


def test_render_literal_basic_values() -> None:
    for dialect in ("postgresql", "sqlite"):
        assert render_literal(None, dialect) == "NULL"
        assert render_literal(42, dialect) == "42"
        assert render_literal(-(2**62), dialect) == str(-(2**62))
        assert render_literal("it's", dialect) == "'it''s'"
        assert render_literal(0.1, dialect) == "0.1"
    assert render_literal(True, "postgresql") == "TRUE"
    assert render_literal(False, "sqlite") == "0"
    assert render_literal(math.inf, "postgresql") == "'Infinity'"
    assert render_literal(-math.inf, "sqlite") == "-9e999"
    with pytest.raises(ValueError, match="NUL"):
        render_literal("a\x00b", "sqlite")
    with pytest.raises(TypeError):
        render_literal(b"bytes", "postgresql")
    with pytest.raises(ValueError, match="unknown dialect"):
        render_literal(1, "mysql")


def _sqlite_roundtrip(literal: str, column_type: str) -> Any:
    connection = sqlite3.connect(":memory:")
    connection.execute(f"CREATE TABLE t (v {column_type})")
    connection.execute(f"INSERT INTO t (v) VALUES ({literal})")
    return connection.execute("SELECT v FROM t").fetchone()[0]


@pytest.fixture(scope="module")
def pg_connection(postgres_server: PostgresServer) -> Iterator[Any]:
    url = postgres_server.create_database()
    connection = psycopg2.connect(url)
    connection.autocommit = True
    yield connection
    connection.close()
    postgres_server.drop_database(url)


def _pg_roundtrip(connection: Any, literal: str, column_type: str) -> Any:
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE TEMP TABLE t (v {column_type})")
        try:
            # psycopg2 would read % as a placeholder marker only with parameters; there are none.
            cursor.execute(f"INSERT INTO t (v) VALUES ({literal})")
            cursor.execute("SELECT v FROM t")
            return cursor.fetchone()[0]
        finally:
            cursor.execute("DROP TABLE t")


@pytest.mark.parametrize("value", NASTY_STRINGS)
def test_nasty_strings_read_back_unchanged_in_sqlite(value: str) -> None:
    assert _sqlite_roundtrip(render_literal(value, "sqlite"), "VARCHAR") == value


@pytest.mark.parametrize("value", FLOATS + [math.inf, -math.inf])
def test_floats_read_back_exactly_in_sqlite(value: float) -> None:
    # Equal, not identical: both databases drop the sign of -0.0.
    assert _sqlite_roundtrip(render_literal(value, "sqlite"), "DOUBLE PRECISION") == value


@pytest.mark.postgres
def test_nasty_strings_and_floats_read_back_unchanged_in_postgresql(pg_connection: Any) -> None:
    for value in NASTY_STRINGS:
        assert _pg_roundtrip(pg_connection, render_literal(value, "postgresql"), "VARCHAR") == value
    for value in FLOATS + [math.inf, -math.inf]:
        assert _pg_roundtrip(pg_connection, render_literal(value, "postgresql"), "DOUBLE PRECISION") == value
    assert math.isnan(
        _pg_roundtrip(pg_connection, render_literal(math.nan, "postgresql"), "DOUBLE PRECISION")
    )
    assert _pg_roundtrip(pg_connection, render_literal(True, "postgresql"), "BOOLEAN") is True


# ----------------------------------------------------------------------------- round trip


def record_source(engine: Engine) -> tuple[int, list[int], dict[int, str]]:
    """A model with awkward values everywhere plus a second model that must stay out of the dump.

    Returns (model id, the ids of the images to dump, image id -> relative path).
    """
    with Session(engine) as session:
        other = generator_rows.record_model(
            session, preset="other", generator={}, discriminator={}, class_names=["x"], training=TRAINING
        )
        other_checkpoint = generator_rows.record_checkpoint(session, other, "/other.pt", 1, "0" * 64)
        gan_id = generator_rows.record_model(
            session,
            preset="tiny'--",
            generator=GENERATOR,
            discriminator={"kind": "discriminator", "channels": [8, 16]},
            class_names=CLASSES,
            training=TRAINING,
        )
        early = generator_rows.record_checkpoint(
            session, gan_id, "/runs/it's here/checkpoint-1.pt", 1, "1" * 64
        )
        late = generator_rows.record_checkpoint(
            session, gan_id, "/runs/it's here/checkpoint-2.pt", 2, "2" * 64
        )
        unused = generator_rows.record_checkpoint(session, gan_id, "/runs/unused.pt", 3, "3" * 64)
        assert unused
        rows = []
        for label, name in enumerate(CLASSES):
            class_id = generator_rows.resolve_class(session, gan_id, name)
            for index in range(3):
                rows.append(
                    {
                        "file_path": f"/abs/samples/{name}/img'{index}.png",
                        "class_id": class_id,
                        "md5": f"{label}{index}".ljust(32, "a"),
                        "width": 64,
                        "height": 64,
                        "seed": index,
                        "sample_index": index,
                        "checkpoint_id": early if index == 0 else late,
                        "iteration": 1 if index == 0 else 2,
                    }
                )
        image_rows.record_images(session, rows)
        image_rows.record_images(
            session,
            [
                {
                    "file_path": "/abs/x.png",
                    "class_id": generator_rows.resolve_class(session, other, "x"),
                    "md5": "f" * 32,
                    "width": 64,
                    "height": 64,
                    "seed": 0,
                    "sample_index": 0,
                    "checkpoint_id": other_checkpoint,
                    "iteration": 1,
                }
            ],
        )
        report_rows.record_report(
            session,
            gan_id,
            [
                {"metric": "fid", "value": 12.5, "class_name": None, "settings": {"n": 100, "s": "a'b"}},
                {"metric": "kid", "value": math.inf, "class_name": CLASSES[0]},
                {"metric": "histogram_kl", "value": -0.0, "class_name": CLASSES[2], "settings": None},
            ],
        )
        images = list(
            session.execute(select(Image.id, Image.file_path).order_by(Image.id).where(Image.seed != 2)).all()
        )
    chosen = [image_id for image_id, path in images if path != "/abs/x.png"]
    relative = {image_id: path.removeprefix("/abs/samples/") for image_id, path in images}
    return gan_id, chosen, relative


def table_rows(engine: Engine) -> dict[str, list[dict[str, Any]]]:
    """Every row of every model table, read through the models, oldest id first."""
    with Session(engine) as session:
        return {
            table.name: [dict(row) for row in session.execute(select(table).order_by(table.c.id)).mappings()]
            for table in Base.metadata.sorted_tables
        }


def load_into_postgres(server: PostgresServer, sql_path: Path) -> str:
    url = server.create_database()
    loaded = subprocess.run(
        ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", url, "-f", str(sql_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert loaded.returncode == 0, loaded.stderr
    assert "ERROR" not in loaded.stderr
    return url


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_dump_round_trip(
    dialect: str, database_url: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    source = open_database(database_url)
    gan_id, chosen, relative = record_source(source)
    with Session(source) as session:
        sql = dump_sql(session, gan_id, image_ids=chosen, dialect=dialect, file_paths=relative)
        assert dump_sql(session, gan_id, image_ids=chosen, dialect=dialect, file_paths=relative) == sql
    # What the dump must hold, read from the source independently of db.dump.
    everything = table_rows(source)
    source.dispose()
    images = [
        {**row, "file_path": relative[row["id"]]} for row in everything["images"] if row["id"] in chosen
    ]
    expected = {
        "gan_architectures": [row for row in everything["gan_architectures"] if row["id"] == gan_id],
        "class_names": [row for row in everything["class_names"] if row["gan"] == gan_id],
        "training_parameters": [row for row in everything["training_parameters"] if row["gan"] == gan_id],
        "checkpoints": [
            row for row in everything["checkpoints"] if row["id"] in {image["checkpoint"] for image in images}
        ],
        "images": images,
        "reports": [row for row in everything["reports"] if row["gan"] == gan_id],
        "classifiers": [],
    }
    assert len(images) == len(chosen) == 2 * len(CLASSES)
    assert {row["path"] for row in expected["checkpoints"]} == {
        "/runs/it's here/checkpoint-1.pt",
        "/runs/it's here/checkpoint-2.pt",
    }
    assert len(expected["reports"]) == 3 and len(expected["class_names"]) == len(CLASSES)
    sql_path = tmp_path / "database.sql"
    sql_path.write_text(sql, encoding="utf-8")

    if dialect == "sqlite":
        target = tmp_path / "loaded.db"
        connection = sqlite3.connect(target)
        connection.executescript(sql)
        connection.close()
        targets = [f"sqlite:///{target}"]
        if shutil.which("sqlite3"):  # the way the data set's README says to load it
            cli_target = tmp_path / "loaded-cli.db"
            with open(sql_path, "rb") as stdin:
                subprocess.run(["sqlite3", str(cli_target)], stdin=stdin, check=True, capture_output=True)
            targets.append(f"sqlite:///{cli_target}")
    else:
        server: PostgresServer = request.getfixturevalue("postgres_server")
        targets = [load_into_postgres(server, sql_path)]

    for url in targets:
        loaded = open_database(url, create=False)  # the alembic stamp makes it a gen database
        try:
            got = table_rows(loaded)
            # A model's dump holds no search rows (a search spans many models): those tables stay empty.
            assert {name: rows for name, rows in got.items() if name in expected} == expected
            assert not any(rows for name, rows in got.items() if name not in expected)
            with Session(loaded) as session:
                info = generator_rows.get_model(session, gan_id)
                assert info.class_names == tuple(CLASSES)
                # The sequences were moved on: new rows get new ids.
                new_model = generator_rows.record_model(
                    session,
                    preset="new",
                    generator={},
                    discriminator={},
                    class_names=["a"],
                    training=TRAINING,
                )
                assert new_model > gan_id
        finally:
            loaded.dispose()


def test_dump_of_unknown_model_names_the_models(tmp_path: Path) -> None:
    from db.errors import UserError

    engine = open_database(f"sqlite:///{tmp_path / 'gen.db'}")
    gan_id, _, _ = record_source(engine)
    with Session(engine) as session, pytest.raises(UserError, match="no model 99; models in the database"):
        dump_sql(session, 99)
    with Session(engine) as session, pytest.raises(ValueError, match="unknown dialect"):
        dump_sql(session, gan_id, dialect="mysql")
    engine.dispose()


# ----------------------------------------------------------------------------- reading a dump back


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_read_dump_gives_back_the_rows_dump_sql_wrote(dialect: str, tmp_path: Path) -> None:
    engine = open_database(f"sqlite:///{tmp_path / 'gen.db'}")
    gan_id, chosen, relative = record_source(engine)
    with Session(engine) as session:
        sql = dump_sql(session, gan_id, image_ids=chosen, dialect=dialect, file_paths=relative)
        rows = dump_rows(session, gan_id, chosen)
    engine.dispose()
    rows["images"] = [{**row, "file_path": relative[row["id"]]} for row in rows["images"]]
    tables = Base.metadata.tables
    expected = {
        name: [
            tuple(column_value(row[c.name], c, dialect) for c in tables[name].columns) for row in table_rows
        ]
        for name, table_rows in rows.items()
    }
    path = tmp_path / "database.sql"
    path.write_text(sql, encoding="utf-8")
    got: dict[str, list[tuple[Any, ...]]] = {name: [] for name in DUMP_TABLES}
    with open(path, "rb") as file:
        for row in read_dump(file, dialect):
            # PostgreSQL's infinities are written as strings; the rest reads back as written.
            values = tuple(float(v) if v in ("Infinity", "-Infinity") else v for v in row.values)
            got[row.table.name].append(values)
            assert sql.splitlines()[row.line - 1].startswith(f"({values[0]}, ")
    assert got == expected
    assert any("\n" in str(value) for values in got["class_names"] for value in values)


def test_read_dump_refuses_what_dump_sql_would_not_write(tmp_path: Path) -> None:
    engine = open_database(f"sqlite:///{tmp_path / 'gen.db'}")
    gan_id, chosen, relative = record_source(engine)
    with Session(engine) as session:
        sql = dump_sql(session, gan_id, image_ids=chosen, dialect="sqlite", file_paths=relative)
    engine.dispose()

    def read(text: str) -> None:
        path = tmp_path / "crafted.sql"
        path.write_text(text, encoding="utf-8")
        with open(path, "rb") as file:
            for _ in read_dump(file, "sqlite"):
                pass

    read(sql)  # as written
    line = sql[: sql.index("'it''s'")].count("\n") + 1
    # A backslash escape, as E'' strings read it, leaves a quote open for gen's reader.
    with pytest.raises(DumpFormatError, match=rf"^line {line}: the row that starts here never ends"):
        read(sql.replace("'it''s'", "'it\\'s'", 1))
    with pytest.raises(DumpFormatError, match=rf"^line {line} is not what gen writes: "):
        read(sql.replace("'it''s'", "E'it\\''s'", 1))
    with pytest.raises(DumpFormatError, match=r"^line \d+ follows COMMIT; a gen dump ends there$"):
        read(sql + "\n")
    with pytest.raises(DumpFormatError, match=r"^ends at line \d+, before what gen writes is complete"):
        read(sql[: len(sql) // 2])
    with pytest.raises(DumpFormatError, match=r"^line \d+: a row of checkpoints has NULL in path, which"):
        read(sql.replace("'/runs/it''s here/checkpoint-1.pt'", "NULL", 1))


def test_dump_sql_never_writes_null_into_a_not_null_column(tmp_path: Path) -> None:
    engine = open_database(f"sqlite:///{tmp_path / 'gen.db'}")
    gan_id, _, _ = record_source(engine)
    with Session(engine) as session, pytest.raises(ValueError, match=r"checkpoints.path cannot be NULL"):
        dump_sql(session, gan_id, publish=lambda row: {**row, "path": None} if "path" in row else row)
    engine.dispose()
