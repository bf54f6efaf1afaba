"""gen jobs and gen worker (gen/commands/jobs.py) beside gen.jobs, which imports no CLI: what it
keeps as data about the command line (its commands, and those that take --device) is what the
command line has. The queue end to end is tests/test_jobs.py."""

from __future__ import annotations

from collections.abc import Iterator

import click

from gen.cli import cli
from gen.jobs import COMMANDS, DEVICE_COMMANDS, check_job_command


def taking_device(command: click.Command, path: tuple[str, ...] = ()) -> Iterator[str]:
    """The commands under `command` (a group's subcommands as "classifiers train") with --device."""
    if isinstance(command, click.Group):
        for name, subcommand in command.commands.items():
            yield from taking_device(subcommand, (*path, name))
    elif any(parameter.name == "device" for parameter in command.params):
        yield " ".join(path)


def test_gen_jobs_knows_the_commands_and_those_that_take_a_device() -> None:
    assert sorted(COMMANDS) == sorted(cli.commands)
    assert sorted(DEVICE_COMMANDS) == sorted(taking_device(cli))


def test_a_job_names_a_command_of_the_given_ones() -> None:
    check_job_command(["train", "--data", "d", "--out", "o"])
    try:
        check_job_command(["train"], ["sample"])
    except Exception as error:
        assert "a job runs a gen command (sample), not 'train'." in str(error)
    else:
        raise AssertionError("a command not among the given ones was accepted")
