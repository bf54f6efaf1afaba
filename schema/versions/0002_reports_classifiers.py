"""Quality reports and the domain classifiers they are measured with.

Revision ID: 0002
Revises: 0001
Create Date: 2025-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Spelled out rather than imported from db.models: a migration must keep creating the schema
# of its own revision after the models have moved on.
JSON = sa.JSON(none_as_null=True).with_variant(postgresql.JSONB(none_as_null=True), "postgresql")
TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "reports",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("gan", sa.Integer(), nullable=False),
        sa.Column("metric", sa.String(), nullable=False),
        sa.Column("class_name", sa.Integer(), nullable=True),
        sa.Column("value", sa.Double(), nullable=False),
        sa.Column("settings", JSON, nullable=True),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_reports"),
        sa.ForeignKeyConstraint(["gan"], ["gan_architectures.id"], name="fk_reports_gan_gan_architectures"),
        sa.ForeignKeyConstraint(["class_name"], ["class_names.id"], name="fk_reports_class_name_class_names"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_reports_gan_metric", "reports", ["gan", "metric"])
    op.create_table(
        "classifiers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("dataset_fingerprint", sa.String(64), nullable=False),
        sa.Column("path", sa.String(), nullable=False),
        sa.Column("sha256", sa.CHAR(64), nullable=False),
        sa.Column("architecture", JSON, nullable=False),
        sa.Column("accuracy", sa.Double(), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_classifiers"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_classifiers_dataset_fingerprint", "classifiers", ["dataset_fingerprint"])


def downgrade() -> None:
    op.drop_index("ix_classifiers_dataset_fingerprint", table_name="classifiers")
    op.drop_table("classifiers")
    op.drop_index("ix_reports_gan_metric", table_name="reports")
    op.drop_table("reports")
