"""A self-contained SQL dump of the rows behind an exported data set.

    sql = dump_sql(session, model_id, image_ids=ids, dialect="postgresql", file_paths=relative)

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

`read_dump` reads such a file back, as `gen verify` does with a data set from a stranger: it
parses the rows with a reader of these literals only, writes them again with `render_dump` and
requires the file to be the same, byte for byte, as it streams through; no SQL engine reads it.
"""

from __future__ import annotations

import json
import math
import re
from collections import deque
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, BinaryIO, NoReturn

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    Integer,
    String,
    Table,
    TypeDecorator,
    select,
)
from sqlalchemy.orm import Session

from db.ddl import DIALECTS, render_ddl
from db.generators import get_model
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
# The tables a dump holds, in the order it inserts them: the schema's foreign-key order.
DUMP_TABLES = tuple(
    table.name
    for table in Base.metadata.sorted_tables
    if table.name
    in {
        model.__tablename__
        for model in (GanArchitecture, ClassName, TrainingParameters, Checkpoint, Curation, Image, Report)
    }
)
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


def _rows(session: Session, table: Table, *conditions: Any) -> list[dict[str, Any]]:
    """Rows keyed by column name (the source's names), oldest id first."""
    query = select(table).where(*conditions).order_by(table.c.id)
    return [dict(row) for row in session.execute(query).mappings()]


def dump_rows(
    session: Session, model_id: int, image_ids: Collection[int] | None = None
) -> dict[str, list[dict[str, Any]]]:
    """table name -> the rows a dump of the model holds, parents first, as read through the
    models. image_ids selects the images (None: all of the model's)."""
    get_model(session, model_id)  # UserError naming the models that exist if unknown
    tables = Base.metadata.tables
    class_ids = select(ClassName.id).where(ClassName.gan_id == model_id)
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
        for row in _rows(session, tables[Checkpoint.__tablename__], Checkpoint.gan_id == model_id)
        if row["id"] in checkpoint_ids
    ]
    rows = {
        GanArchitecture.__tablename__: _rows(
            session, tables[GanArchitecture.__tablename__], GanArchitecture.id == model_id
        ),
        ClassName.__tablename__: _rows(
            session, tables[ClassName.__tablename__], ClassName.gan_id == model_id
        ),
        # The data set link is the local catalog's (gen data): its row names a local folder, and
        # its name is often that folder's, so the dump keeps only the fingerprint.
        TrainingParameters.__tablename__: [
            {**row, "dataset": None}
            for row in _rows(
                session, tables[TrainingParameters.__tablename__], TrainingParameters.gan_id == model_id
            )
        ],
        Checkpoint.__tablename__: checkpoints,
        # The curation runs that kept the dumped images (their settings and per-class counts).
        Curation.__tablename__: [
            row
            for row in _rows(session, tables[Curation.__tablename__], Curation.gan_id == model_id)
            if row["id"] in curation_ids
        ],
        Image.__tablename__: images,
        Report.__tablename__: _rows(session, tables[Report.__tablename__], Report.gan_id == model_id),
    }
    return {name: rows[name] for name in DUMP_TABLES}


def _schema_ddl(dialect: str) -> str:
    """render_ddl's statements without its header, which speaks of the repository's files."""
    lines = render_ddl(dialect).splitlines()
    while lines and (lines[0].startswith("--") or not lines[0].strip()):
        lines.pop(0)
    return "\n".join(lines).strip()


def dump_sql(
    session: Session,
    model_id: int,
    *,
    image_ids: Collection[int] | None = None,
    dialect: str = "postgresql",
    file_paths: Mapping[int, str] | None = None,
    publish: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
) -> str:
    """The SQL text that recreates model model_id's rows (see the module's docstring).

    image_ids: the images to include (None: all of the model's). file_paths: image id -> the
    file_path to write instead of the stored one (an export's paths relative to its root).
    publish: applied to every row before it is written (an export removes local paths).
    """
    if dialect not in DIALECTS:
        raise ValueError(f"unknown dialect {dialect!r}; expected one of {', '.join(DIALECTS)}")
    rows = dump_rows(session, model_id, image_ids)
    if file_paths is not None:
        rows[Image.__tablename__] = [
            {**row, "file_path": file_paths.get(row["id"], row["file_path"])}
            for row in rows[Image.__tablename__]
        ]
    if publish is not None:
        rows = {name: [publish(row) for row in table_rows] for name, table_rows in rows.items()}
    tables = Base.metadata.tables
    plain = {
        name: [
            tuple(column_value(row[c.name], c, dialect) for c in tables[name].columns) for row in table_rows
        ]
        for name, table_rows in rows.items()
    }
    counts = {name: len(table_rows) for name, table_rows in plain.items()}
    return "".join(render_dump(model_id, dialect, head_revision(), counts, plain))


def render_row(table: Table, values: Sequence[Any], dialect: str) -> str:
    """One row of an INSERT: its plain values (column_value's) in the table's column order."""
    columns = list(table.columns)
    if len(values) != len(columns):
        raise ValueError(f"a row of {table.name} has {len(values)} values, not {len(columns)}")
    for column, value in zip(columns, values, strict=True):
        if value is None and not column.nullable:
            raise ValueError(f"{table.name}.{column.name} cannot be NULL (gen's schema says NOT NULL)")
    return "(" + ", ".join(render_literal(value, dialect) for value in values) + ")"


def render_dump(
    model_id: int,
    dialect: str,
    revision: str,
    counts: Mapping[str, int],
    rows: Mapping[str, Iterable[Sequence[Any]]],
) -> Iterator[str]:
    """The dump's text, piece by piece, in order: dump_sql joins the pieces, and read_dump
    compares a file with them as it reads it.

    counts: table name -> its number of rows, in the order the rows are inserted (the header
    comes first, so the counts are given); rows: table name -> its rows as plain values in
    column order, taken one at a time and only after every piece before the row is out.
    """
    load = (
        "psql -v ON_ERROR_STOP=1 -d DATABASE -f database.sql"
        if dialect == "postgresql"
        else "sqlite3 new.db < database.sql"
    )
    listed = ", ".join(f"{name} {count}" for name, count in counts.items())
    yield (
        f"-- gen data set: the rows behind model {model_id}'s images "
        f"({dialect}, schema revision {revision}).\n"
        f"-- Rows: {listed}.\n"
        "-- images.file_path is relative to the data set's root folder.\n"
        f"-- Load into an EMPTY database: {load}\n\n"
    )
    if dialect == "postgresql":
        # Independent of the server's and the client's defaults: the file is UTF-8 and its
        # backslashes are plain characters.
        yield "SET client_encoding = 'UTF8';\n\nSET standard_conforming_strings = on;\n\n"
    yield f"BEGIN;\n\n{_schema_ddl(dialect)}\n\n{ALEMBIC_VERSION_DDL}\n\n"
    yield f"INSERT INTO alembic_version (version_num) VALUES ({render_literal(revision, dialect)});\n\n"
    preparer = DIALECTS[dialect].identifier_preparer
    largest_ids = {}
    for name, count in counts.items():
        table = Base.metadata.tables[name]
        names = ", ".join(preparer.quote(column.name) for column in table.columns)
        head = f"INSERT INTO {preparer.format_table(table)} ({names}) VALUES\n"
        id_position = list(table.columns).index(table.c.id)
        table_rows = iter(rows[name])
        # Each row is taken only when the text before it is out, so that a reader comparing a
        # file with these pieces is never more than one row ahead of them.
        for index in range(count):
            if index % ROWS_PER_INSERT == 0:
                yield head
            row = next(table_rows)
            largest_ids[name] = max(largest_ids.get(name, row[id_position]), row[id_position])
            last = index == count - 1 or index % ROWS_PER_INSERT == ROWS_PER_INSERT - 1
            yield render_row(table, row, dialect) + (";\n\n" if last else ",\n")
    if dialect == "postgresql":
        # Explicit ids leave the sequences at 1; the next insert would collide without this.
        # One SELECT, so that psql prints one result row rather than one per table.
        moves = [
            f"\tsetval(pg_get_serial_sequence({render_literal(name, dialect)}, 'id'), {largest})"
            for name, largest in largest_ids.items()
        ]
        yield "SELECT\n" + ",\n".join(moves) + ";\n\n"
    yield "COMMIT;\n"


# ----------------------------------------------------------------------------- reading a dump back

# The longest line, and the longest row, read_dump takes: far more than gen writes (its longest
# rows hold a model's JSON specs, a few kB), and little memory.
MAX_ROW_BYTES = 16 << 20
_HEADER = re.compile(
    r"-- gen data set: the rows behind model (\d{1,18})'s images "
    r"\((\w{1,20}), schema revision (\w{1,64})\)\.\n"
)
_COUNTS = re.compile(r"-- Rows: ((?:\w{1,64} \d{1,15}, ){0,63}\w{1,64} \d{1,15})\.\n")
# The literals render_literal writes: a quoted string, NULL, TRUE, FALSE, an integer or a float
# as repr writes it (9e999 is SQLite's infinity). Possessive, so a long string is read once.
_LITERAL = re.compile(r"'(?:[^']++|'')*+'|NULL|TRUE|FALSE|-?\d{1,20}+(?:\.\d{1,20}+)?+(?:e[-+]?\d{1,3}+)?+")
_SPECIAL_FLOATS = frozenset({"NaN", "Infinity", "-Infinity"})  # PostgreSQL's, written as strings


class DumpFormatError(ValueError):
    """The text is not what dump_sql writes for the rows it holds. The message says where, to
    follow the file's name: "line 12 is not ..."."""


@dataclass(frozen=True)
class DumpRow:
    """A row read back from a dump: its table, its plain values in column order, its line."""

    table: Table
    values: tuple[Any, ...]
    line: int


def read_dump(file: BinaryIO, dialect: str) -> Iterator[DumpRow]:
    """The rows of a dump that dump_sql wrote in dialect, read from file as a stream; each row
    is yielded once the text up to its end is known to be exactly what dump_sql writes.

    The header gives the model, the schema revision and the number of rows per table; the rows
    are parsed with a reader of render_literal's literals only, then written again with
    render_dump and compared with the file byte for byte as it is read, so nothing but gen's
    own text passes: no other statement, comment, quoting, spacing or line end, nothing after
    COMMIT. No SQL engine reads the text. Memory stays within a few rows (MAX_ROW_BYTES).
    DumpFormatError at the first line that differs, or that is not UTF-8 or holds a NUL;
    a value a database would refuse (NULL where the schema says NOT NULL, text in a number
    column, an integer out of range, a malformed timestamp or JSON) is refused too.
    """
    stream = _DumpStream(file)
    model_id, declared, revision = stream.match(_HEADER, "the header gen writes").groups()
    listed = stream.match(_COUNTS, "the header gen writes")[1]
    counts = {name: int(count) for name, count in (entry.split(" ") for entry in listed.split(", "))}
    if declared != dialect:
        raise DumpFormatError(f"line 1 says dialect {declared!r}, not {dialect!r}")
    if revision != head_revision():
        raise DumpFormatError(
            f"line 1 says schema revision {revision}; this gen writes and reads revision {head_revision()} "
            "(verify with the gen that exported it)"
        )
    if tuple(counts) != DUMP_TABLES or counts[GanArchitecture.__tablename__] != 1:
        raise DumpFormatError("line 2 is not the header gen writes: it lists other tables or models")
    ready: deque[DumpRow] = deque()

    def table_rows(table: Table) -> Iterator[tuple[Any, ...]]:
        while True:
            line, values = stream.row()
            problem = _unloadable(table, values, dialect)
            row_id = values[table.columns.keys().index("id")] if problem is None else None
            if table.name == GanArchitecture.__tablename__ and row_id not in (None, int(model_id)):
                problem = f"holds model {row_id}, not model {model_id} as line 1 says"
            if problem is not None:
                raise DumpFormatError(f"line {line}: a row of {table.name} {problem}")
            ready.append(DumpRow(table, values, line))
            yield values

    tables = Base.metadata.tables
    rows = {name: table_rows(tables[name]) for name in DUMP_TABLES}
    for piece in render_dump(int(model_id), dialect, revision, counts, rows):
        stream.expect(piece.encode("utf-8"))
        while ready:
            yield ready.popleft()
    stream.finish()


class _DumpStream:
    """The file read line by line, and compared, byte for byte, with the text expected of it;
    only the part of either not yet compared is kept."""

    def __init__(self, file: BinaryIO) -> None:
        self.file = file
        self.lines_read = 0
        self.line_compared = 1  # the line where the uncompared bytes begin
        self.actual = bytearray()
        self.expected = bytearray()

    def line(self) -> bytes:
        """The next line (b"" at the end), its bytes queued for comparison."""
        data = self.file.readline(MAX_ROW_BYTES + 1)
        if not data:
            return data
        self.lines_read += 1
        if len(data) > MAX_ROW_BYTES:
            raise DumpFormatError(
                f"line {self.lines_read} is longer than {MAX_ROW_BYTES} bytes, which gen never writes"
            )
        if b"\0" in data:
            raise DumpFormatError(f"line {self.lines_read} holds a NUL byte; a dump is text")
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            raise DumpFormatError(f"line {self.lines_read} is not UTF-8 text") from None
        self._compare(actual=data)
        return data

    def match(self, pattern: re.Pattern[str], what: str) -> re.Match[str]:
        found = pattern.fullmatch(self.line().decode("utf-8"))
        if found is None:
            raise DumpFormatError(f"line {max(self.lines_read, 1)} is not {what}")
        return found

    def expect(self, text: bytes) -> None:
        self._compare(expected=text)

    def row(self) -> tuple[int, tuple[Any, ...]]:
        """(first line, values) of the row that comes once the expected text before it is read."""
        while self.expected:  # the text before the row: gen's, or a difference raised
            if not self.line():
                self._ended()
        first, text, quotes = self.lines_read + 1, bytearray(), 0
        while True:
            line = self.line()
            if not line:
                raise DumpFormatError(
                    f"line {first}: the row that starts here never ends (a quote left open, or truncated)"
                )
            text += line
            quotes += line.count(b"'")
            if len(text) > MAX_ROW_BYTES:
                raise DumpFormatError(
                    f"line {first}: a row longer than {MAX_ROW_BYTES} bytes, which gen never writes"
                )
            if quotes % 2 == 0 and line.endswith((b"),\n", b");\n")):
                return first, _parse_row(text[:-2].decode("utf-8"), first)

    def finish(self) -> None:
        while self.expected:
            if not self.line():
                self._ended()
        if self.actual or self.file.read(1):
            raise DumpFormatError(f"line {self.line_compared} follows COMMIT; a gen dump ends there")

    def _ended(self) -> NoReturn:
        raise DumpFormatError(
            f"ends at line {self.lines_read}, before what gen writes is complete (truncated?)"
        )

    def _compare(self, actual: bytes = b"", expected: bytes = b"") -> None:
        self.actual += actual
        self.expected += expected
        if not self.expected or not self.actual:  # the lines of a row, read before it is written
            return
        common = min(len(self.actual), len(self.expected))
        if self.actual[:common] != self.expected[:common]:
            at = next(i for i in range(common) if self.actual[i] != self.expected[i])
            line = self.line_compared + self.actual.count(b"\n", 0, at)
            found, wanted = (_excerpt(text, at) for text in (self.actual, self.expected))
            raise DumpFormatError(f"line {line} is not what gen writes: {found} where gen writes {wanted}")
        self.line_compared += self.actual.count(b"\n", 0, common)
        del self.actual[:common]
        del self.expected[:common]


def _excerpt(text: bytearray, at: int) -> str:
    """A short quote of text from position at to the end of its line, for a message."""
    end = text.find(b"\n", at)
    shown = bytes(text[at : end if end >= 0 else len(text)]).decode("utf-8", "replace")
    if not shown:
        return "a line end" if end >= 0 else "the end of the file"
    return repr(shown if len(shown) <= 40 else shown[:37] + "...")


def _parse_row(text: str, line: int) -> tuple[Any, ...]:
    """The values of one row as render_row writes it: (literal, literal, ...)."""
    values, position = [], 1
    if text.startswith("("):
        while found := _LITERAL.match(text, position):
            values.append(_literal_value(found.group()))
            position = found.end()
            if text.startswith(", ", position):
                position += 2
            elif position == len(text) - 1 and text.endswith(")"):
                return tuple(values)
            else:
                break
    at = line + text.count("\n", 0, position)
    raise DumpFormatError(
        f"line {at} is not what gen writes: {_excerpt(bytearray(text[position:], 'utf-8'), 0)} is not a value"
    )


def _literal_value(literal: str) -> Any:
    if literal.startswith("'"):
        return literal[1:-1].replace("''", "'")
    if literal in ("NULL", "TRUE", "FALSE"):
        return {"NULL": None, "TRUE": True, "FALSE": False}[literal]
    return float(literal) if "." in literal or "e" in literal else int(literal)


def _unloadable(table: Table, values: tuple[Any, ...], dialect: str) -> str | None:
    """Why a database would refuse the row (the schema's types and NOT NULL), or None."""
    columns = list(table.columns)
    if len(values) != len(columns):
        return f"has {len(values)} values, not {len(columns)}"
    for column, value in zip(columns, values, strict=True):
        if value is None:
            if not column.nullable:
                return f"has NULL in {column.name}, which gen's schema does not allow"
        elif not _fits(column, value, dialect):
            return f"has {render_literal(value, dialect)[:40]} in {column.name}, not a {column.type} value"
    return None


def _fits(column: Column[Any], value: Any, dialect: str) -> bool:
    kind = column.type.impl if isinstance(column.type, TypeDecorator) else column.type
    if isinstance(kind, JSON):
        return isinstance(value, str) and _is_json_text(value)
    if isinstance(kind, DateTime):
        return isinstance(value, str) and _is_timestamp(value, column, dialect)
    if isinstance(kind, Boolean):
        return isinstance(value, bool) if dialect == "postgresql" else value in (0, 1) and type(value) is int
    if isinstance(kind, Integer):
        bits = 64 if isinstance(kind, BigInteger) or dialect == "sqlite" else 32
        return type(value) is int and -(2 ** (bits - 1)) <= value < 2 ** (bits - 1)
    if isinstance(kind, Float):
        return isinstance(value, float) or (dialect == "postgresql" and value in _SPECIAL_FLOATS)
    if isinstance(kind, String):
        return isinstance(value, str) and (kind.length is None or len(value) <= kind.length)
    return False


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _is_json_text(text: str) -> bool:
    try:
        json.loads(text, parse_constant=_refuse_constant)
    except (ValueError, RecursionError):
        return False
    return True


def _is_timestamp(text: str, column: Column[Any], dialect: str) -> bool:
    """Whether text is a timestamp as column_value writes it for dialect."""
    try:
        if dialect == "postgresql":
            moment = datetime.fromisoformat(text)
            if moment.tzinfo is None:
                return False
        else:
            moment = datetime.strptime(text, SQLITE_DATETIME_FORMAT).replace(tzinfo=UTC)
        return column_value(moment, column, dialect) == text
    except (ValueError, OverflowError):
        return False
