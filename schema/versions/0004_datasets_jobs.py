"""Registered data sets (models and classifiers point to theirs), model names and links, and a
queue of background jobs.

Existing rows are linked: one data set per distinct training folder and fingerprint, named
after the folder; classifiers join the data set whose fingerprint they were trained on.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03
"""

import os
from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Spelled out rather than imported from db.models: a migration must keep creating the schema
# of its own revision after the models have moved on.
JSON = sa.JSON(none_as_null=True).with_variant(postgresql.JSONB(none_as_null=True), "postgresql")
TIMESTAMP = sa.DateTime(timezone=True)
# SQLite's batch mode rebuilds the table; ids must still never be reused.
KEEP_AUTOINCREMENT = {"sqlite_autoincrement": True}


def upgrade() -> None:
    op.create_table(
        "datasets",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("folder", sa.String(), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("classes", JSON, nullable=True),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_datasets"),
        sa.UniqueConstraint("name", name="uq_datasets_name"),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("gan_architectures", table_kwargs=KEEP_AUTOINCREMENT) as table:
        table.add_column(sa.Column("name", sa.String(), nullable=True))
        table.add_column(sa.Column("retrained_from", sa.Integer(), nullable=True))
        table.create_unique_constraint("uq_gan_architectures_name", ["name"])
        table.create_foreign_key(
            "fk_gan_architectures_retrained_from_gan_architectures",
            "gan_architectures",
            ["retrained_from"],
            ["id"],
        )
    for name in ("training_parameters", "classifiers"):
        with op.batch_alter_table(name, table_kwargs=KEEP_AUTOINCREMENT) as table:
            table.add_column(sa.Column("dataset", sa.Integer(), nullable=True))
            table.create_foreign_key(f"fk_{name}_dataset_datasets", "datasets", ["dataset"], ["id"])
    op.create_table(
        "jobs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("command", sa.String(), nullable=False),
        sa.Column("arguments", JSON, nullable=False),
        sa.Column("cwd", sa.String(), nullable=True),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("cancel_requested", sa.Boolean(), nullable=False),
        sa.Column("worker", sa.String(), nullable=True),
        sa.Column("host", sa.String(), nullable=True),
        sa.Column("pid", sa.Integer(), nullable=True),
        sa.Column("heartbeat_at", TIMESTAMP, nullable=True),
        sa.Column("log_path", sa.String(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("exit_code", sa.Integer(), nullable=True),
        sa.Column("gan", sa.Integer(), nullable=True),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("started_at", TIMESTAMP, nullable=True),
        sa.Column("finished_at", TIMESTAMP, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_jobs"),
        sa.ForeignKeyConstraint(["gan"], ["gan_architectures.id"], name="fk_jobs_gan_gan_architectures"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_jobs_status", "jobs", ["status"])
    _register_existing_training_folders()


def _register_existing_training_folders() -> None:
    """One data set per distinct (training folder, fingerprint) of the models already recorded."""
    connection = op.get_bind()
    datasets = sa.table(
        "datasets",
        sa.column("id", sa.Integer()),
        sa.column("name", sa.String()),
        sa.column("folder", sa.String()),
        sa.column("fingerprint", sa.String()),
        sa.column("created_at", TIMESTAMP),
    )
    parameters = sa.table(
        "training_parameters",
        sa.column("dataset", sa.Integer()),
        sa.column("dataset_path", sa.String()),
        sa.column("dataset_fingerprint", sa.String()),
    )
    classifiers = sa.table(
        "classifiers", sa.column("dataset", sa.Integer()), sa.column("dataset_fingerprint", sa.String())
    )
    folders = connection.execute(
        sa.select(parameters.c.dataset_path, parameters.c.dataset_fingerprint)
        .where(parameters.c.dataset_path.is_not(None), parameters.c.dataset_fingerprint.is_not(None))
        .distinct()
        .order_by(parameters.c.dataset_path, parameters.c.dataset_fingerprint)
    ).all()
    taken: set[str] = set()
    for folder, fingerprint in folders:
        base = os.path.basename(folder.rstrip(os.sep)) or "data"
        name, number = base, 2
        while name in taken or name.isdigit():
            name, number = f"{base}-{number}", number + 1
        taken.add(name)
        connection.execute(
            datasets.insert().values(
                name=name, folder=folder, fingerprint=fingerprint, created_at=datetime.now(UTC)
            )
        )
        dataset_id = connection.scalar(sa.select(sa.func.max(datasets.c.id)))
        connection.execute(
            parameters.update()
            .where(parameters.c.dataset_path == folder, parameters.c.dataset_fingerprint == fingerprint)
            .values(dataset=dataset_id)
        )
    first_match = (
        sa.select(sa.func.min(datasets.c.id))
        .where(datasets.c.fingerprint == classifiers.c.dataset_fingerprint)
        .scalar_subquery()
    )
    connection.execute(classifiers.update().values(dataset=first_match))


def downgrade() -> None:
    op.drop_index("ix_jobs_status", table_name="jobs")
    op.drop_table("jobs")
    for name in ("classifiers", "training_parameters"):
        with op.batch_alter_table(name, table_kwargs=KEEP_AUTOINCREMENT) as table:
            table.drop_constraint(f"fk_{name}_dataset_datasets", type_="foreignkey")
            table.drop_column("dataset")
    with op.batch_alter_table("gan_architectures", table_kwargs=KEEP_AUTOINCREMENT) as table:
        table.drop_constraint("fk_gan_architectures_retrained_from_gan_architectures", type_="foreignkey")
        table.drop_constraint("uq_gan_architectures_name", type_="unique")
        table.drop_column("retrained_from")
        table.drop_column("name")
    op.drop_table("datasets")
