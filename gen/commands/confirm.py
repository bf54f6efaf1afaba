"""Asking before a delete that takes other records with it.

On a terminal the user is shown what would go and asked; a script says --yes. Without a
terminal and without --yes there is nobody to ask, so the command stops with one sentence
rather than guessing either way.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence

import click

from gen.errors import GenError


def stdin_is_terminal() -> bool:
    return sys.stdin.isatty()


def describe_counts(counts: Mapping[str, int]) -> str:
    """ "3 checkpoints, 12 images" for the non-zero counts ('' when all are zero)."""
    return ", ".join(f"{count} {what}" for what, count in counts.items() if count)


def confirm_deletion(what: str, counts: Mapping[str, int], yes: bool, notes: Sequence[str] = ()) -> None:
    """Show what deleting `what` takes with it and ask; nothing to ask when nothing depends on it.
    ``notes``: lines shown with the question (what stays, for instance)."""
    goes = describe_counts(counts)
    if not goes or yes:
        return
    if not stdin_is_terminal():
        raise GenError(f"deleting {what} also affects {goes}; pass --yes to confirm without a terminal.")
    click.echo(f"deleting {what} also affects {goes}.")
    for note in notes:
        click.echo(note)
    click.confirm(f"delete {what}?", abort=True)
