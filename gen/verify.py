"""Checking an exported data set: what a consumer runs after downloading one.

    problems = verify_dataset("exports/pbc-synthetic")   # [] when everything is as exported

Every image file's MD5 is recomputed and compared with its class's MD5SUMS and with its row in
database.sql; every file must have a row and every row a file; counts and byte totals must
match manifest.json, and so must the SHA-256 of every other file the manifest lists.

Extra files inside class folders, and unlisted grid-*.png or plot-*.png, are errors (they
would pass for data), and so is any folder at the top level that is not a class (torchvision's
ImageFolder would take it for one); other extra files at the top level are not, so a publisher
may add LICENSE or CITATION.cff. images.csv (Croissant's records) and metadata.parquet (Hugging
Face's imagefolder labels, read with pyarrow) must each name every image once, with its class
and MD5; metadata.parquet's class labels must be the manifest's classes in its order.
README.md and index.html are meant to be edited and are not checksummed.

A data set comes from a stranger, so verifying one trusts none of it (SECURITY.md):

- It holds regular files and folders only. The folder is walked without following links, and
  a symbolic link, named pipe, socket or device anywhere in it is a problem and is never
  opened; every read goes through `open_inside`, which follows no link either and refuses
  anything but a regular file after opening it (so a swap after the walk is caught too).
- database.sql must be byte for byte what gen's dump writer (db/dump.py) writes for the rows
  it holds: db.dump.read_dump reads it line by line (never whole, never more than
  DUMP_MAX_BYTES), parses the rows with a reader of gen's own literals only, writes them again
  and compares. No SQL engine reads the file's text: the rows are inserted, as parameters, into
  a private in-memory SQLite database made from gen's own schema, where verify queries them.
  Verifying writes nothing anywhere.
- Class names, from the manifest and from the dump, must pass the rule class folders follow.
- croissant.json may point the Croissant loader only at files verify checks: gen's own JSON-LD
  context, relative paths and patterns inside the data set, each file once with its checksums,
  record sets that read images.csv and the image FileSet (_check_croissant).
- A text file is measured before it is read and refused if larger than gen could have made it
  (TEXT_BASE_BYTES, BYTES_PER_IMAGE); a file nothing claims is named with its size, never read.
"""

from __future__ import annotations

import csv
import fnmatch
import hashlib
import io
import json
import os
import re
import sqlite3
import stat
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

from tqdm import tqdm

from db.ddl import DIALECTS, render_ddl
from db.dump import DumpFormatError, read_dump
from db.models import Base
from gen.errors import GenError
from gen.export import (
    CARD_FILES,
    COPY_CHUNK,
    COPY_THREADS,
    CROISSANT_NAME,
    GRID_PREFIX,
    HF_METADATA_NAME,
    MANIFEST_FORMAT,
    MANIFEST_FORMAT_FAMILY,
    MANIFEST_NAME,
    MD5SUMS_NAME,
    METADATA_COLUMNS,
    METADATA_NAME,
    PLOT_PREFIX,
    SQL_DUMP_NAME,
    check_class_folder_name,
    parse_md5sums_line,
)
from gen.export.croissant import CONTEXT as CROISSANT_CONTEXT
from gen.export.files import metadata_parquet_schema
from gen.image_folder import check_distinct_class_names
from gen.text import printable

# A manifest lists a few dozen files; anything this large is not one.
MANIFEST_MAX_BYTES = 16 * 1024 * 1024
# The other text files verify reads grow with the images they describe: at most this many bytes
# per image file found on disk (a line of images.csv or MD5SUMS is under 600 bytes, a file
# object in croissant.json under 2 KB), plus TEXT_BASE_BYTES for the rest. Each file's size is
# checked before it is read, so a sparse 6 GB images.csv costs nothing.
TEXT_BASE_BYTES = 1 << 20
BYTES_PER_IMAGE = {METADATA_NAME: 1024, MD5SUMS_NAME: 1024, CROISSANT_NAME: 4096}
READ_BLOCK = 1 << 20

# ----------------------------------------------------------------------------- reading files

# Where the platform has them (it does on Linux and macOS): never follow a link, never wait
# for a writer on a named pipe, and open folders relative to their parent's descriptor.
_NO_FOLLOW = getattr(os, "O_NOFOLLOW", 0)
_FILE_FLAGS = os.O_RDONLY | _NO_FOLLOW | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
_FOLDER_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0)
_SPECIAL_KINDS = {
    stat.S_IFLNK: "a symbolic link",
    stat.S_IFIFO: "a named pipe (FIFO)",
    stat.S_IFSOCK: "a socket",
    stat.S_IFCHR: "a device file",
    stat.S_IFBLK: "a device file",
}


class NotARegularFile(OSError):
    """What open_inside raises for a link, a pipe, a device or any other special file."""


def open_inside(root: Path, relative: str) -> BinaryIO:
    """root/relative (a /-separated path) opened for reading in binary.

    Only a regular file reached through real folders opens: no link below root is followed
    (root itself may be one, the user's choice), a named pipe opens without waiting and is
    refused, and the file's type is checked on the open descriptor, so replacing it after the
    walk changes nothing. OSError (NotARegularFile for a special file) otherwise.
    """
    *folders, name = relative.split("/")
    if os.open in os.supports_dir_fd:
        parent = os.open(root, _FOLDER_FLAGS)
        try:
            for folder in folders:
                inner = os.open(folder, _FOLDER_FLAGS | _NO_FOLLOW, dir_fd=parent)
                os.close(parent)
                parent = inner
            descriptor = os.open(name, _FILE_FLAGS, dir_fd=parent)
        finally:
            os.close(parent)
    else:  # without dir_fd (Windows) the walk has refused linked folders already
        descriptor = os.open(root.joinpath(*folders, name), _FILE_FLAGS)
    try:
        if not stat.S_ISREG(os.fstat(descriptor).st_mode):
            raise NotARegularFile(f"{relative} is not a regular file")
        return os.fdopen(descriptor, "rb")
    except BaseException:
        os.close(descriptor)
        raise


def _hexdigest(file: BinaryIO, algorithm: str) -> tuple[str, int]:
    """(hex digest, bytes read) of the rest of file, read in blocks."""
    digest = hashlib.new(algorithm)
    size = 0
    while block := file.read(READ_BLOCK):
        digest.update(block)
        size += len(block)
    return digest.hexdigest(), size


def _read_text(root: Path, relative: str) -> str:
    """The file as UTF-8 text; OSError or UnicodeDecodeError."""
    with open_inside(root, relative) as file:
        return file.read().decode("utf-8")


class TooLarge(ValueError):
    """A file is larger than any gen writes for this data set; nothing of it was read."""


def _read_bounded(root: Path, relative: str, limit: int) -> bytes:
    """The file's bytes if it has at most ``limit`` (its size is checked before reading);
    OSError, or TooLarge."""
    with open_inside(root, relative) as file:
        size = os.fstat(file.fileno()).st_size
        data = file.read(limit + 1) if size <= limit else b""
    if size > limit or len(data) > limit:
        raise TooLarge(f"it has {max(size, len(data))} bytes, more than the {limit} it can need here")
    return data


def _text_limit(name: str, images: int) -> int:
    return TEXT_BASE_BYTES + BYTES_PER_IMAGE[name] * images


def _image_count(tree: _Tree) -> int:
    """The files in class folders (those the caps allow for), before the classes are known."""
    return sum(1 for relative in tree.files if "/" in relative and not relative.endswith(f"/{MD5SUMS_NAME}"))


@dataclass
class _Tree:
    """What a data set holds, links not followed: its regular files and folders (paths relative
    to the root, with /), the paths of everything else (each already reported), each folder's
    entries by name ("" for the root), and each file's size."""

    files: set[str] = field(default_factory=set)
    folders: set[str] = field(default_factory=set)
    refused: set[str] = field(default_factory=set)
    listing: dict[str, list[str]] = field(default_factory=dict)
    sizes: dict[str, int] = field(default_factory=dict)  # each regular file's, from the walk


def _walk(root: Path, problems: list[str]) -> _Tree:
    tree = _Tree()
    pending = [""]
    while pending:  # a loop, not recursion: a crafted folder may be nested thousands deep
        folder = pending.pop()
        try:
            with os.scandir(root / folder) as scanned:
                entries = sorted(scanned, key=lambda entry: entry.name)
        except OSError as error:
            problems.append(f"{folder or root}/ cannot be read: {error.strerror or error}")
            continue
        tree.listing[folder] = [entry.name for entry in entries]
        for entry in entries:
            relative = f"{folder}/{entry.name}" if folder else entry.name
            try:
                if entry.is_dir(follow_symlinks=False):
                    tree.folders.add(relative)
                    pending.append(relative)
                elif entry.is_file(follow_symlinks=False):
                    tree.files.add(relative)
                    tree.sizes[relative] = entry.stat(follow_symlinks=False).st_size
                else:
                    kind = _SPECIAL_KINDS.get(stat.S_IFMT(entry.stat(follow_symlinks=False).st_mode))
                    tree.refused.add(relative)
                    problems.append(
                        f"{relative} is {kind or 'a special file'}; a data set holds only regular files "
                        "and folders"
                    )
            except OSError as error:
                tree.refused.add(relative)
                problems.append(f"{relative} cannot be read: {error.strerror or error}")
    return tree


# ----------------------------------------------------------------------------- loading the dump


class DumpError(Exception):
    """database.sql is not a dump gen wrote, or is too large to read; the message, which follows
    the file's name, says why and where ("line 12 is not what gen writes: ...")."""


# gen writes about 180 bytes per image row (a 16,000-image dump is 2.8 MB): 1 GiB holds some
# 6 million images. A dump is never read whole, but its rows are loaded into memory for the checks.
DUMP_MAX_BYTES = 1 << 30


def load_dump(file: BinaryIO, dialect: Any) -> sqlite3.Connection:
    """A private in-memory SQLite database, made from gen's own schema (never from the file's
    text), holding the rows of the dump in file; DumpError if the dump is larger than
    DUMP_MAX_BYTES or is not byte for byte what gen writes for its rows (db.dump.read_dump).
    The rows are inserted as parameters: no SQL engine reads the file's text."""
    if not isinstance(dialect, str) or dialect not in DIALECTS:
        raise DumpError(
            f"cannot be read: its dialect {dialect!r} is not one gen writes ({', '.join(DIALECTS)})"
        )
    size = os.fstat(file.fileno()).st_size
    if size > DUMP_MAX_BYTES:
        raise DumpError(f"is {size} bytes; gen verify reads dumps of up to {DUMP_MAX_BYTES} bytes (1 GiB)")
    connection = sqlite3.connect(":memory:", isolation_level=None)
    try:
        connection.executescript(render_ddl("sqlite"))
        connection.execute("PRAGMA foreign_keys=ON")  # as a database loading the dump checks them
        connection.execute("BEGIN")
        inserts = {
            name: f"INSERT INTO {name} ({', '.join(table.columns.keys())}) "
            f"VALUES ({', '.join('?' * len(table.columns))})"
            for name, table in Base.metadata.tables.items()
        }
        for row in read_dump(file, dialect):
            try:
                connection.execute(inserts[row.table.name], row.values)
            except sqlite3.IntegrityError as error:  # a repeated id, a missing parent row
                raise DumpError(
                    f"line {row.line}: a row of {row.table.name} breaks gen's schema ({error})"
                ) from None
        connection.execute("COMMIT")
    except DumpFormatError as error:
        connection.close()
        raise DumpError(str(error)) from None
    except BaseException:
        connection.close()
        raise
    return connection


# ----------------------------------------------------------------------------- checking


def _digests_chunk(root: Path, relatives: list[str]) -> list[tuple[str | None, int, str | None]]:
    """(MD5, bytes, SHA-256) of each file, read once; (None, 0, None) where it cannot be read."""
    results: list[tuple[str | None, int, str | None]] = []
    for relative in relatives:
        try:
            with open_inside(root, relative) as file:
                md5, sha256, size = hashlib.md5(), hashlib.sha256(), 0
                while block := file.read(READ_BLOCK):
                    md5.update(block)
                    sha256.update(block)
                    size += len(block)
                results.append((md5.hexdigest(), size, sha256.hexdigest()))
        except OSError:
            results.append((None, 0, None))
    return results


def _hash_files(
    root: Path, relatives: list[str], progress: bool
) -> dict[str, tuple[str | None, int, str | None]]:
    chunks = [relatives[start : start + COPY_CHUNK] for start in range(0, len(relatives), COPY_CHUNK)]
    found: dict[str, tuple[str | None, int, str | None]] = {}
    with (
        tqdm(
            total=len(relatives), disable=not progress, unit="img", desc="verify", dynamic_ncols=True
        ) as bar,
        ThreadPoolExecutor(COPY_THREADS) as pool,
    ):
        for chunk, results in zip(chunks, pool.map(partial(_digests_chunk, root), chunks), strict=True):
            found.update(zip(chunk, results, strict=True))
            bar.update(len(chunk))
    return found


def _read_md5sums(root: Path, tree: _Tree, relative: str, problems: list[str]) -> dict[str, tuple[str, int]]:
    """name -> (md5, line number); malformed or repeated lines become problems."""
    entries: dict[str, tuple[str, int]] = {}
    if relative in tree.refused:
        return entries  # reported by the walk
    folder = relative.rsplit("/", 1)[0]
    try:
        text = _read_bounded(
            root, relative, _text_limit(MD5SUMS_NAME, len(tree.listing.get(folder, [])))
        ).decode()
    except OSError:
        problems.append(f"{relative} is missing")
        return entries
    except UnicodeDecodeError:
        problems.append(f"{relative} is not UTF-8 text")
        return entries
    except TooLarge as error:
        problems.append(f"{relative} is too large to be read: {error}")
        return entries
    for number, line in enumerate(text.splitlines(), start=1):
        parsed = parse_md5sums_line(line)
        if parsed is None:
            problems.append(f"{relative} line {number} is not in md5sum's format: {line[:80]!r}")
            continue
        md5, name = parsed
        if name in entries:
            problems.append(f"{relative} line {number} repeats {name} (first on line {entries[name][1]})")
            continue
        entries[name] = (md5, number)
    return entries


def _dump_images(
    connection: sqlite3.Connection, manifest: dict[str, Any], problems: list[str]
) -> dict[str, list[tuple[str, str]]]:
    """relative path -> [(md5, class name)] per image row; inconsistencies become problems."""
    for (name,) in connection.execute("SELECT name FROM class_names ORDER BY label"):
        try:
            check_class_folder_name(str(name))
        except GenError as error:
            problems.append(f"{SQL_DUMP_NAME} names a class {name!r} that cannot be a folder name: {error}")
    models = [row[0] for row in connection.execute("SELECT id FROM gan_architectures ORDER BY id")]
    if models != [manifest.get("model_id")]:
        problems.append(
            f"{SQL_DUMP_NAME} holds models {models} but {MANIFEST_NAME} says model {manifest.get('model_id')}"
        )
    rows: dict[str, list[tuple[str, str]]] = {}
    query = "SELECT i.file_path, i.md5, c.name FROM images i LEFT JOIN class_names c ON c.id = i.class_name"
    for file_path, md5, class_name in connection.execute(query):
        rows.setdefault(str(file_path), []).append((md5, class_name))
    total = sum(len(found) for found in rows.values())
    expected = manifest.get("image_rows", manifest.get("images"))
    if total != expected:
        problems.append(f"{SQL_DUMP_NAME} holds {total} image rows but {MANIFEST_NAME} says {expected}")
    return rows


def _check_listed_files(found: _DataSet) -> list[str]:
    """Every file the manifest lists is there with its size and SHA-256; no unlisted picture."""
    root, tree, listed = found.root, found.tree, found.listed
    problems: list[str] = []
    for name, expected in sorted(listed.items()):
        if name in tree.refused:
            continue  # reported by the walk
        if name not in tree.files:
            problems.append(f"{name} is missing (listed in {MANIFEST_NAME})")
            continue
        kind = name.rsplit("/", 1)[-1]  # metadata.csv, croissant.json or a class's MD5SUMS
        if kind in BYTES_PER_IMAGE and tree.sizes[name] > _text_limit(kind, _image_count(tree)):
            continue  # too large to be what gen wrote: reported by its own check, and not read
        try:
            with open_inside(root, name) as file:
                size = os.fstat(file.fileno()).st_size
                if name == SQL_DUMP_NAME and size > DUMP_MAX_BYTES:
                    continue  # refused from its size when it is loaded, and never read
                sha256 = _hexdigest(file, "sha256")[0] if size == expected.get("bytes") else None
        except OSError as error:
            problems.append(f"{name} cannot be read: {error.strerror or error}")
            continue
        if sha256 is None:
            problems.append(
                f"{name} changed: it has {size} bytes but {MANIFEST_NAME} says {expected.get('bytes')}"
            )
        elif sha256 != expected.get("sha256"):
            problems.append(f"{name} changed: its SHA-256 differs from the one in {MANIFEST_NAME}")
    for relative in sorted(tree.files):
        pictures = "/" not in relative and relative.startswith((GRID_PREFIX, PLOT_PREFIX))
        if pictures and relative.endswith(".png") and relative not in listed:
            problems.append(f"{relative}: extra file, not listed in {MANIFEST_NAME}")
    return problems


def _sources(in_md5sums: bool, has_row: bool) -> str:
    named = [name for name, present in ((MD5SUMS_NAME, in_md5sums), (SQL_DUMP_NAME, has_row)) if present]
    return " and ".join(named)


def _malformed(manifest: dict[str, Any]) -> str | None:
    """What is wrong with the manifest's shape, or None. Names must stay inside the data set."""
    classes, files = manifest.get("classes"), manifest.get("files")
    if not isinstance(classes, dict) or not all(isinstance(n, int) for n in classes.values()):
        return "classes must map each class name to its number of images"
    if not isinstance(files, dict) or not all(isinstance(entry, dict) for entry in files.values()):
        return "files must map each file name to its bytes and sha256"
    try:
        for name in classes:
            check_class_folder_name(name)
        check_distinct_class_names(classes)
    except GenError as error:
        return str(error).rstrip(".")
    for name in files:
        parts = PurePosixPath(name).parts
        if not parts or name.startswith("/") or ".." in parts or name in (MANIFEST_NAME, *CARD_FILES):
            return f"it lists {name!r}, which is not a data file inside the data set"
    return None


def _read_manifest(root: Path) -> Any:
    """manifest.json parsed; OSError, or ValueError if it is not JSON in UTF-8 of a sane size."""
    data = _read_bounded(root, MANIFEST_NAME, MANIFEST_MAX_BYTES)
    try:
        return json.loads(data.decode("utf-8"))
    except RecursionError:
        raise ValueError("it nests too deeply to be a manifest") from None


def read_manifest(path: str | Path) -> dict[str, Any]:
    """The data set's manifest.json, read as verify reads it; GenError if it cannot be."""
    try:
        manifest = _read_manifest(Path(path))
    except (OSError, ValueError) as error:
        raise GenError(f"{MANIFEST_NAME} in {path} cannot be read: {error}.") from None
    if not isinstance(manifest, dict):
        raise GenError(f"{MANIFEST_NAME} in {path} is not a gen data set manifest.")
    return manifest


def verify_dataset(path: str | Path, *, progress: bool = False) -> list[str]:
    """Every problem found in the data set at path, each one sentence naming the file; [] if none.

    GenError if path is not a folder at all.
    """
    # Names in a problem come from the data set: a terminal must not act on their control characters.
    return [printable(problem) for problem in _problems(Path(path), progress)]


class _NotVerifiable(Exception):
    """The data set cannot be checked at all; the message is the one problem reported."""


def _verifiable_manifest(root: Path, tree: _Tree) -> dict[str, Any]:
    """The manifest, read and of this gen's format and shape; _NotVerifiable saying why not."""
    if MANIFEST_NAME not in tree.files:
        raise _NotVerifiable(
            f"{MANIFEST_NAME} is missing: {root} is not a gen data set, or an incomplete one"
        )
    try:
        manifest = _read_manifest(root)
    except (OSError, ValueError) as error:
        raise _NotVerifiable(f"{MANIFEST_NAME} cannot be read: {error}") from None
    stated = manifest.get("format") if isinstance(manifest, dict) else None
    if isinstance(stated, str) and stated.startswith(MANIFEST_FORMAT_FAMILY) and stated != MANIFEST_FORMAT:
        raise _NotVerifiable(
            f"{MANIFEST_NAME} says format {stated}, an export by another version of gen; this gen verifies "
            f"{MANIFEST_FORMAT} (export the model again, or verify with the gen that made it)"
        )
    if stated != MANIFEST_FORMAT:
        raise _NotVerifiable(
            f"{MANIFEST_NAME} is not a gen data set manifest (format {MANIFEST_FORMAT} expected)"
        )
    malformed = _malformed(manifest)
    if malformed:
        raise _NotVerifiable(f"{MANIFEST_NAME} is malformed: {malformed}")
    return manifest


@dataclass
class _DataSet:
    """What verify knows of a data set with a sound manifest; the reading steps fill in the rest."""

    root: Path
    tree: _Tree
    manifest: dict[str, Any]
    progress: bool = False
    rows: dict[str, list[tuple[str, str]]] | None = None  # database.sql's image rows by path, if read
    files: dict[str, list[str]] = field(default_factory=dict)  # class -> its image files
    # class -> name -> (MD5, line) of its MD5SUMS
    md5sums: dict[str, dict[str, tuple[str, int]]] = field(default_factory=dict)
    # image file -> (MD5, bytes, SHA-256); (None, its size, None) where it was not read
    hashes: dict[str, tuple[str | None, int, str | None]] = field(default_factory=dict)

    @property
    def classes(self) -> dict[str, int]:
        return self.manifest["classes"]

    @property
    def listed(self) -> dict[str, Any]:
        return self.manifest["files"]

    @property
    def images(self) -> dict[str, str | None]:
        """Each image file in the class folders, with its MD5 (None where it was not read)."""
        return {relative: self.hashes[relative][0] for paths in self.files.values() for relative in paths}


def _problems(root: Path, progress: bool) -> list[str]:
    if not root.is_dir():  # the root may be a link to a folder: the user chose it
        raise GenError(f"no data set at {root}: it is not a folder.")
    problems: list[str] = []
    tree = _walk(root, problems)
    if MANIFEST_NAME in tree.refused:
        return problems
    try:
        manifest = _verifiable_manifest(root, tree)
    except _NotVerifiable as refusal:
        return [str(refusal)]
    found = _DataSet(root, tree, manifest, progress)
    # In this order: the reading steps (_read_*) fill in found for the checks after them.
    for step in (
        _check_listed_files,
        _read_dump,
        _check_top_level_folders,
        _read_class_folders,
        _check_class_images,
        _check_rows_have_files,
        _check_totals,
        _check_card_files,
        _check_metadata,
        _check_hf_metadata,
        _check_croissant,
    ):
        problems += step(found)
    return problems


def _read_dump(found: _DataSet) -> list[str]:
    """database.sql's image rows into found.rows, when the manifest lists it."""
    problems: list[str] = []
    if SQL_DUMP_NAME in found.listed and SQL_DUMP_NAME in found.tree.files:
        try:
            with open_inside(found.root, SQL_DUMP_NAME) as file:
                connection = load_dump(file, found.manifest.get("dialect"))
        except OSError as error:
            problems.append(f"{SQL_DUMP_NAME} cannot be read: {error.strerror or error}")
        except DumpError as error:
            problems.append(f"{SQL_DUMP_NAME} {error}")
        else:
            found.rows = _dump_images(connection, found.manifest, problems)
            connection.close()
    elif SQL_DUMP_NAME in found.tree.files and SQL_DUMP_NAME not in found.listed:
        problems.append(f"{SQL_DUMP_NAME} is not listed in {MANIFEST_NAME}")
    return problems


def _check_top_level_folders(found: _DataSet) -> list[str]:
    """Every folder at the top level is a class of the manifest (ImageFolder takes each for one)."""
    return [
        f"{name}/: unexpected folder (not a class of this data set)"
        for name in found.tree.listing[""]
        if name in found.tree.folders and name not in found.classes
    ]


def _read_class_folders(found: _DataSet) -> list[str]:
    """Each class folder's image files into found.files, its MD5SUMS into found.md5sums, and the
    digests of the files these or the dump claim into found.hashes."""
    problems: list[str] = []
    tree = found.tree
    for class_name in found.classes:
        found.files[class_name], found.md5sums[class_name] = [], {}
        if class_name in tree.refused:
            continue  # reported by the walk
        if class_name not in tree.folders:
            problems.append(
                f"{class_name}/ is missing ({MANIFEST_NAME} lists {found.classes[class_name]} images)"
            )
            continue
        for name in tree.listing.get(class_name, []):
            relative = f"{class_name}/{name}"
            if relative in tree.folders:
                problems.append(f"{relative}/: unexpected folder inside a class folder")
            elif relative in tree.files and name != MD5SUMS_NAME:
                found.files[class_name].append(relative)
        found.md5sums[class_name] = _read_md5sums(found.root, tree, f"{class_name}/{MD5SUMS_NAME}", problems)
    # Only a file that MD5SUMS or the dump claims is read: one claimed by nothing is named with
    # its size from the walk and never hashed (a sparse 100 GB file would take over an hour).
    found.hashes = {
        relative: (None, tree.sizes[relative], None) for paths in found.files.values() for relative in paths
    }
    claimed = [
        relative
        for class_name, paths in found.files.items()
        for relative in paths
        if relative.split("/", 1)[1] in found.md5sums[class_name] or relative in (found.rows or {})
    ]
    found.hashes.update(_hash_files(found.root, claimed, found.progress))
    return problems


def _check_class_images(found: _DataSet) -> list[str]:
    """Each class's image files against its MD5SUMS and its rows in the dump, and their number
    against the manifest's."""
    problems: list[str] = []
    tree = found.tree
    for class_name, paths in found.files.items():
        on_disk = {relative.split("/", 1)[1]: relative for relative in paths}
        entries = found.md5sums[class_name]
        class_rows = {
            relative.split("/", 1)[1]: rows
            for relative, rows in (found.rows or {}).items()
            if relative.split("/", 1)[0] == class_name and "/" in relative
        }
        for name in sorted(set(on_disk) | set(entries) | set(class_rows)):
            relative = f"{class_name}/{name}"
            if name in on_disk:
                problems += _check_image(found, relative, entries.get(name), class_rows.get(name))
            elif relative not in tree.refused and class_name not in tree.refused:
                named_by = _sources(name in entries, name in class_rows)
                problems.append(f"{relative} is missing (listed in {named_by})")
        expected = found.classes.get(class_name)
        if class_name not in tree.refused and len(paths) != expected:
            problems.append(
                f"{class_name}/ holds {len(paths)} image files but {MANIFEST_NAME} says {expected}"
            )
    return problems


def _check_image(
    found: _DataSet, relative: str, entry: tuple[str, int] | None, rows: list[tuple[str, str]] | None
) -> list[str]:
    """One image file against its MD5SUMS line (md5, line number) and its rows in the dump
    (md5, class name): it must have one or the other, and its MD5 must be what both say."""
    class_name = relative.split("/", 1)[0]
    md5, size, _ = found.hashes[relative]
    has_no_row = found.rows is not None and rows is None
    if entry is None and rows is None:
        unlisted = (
            f"extra file, not listed in {MD5SUMS_NAME} and no row in {SQL_DUMP_NAME}"
            if has_no_row
            else f"not listed in {class_name}/{MD5SUMS_NAME}"
        )
        return [f"{relative}: {unlisted} ({size} bytes, not read)"]
    if md5 is None:
        return [f"{relative} cannot be read"]
    problems = [f"{relative} has no row in {SQL_DUMP_NAME}"] if has_no_row else []
    claims = {}
    if entry is not None:
        claims[f"{class_name}/{MD5SUMS_NAME} (line {entry[1]})"] = entry[0]
    for row_md5, row_class in rows or []:
        claims[SQL_DUMP_NAME] = row_md5
        if row_class != class_name:
            problems.append(f"{relative}: its row in {SQL_DUMP_NAME} names class {row_class!r}")
    wrong = {source: claimed for source, claimed in claims.items() if claimed != md5}
    if wrong:
        by_value: dict[str, list[str]] = {}
        for source, claimed in wrong.items():
            by_value.setdefault(claimed, []).append(source)
        said = "; ".join(
            f"{' and '.join(sources)} {'say' if len(sources) > 1 else 'says'} {claimed}"
            for claimed, sources in by_value.items()
        )
        what = "the file changed" if len(wrong) == len(claims) else "a checksum record changed"
        problems.append(f"{relative}: MD5 is {md5} but {said} ({what})")
    return problems


def _check_rows_have_files(found: _DataSet) -> list[str]:
    """Every image row of the dump names a file in a class folder."""
    return [
        f"{relative} is missing (has a row in {SQL_DUMP_NAME})"
        for relative in sorted(found.rows or {})
        if relative.split("/", 1)[0] not in found.files or "/" not in relative
    ]


def _check_totals(found: _DataSet) -> list[str]:
    """The image files and their bytes add up to the manifest's figures."""
    paths = [relative for paths in found.files.values() for relative in paths]
    total_bytes = sum(found.hashes[relative][1] for relative in paths)
    manifest = found.manifest
    if len(paths) != manifest.get("images"):
        return [
            f"the data set holds {len(paths)} image files but {MANIFEST_NAME} says {manifest.get('images')}"
        ]
    if total_bytes != manifest.get("image_bytes"):
        return [f"the images hold {total_bytes} bytes but {MANIFEST_NAME} says {manifest.get('image_bytes')}"]
    return []


def _check_card_files(found: _DataSet) -> list[str]:
    return [
        f"{name} is missing"
        for name in CARD_FILES
        if name not in found.tree.files and name not in found.tree.refused
    ]


# What gen writes in croissant.json's distribution, by @type: any other key (containedIn, an
# alias spelled with a prefix) could point mlcroissant at other bytes, so it is a problem.
_CROISSANT_KEYS = {
    "cr:FileObject": {
        "@type", "@id", "name", "description", "contentUrl", "contentSize", "encodingFormat", "md5", "sha256"
    },
    "cr:FileSet": {"@type", "@id", "name", "description", "encodingFormat", "includes", "excludes"},
}  # fmt: skip
_JSON_LD_KEYWORDS = {"@type", "@id", "@value", "@language"}
_PERCENT_ESCAPE = re.compile(r"%[0-9A-Fa-f]{2}")


def _inside(path: Any) -> bool:
    """Whether a contentUrl or FileSet pattern is a plain relative path inside the data set: no
    scheme or drive (no ':'), no leading '/', no '.', '..' or empty part, no backslash, no
    %-escape and no control character."""
    if not isinstance(path, str) or not path:
        return False
    if any(c in "\\:" or not c.isprintable() for c in path) or _PERCENT_ESCAPE.search(path):
        return False
    return all(part not in ("", ".", "..") for part in path.split("/"))


def _json_nodes(value: Any, where: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """(where, object) for every JSON object inside value, depth first, without recursion."""
    pending = [(where, value)]
    while pending:
        where, value = pending.pop()
        if isinstance(value, dict):
            yield where, value
            pending.extend((f"{where}.{key}", inner) for key, inner in reversed(value.items()))
        elif isinstance(value, list):
            pending.extend((f"{where}[{index}]", inner) for index, inner in reversed(list(enumerate(value))))


def _check_croissant(found: _DataSet) -> list[str]:
    """croissant.json is the document gen writes: its own JSON-LD context; a distribution of
    FileObjects (every image file once, with its MD5 and SHA-256, and images.csv) and FileSets
    whose paths and patterns stay inside the data set; record sets that read only images.csv
    and those FileSets. Whatever mlcroissant would load from it is then a file verify checked."""
    root, tree, listed = found.root, found.tree, found.listed
    images = {relative: found.hashes[relative] for relative in found.images}
    problems: list[str] = []
    if not _required_file(CROISSANT_NAME, tree, listed, problems):
        return problems
    try:
        data = _read_bounded(root, CROISSANT_NAME, _text_limit(CROISSANT_NAME, len(images)))
        document = json.loads(data.decode("utf-8"))
    except TooLarge as error:
        problems.append(f"{CROISSANT_NAME} is too large to be read: {error}")
        return problems
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        document = None
    distribution = document.get("distribution") if isinstance(document, dict) else None
    record_sets = document.get("recordSet") if isinstance(document, dict) else None
    if not isinstance(distribution, list) or not isinstance(record_sets, list):
        problems.append(
            f"{CROISSANT_NAME} is not Croissant JSON-LD with a distribution of files and record sets"
        )
        return problems
    if document.get("@context") != CROISSANT_CONTEXT:
        problems.append(
            f"{CROISSANT_NAME} has another JSON-LD @context than gen writes (a context decides what "
            "every key means)"
        )
        return problems
    _check_json_ld_keys(document, problems)
    ids = _check_node_ids(document, problems)
    metadata_ids, file_sets, described = _check_distribution(root, tree, distribution, images, problems)
    _check_record_sets(record_sets, ids, metadata_ids, file_sets, problems)
    for relative in sorted(set(images) - described):
        problems.append(f"{relative} is not described in {CROISSANT_NAME}")
    return problems


def _check_json_ld_keys(document: dict[str, Any], problems: list[str]) -> None:
    """Each property has one spelling: no key with a prefix (sc:contentUrl is contentUrl) but
    the Responsible-AI texts at the top, no JSON-LD keyword that nests a context, a graph or a
    base, and no @context but the top one."""
    for where, node in _json_nodes(document, "croissant"):
        if where.startswith("croissant.@context") or re.fullmatch(r"croissant\.distribution\[\d+\]", where):
            continue  # the context is compared whole; _check_distribution allows only gen's keys there
        for key in node:
            top_level_text = where == "croissant" and (key == "@context" or key.startswith("rai:"))
            if top_level_text or key in _JSON_LD_KEYWORDS or (":" not in key and not key.startswith("@")):
                continue
            problems.append(f"{CROISSANT_NAME}: {where} has the key {key!r}, which gen does not write")


def _check_node_ids(document: dict[str, Any], problems: list[str]) -> set[str]:
    """The @ids of the nodes the document defines, each once (JSON-LD merges two nodes with one
    @id, so a second definition could add a contentUrl to the first)."""
    ids: set[str] = set()
    for where, node in _json_nodes(document, "croissant"):
        if "@id" in node and set(node) != {"@id"}:
            if not isinstance(node["@id"], str) or node["@id"] in ids:
                problems.append(f"{CROISSANT_NAME}: {where} defines the @id {node['@id']!r} a second time")
            else:
                ids.add(node["@id"])
    return ids


def _check_distribution(
    root: Path,
    tree: _Tree,
    distribution: list[Any],
    images: dict[str, tuple[str | None, int, str | None]],
    problems: list[str],
) -> tuple[set[str], set[str], set[str]]:
    """(the @ids of images.csv's FileObject, the @ids of the FileSets, the files described),
    the distribution's problems reported."""
    metadata_ids: set[str] = set()
    file_sets: set[str] = set()
    described: set[str] = set()
    for index, entry in enumerate(distribution):
        kind = entry.get("@type") if isinstance(entry, dict) else None
        if kind not in _CROISSANT_KEYS:
            problems.append(f"{CROISSANT_NAME}: distribution[{index}] is not a cr:FileObject or cr:FileSet")
            continue
        name = f"{kind.removeprefix('cr:')} {entry.get('@id')!r}"
        unknown = sorted(set(entry) - _CROISSANT_KEYS[kind])
        if unknown:
            problems.append(f"{CROISSANT_NAME}: {name} has {', '.join(unknown)}, which gen does not write")
        if kind == "cr:FileSet":
            file_sets.add(entry.get("@id"))
            _check_file_set(tree, name, entry, set(images), problems)
            continue
        url = entry.get("contentUrl")
        if not _inside(url):
            problems.append(
                f"{CROISSANT_NAME}: {name} has contentUrl {url!r}, which is not a relative path inside the "
                "data set"
            )
        elif url in described:
            problems.append(f"{CROISSANT_NAME} describes {url} a second time")
        elif url == METADATA_NAME:
            described.add(url)
            metadata_ids.add(entry.get("@id"))
            if tree.sizes.get(METADATA_NAME, 0) > _text_limit(METADATA_NAME, len(images)):
                continue  # reported as too large, and not read
            md5, _, sha256 = _digests_chunk(root, [METADATA_NAME])[0]
            if md5 is None:
                continue  # reported as missing or unreadable with the listed files
            if (entry.get("md5"), entry.get("sha256")) != (md5, sha256):
                problems.append(f"{CROISSANT_NAME}: the checksums of {METADATA_NAME} are not the file's")
        elif url not in images:
            problems.append(f"{CROISSANT_NAME} describes {url!r}, not an image of the data set")
        else:
            described.add(url)
            md5, _, sha256 = images[url]
            if md5 is not None and (entry.get("md5"), entry.get("sha256")) != (md5, sha256):
                problems.append(f"{CROISSANT_NAME}: the checksums of {url} differ from the file's")
    if len(metadata_ids) != 1:
        problems.append(f"{CROISSANT_NAME} does not describe {METADATA_NAME} as one FileObject")
    return metadata_ids, file_sets, described


def _check_file_set(
    tree: _Tree, name: str, entry: dict[str, Any], images: set[str], problems: list[str]
) -> None:
    """The FileSet's includes and excludes patterns stay inside the data set, and together take
    in the image files and nothing else (mlcroissant matches them with fnmatch, * crossing /)."""
    patterns: dict[str, list[str]] = {}
    for key in ("includes", "excludes"):
        value = entry.get(key, [] if key == "excludes" else None)
        value = [value] if isinstance(value, str) else value
        if not isinstance(value, list) or (key == "includes" and not value):
            problems.append(f"{CROISSANT_NAME}: {name} has no {key} patterns")
            return
        outside = [pattern for pattern in value if not _inside(pattern)]
        if outside:
            problems.append(
                f"{CROISSANT_NAME}: {name} {key} {outside[0]!r}, which is not a pattern inside the data set"
            )
            return
        patterns[key] = value

    def matches(key: str, relative: str) -> bool:
        return any(fnmatch.fnmatchcase(relative, pattern) for pattern in patterns[key])

    taken = {
        relative
        for relative in tree.files
        if matches("includes", relative) and not matches("excludes", relative)
    }
    if taken - images:
        problems.append(
            f"{CROISSANT_NAME}: {name} takes in {len(taken - images)} files that are not images of the data "
            f"set, such as {min(taken - images)}"
        )
    if images - taken:
        problems.append(
            f"{CROISSANT_NAME}: {name} leaves out {len(images - taken)} images, such as {min(images - taken)}"
        )


def _check_record_sets(
    record_sets: list[Any], ids: set[str], metadata_ids: set[str], file_sets: set[str], problems: list[str]
) -> None:
    """Record sets read only images.csv and the FileSets, and refer only to nodes the document
    defines; each field named like a column of images.csv reads that column."""
    metadata_id = next(iter(metadata_ids), None)
    for where, node in _json_nodes(record_sets, "recordSet"):
        for key, reads in (("fileObject", metadata_ids), ("fileSet", file_sets)):
            if key in node:
                reference = node[key]
                target = (
                    reference.get("@id")
                    if isinstance(reference, dict) and set(reference) == {"@id"}
                    else None
                )
                if target not in reads:
                    what = METADATA_NAME if key == "fileObject" else "a FileSet of the distribution"
                    problems.append(f"{CROISSANT_NAME}: {where}.{key} is {reference!r}, not {what}")
        if set(node) == {"@id"} and node["@id"] not in ids:
            problems.append(f"{CROISSANT_NAME}: {where} refers to {node['@id']!r}, which it does not define")
        if node.get("@type") == "cr:Field" and node.get("name") in METADATA_COLUMNS[1:]:
            expected = {"fileObject": {"@id": metadata_id}, "extract": {"column": node["name"]}}
            if node.get("source") != expected:
                problems.append(
                    f"{CROISSANT_NAME}: field {node.get('@id')!r} does not read the column {node['name']} of "
                    f"{METADATA_NAME}"
                )


def _required_file(name: str, tree: _Tree, listed: dict[str, Any], problems: list[str]) -> bool:
    """Whether the data set's file ``name`` is there to be checked; says so when it is missing or
    unlisted (a refused or listed-but-missing file is reported elsewhere)."""
    if name in tree.refused:
        return False  # reported by the walk
    if name not in tree.files:
        if name not in listed:  # else reported with the files the manifest lists
            problems.append(f"{name} is missing")
        return False
    if name not in listed:
        problems.append(f"{name} is not listed in {MANIFEST_NAME}")
    return True


def _check_metadata(found: _DataSet) -> list[str]:
    """images.csv names every image file once, with its class folder as label, its MD5, the
    manifest's model and numbers in the other columns."""
    root, tree, listed, images = found.root, found.tree, found.listed, found.images
    model_id = found.manifest.get("model_id")
    problems: list[str] = []
    if not _required_file(METADATA_NAME, tree, listed, problems):
        return problems
    try:
        text = _read_bounded(root, METADATA_NAME, _text_limit(METADATA_NAME, len(images))).decode("utf-8")
        rows = list(csv.reader(io.StringIO(text, newline="")))
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        problems.append(f"{METADATA_NAME} cannot be read: {error}")
        return problems
    except TooLarge as error:
        problems.append(f"{METADATA_NAME} is too large to be read: {error}")
        return problems
    if not rows or tuple(rows[0]) != METADATA_COLUMNS:
        problems.append(f"{METADATA_NAME} does not start with the header {','.join(METADATA_COLUMNS)}")
        return problems
    seen: set[str] = set()
    for line, row in enumerate(rows[1:], start=2):
        if len(row) != len(METADATA_COLUMNS):
            problems.append(f"{METADATA_NAME} line {line} has {len(row)} fields, not {len(METADATA_COLUMNS)}")
            continue
        file_name, label, md5 = row[0], row[1], row[2]
        # The numbers are digits only: a cell a spreadsheet would run (=, +, -, @) is not one.
        numbers = dict(zip(METADATA_COLUMNS[3:], row[3:], strict=True))
        wrong = [
            (name, value) for name, value in numbers.items() if not (value.isascii() and value.isdigit())
        ]
        if wrong:
            problems.append(f"{METADATA_NAME} line {line}: {wrong[0][0]} is {wrong[0][1]!r}, not a number")
        elif numbers["model_id"] != str(model_id):
            problems.append(
                f"{METADATA_NAME} line {line} names model {numbers['model_id']}, but {MANIFEST_NAME} "
                f"says {model_id}"
            )
        if file_name not in images:
            problems.append(f"{METADATA_NAME} line {line} names {file_name!r}, not an image of the data set")
        elif file_name in seen:
            problems.append(f"{METADATA_NAME} line {line} names {file_name} a second time")
        elif label != file_name.split("/", 1)[0]:
            problems.append(f"{METADATA_NAME} line {line} gives {file_name} the label {label!r}")
        elif images[file_name] is not None and md5 != images[file_name]:
            problems.append(
                f"{METADATA_NAME} line {line}: MD5 of {file_name} is {images[file_name]}, not {md5}"
            )
        seen.add(file_name)
    for relative in sorted(set(images) - seen):
        problems.append(f"{relative} has no line in {METADATA_NAME}")
    return problems


def _check_hf_metadata(found: _DataSet) -> list[str]:
    """metadata.parquet has the schema gen writes (its label a ClassLabel of the manifest's
    classes, in order) and names every image file once, with its class's index and its MD5."""
    import pyarrow
    import pyarrow.parquet

    root, tree, listed, images = found.root, found.tree, found.listed, found.images
    class_names = list(found.classes)
    problems: list[str] = []
    if not _required_file(HF_METADATA_NAME, tree, listed, problems):
        return problems
    try:
        with open_inside(root, HF_METADATA_NAME) as file:
            table = pyarrow.parquet.read_table(file, use_threads=False)
    except (OSError, ValueError, pyarrow.ArrowException) as error:
        problems.append(f"{HF_METADATA_NAME} cannot be read: {error}")
        return problems
    if not table.schema.equals(metadata_parquet_schema(class_names), check_metadata=True):
        problems.append(
            f"{HF_METADATA_NAME} does not have the columns {', '.join(METADATA_COLUMNS)} with the class "
            f"labels {', '.join(class_names)}"
        )
        return problems
    columns = (table.column(name).to_pylist() for name in ("file_name", "label", "md5"))
    seen: set[str] = set()
    for row, (file_name, label, md5) in enumerate(zip(*columns, strict=True), start=1):
        if file_name not in images:
            problems.append(f"{HF_METADATA_NAME} row {row} names {file_name!r}, not an image of the data set")
        elif file_name in seen:
            problems.append(f"{HF_METADATA_NAME} row {row} names {file_name} a second time")
        elif (
            label is None
            or not 0 <= label < len(class_names)
            or class_names[label] != file_name.split("/")[0]
        ):
            problems.append(f"{HF_METADATA_NAME} row {row} gives {file_name} the label {label!r}")
        elif images[file_name] is not None and md5 != images[file_name]:
            problems.append(
                f"{HF_METADATA_NAME} row {row}: MD5 of {file_name} is {images[file_name]}, not {md5}"
            )
        seen.add(file_name)
    for relative in sorted(set(images) - seen):
        problems.append(f"{relative} has no row in {HF_METADATA_NAME}")
    return problems
