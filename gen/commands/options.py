"""What the commands share: each click option declared once, the id type, and the helpers every
command calls (opening the database, saying a warning). Commands import this module; it
imports no command.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from db.errors import UserError
from gen.devices import DEVICES
from gen.seeds import MAX_SEED

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

Decorated = TypeVar("Decorated", bound=Callable[..., Any])
Decorator = Callable[[Decorated], Decorated]


def echo_error(message: str) -> None:
    click.secho(message, err=True, fg="yellow")


def open_db(url: str | None, *, create: bool = True, read_only: bool = False) -> Engine:
    from db import open_database

    return open_database(url, create=create, read_only=read_only)


def absolute_sqlite_url(url: str) -> str:
    """The URL with a relative SQLite path made absolute: jobs run in the folder they came from."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if (
        parsed.get_backend_name() != "sqlite"
        or not parsed.database
        or parsed.database.startswith(("file:", ":"))
    ):
        return url
    return parsed.set(database=str(Path(parsed.database).resolve())).render_as_string(hide_password=False)


# Files that are not readable images are named, this many of them, on stderr.
SKIPPED_SHOWN = 10


def echo_skipped(skipped: Sequence[str]) -> None:
    """The warning for files skipped as unreadable images: how many, and the first SKIPPED_SHOWN."""
    echo_error(f"warning: skipped {len(skipped)} files that are not readable images:")
    for line in skipped[:SKIPPED_SHOWN]:
        echo_error(f"  {line}")


def checkpoint_choice(value: str) -> str | int | None:
    """best, latest or an iteration, as --checkpoint names a checkpoint of a model; else None."""
    from db.generators import CHECKPOINT_CHOICES
    from db.names import MAX_ID

    if value in CHECKPOINT_CHOICES:
        return value
    iteration = int(value) if value.isascii() and value.isdigit() else None
    return iteration if iteration is not None and iteration <= MAX_ID else None


class RecordId(click.ParamType):
    """An id of a row (model, image, classifier, search, job): a whole number from 1 to 2**63-1,
    read by db.names.as_id like the ids in ID|NAME arguments."""

    name = "ID"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        from db.names import MAX_ID, as_id

        try:
            number = as_id(value)
        except UserError as error:
            self.fail(str(error), param, ctx)
        if number is None:
            self.fail(f"{value!r} is not an id: ids are whole numbers from 1 to {MAX_ID}.", param, ctx)
        return number


RECORD_ID = RecordId()


database_option = click.option(
    "--db",
    "database_url",
    envvar="GEN_DATABASE_URL",
    metavar="URL",
    help="Database URL [default: $GEN_DATABASE_URL, else sqlite:///gen.db here]; "
    "e.g. postgresql://user@127.0.0.1:5432/gen.",
)

# The range is gen.seeds' (the API checks it too); here a wrong seed is refused as click refuses.
seed_option = click.option(
    "--seed", type=click.IntRange(0, MAX_SEED), default=0, show_default=True, help="Random seed."
)


def check_device(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """--device checked by gen.runtime.resolve_device as the command starts, before it reads or
    writes anything: a device this machine lacks is one sentence, not a failure halfway."""
    if value not in ("auto", "cpu"):
        from gen.runtime import resolve_device

        resolve_device(value)
    return value


device_option = click.option(
    "--device",
    type=click.Choice(DEVICES),
    default="auto",
    show_default=True,
    callback=check_device,
    help="Where the networks run; auto means CUDA when torch sees a GPU, else Apple's MPS, else the CPU.",
)

model_option = click.option(
    "--model", "model_id", metavar="ID|NAME", help="Model id or name [default: the latest model]."
)

yes_option = click.option("--yes", is_flag=True, help="Do not ask for confirmation.")


# The options that mean the same in every command that takes them; each factory fixes the flag,
# its name in Python and its type, and takes the help text that says what it means there.


def quiet_option(help: str = "No progress bar.") -> Decorator:
    return click.option("--quiet", "-q", is_flag=True, help=help)


def force_option(help: str) -> Decorator:
    return click.option("--force", is_flag=True, help=help)


def resume_option(help: str) -> Decorator:
    return click.option("--resume", is_flag=True, help=help)


def delete_files_option(help: str) -> Decorator:
    return click.option("--delete-files", is_flag=True, help=help)


def name_option(help: str) -> Decorator:
    return click.option("--name", help=help)


def train_dir_option(help: str) -> Decorator:
    """--train: the real images a model was trained on, for the commands that compare with them."""
    return click.option("--train", "train_dir", type=click.Path(path_type=Path), help=help)


def min_class_confidence_option(help: str) -> Decorator:
    return click.option("--min-class-confidence", type=float, metavar="P", help=help)


def min_near_copy_distance_option(help: str) -> Decorator:
    return click.option("--min-near-copy-distance", type=float, metavar="D", help=help)


# The options of the commands that train (gen train, gen search, gen classifiers train): the
# same option everywhere, its help saying what it means to that command.


# What --data means to the commands that take a folder or a registered data set's name.
DATA_HELP = "Image folder DATA/<class>/<images> (it registers itself), or a data set's name (gen data)."


def data_option(help: str, *, required: bool = False) -> Decorator:
    return click.option("--data", type=click.Path(path_type=Path), required=required, help=help)


def out_option(help: str, *, required: bool = False, default: Path | None = None) -> Decorator:
    return click.option(
        "--out",
        type=click.Path(path_type=Path),
        required=required,
        default=default,
        show_default=default is not None,
        help=help,
    )


def preset_option(
    choices: Sequence[str], help: str, *, default: str | None = None, envvar: str | None = None
) -> Decorator:
    return click.option(
        "--preset",
        type=click.Choice(choices),
        default=default,
        show_default=default is not None,
        envvar=envvar,
        help=help,
    )


def iterations_option(help: str, *, required: bool = False, default: int | None = None) -> Decorator:
    return click.option(
        "--iters",
        "iterations",
        type=click.IntRange(1),
        required=required,
        default=default,
        show_default=default is not None,
        help=help,
    )


def batch_size_option(help: str, *, default: int | None = None) -> Decorator:
    return click.option(
        "--batch-size", type=click.IntRange(1), default=default, show_default=default is not None, help=help
    )


def eval_images_option(help: str) -> Decorator:
    return click.option("--eval-images", type=click.IntRange(1), default=64, show_default=True, help=help)


def validation_option(help: str) -> Decorator:
    return click.option(
        "--validation",
        type=click.FloatRange(0, 1, min_open=True, max_open=True),
        default=0.2,
        show_default=True,
        help=help,
    )
