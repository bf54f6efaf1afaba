"""The storing side, a module per kind of row it stores: generators (GAN models, their checkpoints
and training runs), images (and curation runs), reports, classifiers, searches, datasets, jobs;
overview counts them all. Beside them: the SQLAlchemy tables (db.models), opening and migrating a
database and its transaction helpers (db.session), ids, names and stored paths (db.names), dumps
(db.dump) and the schema as SQL (db.ddl). The throwaway PostgreSQL server of the tests and
benchmarks is test-only code: tests/pg_server.py.

    from sqlalchemy.orm import Session
    from db import generators, open_database

    engine = open_database("sqlite:///gen.db")
    with Session(engine) as session:
        model_id = generators.latest_model_id(session)
"""

from db.session import (
    DEFAULT_DATABASE_URL,
    mask_url,
    open_database,
    resolve_database_url,
    upgrade_database,
)

__all__ = ["DEFAULT_DATABASE_URL", "mask_url", "open_database", "resolve_database_url", "upgrade_database"]
