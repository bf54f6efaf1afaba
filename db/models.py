"""The tables that record how every image was made.

The first four tables are the source's published schema (gan_architectures, class_names,
training_parameters, images): their names and columns are kept exactly, because consumers of
the published data set query them. What we add is provenance the source left out (seeds,
checksums, checkpoints, timestamps) plus tables of our own: checkpoints, reports, classifiers,
datasets (registered image folders), jobs (the background queue) and curations (gen sample
--keep-best).

Column names are the source's (`images.class_name` holds a class id); the Python attribute
names say what they hold (`Image.class_id`). Bulk inserts through the ORM use the attribute
names.

Every change here needs a migration in schema/versions and regenerated DDL files
(`python -m db.ddl --write`); tests fail until both agree with these models.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    CHAR,
    JSON,
    Boolean,
    DateTime,
    Double,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

# Fixed constraint names keep migrations reproducible: SQLite's batch mode can only drop or
# alter a constraint it can name, and names must not depend on the dialect's defaults.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# One type for both dialects: the published schema says jsonb, SQLite only knows JSON.
# none_as_null makes Python None an SQL NULL rather than the JSON text 'null'.
JSONType = JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")

# SQLite would otherwise reuse the id of a deleted newest row; ids are published with the data
# set, so a deleted model's id must never come back as a different model.
NEVER_REUSE_IDS = {"sqlite_autoincrement": True}


def utc_now() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp on every dialect.

    PostgreSQL stores the zone; SQLite stores bare text, so values are converted to UTC on the
    way in and marked UTC on the way out.
    """

    impl = DateTime
    cache_ok = True

    def __init__(self) -> None:
        super().__init__(timezone=True)

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("timestamps must be timezone-aware; use datetime.now(UTC)")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class GanArchitecture(Base):
    """One trained model: its generator and discriminator as the JSON they are rebuilt from."""

    __tablename__ = "gan_architectures"
    __table_args__ = (NEVER_REUSE_IDS,)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    generator: Mapped[dict[str, Any]] = mapped_column(JSONType, nullable=False)
    discriminator: Mapped[dict[str, Any]] = mapped_column(JSONType, nullable=False)
    # Null for architectures not made from a named preset (for instance the source's own).
    preset: Mapped[str | None] = mapped_column(String)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, default=utc_now)
    # A name a user gave (gen models rename); accepted wherever a model id is. Never all digits.
    name: Mapped[str | None] = mapped_column(String, unique=True)
    # The model this one was retrained from (gen models retrain --from-scratch).
    retrained_from: Mapped[int | None] = mapped_column(ForeignKey("gan_architectures.id"))


class ClassName(Base):
    """A class of a model; `label` is the index the networks' embeddings use."""

    __tablename__ = "class_names"
    __table_args__ = (
        # Also serve lookups of a model's classes, so no separate index on gan is needed.
        UniqueConstraint("gan", "label"),
        UniqueConstraint("gan", "name"),
        NEVER_REUSE_IDS,
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String, nullable=False)
    gan_id: Mapped[int] = mapped_column("gan", ForeignKey("gan_architectures.id"), nullable=False)
    label: Mapped[int] = mapped_column(Integer, nullable=False)


class TrainingParameters(Base):
    """How a model was trained: one row per model, updated as training resumes."""

    __tablename__ = "training_parameters"
    __table_args__ = (UniqueConstraint("gan"), NEVER_REUSE_IDS)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    g_optimizer: Mapped[str] = mapped_column(String, nullable=False)
    d_optimizer: Mapped[str] = mapped_column(String, nullable=False)
    loss: Mapped[str] = mapped_column(String, nullable=False)
    batch_size: Mapped[int] = mapped_column(Integer, nullable=False)
    # Training counts iterations; epochs (passes over the data set) is kept for the source's
    # schema and may be null when the trainer does not compute it.
    epochs: Mapped[int | None] = mapped_column(Integer)
    g_lr: Mapped[float] = mapped_column(Double, nullable=False)
    d_lr: Mapped[float] = mapped_column(Double, nullable=False)
    gan_id: Mapped[int] = mapped_column("gan", ForeignKey("gan_architectures.id"), nullable=False)
    # {"g": [beta1, beta2], "d": [beta1, beta2]}
    betas: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    # Null means no exponential moving average of the generator's weights.
    ema_decay: Mapped[float | None] = mapped_column(Double)
    # A DiffAugment policy such as "color,translation"; null means no augmentation.
    diffaugment: Mapped[str | None] = mapped_column(String)
    iterations: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    dataset_path: Mapped[str | None] = mapped_column(String)
    dataset_fingerprint: Mapped[str | None] = mapped_column(String(64))
    # The registered data set (gen data) the model was trained on.
    dataset_id: Mapped[int | None] = mapped_column("dataset", ForeignKey("datasets.id"))
    device: Mapped[str | None] = mapped_column(String)
    seed: Mapped[int | None] = mapped_column(Integer)
    # Free-form: anything else a run needs to be repeated.
    settings: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, default=utc_now)


class Checkpoint(Base):
    """A saved set of weights; the file is checked against sha256 before it is trusted."""

    __tablename__ = "checkpoints"
    __table_args__ = (Index("ix_checkpoints_gan_iteration", "gan", "iteration"), NEVER_REUSE_IDS)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    gan_id: Mapped[int] = mapped_column("gan", ForeignKey("gan_architectures.id"), nullable=False)
    path: Mapped[str] = mapped_column(String, nullable=False)
    iteration: Mapped[int] = mapped_column(Integer, nullable=False)
    sha256: Mapped[str] = mapped_column(CHAR(64), nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, default=utc_now)
    # Normalised domain FID measured while training (--eval-every); lowest is the best checkpoint.
    domain_fid: Mapped[float | None] = mapped_column(Double)


class Image(Base):
    """One generated file and exactly how to make it again.

    (checkpoint, class, seed, sample_index) names the image: the sampler draws the seeded noise
    stream and keeps element sample_index. The unique constraint adds file_path, so the same
    sample may be written to two folders but is recorded once per file; its leading columns
    are what a rerun of an interrupted request looks up, so it is also that lookup's index.
    """

    __tablename__ = "images"
    __table_args__ = (
        UniqueConstraint("checkpoint", "class_name", "seed", "sample_index", "file_path"),
        # Counting and deleting a model's images go through its classes.
        Index("ix_images_class_name", "class_name"),
        NEVER_REUSE_IDS,
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # As the caller gave it, absolute or relative.
    file_path: Mapped[str] = mapped_column(String, nullable=False)
    class_id: Mapped[int] = mapped_column("class_name", ForeignKey("class_names.id"), nullable=False)
    md5: Mapped[str] = mapped_column(CHAR(32), nullable=False)
    width: Mapped[int] = mapped_column(Integer, nullable=False)
    height: Mapped[int] = mapped_column(Integer, nullable=False)
    seed: Mapped[int] = mapped_column(Integer, nullable=False)
    sample_index: Mapped[int] = mapped_column(Integer, nullable=False)
    checkpoint_id: Mapped[int] = mapped_column("checkpoint", ForeignKey("checkpoints.id"), nullable=False)
    # The training iteration of the checkpoint, repeated so the published table reads alone.
    iteration: Mapped[int] = mapped_column(Integer, nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, default=utc_now)
    # How it was computed, for `gen reproduce`: the same batch size, threads, device and torch
    # give the same bytes; anything else every pixel within one level (gen.sample).
    batch_size: Mapped[int | None] = mapped_column(Integer)
    threads: Mapped[int | None] = mapped_column(Integer)
    device: Mapped[str | None] = mapped_column(String)
    torch_version: Mapped[str | None] = mapped_column(String)
    # Curation scores (gen.curation), null for images sampled without them: the curating
    # classifier's softmax probability of the image's own class; the checkpoint's discriminator
    # score D(x, y) as it is (no sigmoid; BEGAN: minus the reconstruction's mean L1 error), higher
    # meaning more real to that discriminator; the pixel distance to the nearest training image
    # of the class (gen.metrics.near_copies' pixel space).
    class_confidence: Mapped[float | None] = mapped_column(Double)
    realism: Mapped[float | None] = mapped_column(Double)
    near_copy_distance: Mapped[float | None] = mapped_column(Double)
    # The curation run that kept it (gen sample --keep-best / --min-class-confidence).
    curation_id: Mapped[int | None] = mapped_column("curation", ForeignKey("curations.id"))


class Curation(Base):
    """One curating sampling run: what it asked for, how it scored, what it kept and rejected.

    ``settings``: the fraction and thresholds, the ranking, the curating classifier (its file
    name, SHA-256, seed, split and held-out accuracy). ``classes``: per class name, candidates
    drawn, images kept, and rejected counts by reason; filled in as each class completes. No
    rejected image is written; a kept image's row points here.
    """

    __tablename__ = "curations"
    __table_args__ = (NEVER_REUSE_IDS,)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    gan_id: Mapped[int] = mapped_column("gan", ForeignKey("gan_architectures.id"), nullable=False)
    checkpoint_id: Mapped[int] = mapped_column("checkpoint", ForeignKey("checkpoints.id"), nullable=False)
    seed: Mapped[int] = mapped_column(Integer, nullable=False)
    settings: Mapped[dict[str, Any]] = mapped_column(JSONType, nullable=False)
    classes: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    # Wall time of the classes completed so far, scoring and writing together.
    seconds: Mapped[float | None] = mapped_column(Double)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, default=utc_now)


class Report(Base):
    """One figure of a quality report; a null class_name means the figure covers all classes."""

    __tablename__ = "reports"
    __table_args__ = (Index("ix_reports_gan_metric", "gan", "metric"), NEVER_REUSE_IDS)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    gan_id: Mapped[int] = mapped_column("gan", ForeignKey("gan_architectures.id"), nullable=False)
    # "fid", "domain_fid", "kid", "histogram_kl", "accuracy_real_only", ...
    metric: Mapped[str] = mapped_column(String, nullable=False)
    class_id: Mapped[int | None] = mapped_column("class_name", ForeignKey("class_names.id"))
    value: Mapped[float] = mapped_column(Double, nullable=False)
    # How the figure was computed (sample counts, feature network, seed).
    settings: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, default=utc_now)


class Classifier(Base):
    """A classifier trained on one data set: a report's cached domain CNN, a classifier-search
    candidate, or one trained by gen classifiers train (which fills the columns from name on)."""

    __tablename__ = "classifiers"
    __table_args__ = (Index("ix_classifiers_dataset_fingerprint", "dataset_fingerprint"), NEVER_REUSE_IDS)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    dataset_fingerprint: Mapped[str] = mapped_column(String(64), nullable=False)
    path: Mapped[str] = mapped_column(String, nullable=False)
    sha256: Mapped[str] = mapped_column(CHAR(64), nullable=False)
    architecture: Mapped[dict[str, Any]] = mapped_column(JSONType, nullable=False)
    # On the data set's held-out images.
    accuracy: Mapped[float] = mapped_column(Double, nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, default=utc_now)
    # The registered data set it was trained on, when one matches its fingerprint.
    dataset_id: Mapped[int | None] = mapped_column("dataset", ForeignKey("datasets.id"))
    # A name a user gave (gen classifiers train --name); accepted wherever an id is. Never all digits.
    name: Mapped[str | None] = mapped_column(String, unique=True)
    # How it was trained: architecture choice, optimiser, learning rate, epochs, seed, split ...
    settings: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    # One object per epoch: loss, training accuracy, validation accuracy.
    history: Mapped[list[Any] | None] = mapped_column(JSONType)
    # {class name: F1 on the validation images}.
    per_class_f1: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    # Validation counts, rows the true class and columns the prediction, in architecture["classes"] order.
    confusion_matrix: Mapped[list[Any] | None] = mapped_column(JSONType)


class Dataset(Base):
    """A registered image folder (gen data add): what models and classifiers were trained on.

    The fingerprint (gen.image_folder) is taken at registration; a folder whose files changed since is
    reported rather than silently used, and the folder cannot move while anything uses it.
    """

    __tablename__ = "datasets"
    __table_args__ = (NEVER_REUSE_IDS,)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String, nullable=False, unique=True)
    # Absolute, as resolved at registration.
    folder: Mapped[str] = mapped_column(String, nullable=False)
    fingerprint: Mapped[str] = mapped_column(String(64), nullable=False)
    # {class name: readable images}, in label order; null for rows made from older databases.
    classes: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, default=utc_now)


JOB_STATUSES = ("queued", "running", "done", "failed", "cancelled")


class Job(Base):
    """A gen command waiting for, or run by, a worker (gen jobs, gen worker)."""

    __tablename__ = "jobs"
    __table_args__ = (Index("ix_jobs_status", "status"), NEVER_REUSE_IDS)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # The gen command (e.g. "train") and its whole argv after "gen", as submitted.
    command: Mapped[str] = mapped_column(String, nullable=False)
    arguments: Mapped[list[str]] = mapped_column(JSONType, nullable=False)
    # Where it was submitted from: relative paths in the arguments are relative to it.
    cwd: Mapped[str | None] = mapped_column(String)
    status: Mapped[str] = mapped_column(String, nullable=False, default="queued")
    cancel_requested: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    worker: Mapped[str | None] = mapped_column(String)
    host: Mapped[str | None] = mapped_column(String)
    pid: Mapped[int | None] = mapped_column(Integer)
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    log_path: Mapped[str | None] = mapped_column(String)
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    exit_code: Mapped[int | None] = mapped_column(Integer)
    gan_id: Mapped[int | None] = mapped_column("gan", ForeignKey("gan_architectures.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, default=utc_now)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class Search(Base):
    """One architecture search (gen search): what it searches, on which data, with which settings."""

    __tablename__ = "searches"
    __table_args__ = (NEVER_REUSE_IDS,)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # "generator", "discriminator" (or "classifier").
    stage: Mapped[str] = mapped_column(String, nullable=False)
    dataset_path: Mapped[str] = mapped_column(String, nullable=False)
    dataset_fingerprint: Mapped[str] = mapped_column(String(64), nullable=False)
    # Population, cycles, sample, mutation, budget, preset, the search folder, ...
    settings: Mapped[dict[str, Any]] = mapped_column(JSONType, nullable=False)
    seed: Mapped[int] = mapped_column(Integer, nullable=False)
    # "running" until every candidate is evaluated, then "done".
    status: Mapped[str] = mapped_column(String, nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, default=utc_now)


class SearchCandidate(Base):
    """One evaluated candidate of a search: for a generator or discriminator search its networks
    are a gan_architectures row (a model whose short training is recorded like any other); for
    a classifier search, a classifiers row (its weights, architecture and accuracy)."""

    __tablename__ = "search_candidates"
    __table_args__ = (UniqueConstraint("search", "step"), NEVER_REUSE_IDS)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    search_id: Mapped[int] = mapped_column("search", ForeignKey("searches.id"), nullable=False)
    gan_id: Mapped[int | None] = mapped_column("architecture", ForeignKey("gan_architectures.id"))
    classifier_id: Mapped[int | None] = mapped_column("classifier", ForeignKey("classifiers.id"))
    # The candidate it was mutated from; null for the random initial population.
    parent_id: Mapped[int | None] = mapped_column("parent", ForeignKey("search_candidates.id"))
    step: Mapped[int] = mapped_column(Integer, nullable=False)
    # Normalised domain FID after the budget, or a classifier's validation error (1 - accuracy);
    # lower is better; null when the candidate failed.
    fitness: Mapped[float | None] = mapped_column(Double)
    # {"iterations": N} or {"minutes": M}, and the iterations actually trained.
    budget: Mapped[dict[str, Any]] = mapped_column(JSONType, nullable=False)
    seconds: Mapped[float] = mapped_column(Double, nullable=False)
    worker: Mapped[str | None] = mapped_column(String)
    # "done" or "failed".
    status: Mapped[str] = mapped_column(String, nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, default=utc_now)
