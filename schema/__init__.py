"""The database schema as versioned files.

versions/ holds the Alembic migrations (each upgrades and downgrades); ddl/ holds the plain
CREATE statements per dialect, generated from db/models.py by `python -m db.ddl --write`, for
readers who want the schema without Python. Alembic is configured in code (db.session), so no
alembic.ini is needed; db.session.SCHEMA_DIR is this folder.
"""
