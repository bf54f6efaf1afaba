"""Checking an exported data set: what a consumer runs after downloading one.

    problems = verify_dataset("exports/pbc-synthetic")   # [] when everything is as exported

Every image file's MD5 is recomputed and compared with its class's MD5SUMS and with its row in
database.sql; every file must have a row and every row a file; counts and byte totals must
match manifest.json, and so must the SHA-256 of every other file the manifest lists. The dump
is checked by loading it into a temporary in-memory SQLite database. A PostgreSQL dump loads
there too: its two PostgreSQL-only kinds of statement (the leading SET lines and the closing
setval calls) are skipped and stood in for, everything else (schema, every row, the
transaction) runs as written.

Extra files inside class folders, grids/ or plots/ are errors (they would pass for data);
extra files at the top level are not, so a publisher may add LICENSE or CITATION.cff.
README.md and index.html are meant to be edited and are not checksummed.
"""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePosixPath
from typing import Any

from tqdm import tqdm

from gen.checkpoint import file_sha256
from gen.errors import GenError
from gen.export import (
    CARD_FILES,
    COPY_CHUNK,
    COPY_THREADS,
    GRIDS_DIR,
    MANIFEST_FORMAT,
    MANIFEST_NAME,
    MD5SUMS_NAME,
    PLOTS_DIR,
    SQL_DUMP_NAME,
    check_class_folder_name,
    parse_md5sums_line,
)

_SET_STATEMENT = re.compile(r"\s*SET\s", re.IGNORECASE)


class DumpError(Exception):
    """The dump does not load; the message names the line."""


def _statements(sql: str) -> Iterator[tuple[int, str]]:
    """(first line number, statement) for each complete statement, split by SQLite's tokenizer."""
    buffer: list[str] = []
    first = 1
    for number, line in enumerate(sql.splitlines(keepends=True), start=1):
        if not buffer:
            if not line.strip() or line.lstrip().startswith("--"):
                continue
            first = number
        buffer.append(line)
        # Only a line ending in ';' can end a statement; checking just those keeps this linear.
        if line.rstrip().endswith(";") and sqlite3.complete_statement(text := "".join(buffer)):
            yield first, text
            buffer = []
    if buffer:
        yield first, "".join(buffer)


def load_dump(sql: str, dialect: str) -> sqlite3.Connection:
    """An in-memory SQLite database with the dump loaded; DumpError naming the line if it fails."""
    connection = sqlite3.connect(":memory:", isolation_level=None)
    if dialect == "postgresql":
        connection.create_function(
            "setval", -1, lambda *arguments: arguments[1] if len(arguments) > 1 else None
        )
        connection.create_function("pg_get_serial_sequence", 2, lambda table, column: f"{table}_{column}_seq")
    connection.execute("PRAGMA foreign_keys=ON")
    committed = False
    for line, statement in _statements(sql):
        if dialect == "postgresql" and _SET_STATEMENT.match(statement):
            continue
        if not sqlite3.complete_statement(statement):
            connection.close()
            raise DumpError(f"line {line}: the statement that starts here never ends")
        try:
            connection.execute(statement)
        except (sqlite3.Error, sqlite3.Warning) as error:
            connection.close()
            raise DumpError(f"line {line}: {error}") from None
        committed = statement.strip().rstrip(";").strip().upper() in ("COMMIT", "END")
    if not committed:
        connection.close()
        raise DumpError("it does not end with COMMIT (truncated?)")
    return connection


def _md5_chunk(paths: list[Path]) -> list[tuple[str | None, int]]:
    results = []
    for path in paths:
        try:
            data = path.read_bytes()
        except OSError:
            results.append((None, 0))
            continue
        results.append((hashlib.md5(data).hexdigest(), len(data)))
    return results


def _hash_files(paths: list[Path], progress: bool) -> dict[Path, tuple[str | None, int]]:
    chunks = [paths[start : start + COPY_CHUNK] for start in range(0, len(paths), COPY_CHUNK)]
    found: dict[Path, tuple[str | None, int]] = {}
    with (
        tqdm(total=len(paths), disable=not progress, unit="img", desc="verify", dynamic_ncols=True) as bar,
        ThreadPoolExecutor(COPY_THREADS) as pool,
    ):
        for chunk, results in zip(chunks, pool.map(_md5_chunk, chunks), strict=True):
            found.update(zip(chunk, results, strict=True))
            bar.update(len(chunk))
    return found


def _read_md5sums(path: Path, relative: str, problems: list[str]) -> dict[str, tuple[str, int]]:
    """name -> (md5, line number); malformed or repeated lines become problems."""
    entries: dict[str, tuple[str, int]] = {}
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        problems.append(f"{relative} is missing")
        return entries
    except UnicodeDecodeError:
        problems.append(f"{relative} is not UTF-8 text")
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
    models = [row[0] for row in connection.execute("SELECT id FROM gan_architectures ORDER BY id")]
    if models != [manifest.get("model_id")]:
        problems.append(
            f"{SQL_DUMP_NAME} holds models {models} but {MANIFEST_NAME} says model {manifest.get('model_id')}"
        )
    rows: dict[str, list[tuple[str, str]]] = {}
    query = "SELECT i.file_path, i.md5, c.name FROM images i LEFT JOIN class_names c ON c.id = i.class_name"
    for file_path, md5, class_name in connection.execute(query):
        rows.setdefault(file_path, []).append((md5, class_name))
    total = sum(len(found) for found in rows.values())
    expected = manifest.get("image_rows", manifest.get("images"))
    if total != expected:
        problems.append(f"{SQL_DUMP_NAME} holds {total} image rows but {MANIFEST_NAME} says {expected}")
    return rows


def _check_listed_files(root: Path, manifest: dict[str, Any], problems: list[str]) -> None:
    for name, expected in sorted(manifest.get("files", {}).items()):
        path = root / name
        if not path.is_file():
            problems.append(f"{name} is missing (listed in {MANIFEST_NAME})")
            continue
        size = path.stat().st_size
        if size != expected.get("bytes"):
            problems.append(
                f"{name} changed: it has {size} bytes but {MANIFEST_NAME} says {expected.get('bytes')}"
            )
        elif file_sha256(path) != expected.get("sha256"):
            problems.append(f"{name} changed: its SHA-256 differs from the one in {MANIFEST_NAME}")
    for folder in (GRIDS_DIR, PLOTS_DIR):
        if (root / folder).is_dir():
            for path in sorted((root / folder).rglob("*")):
                relative = path.relative_to(root).as_posix()
                if path.is_file() and relative not in manifest.get("files", {}):
                    problems.append(f"{relative}: extra file, not listed in {MANIFEST_NAME}")


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
    for name in classes:
        try:
            check_class_folder_name(name)
        except GenError as error:
            return str(error).rstrip(".")
    for name in files:
        parts = PurePosixPath(name).parts
        if not parts or name.startswith("/") or ".." in parts or name in (MANIFEST_NAME, *CARD_FILES):
            return f"it lists {name!r}, which is not a data file inside the data set"
    return None


def verify_dataset(path: str | Path, *, progress: bool = False) -> list[str]:
    """Every problem found in the data set at path, each one sentence naming the file; [] if none.

    GenError if path is not a folder at all.
    """
    root = Path(path)
    if not root.is_dir():
        raise GenError(f"no data set at {root}: it is not a folder.")
    try:
        manifest = json.loads((root / MANIFEST_NAME).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return [f"{MANIFEST_NAME} is missing: {root} is not a gen data set, or an incomplete one"]
    except (OSError, ValueError) as error:
        return [f"{MANIFEST_NAME} cannot be read: {error}"]
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        return [f"{MANIFEST_NAME} is not a gen data set manifest (format {MANIFEST_FORMAT} expected)"]
    malformed = _malformed(manifest)
    if malformed:
        return [f"{MANIFEST_NAME} is malformed: {malformed}"]
    problems: list[str] = []
    classes: dict[str, int] = manifest["classes"]
    listed = manifest["files"]

    _check_listed_files(root, manifest, problems)

    rows: dict[str, list[tuple[str, str]]] | None = None
    if SQL_DUMP_NAME in listed and (root / SQL_DUMP_NAME).is_file():
        try:
            connection = load_dump(
                (root / SQL_DUMP_NAME).read_text(encoding="utf-8"), manifest.get("dialect")
            )
        except UnicodeDecodeError:
            problems.append(f"{SQL_DUMP_NAME} is not UTF-8 text")
        except DumpError as error:
            problems.append(f"{SQL_DUMP_NAME} does not load into SQLite: {error}")
        else:
            rows = _dump_images(connection, manifest, problems)
            connection.close()
    elif (root / SQL_DUMP_NAME).exists() and SQL_DUMP_NAME not in listed:
        problems.append(f"{SQL_DUMP_NAME} is not listed in {MANIFEST_NAME}")

    # Every folder at the top level is a class of the manifest, or the card's.
    for entry in sorted(root.iterdir()):
        if entry.is_dir() and entry.name not in classes and entry.name not in (GRIDS_DIR, PLOTS_DIR):
            problems.append(f"{entry.name}/: unexpected folder (not a class of this data set)")

    files_on_disk: dict[str, list[Path]] = {}
    md5sums: dict[str, dict[str, tuple[str, int]]] = {}
    for class_name in classes:
        folder = root / class_name
        if not folder.is_dir():
            problems.append(f"{class_name}/ is missing ({MANIFEST_NAME} lists {classes[class_name]} images)")
            files_on_disk[class_name] = []
            md5sums[class_name] = {}
            continue
        found = []
        for entry in sorted(folder.iterdir()):
            if entry.is_dir():
                problems.append(f"{class_name}/{entry.name}/: unexpected folder inside a class folder")
            elif entry.name != MD5SUMS_NAME:
                found.append(entry)
        files_on_disk[class_name] = found
        md5sums[class_name] = _read_md5sums(folder / MD5SUMS_NAME, f"{class_name}/{MD5SUMS_NAME}", problems)

    hashes = _hash_files([p for paths in files_on_disk.values() for p in paths], progress)
    total_files = total_bytes = 0
    for class_name, paths in files_on_disk.items():
        on_disk = {p.name: p for p in paths}
        entries = md5sums[class_name]
        class_rows = {
            relative.split("/", 1)[1]: found
            for relative, found in (rows or {}).items()
            if relative.split("/", 1)[0] == class_name and "/" in relative
        }
        for name in sorted(set(on_disk) | set(entries) | set(class_rows)):
            relative = f"{class_name}/{name}"
            in_md5sums, row = name in entries, class_rows.get(name)
            if name not in on_disk:
                problems.append(f"{relative} is missing (listed in {_sources(in_md5sums, row is not None)})")
                continue
            md5, size = hashes[on_disk[name]]
            total_files += 1
            total_bytes += size
            if md5 is None:
                problems.append(f"{relative} cannot be read")
                continue
            has_no_row = rows is not None and row is None
            if not in_md5sums and has_no_row:
                problems.append(
                    f"{relative}: extra file, not listed in {MD5SUMS_NAME} and no row in {SQL_DUMP_NAME}"
                )
            elif not in_md5sums:
                problems.append(f"{relative} is not listed in {class_name}/{MD5SUMS_NAME}")
            elif has_no_row:
                problems.append(f"{relative} has no row in {SQL_DUMP_NAME}")
            claims = {}
            if in_md5sums:
                claims[f"{class_name}/{MD5SUMS_NAME} (line {entries[name][1]})"] = entries[name][0]
            for row_md5, row_class in row or []:
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
        expected = classes.get(class_name)
        if len(paths) != expected:
            problems.append(
                f"{class_name}/ holds {len(paths)} image files but {MANIFEST_NAME} says {expected}"
            )
    for relative in sorted(rows or {}):
        class_name = relative.split("/", 1)[0]
        if class_name not in files_on_disk or "/" not in relative:
            problems.append(f"{relative} is missing (has a row in {SQL_DUMP_NAME})")
    if total_files != manifest.get("images"):
        problems.append(
            f"the data set holds {total_files} image files but {MANIFEST_NAME} says {manifest.get('images')}"
        )
    elif total_bytes != manifest.get("image_bytes"):
        problems.append(
            f"the images hold {total_bytes} bytes but {MANIFEST_NAME} says {manifest.get('image_bytes')}"
        )
    for name in CARD_FILES:
        if not (root / name).is_file():
            problems.append(f"{name} is missing")
    return problems
