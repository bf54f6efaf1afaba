"""Images and curation runs: recording a batch of sampled images (ImageRecorder, gen.sample's
recorder), what a rerun may skip, what making an image again needs (gen reproduce), a model's
images as an export chooses them, and as gen serve shows them a page at a time.

Each batch of images is recorded in one transaction, after its files exist. The reads for
browsing write nothing and are each bounded by an index (images by class, checkpoints by model)
or by LIMIT, so a page stays fast on a database of tens of thousands of images.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import func, insert, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from db.errors import UserError, disk_full
from db.generators import require_model
from db.models import Checkpoint, ClassName, Curation, Image
from db.names import stored_path
from db.session import insert_row, transaction


def _directory_filter(directory: str) -> tuple[str, str]:
    """(the folder as compared with os.path.dirname of a stored path, the LIKE prefix to find it)."""
    folder = directory[:-1] if len(directory) > 1 and directory.endswith(os.sep) else directory
    return folder, os.path.join(folder, "") if folder else ""


def recorded_samples(
    session: Session,
    checkpoint_id: int,
    class_id: int,
    seed: int,
    directory: str,
    curation_ids: Sequence[int] | None = None,
) -> dict[int, tuple[str, str]]:
    """sample_index -> (file_path, md5) of the samples already recorded with files directly in
    directory, so that a rerun of an interrupted request can skip them; with curation_ids, only
    those that these curation runs kept.

    directory is compared with each file_path as stored (no normalisation), so pass it in the
    form the paths were recorded in: "out/cyt_mast" finds "out/cyt_mast/00007.png".
    """
    folder, prefix = _directory_filter(directory)
    query = select(Image.sample_index, Image.file_path, Image.md5).where(
        # The unique constraint's leading columns make this an index range scan.
        Image.checkpoint_id == checkpoint_id,
        Image.class_id == class_id,
        Image.seed == seed,
        Image.file_path.startswith(prefix, autoescape=True),
    )
    if curation_ids is not None:
        query = query.where(Image.curation_id.in_(curation_ids))
    rows = session.execute(query)
    # The prefix also matches files in sub-folders; keep only the folder's own files.
    return {
        sample_index: (file_path, md5)
        for sample_index, file_path, md5 in rows
        if os.path.dirname(file_path) == folder
    }


def recorded_paths(session: Session, directory: str) -> set[str]:
    """Every file_path directly in directory that has a row, whichever model or request made it,
    so that a request never overwrites a file another one recorded. Paths compare as stored.

    Unindexed (a prefix match cannot use a b-tree index under every collation); it reads the
    images table once, which takes milliseconds for the tens of thousands of rows a data set has.
    """
    folder, prefix = _directory_filter(directory)
    paths = session.scalars(
        select(Image.file_path).where(Image.file_path.startswith(prefix, autoescape=True))
    )
    return {path for path in paths if os.path.dirname(path) == folder}


def record_images(session: Session, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert a batch of image rows in one transaction.

    Each row maps Image's attribute names to values: file_path, class_id, md5, width, height,
    seed, sample_index, checkpoint_id, iteration (created_at is filled in). Call it once per
    batch of files written (a few hundred): a batch is then either fully recorded or not at all.
    """
    if not rows:
        return
    with transaction(session):
        # A list of dicts makes this an executemany (insertmanyvalues), not one INSERT per row.
        session.execute(insert(Image), [dict(row) for row in rows])


class Scores(Protocol):
    """An image's scores from curation (gen.curation.ImageScores): the images row's score columns."""

    @property
    def class_confidence(self) -> float: ...
    @property
    def realism(self) -> float | None: ...
    @property
    def near_copy_distance(self) -> float: ...


class WrittenImage(Protocol):
    """An image file gen.sample has written (gen.sample.SampledImage), as a row records it."""

    @property
    def path(self) -> Path: ...
    @property
    def class_name(self) -> str: ...
    @property
    def seed(self) -> int: ...
    @property
    def index(self) -> int: ...
    @property
    def md5(self) -> str: ...
    @property
    def width(self) -> int: ...
    @property
    def height(self) -> int: ...
    @property
    def scores(self) -> Scores | None: ...


class CuratedClass(Protocol):
    """One class of a curation run (gen.curation.ClassCuration): its name and its counts."""

    @property
    def class_name(self) -> str: ...
    def to_json(self) -> dict[str, Any]: ...


class ImageRecorder:
    """gen.sample's Recorder: one transaction per batch, after the batch's files exist."""

    def __init__(
        self,
        engine: Engine,
        model_id: int,
        checkpoint_id: int,
        iteration: int,
        seed: int,
        computed: dict[str, Any] | None = None,
    ):
        """``computed``: how the images are computed (batch_size, threads, device, torch_version),
        recorded with each so that gen reproduce can say whether bytes or only pixels must match."""
        self.engine = engine
        self.checkpoint_id = checkpoint_id
        self.iteration = iteration
        self.seed = seed
        self.computed = computed or {}
        self.model_id = model_id
        self.curation_settings: dict[str, Any] | None = None
        self.curation_id: int | None = None  # the run's row, made when it first records
        self.earlier_curations: list[int] = []
        with Session(engine) as session:
            self.class_ids = {
                c.name: c.id for c in session.scalars(select(ClassName).where(ClassName.gan_id == model_id))
            }

    def begin_curation(self, settings: dict[str, Any]) -> None:
        """Later records belong to a curation run with these settings; its row is made when it
        first records something (a run that fails before then leaves no row)."""
        self.curation_settings = settings
        with Session(self.engine) as session:
            self.earlier_curations = matching_curations(session, self.checkpoint_id, self.seed, settings)

    def recorded_in_curation(self, class_name: str, directory: Path) -> dict[int, Path]:
        """Indices in ``directory`` that runs of the same curation settings kept and recorded."""
        with Session(self.engine) as session:
            found = recorded_samples(
                session,
                self.checkpoint_id,
                self.class_ids[class_name],
                self.seed,
                stored_path(directory),
                curation_ids=self.earlier_curations,
            )
        return {index: Path(path) for index, (path, _md5) in found.items() if Path(path).is_file()}

    def _curation(self) -> int | None:
        if self.curation_settings is not None and self.curation_id is None:
            with Session(self.engine) as session:
                self.curation_id = record_curation(
                    session, self.model_id, self.checkpoint_id, self.seed, self.curation_settings
                )
        return self.curation_id

    def finish_class(self, curation: CuratedClass, seconds: float) -> None:
        """A class of the curation run is done: its counts (gen.curation.ClassCuration)."""
        curation_id = self._curation()
        with Session(self.engine) as session:
            finish_curation_class(session, curation_id, curation.class_name, curation.to_json(), seconds)

    def recorded(self, class_name: str, directory: Path) -> dict[int, Path]:
        with Session(self.engine) as session:
            found = recorded_samples(
                session, self.checkpoint_id, self.class_ids[class_name], self.seed, stored_path(directory)
            )
        return {index: Path(path) for index, (path, _md5) in found.items() if Path(path).is_file()}

    def known_paths(self, directory: Path) -> set[Path]:
        with Session(self.engine) as session:
            return {Path(p) for p in recorded_paths(session, stored_path(directory))}

    def record(self, images: Sequence[WrittenImage]) -> None:
        curation_id = self._curation()
        rows = [
            {
                "file_path": stored_path(image.path),
                "class_id": self.class_ids[image.class_name],
                "md5": image.md5,
                "width": image.width,
                "height": image.height,
                "seed": image.seed,
                "sample_index": image.index,
                "checkpoint_id": self.checkpoint_id,
                "iteration": self.iteration,
                **self.computed,
                **_scores(image.scores),
                "curation_id": curation_id,
            }
            for image in images
        ]
        try:
            with Session(self.engine) as session:
                record_images(session, rows)
        except IntegrityError:
            # The model (or this checkpoint's row) was deleted while sampling: the files of this
            # batch are whole on disk but belong to no model any more.
            raise UserError(
                f"the model was deleted from the database while sampling; {len(rows)} images of this "
                f"batch were written without rows (first: {rows[0]['file_path']})."
            ) from None
        except OperationalError as error:
            if not disk_full(error):
                raise
            # The batch's transaction rolled back: its files are whole, and the same request run
            # again adopts them (gen.sample) instead of writing them twice.
            raise UserError(
                f"the database's disk is full: {len(rows)} images of this batch were written without rows "
                f"(first: {rows[0]['file_path']}); free some space and run the same gen sample again, "
                "which records them."
            ) from None


def _scores(scores: Scores | None) -> dict[str, float | None]:
    """The images row's score columns from a gen.curation.ImageScores (or None: no scores)."""
    names = ("class_confidence", "realism", "near_copy_distance")
    return {name: getattr(scores, name) if scores is not None else None for name in names}


def record_curation(
    session: Session, model_id: int, checkpoint_id: int, seed: int, settings: Mapping[str, Any]
) -> int:
    """A new curations row (gen sample --keep-best); its classes are filled in as each ends."""
    with transaction(session):
        curation = Curation(gan_id=model_id, checkpoint_id=checkpoint_id, seed=seed, settings=dict(settings))
        curation_id = insert_row(session, curation)
    return curation_id


def matching_curations(
    session: Session, checkpoint_id: int, seed: int, settings: Mapping[str, Any]
) -> list[int]:
    """The curation runs of this checkpoint and seed with exactly these settings (compared as
    JSON values here, the same way on every dialect): the runs a rerun continues."""
    rows = session.execute(
        select(Curation.id, Curation.settings).where(
            Curation.checkpoint_id == checkpoint_id, Curation.seed == seed
        )
    )
    return [curation_id for curation_id, stored in rows if stored == dict(settings)]


def finish_curation_class(
    session: Session, curation_id: int, class_name: str, counts: Mapping[str, Any], seconds: float
) -> None:
    """Add one class's counts (candidates, kept, rejected by reason) and its time to a run."""
    with transaction(session):
        curation = session.get(Curation, curation_id)
        if curation is None:
            raise UserError(f"curation {curation_id} was deleted while sampling.")
        curation.classes = {**(curation.classes or {}), class_name: dict(counts)}
        curation.seconds = (curation.seconds or 0.0) + seconds


def image_records(session: Session, image_ids: Sequence[int]) -> list[dict[str, Any]]:
    """What making each image again needs, in the order asked: its row, class label and name,
    checkpoint file and SHA-256, and its stream's length (one past the largest recorded index of
    the same checkpoint, class and seed in the same folder). UserError naming an unknown id."""
    rows = {
        image.id: (image, class_name, checkpoint)
        for image, class_name, checkpoint in session.execute(
            select(Image, ClassName, Checkpoint)
            .join(ClassName, ClassName.id == Image.class_id)
            .join(Checkpoint, Checkpoint.id == Image.checkpoint_id)
            .where(Image.id.in_(set(image_ids)))
        )
    }
    unknown = [image_id for image_id in image_ids if image_id not in rows]
    if unknown:
        raise UserError(f"no image {unknown[0]} in the database.")
    records = []
    streams: dict[tuple[int, int, int, str], dict[int, tuple[str, str]]] = {}
    for image_id in image_ids:
        image, class_name, checkpoint = rows[image_id]
        stream = (checkpoint.id, class_name.id, image.seed, os.path.dirname(image.file_path))
        if stream not in streams:
            streams[stream] = recorded_samples(session, *stream)
        siblings = streams[stream]
        records.append(
            {
                "id": image.id,
                "file_path": image.file_path,
                "md5": image.md5,
                "seed": image.seed,
                "sample_index": image.sample_index,
                "label": class_name.label,
                "class_name": class_name.name,
                "checkpoint_path": checkpoint.path,
                "checkpoint_sha256": checkpoint.sha256,
                "stream_length": max(siblings, default=image.sample_index) + 1,
                "batch_size": image.batch_size,
                "threads": image.threads,
                "device": image.device,
                "torch_version": image.torch_version,
            }
        )
    return records


@dataclass(frozen=True)
class ModelImage:
    """One image row of a model, with its class's name and its checkpoint's stored path."""

    id: int
    file_path: str
    class_name: str
    md5: str
    seed: int
    sample_index: int
    iteration: int
    checkpoint_path: str


def model_images(
    session: Session,
    model_id: int,
    *,
    checkpoint_id: int | None = None,
    seed: int | None = None,
    folder: str | None = None,
    curated: bool = False,
    minimums: Mapping[str, float] | None = None,
) -> list[ModelImage]:
    """The model's image rows in class label order, then oldest first, in one query; only those
    made from checkpoint_id, with seed, in folder (a stored path, sub-folders included), kept by
    a curation run (curated), or whose score columns (class_confidence, realism,
    near_copy_distance) reach minimums (a row without a score never does)."""
    query = (
        select(
            Image.id,
            Image.file_path,
            ClassName.name,
            Image.md5,
            Image.seed,
            Image.sample_index,
            Image.iteration,
            Checkpoint.path,
        )
        .join(ClassName, ClassName.id == Image.class_id)
        .join(Checkpoint, Checkpoint.id == Image.checkpoint_id)
        .where(ClassName.gan_id == model_id)
        .order_by(ClassName.label, Image.id)
    )
    if checkpoint_id is not None:
        query = query.where(Image.checkpoint_id == checkpoint_id)
    if seed is not None:
        query = query.where(Image.seed == seed)
    if folder is not None:
        query = query.where(Image.file_path.startswith(folder + os.sep, autoescape=True))
    if curated:
        query = query.where(Image.curation_id.is_not(None))
    for column, minimum in (minimums or {}).items():
        query = query.where(_SCORE_COLUMNS[column] >= minimum)
    return [ModelImage(*row) for row in session.execute(query)]


_SCORE_COLUMNS = {
    "class_confidence": Image.class_confidence,
    "realism": Image.realism,
    "near_copy_distance": Image.near_copy_distance,
}


def model_image_files(session: Session, model_id: int) -> list[tuple[str, str]]:
    """(file, MD5) of the images the model made, as recorded (for --delete-files); a file that
    another model's rows also name is left out."""
    class_ids = select(ClassName.id).where(ClassName.gan_id == model_id).scalar_subquery()
    others = select(Image.file_path).where(Image.class_id.not_in(class_ids))
    query = select(Image.file_path, Image.md5).where(
        Image.class_id.in_(class_ids), Image.file_path.not_in(others)
    )
    return [(path, md5) for path, md5 in session.execute(query)]


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


def image_page(
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
