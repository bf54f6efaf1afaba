"""Opening the database: which URL, whether it can be reached, whether its schema is ours.

`open_database` is the one way in. It turns every problem a user can cause (a server that is
down, a wrong password, a malformed URL, a read-only file, a schema from an older or newer gen)
into a UserError whose message names the URL with any password masked. A brand-new, empty
database is brought to the head revision by running the Alembic migrations in schema/versions,
so even a fresh database carries its alembic_version stamp.

Work with the returned engine through `sqlalchemy.orm.Session(engine)` and the functions of
the module for what is stored (db.generators, db.images, ...); every write is one `transaction`.
"""

from __future__ import annotations

import os
import re
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import ColumnElement, create_engine, event, func, inspect, select
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError
from sqlalchemy.orm import Session

import schema
from db.errors import UserError
from db.models import Base

DEFAULT_DATABASE_URL = "sqlite:///gen.db"
DATABASE_URL_ENV = "GEN_DATABASE_URL"
# Long enough for a slow network, short enough that a wrong host fails before the user gives up.
CONNECT_TIMEOUT_S = 5
DATABASE_BUSY_TIMEOUT_S = 120  # seconds SQLite waits for another writer
SUPPORTED_BACKENDS = ("sqlite", "postgresql")
# The folder of the schema package: Alembic's script location, and ddl/ beside it. Read from
# __path__, which (unlike __file__) is also set when an out-of-date editable install imports
# the package as a namespace package.
SCHEMA_DIR = Path(next(iter(schema.__path__)))


def resolve_database_url(url: str | None) -> str:
    """The URL to use: the explicit one (--db), else $GEN_DATABASE_URL, else gen.db here."""
    if url:
        return url
    return os.environ.get(DATABASE_URL_ENV) or DEFAULT_DATABASE_URL


def mask_url(url: str) -> str:
    """The URL as it may be shown: the password, if any, replaced by ***."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        # Unparseable, but it may still contain user:password@ that must not be printed.
        return re.sub(r"(//[^/@:]*:)[^/@]*@", r"\1***@", url)
    # Re-rendering percent-encodes some characters, so leave a URL without a password as typed.
    return url if parsed.password is None else parsed.render_as_string(hide_password=True)


def _parse(url: str) -> URL:
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise UserError(
            f"malformed database URL {mask_url(url)!r}; expected sqlite:///path/to/gen.db "
            "or postgresql://user@host:port/database"
        ) from None
    if parsed.get_backend_name() not in SUPPORTED_BACKENDS:
        raise UserError(
            f"unsupported database URL {mask_url(url)}; gen works with sqlite:// and postgresql:// URLs"
        )
    if parsed.drivername == "postgresql":
        # SQLAlchemy 2.1 maps a bare postgresql:// to psycopg 3; gen ships psycopg2.
        parsed = parsed.set(drivername="postgresql+psycopg2")
    return parsed


def _configure_sqlite_connection(dbapi_connection: Any, connection_record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # SQLite ignores foreign keys unless each connection asks for them.
    cursor.execute("PRAGMA foreign_keys=ON")
    # Write-ahead logging lets readers (gen list) work while a run writes, and with
    # synchronous=NORMAL a commit no longer waits for the disk: recording a batch of images
    # gets several times faster. A power cut may lose the last batches, never consistency,
    # and a rerun regenerates whatever has no row.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _read_only_sqlite(path: Path) -> sqlite3.Connection:
    """A connection that cannot write, whatever the file's and folder's permissions allow.

    mode=ro first; a WAL database in a folder nobody may write (no -shm file to create) opens
    only as immutable, which is what such a folder is."""
    uri = path.resolve().as_uri()
    try:
        connection = sqlite3.connect(f"{uri}?mode=ro", uri=True, timeout=DATABASE_BUSY_TIMEOUT_S)
        connection.execute("SELECT count(*) FROM sqlite_master").fetchone()
        return connection
    except sqlite3.OperationalError:
        return sqlite3.connect(f"{uri}?immutable=1", uri=True)


def _configure_read_only_sqlite(dbapi_connection: Any, connection_record: Any) -> None:
    dbapi_connection.execute("PRAGMA foreign_keys=ON")


def make_engine(url: str, *, read_only: bool = False) -> Engine:
    """An engine for the URL with gen's settings, without checking the database behind it.

    Foreign keys are enforced on SQLite too, and PostgreSQL connections give up after
    CONNECT_TIMEOUT_S unless the URL sets its own connect_timeout. read_only (SQLite): every
    connection is opened read-only, for commands that only read.
    """
    parsed = _parse(url)
    options: dict[str, Any] = {}
    if parsed.get_backend_name() == "postgresql" and "connect_timeout" not in parsed.query:
        options["connect_args"] = {"connect_timeout": CONNECT_TIMEOUT_S}
    if parsed.get_backend_name() == "sqlite":
        # Another gen process (a sampler, a training run recording a checkpoint) may hold the
        # write lock for a moment; wait for it rather than fail after sqlite3's default 5 s.
        options["connect_args"] = {"timeout": DATABASE_BUSY_TIMEOUT_S}
        path = _sqlite_path(parsed)
        if read_only and path is not None:
            options = {"creator": lambda: _read_only_sqlite(path)}
    try:
        engine = create_engine(parsed, **options)
    except (NoSuchModuleError, ImportError) as exc:
        raise UserError(f"the database driver for {mask_url(url)} is not installed ({exc})") from exc
    if parsed.get_backend_name() == "sqlite":
        event.listen(
            engine, "connect", _configure_read_only_sqlite if read_only else _configure_sqlite_connection
        )
    return engine


def alembic_config(url: str | None = None, connection: Connection | None = None) -> Config:
    """Alembic's configuration, built in code: the schema folder, and the URL or open connection.

    For developers, e.g. a new migration:
    `alembic.command.revision(alembic_config("sqlite:///gen.db"), "message", autogenerate=True)`.
    """
    config = Config()
    # Config values go through configparser interpolation, which reads % specially.
    config.set_main_option("script_location", str(SCHEMA_DIR).replace("%", "%%"))
    if url is not None:
        config.set_main_option("sqlalchemy.url", resolve_database_url(url).replace("%", "%%"))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    """The schema revision this version of gen reads and writes."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, "schema/versions holds no migrations"
    return head


def _known_revisions() -> set[str]:
    return {script.revision for script in ScriptDirectory.from_config(alembic_config()).walk_revisions()}


def _sqlite_path(parsed: URL) -> Path | None:
    """The file behind a SQLite URL, or None for an in-memory database."""
    database = parsed.database
    if not database or database == ":memory:" or "mode=memory" in database:
        return None
    if database.startswith("file:"):
        database = database[len("file:") :].split("?", 1)[0]
    return Path(database)


def _check_sqlite_file(parsed: URL, masked: str, *, create: bool, read_only: bool = False) -> None:
    """Catch a missing folder or a read-only file before SQLite turns it into a vague error.

    os.access reports what the current user may do (root may write anything, and so may a root
    user's gen); statvfs catches a read-only mount, which stops root as well.
    """
    path = _sqlite_path(parsed)
    if path is None:
        return
    try:
        _check_sqlite_path(
            path, masked, create=create, read_only=read_only, url_read_only=_opens_read_only(parsed)
        )
    except OSError as error:  # a name too long, a folder that cannot be searched, ...
        raise UserError(f"cannot use the database {masked}: {error.strerror or error}") from None


def _opens_read_only(parsed: URL) -> bool:
    return parsed.query.get("mode") == "ro" or parsed.query.get("immutable") in ("1", "true")


def _check_sqlite_path(
    path: Path, masked: str, *, create: bool, read_only: bool, url_read_only: bool
) -> None:
    folder = path.parent.resolve()
    if not folder.is_dir():
        raise UserError(f"cannot open the database {masked}: the folder {folder} does not exist")
    if not path.exists() and not create:
        raise UserError(f"there is no gen database at {masked} yet; run gen train first")
    if read_only:
        if not path.exists():
            raise UserError(f"there is no gen database at {masked} yet; run gen train first")
        return  # reading needs no write permission
    # SQLite keeps NAME-journal or NAME-wal beside the file: those names must fit too.
    longest = os.pathconf(folder, "PC_NAME_MAX") - len("-journal")
    if len(os.fsencode(path.name)) > longest:
        raise UserError(
            f"cannot use the database {masked}: its file name is longer than the {longest} bytes SQLite can "
            "use there (it keeps a -journal or -wal file beside it); choose a shorter name"
        )
    if url_read_only:
        raise UserError(
            f"cannot use the database {masked}: the URL opens it read-only and gen must write to it"
        )
    if path.exists() and not os.access(path, os.W_OK):
        raise UserError(f"cannot use the database {masked}: the file {path} is read-only")
    # SQLite writes its journal next to the file, so the folder must be writable too.
    read_only_mount = hasattr(os, "statvfs") and bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    if read_only_mount or not os.access(folder, os.W_OK):
        raise UserError(f"cannot use the database {masked}: the folder {folder} is read-only")


def _reason(exc: DBAPIError) -> str:
    """The driver's own explanation, on one line and without its hints."""
    original = str(exc.orig if exc.orig is not None else exc).strip()
    first_line = original.splitlines()[0] if original else type(exc).__name__
    return " ".join(first_line.split()).rstrip(".")


def _schema_state(connection: Connection) -> tuple[str | None, bool]:
    """(the database's revision or None, whether it holds no tables besides Alembic's)."""
    tables = set(inspect(connection).get_table_names())
    revision = MigrationContext.configure(connection).get_current_revision() if tables else None
    return revision, not (tables - {"alembic_version"})


@dataclass
class _Opened:
    engine: Engine
    masked: str  # the URL as it may be shown
    revision: str | None
    empty: bool
    new_file: Path | None  # a SQLite file that connecting created, removed again on failure

    def fail(self, message: str) -> UserError:
        """Close everything and leave nothing behind, then the error to raise."""
        self.engine.dispose()
        if self.new_file is not None:
            self.new_file.unlink(missing_ok=True)
        return UserError(message)


def _connect(url: str | None, *, create: bool, read_only: bool = False) -> _Opened:
    """Open the engine and read the schema state, or raise UserError saying why not."""
    resolved = resolve_database_url(url)
    masked = mask_url(resolved)
    engine = make_engine(resolved, read_only=read_only)
    new_file = None
    if engine.dialect.name == "sqlite":
        _check_sqlite_file(engine.url, masked, create=create, read_only=read_only)
        path = _sqlite_path(engine.url)
        new_file = path if path is not None and not path.exists() else None
    opened = _Opened(engine, masked, None, True, new_file)
    try:
        with engine.connect() as connection:
            opened.revision, opened.empty = _schema_state(connection)
    except DBAPIError as exc:
        raise opened.fail(f"cannot connect to the database {masked}: {_reason(exc)}") from exc
    if opened.revision is None and not opened.empty:
        raise opened.fail(
            f"the database {masked} already holds tables that gen did not make "
            "(it has no alembic_version); point gen at an empty database"
        )
    if opened.revision is not None and opened.revision not in _known_revisions():
        raise opened.fail(
            f"the database {masked} was made by a newer version of gen (schema revision {opened.revision}); "
            "upgrade gen to use it"
        )
    return opened


def migrate(engine: Engine, revision: str = "head", *, downgrade: bool = False) -> None:
    """Run the migrations up (or down) to revision in one transaction, without any checks.

    On PostgreSQL the transaction covers the DDL too, so a failed migration leaves nothing behind.
    """
    with engine.connect() as connection:
        with connection.begin():
            config = alembic_config(connection=connection)
            if downgrade:
                command.downgrade(config, revision)
            else:
                command.upgrade(config, revision)
        if connection.dialect.name == "sqlite":
            # schema/env.py turns foreign keys off for the migration, and SQLite ignores the
            # pragma inside a transaction; this connection goes back to the pool, so restore it.
            connection.exec_driver_sql("PRAGMA foreign_keys=ON")
            connection.commit()


def _migrate_to_head(opened: _Opened) -> None:
    try:
        migrate(opened.engine, "head")
    except DBAPIError as exc:
        raise opened.fail(
            f"cannot create the tables in the database {opened.masked}: {_reason(exc)}"
        ) from exc


def open_database(url: str | None = None, *, create: bool = True, read_only: bool = False) -> Engine:
    """An engine on a database at this gen's schema revision, creating the schema if it is empty.

    url: an SQLAlchemy URL (sqlite:///gen.db, postgresql://user@host:5432/gen); None means
    $GEN_DATABASE_URL or else gen.db in the working directory. With create=False an empty or
    missing database is an error instead of being created. An existing database at an older
    revision is never upgraded behind the user's back: that is `gen db upgrade`. read_only:
    for commands that only read; a SQLite file (or folder) that may not be written is then
    fine, and nothing can be written through the engine.
    """
    opened = _connect(url, create=create and not read_only, read_only=read_only)
    if opened.empty:
        if not create:
            raise opened.fail(f"there is no gen database at {opened.masked} yet; run gen train first")
        _migrate_to_head(opened)
        return opened.engine
    head = head_revision()
    if opened.revision != head:
        raise opened.fail(
            f"the database {opened.masked} has schema revision {opened.revision} but this gen needs {head}; "
            "back it up and run gen db upgrade"
        )
    with opened.engine.connect() as connection:
        missing = _missing_columns(connection)
    if missing:
        raise opened.fail(
            f"the database {opened.masked} says schema revision {head} but lacks {missing[0]}, so it was "
            "changed outside gen (gen db upgrade cannot tell what else changed); restore it from a backup"
        )
    return opened.engine


def _missing_columns(connection: Connection) -> list[str]:
    """The tables and columns of this gen's schema that the database lacks ("table images",
    "column images.md5"): a database altered by hand, whose revision stamp no longer tells."""
    from db.models import Base

    present = {
        table: {column["name"] for column in columns}
        for (_, table), columns in inspect(connection).get_multi_columns().items()
    }
    missing = []
    for table in Base.metadata.sorted_tables:
        if table.name not in present:
            missing.append(f"table {table.name}")
        else:
            missing += [
                f"column {table.name}.{c.name}" for c in table.columns if c.name not in present[table.name]
            ]
    return missing


def upgrade_database(url: str | None = None) -> tuple[str | None, str]:
    """Bring the database to this gen's schema revision; returns (from revision, to revision).

    The from revision is None for a database that was empty (it is created).
    """
    opened = _connect(url, create=True)
    try:
        _migrate_to_head(opened)
    finally:
        opened.engine.dispose()
    return opened.revision, head_revision()


@contextmanager
def transaction(session: Session) -> Iterator[None]:
    """Commit what the block wrote, or roll all of it back if the block raises: never half a change."""
    try:
        yield
        session.commit()
    except BaseException:
        session.rollback()
        raise


def insert_row(session: Session, row: Base) -> int:
    """Add ``row`` and flush it, so that the database gives it its id; that id."""
    session.add(row)
    session.flush()
    return row.id


def count_rows(session: Session, table: type[Base], *where: ColumnElement[bool]) -> int:
    """How many rows of ``table`` match every condition in ``where``."""
    return session.scalar(select(func.count()).select_from(table).where(*where)) or 0
