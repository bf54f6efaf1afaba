"""The ``gen`` command line: the group, its error handling, and the commands it assembles.

The commands are thin click wrappers over functions that are useful on their own, one module
per family in gen/commands (their shared options in gen/commands/options.py). Success is quiet
(a line saying what was made and where); failure is loud (one sentence on stderr and a non-zero
exit). Long work shows a progress bar on stderr.
"""

from __future__ import annotations

from typing import Any

import click

from db.errors import UserError
from gen import __version__
from gen.commands import (
    classifiers,
    data,
    database,
    export,
    jobs,
    models,
    report,
    sample,
    search,
    serve,
    train,
)


class GenGroup(click.Group):
    """Turns a GenError anywhere below into click's one-line ``Error: ...`` and exit status 1."""

    def invoke(self, ctx: click.Context) -> Any:
        from sqlalchemy.exc import OperationalError

        try:
            return super().invoke(ctx)
        except UserError as error:  # gen.errors.GenError and db's own
            raise click.ClickException(str(error)) from None
        except OperationalError as error:
            from db.errors import disk_full

            if disk_full(error):
                raise click.ClickException(
                    "the database's disk is full; what this command wrote before is whole, free some space "
                    "and run it again to complete the rest."
                ) from None
            if "locked" not in str(error.orig):
                raise
            # SQLite waits DATABASE_BUSY_TIMEOUT_S for another writer first (db.session); what
            # this command wrote before is whole, and rerunning it completes the rest.
            raise click.ClickException(
                "the database stayed locked by another gen process; nothing half-written was left, "
                "run the command again once the other one has finished."
            ) from None


@click.group(cls=GenGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="gen")
def cli() -> None:
    """Turn a small labelled folder of microscopy images into a large, labelled, verified
    synthetic data set.

    \b
    Typical session:
      gen demo-data --out data/phantoms
      gen train --data data/phantoms --out runs/demo --preset cpu --iters 200
      gen sample --checkpoint runs/demo --n 100 --all-classes --out samples/
    """


# The commands, one module per family (gen/commands); click lists them in alphabetical order.
COMMANDS = (
    data.demo_data,
    train.train,
    sample.sample,
    sample.reproduce,
    report.report,
    export.export,
    export.verify,
    models.models,
    database.database,
    data.data,
    classifiers.classifiers,
    classifiers.classify,
    jobs.jobs,
    jobs.worker,
    search.search,
    search.searches,
    serve.serve,
)
for command in COMMANDS:
    cli.add_command(command)


def main() -> None:
    cli(prog_name="gen")
