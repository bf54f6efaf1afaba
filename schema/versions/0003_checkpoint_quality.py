"""Each checkpoint's quality figure from training (normalised domain FID, --eval-every), and
how each image was computed (batch size, threads, device, torch version) for gen reproduce.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("checkpoints", sa.Column("domain_fid", sa.Double(), nullable=True))
    op.add_column("images", sa.Column("batch_size", sa.Integer(), nullable=True))
    op.add_column("images", sa.Column("threads", sa.Integer(), nullable=True))
    op.add_column("images", sa.Column("device", sa.String(), nullable=True))
    op.add_column("images", sa.Column("torch_version", sa.String(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("images") as table:
        for column in ("torch_version", "device", "threads", "batch_size"):
            table.drop_column(column)
    with op.batch_alter_table("checkpoints") as table:
        table.drop_column("domain_fid")
