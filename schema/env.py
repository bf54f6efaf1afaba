"""Alembic's entry point, run by db.session and by the `alembic` command alike.

db.session hands over an open connection in config.attributes["connection"], so migrations run
inside the caller's transaction. Run by hand, the URL comes from `-x url=...`, else the
configuration's sqlalchemy.url, else gen's usual resolution (GEN_DATABASE_URL, then gen.db).
"""

from alembic import context
from sqlalchemy.engine import Connection

from db.models import Base
from db.session import make_engine, resolve_database_url

config = context.config
target_metadata = Base.metadata


def _url() -> str:
    return context.get_x_argument(as_dictionary=True).get("url") or resolve_database_url(
        config.get_main_option("sqlalchemy.url")
    )


def _run(connection: Connection) -> None:
    sqlite = connection.dialect.name == "sqlite"
    if sqlite:
        # Batch mode rebuilds a SQLite table by copy, drop and rename; with foreign keys on,
        # dropping a referenced table would fail or cascade. Only works outside a transaction,
        # which is where a pysqlite connection is until the first write.
        connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite cannot ALTER most things; batch mode is how Alembic alters it.
        render_as_batch=sqlite,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()
    # Foreign keys are turned back on by whoever owns the connection (db.session.migrate), once
    # the transaction has ended: SQLite ignores the pragma inside one.


def run_migrations_offline() -> None:
    """`alembic upgrade head --sql`: print the SQL rather than run it."""
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = make_engine(_url())
    try:
        with engine.begin() as connection:
            _run(connection)
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
