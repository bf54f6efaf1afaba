"""gen.verify and `gen verify`: a clean export verifies; each kind of tampering is named."""

from __future__ import annotations

import hashlib
import json
import os
import re
import resource
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from test_export import record_synthetic_model

from db.models import Image
from db.session import open_database
from gen.cli import cli
from gen.errors import GenError
from gen.export import export_dataset
from gen.verify import DumpError, load_dump, open_inside, verify_dataset

FILE = "cyt_mast/cyt_mast_000002.png"


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One clean data set per dump dialect (4 classes x 5 images), copied by each test."""
    folder = tmp_path_factory.mktemp("verify")
    engine = open_database(f"sqlite:///{folder / 'gen.db'}")
    gan_id = record_synthetic_model(engine, folder / "samples", 5)
    sets = {}
    for dialect in ("postgresql", "sqlite"):
        sets[dialect] = export_dataset(
            engine, gan_id, folder / dialect, sql_dump=True, dialect=dialect, csv=True
        ).out
    engine.dispose()
    return sets


@pytest.fixture
def dataset(exported: dict[str, Path], tmp_path: Path) -> Path:
    return Path(shutil.copytree(exported["postgresql"], tmp_path / "data"))


def verify_cli(path: Path) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["verify", str(path), "-q"])
    return result.exit_code, result.output


@pytest.mark.parametrize("dialect", ["postgresql", "sqlite"])
def test_a_clean_export_verifies(exported: dict[str, Path], dialect: str) -> None:
    assert verify_dataset(exported[dialect]) == []
    assert verify_cli(exported[dialect]) == (0, "OK: 20 images in 4 classes verified\n")


def tamper_byte(root: Path) -> None:
    path = root / FILE
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def drop_dump_row(root: Path) -> None:
    sql = (root / "database.sql").read_text()
    line = next(line for line in sql.splitlines() if "'cyt_mast/cyt_mast_000002.png'" in line)
    # The row is one line of a multi-row INSERT; drop it and keep the statement and the header's
    # count as gen would write them.
    sql = re.sub(r"images 20(?=[,.])", "images 19", sql.replace(line + "\n", ""), count=1)
    (root / "database.sql").write_text(sql)


def change_md5sums_line(root: Path) -> None:
    path = root / "cyt_mast" / "MD5SUMS"
    lines = path.read_text().splitlines(keepends=True)
    lines[1] = "0" * 32 + lines[1][32:]
    path.write_text("".join(lines))


def change_manifest_count(root: Path) -> None:
    manifest = json.loads((root / "manifest.json").read_text())
    manifest["classes"]["cyt_mast"] = 6
    (root / "manifest.json").write_text(json.dumps(manifest))


def point_manifest_outside(root: Path) -> None:
    manifest = json.loads((root / "manifest.json").read_text())
    manifest["files"]["../../etc/passwd"] = {"bytes": 1, "sha256": "0" * 64}
    (root / "manifest.json").write_text(json.dumps(manifest))


def write_extra(root: Path) -> None:
    shutil.copyfile(root / FILE, root / "cyt_mast" / "extra.png")


TAMPERING: dict[str, tuple[Callable[[Path], None], list[str]]] = {
    "a changed byte": (
        tamper_byte,
        [
            rf"{FILE}: MD5 is [0-9a-f]{{32}} but cyt_mast/MD5SUMS \(line 2\) and database.sql "
            r"say [0-9a-f]{32} \(the file changed\)"
        ],
    ),
    "a missing file": (
        lambda root: (root / FILE).unlink(),
        [rf"{FILE} is missing \(listed in MD5SUMS and database.sql\)", "cyt_mast/ holds 4 image files but"],
    ),
    "an extra file": (
        write_extra,
        [r"cyt_mast/extra.png: extra file, not listed in MD5SUMS and no row in database.sql"],
    ),
    "a deleted row": (
        drop_dump_row,
        [
            r"database.sql changed: it has \d+ bytes but manifest.json says \d+",
            r"database.sql holds 19 image rows but manifest.json says 20",
            rf"{FILE} has no row in database.sql",
        ],
    ),
    "a syntax error in the dump": (
        lambda root: (root / "database.sql").write_text(
            (root / "database.sql").read_text().replace("INSERT INTO images", "INSERT INTO", 1)
        ),
        [
            r"database.sql line \d+ is not what gen writes: '\(id, file_path, .*' "
            r"where gen writes 'images \(id, .*'"
        ],
    ),
    "a truncated dump": (
        lambda root: (root / "database.sql").write_text((root / "database.sql").read_text()[:-60]),
        [r"database.sql ends at line \d+, before what gen writes is complete \(truncated\?\)"],
    ),
    "a count in the manifest": (
        change_manifest_count,
        [r"cyt_mast/ holds 5 image files but manifest.json says 6"],
    ),
    "a manifest naming a file outside": (
        point_manifest_outside,
        [r"manifest.json is malformed: it lists '../../etc/passwd', which is not a data file inside"],
    ),
    "an MD5SUMS line": (
        change_md5sums_line,
        [
            rf"{FILE}: MD5 is [0-9a-f]{{32}} but cyt_mast/MD5SUMS \(line 2\) says 0{{32}} "
            r"\(a checksum record changed\)"
        ],
    ),
    "a malformed MD5SUMS line": (
        lambda root: (root / "cyt_mast" / "MD5SUMS").open("a").write("garbage\n"),
        [r"cyt_mast/MD5SUMS line 6 is not in md5sum's format: 'garbage'"],
    ),
    "a changed grid": (
        lambda root: shutil.copyfile(root / "grid-cyt_mast.png", root / "grid-cyt_nep_mast.png"),
        [r"grid-cyt_nep_mast.png changed"],
    ),
    "a missing settings.csv": (
        lambda root: (root / "settings.csv").unlink(),
        [r"settings.csv is missing \(listed in manifest.json\)"],
    ),
    "an extra class folder": (
        lambda root: shutil.copytree(root / "cyt_mast", root / "cyt_other"),
        [r"cyt_other/: unexpected folder \(not a class of this data set\)"],
    ),
    "a missing class folder": (
        lambda root: shutil.rmtree(root / "cyt_mast"),
        [
            r"cyt_mast/ is missing \(manifest.json lists 5 images\)",
            r"cyt_mast/cyt_mast_000001.png is missing",
        ],
    ),
}


def add_a_class_differing_in_case(root: Path) -> None:
    manifest = json.loads((root / "manifest.json").read_text())
    manifest["classes"]["CYT_MAST"] = 0
    (root / "manifest.json").write_text(json.dumps(manifest))


TAMPERING["a class name differing only in case"] = (
    add_a_class_differing_in_case,
    [r"manifest.json is malformed: class names 'cyt_mast' and 'CYT_MAST' differ only in case"],
)
TAMPERING["a class name a spreadsheet would run"] = (
    lambda root: (root / "manifest.json").write_text(
        (root / "manifest.json").read_text().replace('"cyt_mast"', '"=cyt_mast"', 1)
    ),
    [r"manifest.json is malformed: class name '=cyt_mast' must not start with '='"],
)


@pytest.mark.parametrize("case", list(TAMPERING))
def test_tampering_is_named(dataset: Path, case: str) -> None:
    tamper, expected = TAMPERING[case]
    tamper(dataset)
    problems = verify_dataset(dataset)
    for pattern in expected:
        assert any(re.search(pattern, problem) for problem in problems), (pattern, problems)
    code, output = verify_cli(dataset)
    assert code == 1
    assert "does not verify: " in output and f"{len(problems)} problem" in output
    assert all(f"- {problem}" in output for problem in problems)


def test_editing_the_card_and_adding_a_licence_is_fine(dataset: Path) -> None:
    readme = dataset / "README.md"
    readme.write_text(readme.read_text().replace("TODO: licence.", "CC BY 4.0"))
    (dataset / "LICENSE").write_text("CC BY 4.0")
    assert verify_dataset(dataset) == []


def test_not_a_data_set(tmp_path: Path) -> None:
    assert verify_dataset(tmp_path) == [
        f"manifest.json is missing: {tmp_path} is not a gen data set, or an incomplete one"
    ]
    with pytest.raises(GenError, match="no data set at .*: it is not a folder"):
        verify_dataset(tmp_path / "nothing")
    code, output = verify_cli(tmp_path / "nothing")
    assert code == 1 and "it is not a folder" in output


def load_text(sql: str | bytes, dialect: str, folder: Path) -> sqlite3.Connection:
    """load_dump on a file holding sql."""
    path = folder / "database.sql"
    path.write_bytes(sql.encode("utf-8") if isinstance(sql, str) else sql)
    with open(path, "rb") as file:
        return load_dump(file, dialect)


def test_a_postgresql_dump_loads_into_sqlite(exported: dict[str, Path], tmp_path: Path) -> None:
    sql = (exported["postgresql"] / "database.sql").read_text()
    assert "SET client_encoding" in sql and "setval(" in sql
    connection = load_text(sql, "postgresql", tmp_path)
    assert connection.execute("SELECT count(*) FROM images").fetchone() == (20,)
    connection.close()
    with pytest.raises(DumpError, match="^line 1 is not the header gen writes$"):
        load_text("INSERT INTO nowhere VALUES;\n", "sqlite", tmp_path)
    # A row with a value less is named with its line.
    broken = sql.replace("'cyt_mast/cyt_mast_000002.png', ", "", 1)
    line = (
        next(n for n, text in enumerate(broken.splitlines(), 1) if "cyt_mast/cyt_mast_000003.png" in text) - 1
    )
    columns = len(Image.__table__.columns)  # the images table as this gen writes it
    with pytest.raises(
        DumpError, match=rf"^line {line}: a row of images has {columns - 1} values, not {columns}$"
    ):
        load_text(broken, "postgresql", tmp_path)


# ----------------------------------------------------------------------------- crafted data sets
# What an attacker who edits a data set does: change files, then make the manifest agree again,
# so that only the attack itself is left for verify to find.


def resign(root: Path) -> None:
    """Rewrite manifest.json's bytes and SHA-256 of every file it lists to match the files now."""
    manifest = json.loads((root / "manifest.json").read_text())
    for name, entry in manifest["files"].items():
        data = (root / name).read_bytes()
        entry.update(bytes=len(data), sha256=hashlib.sha256(data).hexdigest())
    (root / "manifest.json").write_text(json.dumps(manifest, indent=2))


def tree(folder: Path) -> dict[str, bytes | None]:
    """Every path below folder with its bytes (None for a folder), links not followed."""
    return {
        path.relative_to(folder).as_posix(): None if path.is_dir() else path.read_bytes()
        for path in sorted(folder.rglob("*"))
    }


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The user's working folder, made current, holding their own SQLite gen.db with rows."""
    folder = tmp_path / "home"
    folder.mkdir()
    connection = sqlite3.connect(folder / "gen.db")
    connection.execute("CREATE TABLE images (id INTEGER PRIMARY KEY, file_path VARCHAR)")
    connection.executemany("INSERT INTO images VALUES (?, ?)", [(1, "a.png"), (2, "b.png")])
    connection.commit()
    connection.close()
    monkeypatch.chdir(folder)
    return folder


# Each attack: where its statements go and the statements. Every one reaches the user's files
# only through ATTACH (or VACUUM INTO), which a dump never holds.
DUMP_ATTACKS = {
    "empties the user's database": (
        "start",
        "ATTACH DATABASE 'gen.db' AS mine;\nDELETE FROM mine.images;\nDETACH DATABASE mine;",
    ),
    "creates a file elsewhere": ("start", "ATTACH DATABASE '../created.db' AS far;\nCREATE TABLE far.x (y);"),
    "copies the database out": (
        "after BEGIN",
        "ATTACH DATABASE 'gen.db' AS mine;\nATTACH DATABASE 'stolen.db' AS out;\n"
        "CREATE TABLE out.images AS SELECT * FROM mine.images;",
    ),
    "hides behind BEGIN on its line": (
        "same line as BEGIN",
        "ATTACH 'gen.db' AS mine; DELETE FROM mine.images;",
    ),
    "hides behind a comment": (
        "after BEGIN",
        "/* a note */ ATTACH 'gen.db' AS mine;\nDELETE FROM mine.images;",
    ),
    "vacuums into a new file": ("start", "VACUUM INTO 'vacuumed.db';"),
    "comes after COMMIT": ("end", "ATTACH 'gen.db' AS mine;\nDELETE FROM mine.images;"),
}


def inject(sql: str, where: str, statements: str) -> str:
    if where == "start":
        return statements + "\n" + sql
    if where == "end":
        return sql + statements + "\n"
    separator = " " if where == "same line as BEGIN" else "\n"
    return sql.replace("BEGIN;", "BEGIN;" + separator + statements, 1)


@pytest.mark.parametrize("attack", list(DUMP_ATTACKS))
@pytest.mark.parametrize("dialect", ["postgresql", "sqlite"])
def test_a_crafted_dump_never_reaches_the_users_files(
    exported: dict[str, Path], tmp_path: Path, home: Path, dialect: str, attack: str
) -> None:
    root = Path(shutil.copytree(exported[dialect], tmp_path / "data"))
    dump = root / "database.sql"
    dump.write_text(inject(dump.read_text(), *DUMP_ATTACKS[attack]))
    resign(root)
    before = tree(tmp_path)

    problems = verify_dataset(root)
    code, output = verify_cli(root)

    assert tree(tmp_path) == before  # gen.db unchanged, no file created anywhere
    refused = [p for p in problems if p.startswith("database.sql line ")]
    assert refused, problems
    assert code == 1 and f"- {refused[0]}" in output and "OK" not in output


# Statements SQLite accepts that a check of the first keyword alone might let through.
SLIPPERY = {
    "REPLACE": "REPLACE INTO alembic_version (version_num) VALUES ('x');",
    "INSERT OR": "INSERT OR REPLACE INTO alembic_version (version_num) VALUES ('x');",
    "WITH ... INSERT": "WITH x AS (SELECT 1) INSERT INTO alembic_version (version_num) VALUES ('x');",
    "INSERT ... SELECT": "INSERT INTO alembic_version (version_num) SELECT name FROM sqlite_master;",
    "a subquery in VALUES": "INSERT INTO alembic_version (version_num) VALUES ((SELECT 1));",
    "a function in VALUES": "INSERT INTO alembic_version (version_num) VALUES (load_extension('x'));",
    "an upsert": "INSERT INTO alembic_version (version_num) VALUES ('x') ON CONFLICT DO NOTHING;",
    "an unknown table": "INSERT INTO sqlite_master (name) VALUES ('x');",
    "a quoted name hiding a statement": "INSERT INTO [a;ATTACH 'gen.db' AS m;] (x) VALUES (1);",
    "CREATE TEMP TRIGGER": "CREATE TEMP TRIGGER t AFTER INSERT ON images BEGIN DELETE FROM images; END;",
    "CREATE VIEW": "CREATE VIEW v AS SELECT 1;",
    "an extra index": "CREATE INDEX ix_more ON images (md5);",
    "a changed table": "CREATE TABLE alembic_version (version_num VARCHAR(32) CHECK (abs(1)));",
    "PRAGMA": "PRAGMA writable_schema = 1;",
    "a keyword after a comment": "INSERT -- a note\nINTO alembic_version (version_num) VALUES ('x');",
    "a second BEGIN": "BEGIN;",
    "an empty statement": ";",
}


@pytest.mark.parametrize("case", list(SLIPPERY))
def test_a_statement_gen_never_writes_is_refused_at_its_line(
    exported: dict[str, Path], tmp_path: Path, case: str
) -> None:
    sql = (exported["sqlite"] / "database.sql").read_text()
    line = sql[: sql.index("INSERT INTO")].count("\n") + 1
    crafted = sql.replace("INSERT INTO", SLIPPERY[case] + "\nINSERT INTO", 1)
    with pytest.raises(DumpError, match=rf"^line {line} is not what gen writes: "):
        load_text(crafted, "sqlite", tmp_path)


def test_the_dump_loader_stays_quick_on_a_flood_of_statements(
    exported: dict[str, Path], tmp_path: Path
) -> None:
    # Read line by line and compared as it goes: a million statements are refused at the first,
    # and a string of a million ';' lines is one value, read once.
    started = time.process_time()  # CPU time: other work may share the machine
    with pytest.raises(DumpError, match="^line 1 is not the header gen writes$"):
        load_text(";\n" * 1_000_000, "sqlite", tmp_path)
    sql = (exported["sqlite"] / "database.sql").read_text()
    connection = load_text(sql.replace(ROW, "'" + "x;\n" * 1_000_000 + "'", 1), "sqlite", tmp_path)
    assert connection.execute("SELECT max(length(file_path)) FROM images").fetchone() == (3_000_000,)
    connection.close()
    assert time.process_time() - started < 30


def test_an_unknown_dialect_is_refused(exported: dict[str, Path], tmp_path: Path) -> None:
    sql = (exported["sqlite"] / "database.sql").read_text()
    for dialect in ("mysql", None, ["sqlite"]):
        with pytest.raises(DumpError, match="is not one gen writes"):
            load_text(sql, dialect, tmp_path)  # type: ignore[arg-type]
    with pytest.raises(DumpError, match="^line 1 says dialect 'sqlite', not 'postgresql'$"):
        load_text(sql, "postgresql", tmp_path)


def test_class_names_in_the_dump_must_be_folder_names(dataset: Path) -> None:
    dump = dataset / "database.sql"
    dump.write_text(dump.read_text().replace("'cyt_mast'", "'../cyt_mast'", 1))
    resign(dataset)
    problems = verify_dataset(dataset)
    assert any(
        p.startswith("database.sql names a class '../cyt_mast' that cannot be a folder name: ")
        for p in problems
    ), problems


# ----------------------------------------------------------------------------- links, pipes, devices

LINK_SENTENCE = "is a symbolic link; a data set holds only regular files and folders"


def verify_in_a_child(root: Path) -> subprocess.CompletedProcess[str]:
    """`gen verify` in its own process with a deadline and a memory cap, so that a regression
    (a verify blocked on a pipe, or reading /dev/zero) fails the test instead of the machine."""

    def cap_memory() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))

    return subprocess.run(
        [sys.executable, "-c", "from gen.cli import main; main()", "verify", str(root), "-q"],
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=cap_memory,
    )


def test_a_named_pipe_is_reported_and_never_opened(dataset: Path) -> None:
    os.mkfifo(dataset / "cyt_mast" / "cyt_mast_000009.png")
    result = verify_in_a_child(dataset)
    assert result.returncode == 1, result.stderr
    assert "- cyt_mast/cyt_mast_000009.png is a named pipe (FIFO); a data set holds only" in result.stdout
    assert "Traceback" not in result.stderr


def test_a_link_to_a_device_is_reported_and_never_read(dataset: Path) -> None:
    (dataset / "cyt_mast" / "cyt_mast_000009.png").symlink_to("/dev/zero")
    result = verify_in_a_child(dataset)
    assert result.returncode == 1, result.stderr
    assert f"- cyt_mast/cyt_mast_000009.png {LINK_SENTENCE}" in result.stdout
    assert "Traceback" not in result.stderr


def test_a_link_to_a_file_outside_is_reported(dataset: Path, tmp_path: Path) -> None:
    # The outside file has the very bytes of the image it stands for: MD5SUMS, the dump and the
    # manifest all agree, so only the link is wrong.
    outside = tmp_path / "outside.png"
    shutil.move(dataset / FILE, outside)
    (dataset / FILE).symlink_to(outside)
    problems = verify_dataset(dataset)
    assert f"{FILE} {LINK_SENTENCE}" in problems
    assert not any(p.startswith(f"{FILE} is missing") for p in problems)
    assert verify_cli(dataset)[0] == 1


@pytest.mark.parametrize("name", ["cyt_mast", "manifest.json", "database.sql", "grid-cyt_mast.png"])
def test_a_linked_class_folder_or_named_file_is_reported(dataset: Path, tmp_path: Path, name: str) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    shutil.move(dataset / name, outside / "moved")
    (dataset / name).symlink_to(outside / "moved")
    problems = verify_dataset(dataset)
    assert f"{name} {LINK_SENTENCE}" in problems
    assert not any(p.startswith(f"{name} is missing") for p in problems)
    code, output = verify_cli(dataset)
    assert code == 1 and f"- {name} {LINK_SENTENCE}" in output


def test_the_root_may_be_a_link_to_a_data_set(dataset: Path, tmp_path: Path) -> None:
    (tmp_path / "linked").symlink_to(dataset)
    assert verify_dataset(tmp_path / "linked") == []
    assert verify_cli(tmp_path / "linked") == (0, "OK: 20 images in 4 classes verified\n")


def test_open_inside_refuses_what_is_not_a_regular_file(dataset: Path, tmp_path: Path) -> None:
    # What guards a swap between the walk and the read: a link anywhere below the root, or a
    # pipe, is refused when it is opened.
    os.mkfifo(dataset / "pipe")
    (dataset / "link.png").symlink_to(dataset / FILE)
    shutil.move(dataset / "cyt_nep_mast", tmp_path / "cyt_nep_mast")
    (dataset / "cyt_nep_mast").symlink_to(tmp_path / "cyt_nep_mast")
    for relative in ["pipe", "link.png", "cyt_nep_mast/MD5SUMS"]:
        with pytest.raises(OSError):
            open_inside(dataset, relative)
    with open_inside(dataset, FILE) as file:
        assert file.read() == (dataset / FILE).read_bytes()


def test_control_characters_in_names_are_escaped(dataset: Path) -> None:
    (dataset / "cyt_mast" / "\x1b[2Jx.png").write_bytes(b"x")
    problems = verify_dataset(dataset)
    extra = "cyt_mast/\\x1b[2Jx.png: extra file, not listed in MD5SUMS and no row in database.sql"
    assert any(problem.startswith(extra) for problem in problems)


def test_a_manifest_nested_too_deeply_is_a_problem(dataset: Path) -> None:
    (dataset / "manifest.json").write_text("[" * 200_000)
    assert verify_dataset(dataset) == ["manifest.json cannot be read: it nests too deeply to be a manifest"]


def test_without_a_dump_a_changed_image_with_a_regenerated_md5sums_is_caught(tmp_path: Path) -> None:
    """The manifest pins every MD5SUMS: rewriting one to match a changed image is a change too."""
    engine = open_database(f"sqlite:///{tmp_path / 'gen.db'}")
    gan_id = record_synthetic_model(engine, tmp_path / "samples", 2)
    out = export_dataset(engine, gan_id, tmp_path / "plain").out
    engine.dispose()
    assert verify_dataset(out) == []
    tamper_byte(out)
    folder = out / FILE.split("/")[0]
    lines = [
        f"{hashlib.md5((folder / name).read_bytes()).hexdigest()}  {name}\n"
        for name in sorted(p.name for p in folder.glob("*.png"))
    ]
    (folder / "MD5SUMS").write_text("".join(lines))
    problems = verify_dataset(out)
    assert any("cyt_mast/MD5SUMS changed" in problem for problem in problems), problems


@pytest.mark.parametrize(
    "found, expected",
    [
        ("gen-dataset/1", "says format gen-dataset/1, an export by another version of gen"),
        ("something-else/2", "is not a gen data set manifest"),
    ],
)
def test_an_export_of_another_format_is_named(dataset: Path, found: str, expected: str) -> None:
    manifest = json.loads((dataset / "manifest.json").read_text())
    (dataset / "manifest.json").write_text(json.dumps({**manifest, "format": found}))
    problems = verify_dataset(dataset)
    assert len(problems) == 1 and expected in problems[0]


# ----------------------------------------------------------------------------- croissant.json
# mlcroissant loads what croissant.json points at: an edited one must not make it read (or
# fetch) anything but the files verify checked.

METADATA_ENTRY, FILE_SET_ENTRY, IMAGE_ENTRY = 0, 1, 2  # the order gen writes the distribution in


def set_key(index: int, key: str, value: object) -> Callable[[dict], None]:
    def change(document: dict) -> None:
        document["distribution"][index][key] = value

    return change


def duplicate_image(**changes: str) -> Callable[[dict], None]:
    def change(document: dict) -> None:
        document["distribution"].append({**document["distribution"][IMAGE_ENTRY], **changes})

    return change


def field_source(name: str, source: object) -> Callable[[dict], None]:
    def change(document: dict) -> None:
        field = next(f for f in document["recordSet"][0]["field"] if f["name"] == name)
        field["source"] = source

    return change


def add_to_field(key: str, value: object) -> Callable[[dict], None]:
    def change(document: dict) -> None:
        document["recordSet"][0]["field"][0][key] = value

    return change


def remap_in_context(document: dict) -> None:
    document["@context"]["name"] = "sc:contentUrl"


OUTSIDE = "which is not a relative path inside the data set"
CROISSANT_ATTACKS: dict[str, tuple[Callable[[dict], None], str]] = {
    "a file URL": (
        set_key(METADATA_ENTRY, "contentUrl", "file:///etc/passwd"),
        f"'file:///etc/passwd', {OUTSIDE}",
    ),
    "an http URL": (
        set_key(IMAGE_ENTRY, "contentUrl", "http://example.org/x.png"),
        f"'http://example.org/x.png', {OUTSIDE}",
    ),
    "an absolute path": (set_key(METADATA_ENTRY, "contentUrl", "/etc/passwd"), f"'/etc/passwd', {OUTSIDE}"),
    "a parent": (set_key(METADATA_ENTRY, "contentUrl", "../images.csv"), f"'../images.csv', {OUTSIDE}"),
    "a parent inside": (
        set_key(IMAGE_ENTRY, "contentUrl", "./a/../../b.png"),
        f"'./a/../../b.png', {OUTSIDE}",
    ),
    "a %-escaped parent": (set_key(IMAGE_ENTRY, "contentUrl", "%2e%2e/x.png"), f"'%2e%2e/x.png', {OUTSIDE}"),
    "a backslash": (set_key(IMAGE_ENTRY, "contentUrl", "cyt_mast\\..\\..\\x.png"), OUTSIDE),
    "a Windows drive": (set_key(IMAGE_ENTRY, "contentUrl", "C:/x.png"), OUTSIDE),
    "an absolute pattern": (
        set_key(FILE_SET_ENTRY, "includes", "/**"),
        "includes '/**', which is not a pattern inside",
    ),
    "a parent pattern": (
        set_key(FILE_SET_ENTRY, "includes", ["../**"]),
        "includes '../**', which is not a pattern",
    ),
    "an excludes outside": (
        set_key(FILE_SET_ENTRY, "excludes", ["/etc/*"]),
        "excludes '/etc/*', which is not",
    ),
    "a pattern taking in the grids": (
        set_key(FILE_SET_ENTRY, "includes", "*.png"),
        "takes in 4 files that are not images of the data set, such as grid-",
    ),
    "a pattern leaving out images": (
        set_key(FILE_SET_ENTRY, "includes", "cyt_mast/*.png"),
        "leaves out 15 images, such as cyt_kist_mast/",
    ),
    "an archive to read from": (
        set_key(FILE_SET_ENTRY, "containedIn", {"@id": "images.csv"}),
        "has containedIn, which gen does not write",
    ),
    "a prefixed alias": (
        set_key(METADATA_ENTRY, "sc:contentUrl", "http://x/y"),
        "has sc:contentUrl, which gen does not write",
    ),
    "a wrong SHA-256": (
        set_key(IMAGE_ENTRY, "sha256", "0" * 64),
        "the checksums of cyt_kist_mast/cyt_kist_mast_000001.png differ",
    ),
    "a wrong MD5 of images.csv": (
        set_key(METADATA_ENTRY, "md5", "0" * 32),
        "the checksums of images.csv are not the file's",
    ),
    "a duplicate @id": (
        duplicate_image(contentUrl="cyt_mast/cyt_mast_000001.png"),
        "defines the @id 'file/cyt_kist_mast/cyt_kist_mast_000001.png' a second",
    ),
    "a duplicate FileObject": (
        duplicate_image(**{"@id": "again"}),
        "describes cyt_kist_mast/cyt_kist_mast_000001.png a second time",
    ),
    "labels from another file": (
        field_source(
            "label",
            {"fileObject": {"@id": "file/cyt_mast/cyt_mast_000001.png"}, "extract": {"column": "label"}},
        ),
        "fileObject is {'@id': 'file/cyt_mast/cyt_mast_000001.png'}, not images.csv",
    ),
    "labels from another column": (
        field_source("label", {"fileObject": {"@id": "images.csv"}, "extract": {"column": "seed"}}),
        "field 'images/label' does not read the column label of images.csv",
    ),
    "a reference to nothing": (
        add_to_field("references", {"field": {"@id": "elsewhere/x"}}),
        "refers to 'elsewhere/x', which it does not define",
    ),
    "a nested context": (
        add_to_field("@context", "http://example.org/context.jsonld"),
        "has the key '@context', which gen does not write",
    ),
    "a remapped term": (remap_in_context, "has another JSON-LD @context than gen writes"),
}


@pytest.mark.parametrize("case", list(CROISSANT_ATTACKS))
def test_croissant_json_points_only_at_checked_files(dataset: Path, case: str) -> None:
    change, expected = CROISSANT_ATTACKS[case]
    path = dataset / "croissant.json"
    document = json.loads(path.read_text())
    change(document)
    path.write_text(json.dumps(document, indent=2))
    resign(dataset)
    problems = verify_dataset(dataset)
    assert any(expected in problem for problem in problems), problems
    code, output = verify_cli(dataset)
    assert code == 1 and f"{len(problems)} problem" in output


def test_a_formula_in_a_number_column_of_images_csv_is_a_problem(dataset: Path) -> None:
    path = dataset / "images.csv"
    lines = path.read_text().splitlines(keepends=True)
    cells = lines[1].split(",")
    cells[5] = '"=HYPERLINK(""http://x"")"'
    lines[1] = ",".join(cells)
    path.write_text("".join(lines))
    resign(dataset)
    problems = verify_dataset(dataset)
    assert any(
        "images.csv line 2: seed is '=HYPERLINK(\"http://x\")', not a number" in p for p in problems
    ), problems


# ----------------------------------------------------------------------------- sizes
# A file a stranger made is measured before it is read, and one nothing claims is never read.


def make_sparse(path: Path, size: int) -> None:
    with open(path, "wb") as file:
        file.truncate(size)


@pytest.mark.parametrize("name", ["images.csv", "croissant.json", "cyt_mast/MD5SUMS"])
def test_a_huge_text_file_is_refused_by_its_size(
    dataset: Path, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_sparse(dataset / name, 64 << 20)  # 64 MiB of nothing (a stranger's could be 6 GB)
    resign(dataset)  # the manifest agrees, so its own check would hash the file
    opened: list[str] = []

    def spy(root: Path, relative: str):  # noqa: ANN202
        opened.append(relative)
        return open_inside(root, relative)

    monkeypatch.setattr("gen.verify.open_inside", spy)
    problems = verify_dataset(dataset)
    assert opened.count(name) <= 1  # opened once, to be measured
    assert any(
        re.fullmatch(
            rf"{name} is too large to be read: it has {64 << 20} bytes, more than the \d+ it can need here", p
        )
        for p in problems
    ), problems


def test_an_unlisted_file_is_named_with_its_size_and_never_read(
    dataset: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_sparse(dataset / "cyt_mast" / "huge.png", 256 << 20)  # a stranger's could be 100 GB
    opened: list[str] = []

    def spy(root: Path, relative: str):  # noqa: ANN202
        opened.append(relative)
        return open_inside(root, relative)

    monkeypatch.setattr("gen.verify.open_inside", spy)
    problems = verify_dataset(dataset)
    extra = "cyt_mast/huge.png: extra file, not listed in MD5SUMS and no row in database.sql"
    assert f"{extra} ({256 << 20} bytes, not read)" in problems
    assert "cyt_mast/huge.png" not in opened and FILE in opened


# ----------------------------------------------------------------------------- the dump, byte for byte
# psql and SQLite split SQL differently: text that SQLite reads as a quoted name or a type can
# hold a line psql runs as a meta-command (`\! command` runs a shell). A dump that verifies is
# therefore exactly what gen writes for its rows, byte for byte, and no SQL engine runs its text.

MARKER = "MARKER"
IMAGES_TABLE = "CREATE TABLE images (\n"
# Each hides `\! touch MARKER` on a line of its own inside CREATE TABLE images, where SQLite
# reads it as part of a name or a type and psql reads it as a meta-command.
PSQL_ATTACKS = {
    "square brackets": f"\t[x\n\\! touch {MARKER}\n] INTEGER,\n",
    "backticks": f"\t`x\n\\! touch {MARKER}\n` INTEGER,\n",
    "an array type": f"\tx TEXT[\n\\! touch {MARKER}\n],\n",
    "an E'' string": f"\tx E'\\''\n\\! touch {MARKER}\n',\n",
}


def craft(root: Path, change: Callable[[str], str]) -> None:
    """database.sql changed by change, and the manifest made to agree again."""
    dump = root / "database.sql"
    dump.write_bytes(change(dump.read_text(encoding="utf-8")).encode("utf-8", "surrogateescape"))
    resign(root)


def dump_refused(problems: list[str]) -> bool:
    return any(p.startswith("database.sql ") and "MD5" not in p for p in problems)


@pytest.mark.parametrize("attack", list(PSQL_ATTACKS))
@pytest.mark.parametrize("dialect", ["postgresql", "sqlite"])
def test_a_dump_psql_reads_another_way_is_refused(
    exported: dict[str, Path], tmp_path: Path, dialect: str, attack: str
) -> None:
    root = Path(shutil.copytree(exported[dialect], tmp_path / "data"))
    craft(root, lambda sql: sql.replace(IMAGES_TABLE, IMAGES_TABLE + PSQL_ATTACKS[attack], 1))
    problems = verify_dataset(root)
    assert dump_refused(problems), problems
    assert not (tmp_path / MARKER).exists()


def test_a_column_default_that_calls_a_function_is_refused(dataset: Path) -> None:
    # SQLite would run zeroblob for every row inserted; at 900 MB a row, verify ran out of memory.
    craft(
        dataset, lambda sql: sql.replace(IMAGES_TABLE, IMAGES_TABLE + "\tx BLOB DEFAULT (zeroblob(1000)),\n")
    )
    assert dump_refused(verify_dataset(dataset))


def replace_value(sql: str, old: str, new: str) -> str:
    assert old in sql
    return sql.replace(old, new, 1)


ROW = "'cyt_mast/cyt_mast_000002.png'"
# Changes to a genuine dump that SQLite or psql might still load; verify refuses each one.
DUMP_VARIANTS: dict[str, Callable[[str], str]] = {
    "unicode quotes": lambda sql: replace_value(sql, ROW, "\u2019cyt_mast/cyt_mast_000002.png\u2019"),
    "dollar quoting": lambda sql: replace_value(sql, ROW, "$$cyt_mast/cyt_mast_000002.png$$"),
    "dollar quoting around a meta-command": lambda sql: replace_value(
        sql, ROW, f"$$cyt_mast/\n\\! touch {MARKER}\ncyt_mast_000002.png$$"
    ),
    "an E'' escape": lambda sql: replace_value(sql, ROW, "E'cyt_mast/cyt_mast_000002.png'"),
    "an E'' escape hiding a meta-command": lambda sql: replace_value(
        sql, ROW, f"E'cyt_mast/cyt_mast_000002.png\\'', '\n\\! touch {MARKER}\n'"
    ),
    "a -- comment between statements": lambda sql: replace_value(sql, "BEGIN;\n", "BEGIN;\n-- a note\n"),
    "a -- comment in a row": lambda sql: replace_value(sql, ROW + ",", ROW + ", -- a note\n"),
    "a /* */ comment": lambda sql: replace_value(sql, ROW, "/* a note */ " + ROW),
    "extra whitespace": lambda sql: replace_value(sql, ROW + ", ", ROW + ",  "),
    "a blank line more": lambda sql: replace_value(sql, "BEGIN;\n", "BEGIN;\n\n"),
    "CRLF line ends": lambda sql: sql.replace("\n", "\r\n"),
    "a CR in one line end": lambda sql: replace_value(sql, "BEGIN;\n", "BEGIN;\r\n"),
    "text after COMMIT": lambda sql: sql + "SELECT 1;\n",
    "a meta-command after COMMIT": lambda sql: sql + f"\\! touch {MARKER}\n",
    "a blank line after COMMIT": lambda sql: sql + "\n",
    "no line end after COMMIT": lambda sql: sql.removesuffix("\n"),
    "a duplicate statement": lambda sql: replace_value(sql, "BEGIN;\n", "BEGIN;\n\nBEGIN;\n"),
    "a duplicate row": lambda sql: replace_value(sql, row_of(sql), row_of(sql) + "\n" + row_of(sql)),
    "lower-case keywords": lambda sql: replace_value(sql, "INSERT INTO images", "insert into images"),
    "a quoted table name": lambda sql: replace_value(sql, "INSERT INTO images", 'INSERT INTO "images"'),
    "a changed header": lambda sql: replace_value(sql, "images 20", "images 21"),
    "another schema revision": lambda sql: sql.replace("schema revision ", "schema revision 9", 1),
    "a NULL where the schema says NOT NULL": lambda sql: replace_value(sql, ROW, "NULL"),
    "a number where gen writes text": lambda sql: replace_value(sql, ROW, "12"),
    "text where gen writes a number": lambda sql: replace_value(
        sql, row_of(sql), row_of(sql).replace(", 64, ", ", '64', ", 1)
    ),
    "a float where gen writes an integer": lambda sql: replace_value(
        sql, row_of(sql), row_of(sql).replace(", 64, ", ", 64.0, ", 1)
    ),
    "an integer too large for PostgreSQL": lambda sql: replace_value(
        sql, row_of(sql), row_of(sql).replace(", 64, ", ", 4294967296, ", 1)
    ),
    "an integer too large for SQLite": lambda sql: replace_value(
        sql, row_of(sql), row_of(sql).replace(", 64, ", ", 99999999999999999999, ", 1)
    ),
    "an MD5 longer than its column": lambda sql: replace_value(
        sql, row_of(sql), re.sub("'([0-9a-f]{32})'", r"'\1ff'", row_of(sql), count=1)
    ),
}


def row_of(sql: str) -> str:
    """The line of database.sql that holds FILE's row."""
    return next(line for line in sql.splitlines() if ROW in line)


@pytest.mark.parametrize("variant", list(DUMP_VARIANTS))
@pytest.mark.parametrize("dialect", ["postgresql", "sqlite"])
def test_a_dump_that_is_not_what_gen_writes_is_refused(
    exported: dict[str, Path], tmp_path: Path, dialect: str, variant: str
) -> None:
    if dialect == "sqlite" and variant == "an integer too large for PostgreSQL":
        pytest.skip("SQLite's integers have 64 bits: that dump is one gen writes")
    root = Path(shutil.copytree(exported[dialect], tmp_path / "data"))
    craft(root, DUMP_VARIANTS[variant])
    problems = verify_dataset(root)
    assert dump_refused(problems), problems
    code, output = verify_cli(root)
    assert code == 1 and "Traceback" not in output
    assert not (tmp_path / MARKER).exists()


def test_a_changed_md5_in_a_well_formed_dump_is_named(dataset: Path) -> None:
    sql = (dataset / "database.sql").read_text()
    line = next(line for line in sql.splitlines() if ROW in line)
    md5 = re.search(r"'([0-9a-f]{32})'", line)[1]  # type: ignore[index]
    craft(dataset, lambda text: text.replace(md5, "0" * 32, 1))
    problems = verify_dataset(dataset)
    assert any(re.search(rf"{FILE}: MD5 is {md5} but database.sql says 0{{32}}", p) for p in problems)


@pytest.mark.parametrize(
    "data, sentence",
    [
        (b"\x00", "NUL"),
        (b"\xff", "UTF-8"),
        (b"\xc3(", "UTF-8"),
    ],
)
def test_a_nul_or_a_byte_that_is_not_utf8_is_one_sentence(dataset: Path, data: bytes, sentence: str) -> None:
    dump = dataset / "database.sql"
    sql = dump.read_bytes()
    at = sql.index(ROW.encode()) + 1
    dump.write_bytes(sql[:at] + data + sql[at:])
    resign(dataset)
    problems = verify_dataset(dataset)
    assert any(p.startswith("database.sql ") and sentence in p for p in problems), problems
    code, output = verify_cli(dataset)
    assert code == 1 and "Traceback" not in output and "- database.sql line " in output, output


def test_a_dump_larger_than_the_cap_is_refused_unread(dataset: Path) -> None:
    # Sparse: 6 GB on paper, nothing on disk; the manifest claims that size, so that hashing it
    # would be worth an attacker's while too.
    with open(dataset / "database.sql", "r+b") as file:
        file.truncate(6 << 30)
    manifest = json.loads((dataset / "manifest.json").read_text())
    manifest["files"]["database.sql"]["bytes"] = 6 << 30
    (dataset / "manifest.json").write_text(json.dumps(manifest))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = verify_in_a_child(dataset)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    assert result.returncode == 1, result.stderr
    assert "- database.sql is 6442450944 bytes; gen verify reads dumps of up to" in result.stdout
    assert "database.sql changed" not in result.stdout  # not hashed either
    # CPU time, not wall time: other work may share the machine. Reading 6 GB takes seconds.
    assert (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime) < 20


# Peak memory (ru_maxrss, kB on Linux) before and after verify_dataset, in a fresh process.
MEASURE_VERIFY = """
import json, resource, sys
from gen.verify import verify_dataset
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
problems = verify_dataset(sys.argv[1])
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps([before * 1024, after * 1024, problems]))
"""


def test_a_huge_string_in_the_dump_is_refused_in_little_memory(dataset: Path) -> None:
    huge = "x" * (100 << 20)
    craft(dataset, lambda sql: replace_value(sql, ROW, f"'{huge}'"))
    measured = subprocess.run(
        [sys.executable, "-c", MEASURE_VERIFY, str(dataset)], capture_output=True, text=True, timeout=600
    )
    before, after, problems = json.loads(measured.stdout)
    assert any(p.startswith("database.sql line ") for p in problems), problems
    assert after - before < 100 << 20, (before, after)


def test_an_export_from_a_checkpoint_gen_did_not_name_verifies(tmp_path: Path) -> None:
    # The file's own name is not published (it may name a study); the row must still load.
    engine = open_database(f"sqlite:///{tmp_path / 'gen.db'}")
    gan_id = record_synthetic_model(engine, tmp_path / "samples", 2)
    with engine.begin() as connection:
        connection.exec_driver_sql("UPDATE checkpoints SET path = '/runs/patient-17/best.pt'")
    for dialect in ("postgresql", "sqlite"):
        out = export_dataset(engine, gan_id, tmp_path / dialect, sql_dump=True, dialect=dialect).out
        assert "patient-17" not in (out / "database.sql").read_text()
        assert verify_dataset(out) == []
    engine.dispose()


def psql_file(server: Any, dump: Path, cwd: Path) -> tuple[subprocess.CompletedProcess[str], int | None]:
    """psql -f dump run in cwd against a scratch database, as the dump's header suggests, and
    the number of image rows it then holds (None if it holds no images table)."""
    url = server.create_database()
    try:
        loaded = subprocess.run(
            ["psql", "-v", "ON_ERROR_STOP=1", "-X", "-q", "-d", url, "-f", str(dump)],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        counted = subprocess.run(
            ["psql", "-X", "-q", "-t", "-A", "-d", url, "-c", "SELECT count(*) FROM images"],
            capture_output=True,
            text=True,
            check=False,
        )
        return loaded, int(counted.stdout) if counted.returncode == 0 else None
    finally:
        server.drop_database(url)


@pytest.mark.postgres
def test_psql_runs_the_crafted_dumps_verify_refuses(
    exported: dict[str, Path], tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    server = request.getfixturevalue("postgres_server")
    attacks: dict[str, Callable[[str], str]] = {
        name: partial(lambda sql, text: sql.replace(IMAGES_TABLE, IMAGES_TABLE + text, 1), text=text)
        for name, text in PSQL_ATTACKS.items()
    }
    attacks["a meta-command after COMMIT"] = DUMP_VARIANTS["a meta-command after COMMIT"]
    for number, (name, change) in enumerate(attacks.items()):
        work = tmp_path / f"attack-{number}"
        root = Path(shutil.copytree(exported["postgresql"], work / "data"))
        craft(root, change)
        assert dump_refused(verify_dataset(root)), name
        assert not (work / MARKER).exists()
        psql_file(server, root / "database.sql", work)
        assert (work / MARKER).exists(), f"{name}: psql did not run the meta-command"


@pytest.mark.postgres
def test_psql_loads_a_genuine_dump_and_runs_nothing_in_its_strings(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """Values with a backslash command at a line start, quotes and dollars are inside strings
    for psql too: the dump verifies, loads with exit 0 and runs nothing."""
    server = request.getfixturevalue("postgres_server")
    engine = open_database(f"sqlite:///{tmp_path / 'gen.db'}")
    gan_id = record_synthetic_model(engine, tmp_path / "samples", 2)
    nasty = f"cpu\n\\! touch {MARKER}\n' $$ E'\\'' -- /* [x] `y`"
    with engine.begin() as connection:
        connection.exec_driver_sql("UPDATE images SET device = ?", (nasty,))
        connection.exec_driver_sql("UPDATE gan_architectures SET preset = ?", (nasty,))
    for dialect in ("postgresql", "sqlite"):
        out = export_dataset(engine, gan_id, tmp_path / dialect, sql_dump=True, dialect=dialect).out
        assert verify_dataset(out) == []
        if dialect == "postgresql":
            loaded, images = psql_file(server, out / "database.sql", tmp_path)
            assert loaded.returncode == 0 and "ERROR" not in loaded.stderr, loaded.stderr
            assert images == 8
        elif shutil.which("sqlite3"):  # the way the card says to load this dialect
            with open(out / "database.sql", "rb") as stdin:
                loaded_sqlite = subprocess.run(
                    ["sqlite3", str(tmp_path / "loaded.db")], stdin=stdin, capture_output=True, check=False
                )
            assert loaded_sqlite.returncode == 0, loaded_sqlite.stderr
            connection = sqlite3.connect(tmp_path / "loaded.db")
            assert connection.execute("SELECT DISTINCT device FROM images").fetchall() == [(nasty,)]
            connection.close()
    assert not (tmp_path / MARKER).exists()
    engine.dispose()
