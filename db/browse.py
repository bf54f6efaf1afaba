"""Reads for browsing (gen serve): a model's images a page at a time, the filters that page
offers, one image's file, model names and the counts on the front page.

Read-only: nothing here writes, so nothing here commits. Every query is bounded by an index
(images by class, checkpoints by model) or by LIMIT, so a page stays fast on a database of tens
of thousands of images.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from db.errors import UserError
from db.models import (
    Checkpoint,
    Classifier,
    ClassName,
    Dataset,
    GanArchitecture,
    Image,
    Job,
    Search,
)
from db.queries import require_model


@dataclass(frozen=True)
class ImageRow:
    id: int
    file_path: str
    class_name: str
    seed: int
    sample_index: int
    iteration: int
    width: int
    height: int
    md5: str


@dataclass(frozen=True)
class ImageFilters:
    """What a model's images can be filtered by: its classes, checkpoints' iterations and seeds."""

    class_names: tuple[str, ...]
    iterations: tuple[int, ...]
    seeds: tuple[int, ...]


def _image_query(model_id: int, class_name: str | None, iteration: int | None, seed: int | None):  # noqa: ANN202
    query = select(Image, ClassName.name).join(ClassName, ClassName.id == Image.class_id)
    query = query.where(ClassName.gan_id == model_id)
    if class_name is not None:
        query = query.where(ClassName.name == class_name)
    if iteration is not None:
        query = query.where(Image.iteration == iteration)
    if seed is not None:
        query = query.where(Image.seed == seed)
    return query


def model_images(
    session: Session,
    model_id: int,
    *,
    class_name: str | None = None,
    iteration: int | None = None,
    seed: int | None = None,
    offset: int = 0,
    limit: int = 48,
) -> tuple[int, list[ImageRow]]:
    """(how many images match, one page of them in the order they were made)."""
    require_model(session, model_id)
    query = _image_query(model_id, class_name, iteration, seed)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.execute(query.order_by(Image.id).offset(offset).limit(limit))
    return total, [_row(image, name) for image, name in rows]


def images_per_class(session: Session, model_id: int, per_class: int) -> dict[str, list[ImageRow]]:
    """The first per_class images of each class of the model (empty lists for classes without)."""
    found: dict[str, list[ImageRow]] = {}
    for class_name in session.scalars(
        select(ClassName).where(ClassName.gan_id == model_id).order_by(ClassName.label)
    ):
        rows = session.scalars(
            select(Image).where(Image.class_id == class_name.id).order_by(Image.id).limit(per_class)
        )
        found[class_name.name] = [_row(image, class_name.name) for image in rows]
    return found


def _row(image: Image, class_name: str) -> ImageRow:
    return ImageRow(
        id=image.id,
        file_path=image.file_path,
        class_name=class_name,
        seed=image.seed,
        sample_index=image.sample_index,
        iteration=image.iteration,
        width=image.width,
        height=image.height,
        md5=image.md5,
    )


def image_filters(session: Session, model_id: int) -> ImageFilters:
    require_model(session, model_id)
    classes = session.scalars(
        select(ClassName.name).where(ClassName.gan_id == model_id).order_by(ClassName.label)
    )
    class_ids = select(ClassName.id).where(ClassName.gan_id == model_id).scalar_subquery()
    checkpoint_ids = select(Checkpoint.id).where(Checkpoint.gan_id == model_id).scalar_subquery()
    # Through the model's checkpoints: a handful of rows, each an index range of images.
    iterations = session.scalars(
        select(Checkpoint.iteration)
        .where(Checkpoint.gan_id == model_id)
        .where(select(Image.id).where(Image.checkpoint_id == Checkpoint.id).exists())
        .distinct()
        .order_by(Checkpoint.iteration)
    )
    seeds = session.scalars(
        select(Image.seed)
        .where(Image.class_id.in_(class_ids), Image.checkpoint_id.in_(checkpoint_ids))
        .distinct()
        .order_by(Image.seed)
    )
    return ImageFilters(tuple(classes), tuple(iterations), tuple(seeds))


def image_row(session: Session, image_id: int) -> tuple[int, ImageRow]:
    """(the model's id, the image's row); UserError when there is no such image."""
    found = session.execute(
        select(Image, ClassName.name, ClassName.gan_id)
        .join(ClassName, ClassName.id == Image.class_id)
        .where(Image.id == image_id)
    ).first()
    if found is None:
        raise UserError(f"no image {image_id} in the database.")
    image, name, model_id = found
    return model_id, _row(image, name)


def model_names(session: Session) -> dict[int, str]:
    """id -> name of the models that have one (gen models rename)."""
    return dict(
        session.execute(
            select(GanArchitecture.id, GanArchitecture.name).where(GanArchitecture.name.is_not(None))
        ).all()
    )


def counts(session: Session) -> dict[str, int]:
    """Rows on the front page: models, images, data sets, classifiers, searches, queued and
    running jobs."""

    def count(model: type, *where: object) -> int:
        return session.scalar(select(func.count()).select_from(model).where(*where)) or 0

    return {
        "models": count(GanArchitecture),
        "images": count(Image),
        "data sets": count(Dataset),
        "classifiers": count(Classifier),
        "searches": count(Search),
        "queued jobs": count(Job, Job.status == "queued"),
        "running jobs": count(Job, Job.status == "running"),
    }
