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
from pathlib import Path

import pytest
from click.testing import CliRunner
from test_export import record_synthetic_model

from db.session import open_database
from gen.cli import cli
from gen.errors import GenError
from gen.export import export_dataset
from gen.verify import DumpError, _Authoriser, _Statement, load_dump, open_inside, verify_dataset

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
    # The row is one line of a multi-row INSERT; drop it and keep the statement well formed.
    (root / "database.sql").write_text(sql.replace(line + "\n", ""))


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
        [r"database.sql does not load into SQLite: line \d+: 'INSERT INTO \(.*' is not a statement"],
    ),
    "a truncated dump": (
        lambda root: (root / "database.sql").write_text((root / "database.sql").read_text()[:-60]),
        [r"database.sql does not load into SQLite: .*(never ends|COMMIT)"],
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


def test_a_postgresql_dump_loads_into_sqlite(exported: dict[str, Path]) -> None:
    sql = (exported["postgresql"] / "database.sql").read_text()
    assert "SET client_encoding" in sql and "setval(" in sql
    connection = load_dump(sql, "postgresql")
    assert connection.execute("SELECT count(*) FROM images").fetchone() == (20,)
    connection.close()
    with pytest.raises(DumpError, match="line 1: 'INSERT INTO nowhere VALUES;' is not a statement"):
        load_dump("INSERT INTO nowhere VALUES;\n", "sqlite")
    # What SQLite itself refuses is named with its line too.
    broken = sql.replace("'cyt_mast/cyt_mast_000002.png', ", "", 1)
    line = next(number for number, text in enumerate(broken.splitlines(), 1) if "INSERT INTO images" in text)
    with pytest.raises(DumpError, match=rf"line {line}: all VALUES must have the same number of terms"):
        load_dump(broken, "postgresql")


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
    refused = [p for p in problems if p.startswith("database.sql does not load into SQLite: line ")]
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
def test_the_dump_whitelist_refuses_what_sqlite_would_run(exported: dict[str, Path], case: str) -> None:
    sql = (exported["sqlite"] / "database.sql").read_text()
    line = sql[: sql.index("INSERT INTO")].count("\n") + 1
    crafted = sql.replace("INSERT INTO", SLIPPERY[case] + "\nINSERT INTO", 1)
    with pytest.raises(DumpError, match=rf"^line {line}: "):
        load_dump(crafted, "sqlite")


def test_the_dump_loader_stays_quick_on_a_flood_of_statements() -> None:
    # One pass over the text: a million statements, or a string of a million ';' lines, is
    # refused or split at once (splitting at each ';' line by re-reading would take hours).
    started = time.perf_counter()
    with pytest.raises(DumpError, match="line 1: ';' is not a statement"):
        load_dump(";\n" * 1_000_000, "sqlite")
    with pytest.raises(DumpError, match="line 2: no such table"):
        load_dump("BEGIN;\nINSERT INTO images (x) VALUES ('" + "x;\n" * 1_000_000 + "');\n", "sqlite")
    assert time.perf_counter() - started < 30


def test_an_unknown_dialect_is_refused(exported: dict[str, Path]) -> None:
    sql = (exported["sqlite"] / "database.sql").read_text()
    for dialect in ("mysql", None, ["sqlite"]):
        with pytest.raises(DumpError, match="is not one gen writes"):
            load_dump(sql, dialect)  # type: ignore[arg-type]


def test_the_authoriser_alone_refuses_what_a_dump_never_does(home: Path) -> None:
    """The second layer, as if the whitelist had let each statement through as an INSERT."""
    connection = sqlite3.connect(":memory:", isolation_level=None)
    connection.execute("CREATE TABLE images (x)")
    authoriser = _Authoriser()
    connection.set_authorizer(authoriser)
    authoriser.statement = _Statement("insert", "images")
    connection.execute("INSERT INTO images VALUES (1), (2)")  # what it is there for
    for statement in [
        "ATTACH DATABASE 'gen.db' AS mine",
        "ATTACH DATABASE 'new.db' AS new",
        "VACUUM INTO 'copy.db'",
        "PRAGMA writable_schema = 1",
        "CREATE TEMP TRIGGER t AFTER INSERT ON images BEGIN SELECT 1; END",
        "CREATE VIEW v AS SELECT 1",
        "CREATE VIRTUAL TABLE v USING rtree(id, x0, x1)",
        "DELETE FROM images",
        "UPDATE images SET x = 3",
        "ALTER TABLE images ADD COLUMN y",
        "SELECT load_extension('anything')",
        "INSERT INTO images VALUES (abs(-1))",
        "CREATE TABLE elsewhere (x)",
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) INSERT INTO images SELECT i FROM n",
    ]:
        with pytest.raises(sqlite3.DatabaseError, match="not authorized|authorization denied"):
            connection.execute(statement)
    assert sorted(p.name for p in home.iterdir()) == ["gen.db"]
    connection.set_authorizer(None)
    assert connection.execute("SELECT x FROM images").fetchall() == [(1,), (2,)]


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
    "a parent": (set_key(METADATA_ENTRY, "contentUrl", "../metadata.csv"), f"'../metadata.csv', {OUTSIDE}"),
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
        set_key(FILE_SET_ENTRY, "containedIn", {"@id": "metadata.csv"}),
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
    "a wrong MD5 of metadata.csv": (
        set_key(METADATA_ENTRY, "md5", "0" * 32),
        "the checksums of metadata.csv are not the file's",
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
        "fileObject is {'@id': 'file/cyt_mast/cyt_mast_000001.png'}, not metadata.csv",
    ),
    "labels from another column": (
        field_source("label", {"fileObject": {"@id": "metadata.csv"}, "extract": {"column": "seed"}}),
        "field 'images/label' does not read the column label of metadata",
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


def test_a_formula_in_a_number_column_of_metadata_csv_is_a_problem(dataset: Path) -> None:
    path = dataset / "metadata.csv"
    lines = path.read_text().splitlines(keepends=True)
    cells = lines[1].split(",")
    cells[5] = '"=HYPERLINK(""http://x"")"'
    lines[1] = ",".join(cells)
    path.write_text("".join(lines))
    resign(dataset)
    problems = verify_dataset(dataset)
    assert any(
        "metadata.csv line 2: seed is '=HYPERLINK(\"http://x\")', not a number" in p for p in problems
    ), problems


# ----------------------------------------------------------------------------- sizes
# A file a stranger made is measured before it is read, and one nothing claims is never read.


def make_sparse(path: Path, size: int) -> None:
    with open(path, "wb") as file:
        file.truncate(size)


@pytest.mark.parametrize("name", ["metadata.csv", "croissant.json", "cyt_mast/MD5SUMS"])
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
