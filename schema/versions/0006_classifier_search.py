"""The classifier search (gen search --stage classifier): a candidate is a classifiers row.

search_candidates.architecture (a gan_architectures row) becomes nullable and a nullable
search_candidates.classifier points to the classifier a classifier-search candidate trained.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# SQLite's batch mode rebuilds the table; ids must still never be reused.
KEEP_AUTOINCREMENT = {"sqlite_autoincrement": True}


def upgrade() -> None:
    with op.batch_alter_table("search_candidates", table_kwargs=KEEP_AUTOINCREMENT) as table:
        table.alter_column("architecture", existing_type=sa.Integer(), nullable=True)
        table.add_column(sa.Column("classifier", sa.Integer(), nullable=True))
        table.create_foreign_key(
            "fk_search_candidates_classifier_classifiers", "classifiers", ["classifier"], ["id"]
        )


def downgrade() -> None:
    with op.batch_alter_table("search_candidates", table_kwargs=KEEP_AUTOINCREMENT) as table:
        table.drop_constraint("fk_search_candidates_classifier_classifiers", type_="foreignkey")
        table.drop_column("classifier")
        table.alter_column("architecture", existing_type=sa.Integer(), nullable=False)
