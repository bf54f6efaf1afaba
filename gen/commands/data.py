"""gen demo-data and gen data: phantom images to start from, and the registered data sets
(thin wrappers over gen.phantoms, gen.dataset_registry and db.datasets)."""

from __future__ import annotations

from pathlib import Path

import click

from gen.commands.confirm import confirm_deletion
from gen.commands.options import (
    database_option,
    delete_files_option,
    echo_error,
    open_db,
    out_option,
    quiet_option,
    seed_option,
    yes_option,
)


@click.command("demo-data")
@out_option("Folder to create (one sub-folder per class).", required=True)
@click.option("--per-class", default=100, show_default=True, type=click.IntRange(1), help="Images per class.")
@seed_option
def demo_data(out: Path, per_class: int, seed: int) -> None:
    """Write procedural cytology-like phantom images (4 classes), so that no download is needed."""
    from gen.phantoms import write_phantoms

    counts = write_phantoms(out, per_class=per_class, seed=seed)
    click.echo(f"wrote {sum(counts.values())} phantom images in {len(counts)} classes to {out}/")


def _classes(classes: dict[str, int] | None) -> str:
    if classes is None:
        return "-"
    return ", ".join(f"{name} ({count})" for name, count in classes.items())


@click.group("data")
def data() -> None:
    """Add (register), list, show, rename, move and delete data sets (named image folders)."""


@data.command("add")
@click.argument("name")
@click.argument("folder", type=click.Path(path_type=Path))
@quiet_option()
@database_option
def data_add(name: str, folder: Path, quiet: bool, database_url: str | None) -> None:
    """Register FOLDER (FOLDER/<class>/<images>) as data set NAME: its classes, counts and fingerprint."""
    from gen.dataset_registry import register

    info = register(open_db(database_url), name, folder, progress=not quiet)
    click.echo(
        f"data set {info.name}: {info.images} images in {len(info.classes or {})} classes at {info.folder} "
        f"(fingerprint {info.fingerprint[:12]})"
    )


@data.command("list")
@database_option
def data_list(database_url: str | None) -> None:
    """One line per data set: id, name, images, models and classifiers using it, folder."""
    from sqlalchemy.orm import Session

    from db import datasets as dataset_rows

    with Session(open_db(database_url, create=False, read_only=True)) as session:
        rows = dataset_rows.list_datasets(session)
    if not rows:
        click.echo("no data sets yet; register one with gen data add NAME FOLDER")
        return
    click.echo(
        f"{'id':>4}  {'name':<16} {'classes':>7} {'images':>7} {'models':>6} {'classifiers':>11}  folder"
    )
    for row in rows:
        images = "-" if row.images is None else str(row.images)
        classes = "-" if row.classes is None else str(len(row.classes))
        click.echo(
            f"{row.id:>4}  {row.name:<16} {classes:>7} {images:>7} {row.models:>6} {row.classifiers:>11}  "
            f"{row.folder}"
        )


@data.command("show")
@click.argument("name")
@click.option("--no-check", is_flag=True, help="Do not read the folder to check its files are unchanged.")
@database_option
def data_show(name: str, no_check: bool, database_url: str | None) -> None:
    """A data set's folder, classes and counts, users, and whether its files changed since."""
    from sqlalchemy.orm import Session

    from db import datasets as dataset_rows
    from gen.dataset_registry import CHANGED, MISSING, check

    with Session(open_db(database_url, create=False, read_only=True)) as session:
        info = dataset_rows.get_dataset(session, name)
    click.echo(f"data set {info.id} {info.name}, registered {info.created_at:%Y-%m-%d %H:%M} UTC")
    click.echo(f"  folder       {info.folder}")
    click.echo(f"  fingerprint  {info.fingerprint}")
    click.echo(f"  classes      {_classes(info.classes)}")
    click.echo(f"  used by      {info.models} models, {info.classifiers} classifiers")
    if not no_check:
        state = check(info)
        notes = {
            CHANGED: "CHANGED since registration: training on it by name is refused",
            MISSING: "MISSING: the folder is gone",
        }
        click.echo(f"  files        {notes.get(state, 'unchanged since registration')}")


@data.command("rename")
@click.argument("name")
@click.argument("new_name")
@database_option
def data_rename(name: str, new_name: str, database_url: str | None) -> None:
    """Rename a data set."""
    from sqlalchemy.orm import Session

    from db import datasets as dataset_rows

    with Session(open_db(database_url, create=False)) as session:
        old, new = dataset_rows.rename_dataset(session, name, new_name)
    click.echo(f"renamed data set {old} to {new}")


@data.command("move")
@click.argument("name")
@click.argument("folder", type=click.Path(path_type=Path))
@database_option
def data_move(name: str, folder: Path, database_url: str | None) -> None:
    """Point a data set at FOLDER, which must hold the same files; refused while models or
    classifiers use it."""
    from gen.dataset_registry import move

    info = move(open_db(database_url, create=False), name, folder)
    click.echo(f"data set {info.name} now at {info.folder}")


@data.command("delete")
@click.argument("name")
@yes_option
@delete_files_option(
    "Also delete the image files it counted, if unchanged since (never other files; never by default)."
)
@database_option
def data_delete(name: str, yes: bool, delete_files: bool, database_url: str | None) -> None:
    """Delete a data set's record; the models and classifiers trained on it keep theirs. Its image
    files are kept unless --delete-files, which deletes only the images counted at registration
    (read again to prove they are unchanged) and the folders that leaves empty."""
    from sqlalchemy.orm import Session

    from db import datasets as dataset_rows
    from gen.dataset_registry import delete, files_to_delete

    engine = open_db(database_url, create=False)
    with Session(engine) as session:
        info = dataset_rows.get_dataset(session, name)
    counts = {"models (unlinked)": info.models, "classifiers (unlinked)": info.classifiers}
    files, notes = None, []
    if delete_files:
        files = files_to_delete(info)
        counts[f"image files in {info.folder}"] = len(files.files)
        if files.kept:
            notes.append(f"these folders stay, holding other files: {files.describe_kept()}")
    confirm_deletion(f"data set {info.name}", counts, yes, notes)
    info, deleted = delete(engine, name, delete_files=delete_files, files=files)
    if deleted is None:
        click.echo(f"deleted data set {info.name} (files kept)")
        return
    if not files.files and not Path(info.folder).is_dir():
        click.echo(f"deleted data set {info.name}; its folder {info.folder} was gone already")
        return
    click.echo(f"deleted data set {info.name} and its {deleted.files} image files")
    if files.kept:
        click.echo(f"kept, as they hold other files: {files.describe_kept()}")
    if deleted.changed:
        echo_error(f"left in place, changed while deleting: {', '.join(map(str, deleted.changed))}")
