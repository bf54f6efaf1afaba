"""Registered data sets: a name for an image folder, with its classes, counts and fingerprint.

Training on a folder records its fingerprint (gen.image_folder: every loaded file's path and bytes);
registering keeps that fingerprint under a name, so a folder whose files changed since is
noticed (`check`) and refused for training under the old name instead of silently used.
The rows are written by db.datasets; this module reads the folders.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from db import datasets as dataset_rows
from db.datasets import DatasetInfo
from db.errors import UserError
from db.names import check_name
from gen.deleting import Deleted, FileDeletion, carry_out, plan_deletion
from gen.errors import GenError
from gen.image_folder import load_image_folder

UNCHANGED, CHANGED, MISSING = "unchanged", "changed", "missing"


@dataclass(frozen=True)
class FolderScan:
    folder: str  # absolute
    fingerprint: str
    classes: dict[str, int]  # readable images per class, in label order


def scan_folder(folder: str | Path, *, progress: bool = False) -> FolderScan:
    """Read the folder as training would: its classes, readable images per class, fingerprint."""
    images = load_image_folder(folder, progress=progress)
    return FolderScan(str(Path(folder).resolve()), images.fingerprint, images.counts())


def register(engine: Engine, name: str, folder: str | Path, *, progress: bool = False) -> DatasetInfo:
    """Register a folder under a new name; refused when these very files are registered already."""
    check_name(name, "data set")
    scan = scan_folder(folder, progress=progress)
    with Session(engine) as session:
        existing = dataset_rows.find_dataset_by_folder(session, scan.folder, scan.fingerprint)
        if existing is not None:
            known = dataset_rows.get_dataset(session, existing)
            raise GenError(
                f"{scan.folder} is registered already as {known.name!r}; rename it with "
                f"gen data rename {known.name} {name}."
            )
        dataset_id = dataset_rows.add_dataset(
            session, name=name, folder=scan.folder, fingerprint=scan.fingerprint, classes=scan.classes
        )
        return dataset_rows.get_dataset(session, dataset_id)


def check(info: DatasetInfo) -> str:
    """Whether the folder still holds the registered files: UNCHANGED, CHANGED or MISSING."""
    if not Path(info.folder).is_dir():
        return MISSING
    try:
        return UNCHANGED if scan_folder(info.folder).fingerprint == info.fingerprint else CHANGED
    except GenError:
        return CHANGED  # no longer a usable image folder


def move(engine: Engine, reference: str, folder: str | Path) -> DatasetInfo:
    """Point a data set at a new folder holding the same files (refused while anything uses it)."""
    with Session(engine) as session:
        info = dataset_rows.get_dataset(session, reference)
        used = dataset_rows.dataset_dependents(session, info.id)
    if any(used.values()):  # before reading a possibly large folder
        with Session(engine) as session:
            return dataset_rows.move_dataset(session, reference, str(Path(folder).resolve()), "")
    scan = scan_folder(folder)
    with Session(engine) as session:
        return dataset_rows.move_dataset(session, reference, scan.folder, scan.fingerprint)


def files_to_delete(info: DatasetInfo, *, progress: bool = False) -> FileDeletion:
    """The image files the data set counted at registration, read again to prove they are the
    same ones (its fingerprint), and the class folders and root they leave empty. A folder whose
    files changed since is refused whole: which files are the data set's can no longer be told.
    Files that were never counted (not images, hidden, loose in the root) are never touched."""
    folder = Path(info.folder)
    if not folder.is_dir():
        return FileDeletion({})
    try:
        images = load_image_folder(folder, progress=progress)
    except GenError as error:
        raise _changed_since(info, f" ({str(error).rstrip('.')})") from None
    if images.fingerprint != info.fingerprint:
        raise _changed_since(info, _count_changes(info, images.counts()))
    return plan_deletion(
        ((folder / relative, sha256) for relative, sha256 in images.files), "sha256", folders_under=folder
    )


def _changed_since(info: DatasetInfo, how: str) -> GenError:
    return GenError(
        f"the files in {info.folder} changed since it was registered as data set {info.name!r}{how}, so "
        "which files are its own can no longer be told and none was deleted; delete the record alone, "
        "without --delete-files."
    )


def _count_changes(info: DatasetInfo, counts: dict[str, int]) -> str:
    registered = info.classes or {}
    differ = [
        f"{name} had {registered.get(name, 0)} images, now {counts.get(name, 0)}"
        for name in dict.fromkeys([*registered, *counts])
        if registered.get(name, 0) != counts.get(name, 0)
    ]
    if differ:
        return f" ({'; '.join(differ)})"
    return " (as many images per class, but some files' contents differ)" if registered else ""


def delete(
    engine: Engine, reference: str, *, delete_files: bool = False, files: FileDeletion | None = None
) -> tuple[DatasetInfo, Deleted | None]:
    """Delete a data set's row (models and classifiers keep theirs); with delete_files, also its
    image files as counted at registration (``files``: what files_to_delete planned, else planned
    here), and the folders that leaves empty. Returns what was deleted."""
    if delete_files and files is None:
        with Session(engine) as session:
            files = files_to_delete(dataset_rows.get_dataset(session, reference))
    with Session(engine) as session:
        info = dataset_rows.delete_dataset(session, reference)
    return info, carry_out(files, "sha256") if delete_files and files is not None else None


def training_folder(database_url: str | None, data: str | Path) -> tuple[Path, str | None]:
    """What gen train --data means: (the folder, the data set's name if a name was given).

    An existing folder is a path (it registers itself once trained on); anything else must be a
    registered data set's name.
    """
    path = Path(data)
    if path.exists():
        return path, None
    from db import open_database

    try:
        engine = open_database(database_url, create=False, read_only=True)
    except UserError:
        raise GenError(f"--data {data}: there is no such folder, and no database of data sets yet.") from None
    try:
        with Session(engine) as session:
            try:
                info = dataset_rows.get_dataset(session, str(data))
            except UserError as error:
                raise GenError(
                    f"--data {data} is neither a folder nor a registered data set: {error}"
                ) from None
    finally:
        engine.dispose()
    return Path(info.folder), info.name


def dataset_for_run(
    session: Session,
    name: str | None,
    folder: str | Path,
    fingerprint: str,
    class_names: tuple[str, ...],
    skipped_files: tuple[str, ...],
) -> tuple[int, str | None]:
    """The data set a new training run is recorded against: the named one, whose files must not
    have changed since it was registered, or the one of this folder with these files, registered
    now (named after the folder) when there is none. Returns (its id, a warning to show or None):
    a folder registered before whose files changed since is said, not passed over."""
    resolved = str(Path(folder).resolve())
    if name is not None:
        info = dataset_rows.get_dataset(session, name)
        if info.fingerprint != fingerprint:
            raise GenError(
                f"the files in {info.folder} changed since it was registered as data set {info.name!r}; "
                f"register the folder as it is now under a new name with gen data add NAME {info.folder}."
            )
        return info.id, None
    existing = dataset_rows.find_dataset_by_folder(session, resolved, fingerprint)
    if existing is not None:
        return existing, None
    earlier = [d.name for d in dataset_rows.list_datasets(session) if d.folder == resolved]
    dataset_id = dataset_rows.add_dataset(
        session,
        name=dataset_rows.unused_dataset_name(session, Path(resolved).name),
        folder=resolved,
        fingerprint=fingerprint,
        classes=_counts_from_files(Path(resolved), class_names, skipped_files),
    )
    if not earlier:
        return dataset_id, None
    new_name = dataset_rows.get_dataset(session, dataset_id).name
    return dataset_id, (
        f"warning: the files in {resolved} changed since it was registered as data set "
        f"{', '.join(earlier)}; this run is recorded against the new data set {new_name}."
    )


def _counts_from_files(
    root: Path, class_names: tuple[str, ...], skipped_files: tuple[str, ...]
) -> dict[str, int]:
    """Readable images per class without decoding again: files found, less those training skipped."""
    from gen.image_folder import _files_in

    skipped = Counter(line.split("/", 1)[0] for line in skipped_files)
    return {name: len(_files_in(root / name)) - skipped[name] for name in class_names}
