"""Curation (gen sample --keep-best, --min-class-confidence): a curations row per curating run,
and per image its scores and the curation that kept it (all nullable: images sampled without
curation, and every image recorded before, have none).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Spelled out rather than imported from db.models: a migration must keep creating the schema
# of its own revision after the models have moved on.
JSON = sa.JSON(none_as_null=True).with_variant(postgresql.JSONB(none_as_null=True), "postgresql")
TIMESTAMP = sa.DateTime(timezone=True)
# SQLite's batch mode rebuilds the table; ids must still never be reused.
KEEP_AUTOINCREMENT = {"sqlite_autoincrement": True}
SCORES = ("class_confidence", "realism", "near_copy_distance")


def upgrade() -> None:
    op.create_table(
        "curations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("gan", sa.Integer(), nullable=False),
        sa.Column("checkpoint", sa.Integer(), nullable=False),
        sa.Column("seed", sa.Integer(), nullable=False),
        sa.Column("settings", JSON, nullable=False),
        sa.Column("classes", JSON, nullable=True),
        sa.Column("seconds", sa.Double(), nullable=True),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_curations"),
        sa.ForeignKeyConstraint(["gan"], ["gan_architectures.id"], name="fk_curations_gan_gan_architectures"),
        sa.ForeignKeyConstraint(
            ["checkpoint"], ["checkpoints.id"], name="fk_curations_checkpoint_checkpoints"
        ),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("images", table_kwargs=KEEP_AUTOINCREMENT) as table:
        for score in SCORES:
            table.add_column(sa.Column(score, sa.Double(), nullable=True))
        table.add_column(sa.Column("curation", sa.Integer(), nullable=True))
        table.create_foreign_key("fk_images_curation_curations", "curations", ["curation"], ["id"])


def downgrade() -> None:
    with op.batch_alter_table("images", table_kwargs=KEEP_AUTOINCREMENT) as table:
        table.drop_constraint("fk_images_curation_curations", type_="foreignkey")
        table.drop_column("curation")
        for score in reversed(SCORES):
            table.drop_column(score)
    op.drop_table("curations")
