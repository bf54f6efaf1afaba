"""Putting a data set in place: the target checked, a hidden staging folder, the atomic move."""

from __future__ import annotations

import ctypes
import errno
import glob
import json
import os
import secrets
import shutil
import tempfile
from pathlib import Path

from gen.errors import GenError
from gen.export.layout import MANIFEST_FORMAT_FAMILY, MANIFEST_NAME
from gen.runtime import left_by_a_dead_process


def is_dataset(path: Path) -> bool:
    """Whether path is a folder gen exported (its manifest says so)."""
    try:
        manifest = json.loads((path / MANIFEST_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(manifest, dict) and str(manifest.get("format", "")).startswith(MANIFEST_FORMAT_FAMILY)


def check_target(out: Path, *, force: bool, archive: bool) -> None:
    if out.exists() or out.is_symlink():
        if not force:
            raise GenError(f"{out} already exists; choose another --out or replace it with --force.")
        if not out.is_dir() or out.is_symlink() or (any(out.iterdir()) and not is_dataset(out)):
            raise GenError(
                f"{out} exists and is not a gen data set; refusing to replace it, even with --force."
            )
    if archive and not force:
        for path in archive_paths(out):
            if path.exists():
                raise GenError(f"{path} already exists; choose another --out or replace it with --force.")


def archive_paths(out: Path) -> tuple[Path, Path]:
    archive = out.with_name(out.name + ".tar.gz")
    return archive, archive.with_name(archive.name + ".sha256")


def _remove_stale_staging(out: Path) -> None:
    """Remove what earlier exports to ``out`` left when their process was killed: hidden staging
    folders and partial archives, ``.<name>.<pid>.<token>.partial`` and ``...tar.gz.partial``."""
    for stale in out.parent.glob(f".{glob.escape(out.name)}.*.partial"):
        if not left_by_a_dead_process(stale.name[len(out.name) + 2 :].split(".")[0]):
            continue
        if stale.is_dir() and not stale.is_symlink():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            stale.unlink(missing_ok=True)


def make_staging(out: Path) -> Path:
    """The hidden folder beside out that the data set is built in."""
    parent = out.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        _remove_stale_staging(out)
        # Not tempfile.mkdtemp: its folder is private (0700), and this one becomes the data set.
        # The pid in the name tells a later export whether its process is gone.
        staging = parent / f".{out.name}.{os.getpid()}.{secrets.token_hex(6)}.partial"
        staging.mkdir()
        return staging
    except (FileExistsError, NotADirectoryError):
        blocking = next((p for p in (parent, *parent.parents) if p.exists() and not p.is_dir()), parent)
        raise GenError(f"cannot create the data set {out}: {blocking} is a file, not a folder.") from None
    except OSError as error:
        reason = (error.strerror or str(error)).lower()
        raise GenError(f"cannot create the data set {out}: {reason} ({error.filename or parent}).") from None


_RENAME_NOREPLACE, _RENAME_EXCHANGE = 1, 2  # renameat2(2) flags
_AT_FDCWD = -100


def _renameat2(source: Path, target: Path, flags: int) -> bool:
    """Linux's renameat2(source, target, flags); False where the system or file system has none."""
    try:
        function = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    if function(_AT_FDCWD, os.fsencode(source), _AT_FDCWD, os.fsencode(target), flags) == 0:
        return True
    error = ctypes.get_errno()
    if error in (errno.ENOSYS, errno.EINVAL):
        return False
    raise OSError(error, os.strerror(error), str(target))


def move_into_place(staging: Path, out: Path, *, force: bool) -> None:
    """Publish the finished staging folder as ``out``.

    Without --force the "already exists" rule holds at the moment of the move, not only when
    the export started: of two exports racing to one target, the second is refused. With
    --force the old data set and the new one swap places in one step (RENAME_EXCHANGE), so
    there is no moment without a complete data set at ``out``; the old one is then removed.
    """
    exists = GenError(f"{out} already exists; choose another --out or replace it with --force.")
    if not force or not out.exists():
        try:
            if _renameat2(staging, out, _RENAME_NOREPLACE):
                return
            out.mkdir()  # claims the name where renameat2 is missing; the rename replaces it
        except FileExistsError:
            raise exists from None
        os.rename(staging, out)
        return
    if _renameat2(staging, out, _RENAME_EXCHANGE):
        shutil.rmtree(staging, ignore_errors=True)  # the old data set, now at the staging path
        return
    # No atomic exchange here: move the old one aside first; a crash between the two renames
    # leaves it whole in the hidden .<name>.*.old folder.
    old = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".old"))
    os.rename(out, old / out.name)
    os.rename(staging, out)
    shutil.rmtree(old, ignore_errors=True)
