"""The storing side: SQLAlchemy models (db.models), opening a database (db.session), the
queries the CLI runs (db.queries), the schema as SQL (db.ddl). The throwaway PostgreSQL server of
the tests and benchmarks is test-only code: tests/pg_server.py.

    from sqlalchemy.orm import Session
    from db import open_database, queries

    engine = open_database("sqlite:///gen.db")
    with Session(engine) as session:
        gan_id = queries.latest_model_id(session)
"""

from db.session import (
    DEFAULT_DATABASE_URL,
    mask_url,
    open_database,
    resolve_database_url,
    upgrade_database,
)

__all__ = ["DEFAULT_DATABASE_URL", "mask_url", "open_database", "resolve_database_url", "upgrade_database"]
