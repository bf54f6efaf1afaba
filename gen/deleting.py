"""Deleting the files a record names, and only those (``--delete-files``).

A row names each file it made or registered together with a hash of its bytes. A file is
deleted only while it still has those bytes: one replaced or edited since is somebody's work
now, so it is left in place and named. Folders are never emptied, only removed once nothing
is left in them (``os.rmdir``), and only when a deleted file was inside them.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from gen.errors import GenError

SHOWN = 3  # names listed per folder that stays, and changed files named


@dataclass(frozen=True)
class FileDeletion:
    """What deleting a record's files does: computed first (to show and ask), then carried out."""

    files: dict[Path, str]  # file -> the hash recorded for it; only files still holding it
    changed: tuple[Path, ...] = ()  # recorded, but their bytes differ now: left in place
    missing: int = 0  # recorded, already gone
    folders: tuple[Path, ...] = ()  # left empty once the files go: removed, deepest first
    kept: dict[Path, tuple[str, ...]] = field(default_factory=dict)  # folder that stays -> what it holds

    def describe_kept(self) -> str:
        """ "/a (gen.db, notes.txt), /a/b (x.csv)": the folders that stay and what keeps them."""
        return ", ".join(f"{folder} ({_names(held)})" for folder, held in self.kept.items())

    def describe_changed(self) -> str:
        shown = ", ".join(str(path) for path in self.changed[:SHOWN])
        more = len(self.changed) - SHOWN
        return shown + (f" and {more} more" if more > 0 else "")


@dataclass(frozen=True)
class Deleted:
    files: int
    folders: int
    changed: tuple[Path, ...]  # changed between planning and deleting: left in place


def file_hash(path: Path, algorithm: str) -> str | None:
    """The file's hex digest, or None when it is gone or cannot be read."""
    digest = hashlib.new(algorithm)
    try:
        with open(path, "rb") as file:
            for block in iter(lambda: file.read(1 << 20), b""):
                digest.update(block)
    except OSError:
        return None
    return digest.hexdigest()


def plan_deletion(
    recorded: Iterable[tuple[str | Path, str]], algorithm: str, *, folders_under: Path | None = None
) -> FileDeletion:
    """Which of the recorded (file, hash) pairs may go: those whose bytes still have the hash.

    ``folders_under``: also remove the folders below (and including) this one that only held
    deleted files; without it no folder is touched.
    """
    files: dict[Path, str] = {}
    changed: list[Path] = []
    missing = 0
    for name, expected in recorded:
        path = Path(name)
        if not (path.is_file() or path.is_symlink()):
            missing += 1
        elif file_hash(path, algorithm) == expected:
            files[path] = expected
        else:
            changed.append(path)
    folders, kept = ((), {}) if folders_under is None else _emptied_folders(folders_under, set(files))
    return FileDeletion(files, tuple(changed), missing, tuple(folders), kept)


def carry_out(deletion: FileDeletion, algorithm: str) -> Deleted:
    """Delete the planned files, each hashed once more just before (a file changed since it was
    planned stays), then the planned folders that are still empty."""
    removed, changed = 0, []
    for path, expected in deletion.files.items():
        if file_hash(path, algorithm) != expected:
            changed.append(path)
            continue
        try:
            path.unlink()
            removed += 1
        except FileNotFoundError:
            pass
        except OSError as error:
            raise GenError(
                f"deleted {removed} files, then could not delete {path}: {error.strerror or error}; "
                "the rest are still there."
            ) from None
    folders = 0
    for folder in deletion.folders:
        try:
            os.rmdir(folder)  # only ever an empty folder
            folders += 1
        except OSError:
            pass  # something was put there meanwhile: it stays
    return Deleted(removed, folders, tuple(changed))


def _emptied_folders(root: Path, removed: set[Path]) -> tuple[list[Path], dict[Path, tuple[str, ...]]]:
    """(folders under root, root included, that hold only removed files, deepest first; the
    folders holding removed files that stay, with what else they hold)."""
    holding = {parent for path in removed for parent in path.parents}
    emptied: list[Path] = []
    kept: dict[Path, tuple[str, ...]] = {}

    def ends_up_empty(folder: Path) -> bool:
        left = []
        for entry in sorted(folder.iterdir()):
            if entry in removed:
                continue
            if entry in holding and entry.is_dir() and not entry.is_symlink() and ends_up_empty(entry):
                continue
            left.append(entry.name + ("/" if entry.is_dir() else ""))
        if left:
            kept[folder] = tuple(left)
            return False
        emptied.append(folder)
        return True

    if root in holding and root.is_dir():
        ends_up_empty(root)
    return emptied, dict(sorted(kept.items()))


def _names(held: tuple[str, ...] | Mapping[str, object]) -> str:
    names = list(held)
    more = len(names) - SHOWN
    return ", ".join(names[:SHOWN]) + (f" and {more} more" if more > 0 else "")
