"""The README is right: every `gen` command line in it names commands and options that exist
(each option in that command's --help) and no more arguments than the command takes, and the
cheap ones (help, listings, demo-data with a small count, db upgrade) run as written. The help
itself is complete: every option says what it does and every group names its commands."""

from __future__ import annotations

import math
import re
import shlex
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from gen.cli import cli

README = Path(__file__).resolve().parents[1] / "README.md"
# Run as written (demo-data with a small --per-class): quick, and they touch only a fresh folder.
CHEAP = {("demo-data",), ("db", "upgrade"), ("models", "list"), ("data", "list")}
CHEAP |= {("classifiers", "list"), ("jobs", "list"), ("searches", "list")}


@dataclass(frozen=True)
class Invocation:
    text: str  # the README's words, for the failure message
    path: tuple[str, ...]  # the subcommands, e.g. ("models", "show")
    arguments: tuple[str, ...]  # what follows them


def readme_snippets(text: str, inline: bool = True) -> list[str]:
    """Shell lines of the README's code blocks (not the Python ones), continuations joined, and
    (inline) its inline code spans that start with `gen `, which may name a command in passing."""
    snippets = []
    fenced = re.findall(r"^```(\w*)\n(.*?)^```", text, flags=re.MULTILINE | re.DOTALL)
    for language, body in fenced:
        if language not in ("", "sh", "bash", "console"):
            continue
        snippets += [line for line in body.replace("\\\n", " ").splitlines() if line.strip()]
    prose = re.sub(r"^```.*?^```", "", text, flags=re.MULTILINE | re.DOTALL)
    if inline:
        snippets += [span for span in re.findall(r"`([^`\n]+)`", prose) if span.startswith("gen ")]
    return snippets


def invocations(snippet: str) -> list[Invocation]:
    """The `gen` commands in one README line. `a | b` shows alternatives (`gen classifiers list |
    show 1`: the second is `gen classifiers show 1`), `[...]` optional parts, `...` more of the
    same; `gen jobs submit -- train ...` holds a second command after `--`."""
    line = re.sub(r"\s+#.*$", "", snippet).replace("$(which gen)", "gen")
    found: list[Invocation] = []
    group: tuple[str, ...] = ()
    for alternative in line.split(" | "):
        words = [word.strip("[]") for word in shlex.split(alternative)]
        words = [word for word in words if word and word != "..."]
        if "gen" in words:
            words = words[words.index("gen") + 1 :]
        elif group and found:
            words = [*group, *words]
        else:
            continue
        while words:
            command, path, rest = cli, [], list(words)
            while isinstance(command, click.Group) and rest and not rest[0].startswith("-"):
                path.append(rest.pop(0))
                command = command.get_command(click.Context(cli), path[-1])
                if command is None:
                    break
            after = rest[rest.index("--") + 1 :] if "--" in rest else []
            rest = rest[: rest.index("--")] if "--" in rest else rest
            found.append(Invocation(snippet, tuple(path), tuple(rest)))
            group = tuple(path[:1])
            words = after
    return found


@cache
def help_text(path: tuple[str, ...]) -> str:
    result = CliRunner().invoke(cli, [*path, "--help"])
    assert result.exit_code == 0, result.output
    return result.output


def command_at(path: tuple[str, ...]) -> click.Command | None:
    command: click.Command | None = cli
    for name in path:
        if not isinstance(command, click.Group):
            return None
        command = command.get_command(click.Context(cli), name)
    return command


def problems_of(invocation: Invocation) -> list[str]:
    """What is wrong with one README command: an unknown command or option, an option its --help
    does not show, or more positional arguments than the command takes."""
    said = f"README: {invocation.text.strip()!r}:"
    if any(name.isupper() for name in invocation.path):  # `gen COMMAND --help`: a placeholder
        return []
    command = command_at(invocation.path)
    if command is None or isinstance(command, click.Group) and not invocation.arguments:
        where = " ".join(invocation.path)
        return [] if command is not None else [f"{said} gen has no command `gen {where}`"]
    options = {name: param for param in command.params for name in (*param.opts, *param.secondary_opts)}
    problems, positional, words = [], 0, list(invocation.arguments)
    while words:
        word = words.pop(0)
        if word.startswith("-") and not re.fullmatch(r"-\d+", word):
            name = word.split("=", 1)[0]
            if name in ("--help", "-h"):
                continue
            option = options.get(name)
            if option is None:
                problems.append(f"{said} `gen {' '.join(invocation.path)}` has no option {name}")
                continue
            if not re.search(rf"(^|[\s,/]){re.escape(name)}\b", help_text(invocation.path)):
                problems.append(f"{said} {name} is not in `gen {' '.join(invocation.path)} --help`")
            if isinstance(option, click.Option) and not (option.is_flag or option.count) and "=" not in word:
                del words[: option.nargs]
        else:
            positional += 1
    takes = sum(math.inf if p.nargs < 0 else p.nargs for p in command.params if isinstance(p, click.Argument))
    if positional > takes:
        problems.append(
            f"{said} `gen {' '.join(invocation.path)}` takes {takes} arguments, the README gives {positional}"
        )
    return problems


def readme_invocations(inline: bool = True) -> list[Invocation]:
    snippets = readme_snippets(README.read_text(), inline)
    return [found for snippet in snippets for found in invocations(snippet)]


def test_the_readme_is_parsed_into_many_commands() -> None:
    """The parser finds the README's commands, alternatives and nested job commands."""
    paths = {found.path for found in readme_invocations()}
    for expected in [("train",), ("report",), ("export",), ("verify",), ("classifiers", "show")]:
        assert expected in paths
    assert len(paths) >= 25
    nested = invocations("gen jobs submit -- train --data pbc --out runs/b")
    assert [found.path for found in nested] == [("jobs", "submit"), ("train",)]


def test_the_parser_catches_what_the_readme_got_wrong() -> None:
    """The README's old line, an unknown option and an unknown command are each a problem."""
    assert problems_of(invocations("gen report 57 --real TEST --classifier 12")[0])
    assert problems_of(invocations("gen sample --n 4 --colour red")[0])
    assert problems_of(invocations("gen models frobnicate 3")[0])
    assert problems_of(invocations("gen report --model 57 --real TEST --classifier 12")[0]) == []


def test_every_command_and_option_the_readme_names_exists() -> None:
    problems = [problem for found in readme_invocations() for problem in problems_of(found)]
    assert problems == []


def test_the_readme_says_what_to_hold_out() -> None:
    """`gen report --real` needs held-out images: the README says which, for the demo and pbc4."""
    text = README.read_text()
    held_out = [found for found in readme_invocations() if found.path == ("demo-data",)]
    assert any("--seed" in found.arguments for found in held_out), "a held-out phantom folder"
    assert "pbc4/test" in text


def test_the_readme_lists_every_file_an_export_holds() -> None:
    from gen.export import layout

    text = README.read_text()
    names = [
        layout.SQL_DUMP_NAME,
        layout.CSV_NAME,
        layout.REPORT_NAME,
        layout.REPORT_MARKDOWN_NAME,
        layout.MANIFEST_NAME,
        layout.MD5SUMS_NAME,
        layout.METADATA_NAME,
        layout.CROISSANT_NAME,
        *layout.CARD_FILES,
    ]
    section = text[text.index("### Exported data sets") :]
    for name in names:
        assert re.search(rf"`(<class>/)?{re.escape(name)}`", section), name


def test_the_cheap_commands_run_as_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    runner = CliRunner(env={"GEN_DATABASE_URL": f"sqlite:///{tmp_path / 'gen.db'}"})
    # The listings come after `gen train` in the README, which makes the database; here an
    # empty one stands in for it.
    assert runner.invoke(cli, ["db", "upgrade"]).exit_code == 0
    ran = set()
    for found in readme_invocations(inline=False):
        arguments = list(found.arguments)
        if found.path not in CHEAP and "--help" not in arguments:
            continue
        if any(word.isupper() for word in [*found.path, *arguments]):
            continue  # a placeholder (DATA, COMMAND)
        if found.path == ("demo-data",):
            if "--per-class" in arguments:
                del arguments[arguments.index("--per-class") : arguments.index("--per-class") + 2]
            arguments += ["--per-class", "2"]  # the same command, with fewer images
        result = runner.invoke(cli, [*found.path, *arguments])
        assert result.exit_code == 0, f"{found.text}: {result.output}"
        ran.add(found.path)
    assert {("demo-data",), ("db", "upgrade"), ("models", "list")} <= ran


def all_commands() -> list[tuple[tuple[str, ...], click.Command]]:
    found, pending = [], [((), cli)]
    while pending:
        path, command = pending.pop()
        found.append((path, command))
        if isinstance(command, click.Group):
            pending += [((*path, name), sub) for name, sub in command.commands.items()]
    return found


def test_every_option_has_help() -> None:
    missing = [
        f"gen {' '.join(path)} {param.opts[0]}"
        for path, command in all_commands()
        for param in command.params
        if isinstance(param, click.Option) and not param.hidden and not (param.help or "").strip()
    ]
    assert missing == []


def test_every_group_names_its_commands() -> None:
    """`gen models --help` once said "List, show and delete" of a group that also renames and
    retrains: each group's description names all its commands."""
    missing = [
        f"gen {' '.join(path)}: {name}"
        for path, command in all_commands()
        if isinstance(command, click.Group) and path
        for name in command.commands
        if not re.search(rf"\b{name}", (command.help or "").lower())
    ]
    assert missing == []
