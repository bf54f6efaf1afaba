"""Classifiers trained on their own (gen classifiers train): a name, the settings, the history
per epoch, per-class F1 and the confusion matrix on the validation images.

Every new column is nullable: classifiers recorded before (a report's cached domain CNN, a
classifier-search candidate) keep what they had.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Spelled out rather than imported from db.models: a migration must keep creating the schema
# of its own revision after the models have moved on.
JSON = sa.JSON(none_as_null=True).with_variant(postgresql.JSONB(none_as_null=True), "postgresql")
# SQLite's batch mode rebuilds the table; ids must still never be reused.
KEEP_AUTOINCREMENT = {"sqlite_autoincrement": True}
RESULTS = ("settings", "history", "per_class_f1", "confusion_matrix")


def upgrade() -> None:
    with op.batch_alter_table("classifiers", table_kwargs=KEEP_AUTOINCREMENT) as table:
        table.add_column(sa.Column("name", sa.String(), nullable=True))
        for column in RESULTS:
            table.add_column(sa.Column(column, JSON, nullable=True))
        table.create_unique_constraint("uq_classifiers_name", ["name"])


def downgrade() -> None:
    with op.batch_alter_table("classifiers", table_kwargs=KEEP_AUTOINCREMENT) as table:
        table.drop_constraint("uq_classifiers_name", type_="unique")
        for column in reversed(RESULTS):
            table.drop_column(column)
        table.drop_column("name")
