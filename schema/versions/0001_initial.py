"""The source's four tables with our provenance columns, plus checkpoints.

gan_architectures, class_names, training_parameters and images keep the source's names and
columns exactly; everything else in them is an addition.

Revision ID: 0001
Revises:
Create Date: 2025-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Spelled out rather than imported from db.models: a migration must keep creating the schema
# of its own revision after the models have moved on.
JSON = sa.JSON(none_as_null=True).with_variant(postgresql.JSONB(none_as_null=True), "postgresql")
TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "gan_architectures",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("generator", JSON, nullable=False),
        sa.Column("discriminator", JSON, nullable=False),
        sa.Column("preset", sa.String(), nullable=True),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_gan_architectures"),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "class_names",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("gan", sa.Integer(), nullable=False),
        sa.Column("label", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_class_names"),
        sa.UniqueConstraint("gan", "label", name="uq_class_names_gan_label"),
        sa.UniqueConstraint("gan", "name", name="uq_class_names_gan_name"),
        sa.ForeignKeyConstraint(
            ["gan"], ["gan_architectures.id"], name="fk_class_names_gan_gan_architectures"
        ),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "training_parameters",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("g_optimizer", sa.String(), nullable=False),
        sa.Column("d_optimizer", sa.String(), nullable=False),
        sa.Column("loss", sa.String(), nullable=False),
        sa.Column("batch_size", sa.Integer(), nullable=False),
        sa.Column("epochs", sa.Integer(), nullable=True),
        sa.Column("g_lr", sa.Double(), nullable=False),
        sa.Column("d_lr", sa.Double(), nullable=False),
        sa.Column("gan", sa.Integer(), nullable=False),
        sa.Column("betas", JSON, nullable=True),
        sa.Column("ema_decay", sa.Double(), nullable=True),
        sa.Column("diffaugment", sa.String(), nullable=True),
        sa.Column("iterations", sa.Integer(), nullable=False),
        sa.Column("dataset_path", sa.String(), nullable=True),
        sa.Column("dataset_fingerprint", sa.String(64), nullable=True),
        sa.Column("device", sa.String(), nullable=True),
        sa.Column("seed", sa.Integer(), nullable=True),
        sa.Column("settings", JSON, nullable=True),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_training_parameters"),
        sa.UniqueConstraint("gan", name="uq_training_parameters_gan"),
        sa.ForeignKeyConstraint(
            ["gan"], ["gan_architectures.id"], name="fk_training_parameters_gan_gan_architectures"
        ),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "checkpoints",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("gan", sa.Integer(), nullable=False),
        sa.Column("path", sa.String(), nullable=False),
        sa.Column("iteration", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.CHAR(64), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_checkpoints"),
        sa.ForeignKeyConstraint(
            ["gan"], ["gan_architectures.id"], name="fk_checkpoints_gan_gan_architectures"
        ),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_checkpoints_gan_iteration", "checkpoints", ["gan", "iteration"])
    op.create_table(
        "images",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("file_path", sa.String(), nullable=False),
        sa.Column("class_name", sa.Integer(), nullable=False),
        sa.Column("md5", sa.CHAR(32), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("seed", sa.Integer(), nullable=False),
        sa.Column("sample_index", sa.Integer(), nullable=False),
        sa.Column("checkpoint", sa.Integer(), nullable=False),
        sa.Column("iteration", sa.Integer(), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_images"),
        # Its leading columns are also the index a rerun's lookup of finished samples uses.
        sa.UniqueConstraint(
            "checkpoint",
            "class_name",
            "seed",
            "sample_index",
            "file_path",
            name="uq_images_checkpoint_class_name_seed_sample_index_file_path",
        ),
        sa.ForeignKeyConstraint(["class_name"], ["class_names.id"], name="fk_images_class_name_class_names"),
        sa.ForeignKeyConstraint(["checkpoint"], ["checkpoints.id"], name="fk_images_checkpoint_checkpoints"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_images_class_name", "images", ["class_name"])


def downgrade() -> None:
    op.drop_index("ix_images_class_name", table_name="images")
    op.drop_table("images")
    op.drop_index("ix_checkpoints_gan_iteration", table_name="checkpoints")
    op.drop_table("checkpoints")
    op.drop_table("training_parameters")
    op.drop_table("class_names")
    op.drop_table("gan_architectures")
