"""gen db: the database schema (a thin wrapper over db's migrations)."""

from __future__ import annotations

import click

from gen.commands.options import database_option


@click.group("db")
def database() -> None:
    """Manage the database schema: upgrade applies the migrations this gen knows."""


@database.command("upgrade")
@database_option
def database_upgrade(database_url: str | None) -> None:
    """Apply the schema migrations this gen knows to an existing (or new) database."""
    from db import mask_url, resolve_database_url, upgrade_database

    before, after = upgrade_database(database_url)
    where = mask_url(resolve_database_url(database_url))
    if before == after:
        click.echo(f"{where} is already at schema revision {after}")
    else:
        click.echo(f"upgraded {where} from schema revision {before or 'empty'} to {after}")
