"""What an export may say about the machine that made it: no absolute path, folder name, host
or user name.

A pathology folder name can carry a study or patient identifier, and a home folder carries a
user name, so nothing an export publishes (the SQL dump's rows, settings.csv, report.json,
report.md, the card) keeps a path of the machine it was made on:

- values under keys that hold local paths (the training and held-out folders, the run folder,
  checkpoint and classifier files) become the file's own name when gen named the file
  (``checkpoint-0000200.pt``, a cached classifier), else ``None``: the training folder is
  identified by its fingerprint (``dataset_fingerprint``), which the rows keep;
- any other string that is an absolute path is treated the same way, whatever its key;
- in free text (report.md) every absolute path found in the structured values is replaced by
  what the structured value became;
- anywhere in any text, the user's home folder is written ``~`` (a note such as "put the
  weights at ~/.cache/..." stays useful without naming the user).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path, PurePath
from typing import Any

# Keys whose values are local paths, relative or absolute (TrainConfig, ReportSettings, rows).
PATH_KEYS = frozenset(
    {"data", "out", "dataset_path", "path", "checkpoint", "real", "train", "classifier", "run_dir"}
)
# File names gen itself makes: safe to publish, and they say which file a row means.
_GEN_MADE = re.compile(r"(checkpoint-\d+\.pt|[0-9a-f]{16}-\d+c-\d+e-s-?\d+\.pt)")


def redact_path(value: str) -> str | None:
    """A local path as an export may show it: gen's own file name, or None."""
    name = PurePath(value).name
    return name if _GEN_MADE.fullmatch(name) else None


def _looks_like_a_path(value: str) -> bool:
    return os.path.isabs(value) or value.startswith("~")


def redact(value: Any, key: str | None = None) -> Any:
    """``value`` (JSON-like: dicts, lists, strings, numbers) without local paths."""
    if isinstance(value, dict):
        return {name: redact(item, name) for name, item in value.items()}
    if isinstance(value, list | tuple):
        return [redact(item) for item in value]
    if isinstance(value, str) and value and (key in PATH_KEYS or _looks_like_a_path(value)):
        return redact_path(value)
    if isinstance(value, str):
        return _without_home(value)
    return value


def _without_home(text: str) -> str:
    home = str(Path.home())
    return text.replace(home + os.sep, "~" + os.sep) if len(home) > 1 else text


def local_paths(value: Any, key: str | None = None) -> set[str]:
    """Every string in ``value`` that ``redact`` would change: what free text must not repeat."""
    if isinstance(value, dict):
        return set().union(*(local_paths(item, name) for name, item in value.items()))
    if isinstance(value, list | tuple):
        return set().union(*(local_paths(item) for item in value))
    if isinstance(value, str) and value and (key in PATH_KEYS or _looks_like_a_path(value)):
        return {value}
    return set()


def redact_text(text: str, paths: Iterable[str]) -> str:
    """``text`` with each of ``paths`` (and its resolved absolute form) replaced by what
    ``redact_path`` makes of it; longest first, so a folder inside another is not left half."""
    replacements: dict[str, str] = {}
    for path in paths:
        shown = redact_path(path) or "(a local path)"
        replacements[path] = shown
        if not os.path.isabs(path):
            replacements[os.path.abspath(path)] = shown
    for path in sorted(replacements, key=len, reverse=True):
        if len(path) > 1:
            text = text.replace(path, replacements[path])
    return _without_home(text)


def redact_row(row: dict[str, Any]) -> dict[str, Any]:
    """A database row as an export's SQL dump publishes it: ``redact``'s rule, except that the
    row's own ``path`` column (a checkpoint's file), which gen's schema requires (NOT NULL), is
    written ``''`` rather than NULL when the file is not one gen named. The name the user gave
    it may name a study; the row's iteration and SHA-256 still say which checkpoint it was."""
    published = redact(row)
    if row.get("path") is not None and published["path"] is None:
        published["path"] = ""
    return published
