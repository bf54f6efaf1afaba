"""gen export and gen verify: thin click wrappers over gen.export (pack a model's images into a
data set anyone can verify) and gen.verify."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from gen.commands.options import (
    checkpoint_choice,
    database_option,
    device_option,
    echo_error,
    force_option,
    min_class_confidence_option,
    min_near_copy_distance_option,
    model_option,
    open_db,
    out_option,
    quiet_option,
)
from gen.errors import GenError

if TYPE_CHECKING:
    from gen.export import Publication
    from gen.export.choosing import ScoreFilter
    from gen.export.layout import ExportResult


class CsvRows(click.ParamType):
    """A number of rows, or "all" (None)."""

    name = "N|all"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int | None:
        if value is None or isinstance(value, int):
            return value
        if str(value).strip().lower() == "all":
            return None
        try:
            rows = int(value)
        except ValueError:
            rows = -1
        if rows < 0:
            self.fail(f"{value!r} is not a number of rows or 'all'.", param, ctx)
        return rows


MAX_CITATION_BYTES = 64 * 1024
# What a citation file is usually called; a value ending so, without spaces, is meant as a file.
CITATION_FILE_SUFFIXES = (".bib", ".bibtex", ".cff", ".txt", ".md", ".rst", ".ris", ".enw", ".nbib", ".tex")


def _looks_like_a_file_name(value: str) -> bool:
    """Whether --citation's value is a path rather than text: one word, no URL, and a citation
    file's suffix or a start that only paths have."""
    if not value or any(c.isspace() for c in value) or "://" in value:
        return False
    return value.lower().endswith(CITATION_FILE_SUFFIXES) or value.startswith(("/", "./", "../", "~"))


def read_citation(value: str) -> str:
    """--citation's text, or the text of the file it names.

    A value that names something is read only if it is a regular file (a pipe would hang, a
    device never end); one that looks like a file name but names nothing is a mistyped path,
    not a citation to publish."""
    try:
        found = os.stat(value)
    except (OSError, ValueError):  # no such file, a name too long to be one, a NUL in it
        if _looks_like_a_file_name(value):
            raise GenError(
                f"--citation {value} looks like a file name but there is no such file; give the path "
                "of a readable file, or the citation's text."
            ) from None
        return value
    if not stat.S_ISREG(found.st_mode):
        raise GenError(
            f"--citation {value} is not a regular file; give a citation file or the citation's text."
        )
    if found.st_size > MAX_CITATION_BYTES:
        raise GenError(f"--citation {value} is larger than {MAX_CITATION_BYTES // 1024} KiB.")
    try:
        # O_NONBLOCK: a file swapped for a pipe since the check opens without waiting, and is refused.
        descriptor = os.open(value, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(descriptor, "rb") as file:
            if not stat.S_ISREG(os.fstat(file.fileno()).st_mode):
                raise GenError(f"--citation {value} is not a regular file.")
            data = file.read(MAX_CITATION_BYTES + 1)
    except OSError as error:
        raise GenError(f"--citation {value} cannot be read: {error.strerror or error}.") from None
    if len(data) > MAX_CITATION_BYTES:
        raise GenError(f"--citation {value} is larger than {MAX_CITATION_BYTES // 1024} KiB.")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise GenError(f"--citation {value} is not UTF-8 text.") from None


@click.command("export")
@model_option
@out_option("Data set folder to create [default: exports/model-<id>].")
@click.option(
    "--classes",
    "class_names",
    multiple=True,
    metavar="NAMES",
    help="Export only these classes (repeatable, or comma-separated).",
)
@click.option("--limit-per-class", type=click.IntRange(1), help="At most N images per class (the oldest).")
@click.option(
    "--checkpoint",
    "which_checkpoint",
    metavar="ITER|best|latest",
    help="Only the images made from this checkpoint of the model [default: every image].",
)
@click.option("--seed", "image_seed", type=click.IntRange(0), help="Only the images sampled with this seed.")
@click.option(
    "--folder",
    type=click.Path(path_type=Path),
    help="Only the images sampled into this folder (gen sample --out).",
)
@click.option("--curated", is_flag=True, help="Only the images a curation kept (gen sample --keep-best).")
@min_class_confidence_option("Only images whose class_confidence is at least P.")
@click.option("--min-realism", type=float, metavar="R", help="Only images whose realism is at least R.")
@min_near_copy_distance_option("Only images whose near_copy_distance is at least D.")
@click.option("--sql-dump", is_flag=True, help="Write database.sql: the rows behind the images.")
@click.option(
    "--dialect",
    type=click.Choice(["postgresql", "sqlite"]),
    default="postgresql",
    show_default=True,
    help="SQL dialect of database.sql (psql -f, or sqlite3 db < database.sql).",
)
@click.option(
    "--csv", "write_csv", is_flag=True, help="Write settings.csv: the GAN settings behind each image."
)
@click.option(
    "--csv-rows", type=CsvRows(), default="100", show_default=True, help="Rows of settings.csv, or all."
)
@click.option(
    "--archive", is_flag=True, help="Also write OUT.tar.gz and OUT.tar.gz.sha256 beside the folder."
)
@click.option(
    "--report",
    "report_dir",
    type=click.Path(path_type=Path),
    help="A report folder whose report.json and plots go into the data set "
    "[default: reports/model-<id> when it exists].",
)
@click.option("--skip-missing", is_flag=True, help="Leave out images whose file is gone instead of refusing.")
@click.option(
    "--license",
    "license_id",
    required=True,
    metavar="SPDX",
    help="The data set's licence as an SPDX identifier (CC-BY-4.0, CC0-1.0, ...), or 'none' to "
    "grant none. Required: a data set without one cannot be reused.",
)
@click.option(
    "--training-license",
    metavar="SPDX",
    help="The licence of the real images the generator was trained on (stated in the card).",
)
@click.option(
    "--citation", metavar="TEXT|FILE", help="How to cite the data set (e.g. a BibTeX entry or file)."
)
@click.option("--title", help="The data set's title [default: OUT: synthetic images from gen model N].")
@click.option("--description", help="A paragraph for the card: what the images are and what they are for.")
@force_option("Replace an existing data set at OUT.")
@quiet_option()
@database_option
def export(
    model_id: str | None,
    out: Path | None,
    class_names: tuple[str, ...],
    limit_per_class: int | None,
    which_checkpoint: str | None,
    image_seed: int | None,
    folder: Path | None,
    curated: bool,
    min_class_confidence: float | None,
    min_realism: float | None,
    min_near_copy_distance: float | None,
    sql_dump: bool,
    dialect: str,
    write_csv: bool,
    csv_rows: int | None,
    archive: bool,
    report_dir: Path | None,
    skip_missing: bool,
    license_id: str,
    training_license: str | None,
    citation: str | None,
    title: str | None,
    description: str | None,
    force: bool,
    quiet: bool,
    database_url: str | None,
) -> None:
    """Pack a model's images into a data set folder that anyone can verify.

    OUT gets <class>/*.png with an MD5SUMS per class, report.json, a card (README.md,
    index.html with a sample grid per class) and manifest.json; --sql-dump and --csv add the
    provenance rows and the settings table. The folder is built beside OUT and renamed into
    place, so a failure leaves nothing behind. Check it with gen verify OUT.
    """
    from sqlalchemy.orm import Session

    from db import generators as generator_rows
    from gen.export import export_dataset

    publication = publication_of(license_id, training_license, citation, title, description)
    scores = score_filter(curated, min_class_confidence, min_realism, min_near_copy_distance)
    which = checkpoint_choice(which_checkpoint) if which_checkpoint else None
    if which_checkpoint and which is None:
        raise GenError(f"--checkpoint {which_checkpoint!r} must be best, latest or an iteration number.")
    classes = [name.strip() for value in class_names for name in value.split(",") if name.strip()]
    engine = open_db(database_url, create=False, read_only=True)
    with Session(engine) as session:
        model_id = generator_rows.model_or_latest(session, model_id)
    out = out or Path("exports") / f"model-{model_id}"
    default_report = Path("reports") / f"model-{model_id}"
    if report_dir is None and (default_report / "report.json").is_file():
        report_dir = default_report  # what `gen report` wrote for this model, plots included
    echo_exported(
        export_dataset(
            engine,
            model_id,
            out,
            classes=classes or None,
            limit_per_class=limit_per_class,
            sql_dump=sql_dump,
            dialect=dialect,
            csv=write_csv,
            csv_rows=csv_rows,
            archive=archive,
            force=force,
            report_dir=report_dir,
            skip_missing=skip_missing,
            progress=not quiet,
            publication=publication,
            checkpoint=which,
            seed=image_seed,
            folder=folder,
            scores=scores,
        )
    )


def publication_of(
    license_id: str,
    training_license: str | None,
    citation: str | None,
    title: str | None,
    description: str | None,
) -> Publication:
    """What the card says about the data set's use: its licences (checked), citation, title and
    description."""
    from gen.export import Publication, check_license

    return Publication(
        license=check_license(license_id),
        training_license=check_license(training_license, "--training-license") if training_license else None,
        citation=read_citation(citation) if citation else None,
        title=title,
        description=description,
    )


def score_filter(
    curated: bool,
    min_class_confidence: float | None,
    min_realism: float | None,
    min_near_copy_distance: float | None,
) -> ScoreFilter | None:
    """The images' scores asked for by --curated and the --min-* options; None when none is."""
    from gen.export.choosing import ScoreFilter

    if curated or any(m is not None for m in (min_class_confidence, min_realism, min_near_copy_distance)):
        return ScoreFilter(curated, min_class_confidence, min_realism, min_near_copy_distance)
    return None


def echo_exported(result: ExportResult) -> None:
    """What was exported where; the recorded images left out; the archive."""
    extras = [name for name in ("database.sql", "settings.csv") if name in result.files]
    click.echo(
        f"exported {result.images} images in {len(result.classes)} classes of model {result.model_id} "
        f"to {result.out}/ ({', '.join([*extras, 'card'])}) in {result.seconds:.1f} s "
        f"({result.images_per_second:.0f} images/s)"
    )
    if result.missing:
        echo_error(
            f"left out {len(result.missing)} recorded images whose file is gone (first: {result.missing[0]})"
        )
    if result.archive is not None:
        click.echo(f"archive {result.archive} (SHA-256 in {result.archive.name}.sha256)")


@click.command("verify")
@click.argument("directory", type=click.Path(path_type=Path))
@quiet_option()
@click.option(
    "--regenerate", is_flag=True, help="Also make every image again from its row (needs --checkpoint)."
)
@click.option(
    "--checkpoint",
    type=click.Path(path_type=Path, dir_okay=False),
    help="The checkpoint the images came from.",
)
@device_option
def verify(directory: Path, quiet: bool, regenerate: bool, checkpoint: Path | None, device: str) -> None:
    """Check an exported data set: every MD5, every row, every count and the SQL dump.

    Prints "OK: ..." and exits 0, or lists every problem found and exits 1. With --regenerate
    and the checkpoint the images were made from, each image is also made again from its row
    and compared: exact, within one intensity level (another machine), or differs (exit 1).
    """
    from gen.verify import read_manifest, verify_dataset

    if regenerate and checkpoint is None:
        raise GenError("--regenerate needs --checkpoint FILE: the checkpoint the images were made from.")

    problems = verify_dataset(directory, progress=not quiet)
    if problems:
        for problem in problems:
            click.echo(f"- {problem}")
        count = f"{len(problems)} problem{'s' if len(problems) > 1 else ''}"
        raise GenError(f"{directory} does not verify: {count} (listed above).")
    manifest = read_manifest(directory)
    click.echo(f"OK: {manifest['images']} images in {len(manifest['classes'])} classes verified")
    if regenerate:
        from gen.reproduce import DIFFERS, EXACT, regenerate_dataset

        results = regenerate_dataset(directory, checkpoint, device=device)
        exact = sum(result.verdict == EXACT for result in results)
        differ = [result for result in results if result.verdict == DIFFERS]
        summary = (
            f"regenerated {len(results)} images: {exact} exact, {len(results) - exact - len(differ)} "
            f"within one level, {len(differ)} differ"
        )
        if differ:
            for result in differ:
                click.echo(f"- {Path(result.record.file_path).relative_to(directory)}: {result.describe()}")
            raise GenError(summary + " (listed above).")
        click.echo(summary)
