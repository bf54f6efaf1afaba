"""gen.verify and `gen verify`: a clean export verifies; each kind of tampering is named."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner
from test_export import record_synthetic_model

from db.session import open_database
from gen.cli import cli
from gen.errors import GenError
from gen.export import export_dataset
from gen.verify import DumpError, load_dump, verify_dataset

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
        [r"database.sql does not load into SQLite: line \d+: near .*syntax error"],
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
        lambda root: shutil.copyfile(root / "grids" / "cyt_mast.png", root / "grids" / "cyt_nep_mast.png"),
        [r"grids/cyt_nep_mast.png changed"],
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
    with pytest.raises(DumpError, match="line 1: .*syntax error"):
        load_dump("INSERT INTO nowhere VALUES;\n", "sqlite")
