"""Architecture searches (gen search) and their evaluated candidates.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Spelled out rather than imported from db.models: a migration must keep creating the schema
# of its own revision after the models have moved on.
JSON = sa.JSON(none_as_null=True).with_variant(postgresql.JSONB(none_as_null=True), "postgresql")
TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "searches",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("stage", sa.String(), nullable=False),
        sa.Column("dataset_path", sa.String(), nullable=False),
        sa.Column("dataset_fingerprint", sa.String(64), nullable=False),
        sa.Column("settings", JSON, nullable=False),
        sa.Column("seed", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_searches"),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "search_candidates",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("search", sa.Integer(), nullable=False),
        sa.Column("architecture", sa.Integer(), nullable=False),
        sa.Column("parent", sa.Integer(), nullable=True),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("fitness", sa.Double(), nullable=True),
        sa.Column("budget", JSON, nullable=False),
        sa.Column("seconds", sa.Double(), nullable=False),
        sa.Column("worker", sa.String(), nullable=True),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_search_candidates"),
        sa.ForeignKeyConstraint(["search"], ["searches.id"], name="fk_search_candidates_search_searches"),
        sa.ForeignKeyConstraint(
            ["architecture"],
            ["gan_architectures.id"],
            name="fk_search_candidates_architecture_gan_architectures",
        ),
        sa.ForeignKeyConstraint(
            ["parent"], ["search_candidates.id"], name="fk_search_candidates_parent_search_candidates"
        ),
        sa.UniqueConstraint("search", "step", name="uq_search_candidates_search_step"),
        sqlite_autoincrement=True,
    )


def downgrade() -> None:
    op.drop_table("search_candidates")
    op.drop_table("searches")
