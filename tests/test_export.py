"""gen.export and `gen export`: the folder's layout, subsets, atomicity, bad input, the archive.

Most tests record images directly (db.images, PNG files written with PIL): an export does not
care how the pixels were made, and this keeps them fast. One end-to-end test trains and samples
a real model through the CLI. `record_synthetic_model` is shared with test_verify,
test_export_browser and bench/bench_export.py does the same at scale.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from db import generators as generator_rows
from db import images as image_rows
from db import reports as report_rows
from db.errors import UserError
from db.names import stored_path
from db.session import open_database
from gen.cli import cli
from gen.commands.export import read_citation
from gen.errors import GenError
from gen.export import (
    CSV_COLUMNS,
    ExportedImage,
    export_dataset,
    md5sums_line,
    parse_md5sums_line,
    write_archive,
    write_metadata_csv,
    write_settings_csv,
)
from gen.verify import verify_dataset

CLASSES = ["cyt_kist_mast", "cyt_mast", "cyt_nep_fib_mast", "cyt_nep_mast"]
TRAINING: dict[str, Any] = {
    "g_optimizer": "adam",
    "d_optimizer": "adam",
    "loss": "hinge",
    "batch_size": 16,
    "epochs": 3,
    "g_lr": 1e-4,
    "d_lr": 4e-4,
    "betas": {"g": [0.0, 0.999], "d": [0.0, 0.999]},
    "ema_decay": 0.999,
    "diffaugment": "color,translation",
    "iterations": 200,
    "seed": 0,
    "settings": {"preset": "tiny"},
}


def write_png(path: Path, rng: np.random.Generator, size: int = 64) -> str:
    """A small noise image; returns its MD5."""
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(
        buffer, format="PNG", compress_level=1
    )
    data = buffer.getvalue()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return hashlib.md5(data).hexdigest()


def record_synthetic_model(
    engine: Engine,
    folder: Path,
    per_class: int,
    classes: Sequence[str] = CLASSES,
    *,
    seed: int = 0,
    size: int = 64,
    batch: int = 1000,
) -> int:
    """A recorded model with per_class PNG files per class under folder/<class>/, as gen sample
    would leave them; returns the model's id."""
    rng = np.random.default_rng(seed)
    with Session(engine) as session:
        gan_id = generator_rows.record_model(
            session,
            preset="tiny",
            generator={"kind": "generator"},
            discriminator={"kind": "discriminator"},
            class_names=list(classes),
            training=TRAINING,
        )
        checkpoint = generator_rows.record_checkpoint(
            session, gan_id, "/runs/demo/checkpoint-0000200.pt", 200, "a" * 64
        )
        for name in classes:
            class_id = generator_rows.resolve_class(session, gan_id, name)
            rows = []
            for index in range(per_class):
                path = folder / name / f"{name}_{index + 1:06d}.png"
                rows.append(
                    {
                        "file_path": stored_path(path),
                        "class_id": class_id,
                        "md5": write_png(path, rng, size),
                        "width": size,
                        "height": size,
                        "seed": seed,
                        "sample_index": index,
                        "checkpoint_id": checkpoint,
                        "iteration": 200,
                    }
                )
                if len(rows) == batch:
                    image_rows.record_images(session, rows)
                    rows = []
            image_rows.record_images(session, rows)
    return gan_id


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> tuple[Engine, int, Path]:
    """A SQLite database with one model of 4 classes x 30 images (and an empty second model)."""
    folder = tmp_path_factory.mktemp("source")
    engine = open_database(f"sqlite:///{folder / 'gen.db'}")
    gan_id = record_synthetic_model(engine, folder / "samples", 30)
    with Session(engine) as session:
        generator_rows.record_model(
            session, preset="tiny", generator={}, discriminator={}, class_names=["empty"], training=TRAINING
        )
    return engine, gan_id, folder


def read_manifest(path: Path) -> dict[str, Any]:
    return json.loads((path / "manifest.json").read_text())


def test_md5sums_lines_match_md5sum_even_for_awkward_names(tmp_path: Path) -> None:
    for name in ["plain.png", "with space.png", "back\\slash.png", "new\nline.png"]:
        (tmp_path / name).write_bytes(name.encode())
        md5 = hashlib.md5(name.encode()).hexdigest()
        line = md5sums_line(md5, name)
        assert parse_md5sums_line(line.rstrip("\n")) == (md5, name)
        if shutil.which("md5sum"):
            made = subprocess.run(["md5sum", name], cwd=tmp_path, capture_output=True, check=True).stdout
            assert made.decode() == line
    assert parse_md5sums_line("not a line") is None


def test_csv_cells_a_spreadsheet_would_run_are_escaped(tmp_path: Path) -> None:
    # The settings come from the database, which a checkpoint from anyone may have filled.
    formulas = {
        "g_optimizer": '=HYPERLINK("http://x","y")',
        "d_optimizer": "@SUM(1)",
        "loss": "-2+3",
        "diffaugment": "+1",
        "g_lr": "\t=1",
        "d_lr": "\r=1",
    }
    model = SimpleNamespace(id=7, preset="=cmd|' /C calc'!A0", training={**TRAINING, **formulas})
    image = ExportedImage(1, tmp_path / "x.png", "cyt_mast", "cyt_mast_000001.png", "0" * 32, 3, 4, 200)
    write_settings_csv(tmp_path / "settings.csv", [image], model, None)
    with open(tmp_path / "settings.csv", newline="", encoding="utf-8") as file:
        row = list(csv.DictReader(file))[0]
    assert row["preset"] == "'=cmd|' /C calc'!A0"
    for column, value in formulas.items():
        # A lone carriage return would end the row for a reader, so it becomes a line feed.
        assert row[column] == "'" + value.replace("\r", "\n"), column
    # Numbers and ordinary text are left alone.
    assert (row["model_id"], row["seed"], row["class_name"]) == ("7", "3", "cyt_mast")

    write_metadata_csv(tmp_path / "metadata.csv", [image], -1)
    with open(tmp_path / "metadata.csv", newline="", encoding="utf-8") as file:
        assert list(csv.reader(file))[1] == [
            "cyt_mast/cyt_mast_000001.png",
            "cyt_mast",
            "0" * 32,
            "-1",
            "200",
            "3",
            "4",
        ]


def test_export_layout(source: tuple[Engine, int, Path], tmp_path: Path) -> None:
    engine, gan_id, _ = source
    out = tmp_path / "exports" / "pbc-synthetic"
    result = export_dataset(engine, gan_id, out, sql_dump=True, csv=True)
    assert result.out == out and result.images == 120 and result.classes == dict.fromkeys(CLASSES, 30)
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(
        [
            *CLASSES,
            "database.sql",
            "settings.csv",
            "report.json",
            "README.md",
            "index.html",
            "manifest.json",
            "images.csv",
            "metadata.parquet",
            "croissant.json",
            *(f"grid-{c}.png" for c in CLASSES),
        ]
    )
    assert not list(out.parent.glob(".*")), "no staging folder left beside the data set"
    for name in CLASSES:
        pngs = sorted(p.name for p in (out / name).glob("*.png"))
        assert pngs == [f"{name}_{index:06d}.png" for index in range(1, 31)]
        if shutil.which("md5sum"):
            checked = subprocess.run(
                ["md5sum", "--quiet", "-c", "MD5SUMS"], cwd=out / name, capture_output=True
            )
            assert checked.returncode == 0, checked.stdout + checked.stderr
    manifest = read_manifest(out)
    assert manifest["model_id"] == gan_id and manifest["images"] == 120
    assert manifest["classes"] == dict.fromkeys(CLASSES, 30)
    assert manifest["image_bytes"] == sum(
        p.stat().st_size for p in out.glob("*/*.png") if p.parent.name in CLASSES
    )
    assert manifest["dialect"] == "postgresql" and manifest["csv_rows"] == 100
    assert manifest["tool_version"] and manifest["created_at"] and manifest["source_database"] == "sqlite"
    assert set(manifest["files"]) == {
        "database.sql",
        "settings.csv",
        "report.json",
        "images.csv",
        "metadata.parquet",
        "croissant.json",
        *(f"grid-{c}.png" for c in CLASSES),
        *(f"{c}/MD5SUMS" for c in CLASSES),
    }
    for name, entry in manifest["files"].items():
        assert hashlib.sha256((out / name).read_bytes()).hexdigest() == entry["sha256"]
    # Paths in the dump are relative to the data set.
    dump = (out / "database.sql").read_text()
    assert (
        f"'{CLASSES[0]}/{CLASSES[0]}_000001.png'" in dump and str(source[2]) not in dump.split("images")[-1]
    )
    rows = list(csv.DictReader((out / "settings.csv").open()))
    assert len(rows) == 100 and tuple(rows[0]) == CSV_COLUMNS
    first = rows[0]
    assert first["file_path"] == f"{CLASSES[0]}/{CLASSES[0]}_000001.png" and first["class_name"] == CLASSES[0]
    assert first["md5"] == hashlib.md5((out / first["file_path"]).read_bytes()).hexdigest()
    assert (first["model_id"], first["preset"], first["batch_size"]) == (str(gan_id), "tiny", "16")
    assert (first["g_lr"], first["d_lr"], first["loss"], first["iterations"]) == (
        "0.0001",
        "0.0004",
        "hinge",
        "200",
    )
    report = json.loads((out / "report.json").read_text())
    assert report["figures"] == []
    readme = (out / "README.md").read_text()
    assert "No quality report was recorded" in readme and "md5sum -c MD5SUMS" in readme
    assert "TODO" not in readme and "No licence is granted" in readme and "| cyt_mast | 30 |" in readme
    with Image.open(out / "grid-cyt_mast.png") as grid:
        assert grid.size == (8 * 66 + 2, 4 * 66 + 2)
    assert verify_dataset(out) == []


def test_export_from_both_databases_masks_the_password(database_url: str, tmp_path: Path) -> None:
    if database_url.startswith("postgresql"):
        # The test server trusts every connection, so a password is accepted and ignored.
        database_url = database_url.replace("postgres@", "postgres:s3cret@")
    engine = open_database(database_url)
    try:
        gan_id = record_synthetic_model(engine, tmp_path / "samples", 3)
        result = export_dataset(engine, None, tmp_path / "out", sql_dump=True, dialect="sqlite", csv=True)
    finally:
        engine.dispose()
    assert result.model_id == gan_id and result.images == 12
    manifest = read_manifest(tmp_path / "out")
    assert (
        "s3cret" not in json.dumps(manifest) and "s3cret" not in (tmp_path / "out" / "README.md").read_text()
    )
    assert verify_dataset(tmp_path / "out") == []


def test_subset_and_csv_rows(source: tuple[Engine, int, Path], tmp_path: Path) -> None:
    engine, gan_id, _ = source
    out = tmp_path / "subset"
    result = export_dataset(
        engine, gan_id, out, classes=["cyt_mast", "cyt_nep_mast"], limit_per_class=4, csv=True, csv_rows=5
    )
    assert result.classes == {"cyt_mast": 4, "cyt_nep_mast": 4}
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["cyt_mast", "cyt_nep_mast"]
    assert sorted(p.name for p in (out / "cyt_mast").glob("*.png")) == [
        f"cyt_mast_{i:06d}.png" for i in range(1, 5)
    ]
    assert len(list(csv.reader((out / "settings.csv").open()))) == 1 + 5
    assert "database.sql" not in read_manifest(out)["files"]
    assert verify_dataset(out) == []
    everything = export_dataset(engine, gan_id, tmp_path / "all-rows", csv=True, csv_rows=None)
    assert len(list(csv.reader((tmp_path / "all-rows" / "settings.csv").open()))) == 1 + everything.images


def test_existing_target_needs_force_and_force_replaces_only_a_data_set(
    source: tuple[Engine, int, Path], tmp_path: Path
) -> None:
    engine, gan_id, _ = source
    out = tmp_path / "data"
    export_dataset(engine, gan_id, out, limit_per_class=2)
    before = read_manifest(out)
    with pytest.raises(GenError, match="already exists; choose another --out or replace it with --force"):
        export_dataset(engine, gan_id, out, limit_per_class=3)
    assert read_manifest(out) == before
    export_dataset(engine, gan_id, out, limit_per_class=3, force=True)
    assert read_manifest(out)["images"] == 12
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.tex").write_text("years of work")
    with pytest.raises(GenError, match="is not a gen data set; refusing to replace it"):
        export_dataset(engine, gan_id, precious, force=True)
    assert (precious / "thesis.tex").read_text() == "years of work"


def test_a_crash_leaves_nothing_behind(
    source: tuple[Engine, int, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine, gan_id, _ = source

    def crash(*args: Any, **kwargs: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr("gen.export.dataset.write_grid", crash)
    with pytest.raises(KeyboardInterrupt):
        export_dataset(engine, gan_id, tmp_path / "out", sql_dump=True, csv=True, archive=True)
    assert list(tmp_path.iterdir()) == []
    # And a crash while replacing keeps the old data set.
    monkeypatch.undo()
    export_dataset(engine, gan_id, tmp_path / "out", limit_per_class=1)
    monkeypatch.setattr("gen.export.dataset.write_grid", crash)
    with pytest.raises(KeyboardInterrupt):
        export_dataset(engine, gan_id, tmp_path / "out", force=True)
    assert (
        sorted(p.name for p in tmp_path.iterdir()) == ["out"]
        and read_manifest(tmp_path / "out")["images"] == 4
    )


def test_force_never_leaves_the_target_without_a_whole_data_set(
    source: tuple[Engine, int, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A crash at each step of replacing: before the swap the old data set is in place, after
    it the new one; never neither."""
    import gen.export.place as export

    engine, gan_id, _ = source
    out = tmp_path / "out"
    export_dataset(engine, gan_id, out, limit_per_class=1)
    real_renameat2, real_rmtree = export._renameat2, shutil.rmtree

    def crash_before_swap(*args: Any) -> bool:
        raise KeyboardInterrupt

    def crash_after_swap(source: Path, target: Path, flags: int) -> bool:
        assert real_renameat2(source, target, flags)
        raise KeyboardInterrupt

    for crash, images in ((crash_before_swap, 4), (crash_after_swap, 8)):
        monkeypatch.setattr(export, "_renameat2", crash)
        with pytest.raises(KeyboardInterrupt):
            export_dataset(engine, gan_id, out, limit_per_class=2, force=True)
        monkeypatch.undo()
        assert read_manifest(out)["images"] == images
        assert verify_dataset(out) == []
        assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no leftover beside it

    # A crash while the old one is being removed: the new one is already whole in place.
    monkeypatch.setattr(shutil, "rmtree", lambda *args, **kwargs: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):
        export_dataset(engine, gan_id, out, limit_per_class=3, force=True)
    monkeypatch.setattr(shutil, "rmtree", real_rmtree)
    assert read_manifest(out)["images"] == 12 and verify_dataset(out) == []


def test_two_exports_racing_to_one_target_the_second_is_refused(
    source: tuple[Engine, int, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both pass the check at the start; the rule still holds when the second moves into place."""
    import gen.export.dataset as export

    engine, gan_id, _ = source
    out = tmp_path / "out"
    real_check = export.check_target

    def the_other_export_finishes_first(target: Path, **options: Any) -> None:
        real_check(target, **options)
        monkeypatch.setattr(export, "check_target", real_check)
        export_dataset(engine, gan_id, target, limit_per_class=1)

    monkeypatch.setattr(export, "check_target", the_other_export_finishes_first)
    with pytest.raises(GenError, match="already exists"):
        export_dataset(engine, gan_id, out, limit_per_class=2)
    assert read_manifest(out)["images"] == 4 and verify_dataset(out) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_bad_input_is_one_sentence(source: tuple[Engine, int, Path], tmp_path: Path) -> None:
    engine, gan_id, _ = source
    cases = [
        ({"gan_id": 99}, "no model 99; models in the database: 1, 2"),
        ({"gan_id": gan_id + 1}, f"model {gan_id + 1} has no recorded images yet; run gen sample first"),
        ({"classes": ["nope"]}, "has no class 'nope'; its classes: cyt_kist_mast"),
        (
            {"sql_dump": True, "dialect": "mysql"},
            "unknown SQL dialect 'mysql'; choose one of: postgresql, sqlite",
        ),
        ({"report_dir": tmp_path}, "holds no report.json"),
    ]
    for options, message in cases:
        arguments = {"gan_id": gan_id, **options}
        with pytest.raises(UserError, match=message):
            export_dataset(engine, arguments.pop("gan_id"), tmp_path / "out", **arguments)
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(GenError, match=r"cannot create the data set .*: .*a-file is a file, not a folder\."):
        export_dataset(engine, gan_id, blocker / "sub" / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into a read-only folder")
def test_read_only_parent(source: tuple[Engine, int, Path], tmp_path: Path) -> None:
    engine, gan_id, _ = source
    parent = tmp_path / "read-only"
    parent.mkdir()
    parent.chmod(0o555)
    try:
        with pytest.raises(GenError, match="cannot create the data set .*permission denied"):
            export_dataset(engine, gan_id, parent / "out")
    finally:
        parent.chmod(0o755)


def test_changed_or_missing_source_files(tmp_path: Path) -> None:
    engine = open_database(f"sqlite:///{tmp_path / 'gen.db'}")
    gan_id = record_synthetic_model(engine, tmp_path / "samples", 3)
    changed = tmp_path / "samples" / "cyt_mast" / "cyt_mast_000002.png"
    changed.write_bytes(changed.read_bytes() + b"\x00")
    with pytest.raises(
        GenError, match=r"refusing to export: .*cyt_mast_000002.png changed since it was recorded"
    ):
        export_dataset(engine, gan_id, tmp_path / "out")
    changed.unlink()
    with pytest.raises(GenError, match=r"1 recorded images of model 1 are missing on disk .*--skip-missing"):
        export_dataset(engine, gan_id, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    result = export_dataset(engine, gan_id, tmp_path / "out", skip_missing=True, sql_dump=True)
    assert result.classes["cyt_mast"] == 2 and result.missing == (stored_path(changed),)
    assert verify_dataset(tmp_path / "out") == []
    engine.dispose()


def test_same_names_from_two_folders_are_kept_apart(tmp_path: Path) -> None:
    engine = open_database(f"sqlite:///{tmp_path / 'gen.db'}")
    gan_id = record_synthetic_model(engine, tmp_path / "first", 2, ["a"])
    with Session(engine) as session:
        class_id = generator_rows.resolve_class(session, gan_id, "a")
        checkpoint = generator_rows.get_model(session, gan_id).checkpoints[0].id
        path = tmp_path / "second" / "a" / "a_000001.png"
        md5 = write_png(path, np.random.default_rng(5))
        row = {"file_path": stored_path(path), "class_id": class_id, "md5": md5, "width": 64, "height": 64}
        image_rows.record_images(
            session, [{**row, "seed": 9, "sample_index": 0, "checkpoint_id": checkpoint, "iteration": 200}]
        )
    out = tmp_path / "out"
    export_dataset(engine, gan_id, out, sql_dump=True, csv=True)
    assert sorted(p.name for p in (out / "a").glob("*.png")) == [
        "a_000001-3.png",
        "a_000001.png",
        "a_000002.png",
    ]
    assert "'a/a_000001-3.png'" in (out / "database.sql").read_text()
    assert verify_dataset(out) == []
    engine.dispose()


def test_reports_rows_and_report_folder(source: tuple[Engine, int, Path], tmp_path: Path) -> None:
    engine = open_database(f"sqlite:///{tmp_path / 'gen.db'}")
    gan_id = record_synthetic_model(engine, tmp_path / "samples", 2)
    measured = {"checkpoint": "/runs/demo/checkpoint-0000200.pt"}  # the one the images come from
    with Session(engine) as session:
        report_rows.record_report(
            session,
            gan_id,
            [
                {"metric": "fid", "value": 41.25, "settings": measured},
                {"metric": "kid", "value": 0.013, "class_name": "cyt_mast", "settings": measured},
            ],
        )
    out = export_dataset(engine, gan_id, tmp_path / "from-rows", sql_dump=True).out
    figures = json.loads((out / "report.json").read_text())["figures"]
    assert [(f["metric"], f["class_name"], f["value"]) for f in figures] == [
        ("fid", None, 41.25),
        ("kid", "cyt_mast", 0.013),
    ]
    assert "| fid | all classes | 41.25 |" in (out / "README.md").read_text()
    assert "INSERT INTO reports" in (out / "database.sql").read_text()
    report_dir = tmp_path / "report"
    report_dir.mkdir()
    (report_dir / "report.json").write_text(
        '{"fid": 41.25, "checkpoint": "/runs/demo/checkpoint-0000200.pt"}'
    )
    write_png(report_dir / "fid.png", np.random.default_rng(1), 32)
    (report_dir / "report.md").write_text("# Quality report\n\n![fid.png](fid.png)\n")
    out = export_dataset(engine, gan_id, tmp_path / "from-folder", report_dir=report_dir).out
    # The checkpoint's folder is left out (gen.redact); its own name stays.
    assert json.loads((out / "report.json").read_text()) == {
        "fid": 41.25,
        "checkpoint": "checkpoint-0000200.pt",
    }
    assert (out / "report.md").read_text() == "# Quality report\n\n![fid.png](plot-fid.png)\n"
    assert "report.md" in read_manifest(out)["files"]
    assert (out / "plot-fid.png").is_file() and 'src="plot-fid.png"' in (out / "index.html").read_text()
    assert verify_dataset(out) == []
    engine.dispose()


def test_archive_is_deterministic_and_checks_with_sha256sum(
    source: tuple[Engine, int, Path], tmp_path: Path
) -> None:
    engine, gan_id, _ = source
    out = tmp_path / "x"
    result = export_dataset(engine, gan_id, out, limit_per_class=3, sql_dump=True, csv=True, archive=True)
    archive = tmp_path / "x.tar.gz"
    assert result.archive == archive
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x", "x.tar.gz", "x.tar.gz.sha256"]
    if shutil.which("sha256sum"):
        subprocess.run(["sha256sum", "--quiet", "-c", "x.tar.gz.sha256"], cwd=tmp_path, check=True)
    again = tmp_path / "again.tar.gz"
    write_archive(out, again)
    assert again.read_bytes() == archive.read_bytes()
    with tarfile.open(archive) as tar:
        members = tar.getmembers()
        assert members[0].name == "x" and all(m.name.startswith("x/") for m in members[1:])
        assert {(m.uid, m.gid, m.uname, m.mtime) for m in members} == {(0, 0, "", members[0].mtime)}
        tar.extractall(tmp_path / "unpacked", filter="data")
    assert verify_dataset(tmp_path / "unpacked" / "x") == []
    with pytest.raises(GenError, match=r"x.tar.gz already exists"):
        shutil.rmtree(out)
        export_dataset(engine, gan_id, out, limit_per_class=3, archive=True)


# ----------------------------------------------------------------------------- the CLI, end to end


@pytest.mark.slow
def test_cli_end_to_end_on_a_trained_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from gen.phantoms import write_phantoms

    phantom_classes = write_phantoms(tmp_path / "data", per_class=8)
    url = f"sqlite:///{tmp_path / 'gen.db'}"
    runner = CliRunner()
    steps = [
        ["train", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "run"), "--iters", "2"],
        ["sample", "--n", "5", "--all-classes", "--out", str(tmp_path / "samples")],
    ]
    for arguments in steps:
        result = runner.invoke(cli, [*arguments, "--batch-size", "4", "--db", url, "-q"])
        assert result.exit_code == 0, result.output
    out = tmp_path / "exports" / "demo"
    exported = runner.invoke(
        cli,
        [
            "export",
            "--out",
            str(out),
            "--sql-dump",
            "--csv",
            "--archive",
            "--license",
            "CC-BY-4.0",
            "--db",
            url,
            "-q",
        ],
    )
    assert exported.exit_code == 0, exported.output
    assert f"exported 20 images in 4 classes of model 1 to {out}" in exported.output
    assert (tmp_path / "exports" / "demo.tar.gz").is_file()
    verified = runner.invoke(cli, ["verify", str(out), "-q"])
    assert verified.exit_code == 0, verified.output
    assert verified.output.strip() == "OK: 20 images in 4 classes verified"
    again = runner.invoke(cli, ["export", "--out", str(out), "--license", "none", "--db", url, "-q"])
    assert again.exit_code == 1 and "already exists" in again.output
    unknown = runner.invoke(
        cli, ["export", "--model", "7", "--out", str(tmp_path / "x"), "--license", "none", "--db", url]
    )
    assert unknown.exit_code == 1 and "Error: no model 7; models in the database: 1" in unknown.output
    dialect = runner.invoke(cli, ["export", "--sql-dump", "--dialect", "mysql", "--db", url])
    assert dialect.exit_code != 0 and "'mysql' is not one of" in dialect.output
    rows = runner.invoke(cli, ["export", "--csv-rows", "lots", "--db", url])
    assert rows.exit_code != 0 and "a number of rows or 'all'" in rows.output
    monkeypatch.chdir(tmp_path)
    two = sorted(phantom_classes)[:2]
    default = runner.invoke(
        cli, ["export", "--classes", ",".join(two), "--license", "none", "--db", url, "-q"]
    )
    # Without --out the data set lands in exports/model-<id> of the working directory.
    assert default.exit_code == 0, default.output
    assert read_manifest(tmp_path / "exports" / "model-1")["classes"] == dict.fromkeys(two, 5)


def test_an_export_names_no_local_folder_host_or_user(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Trained from a folder named after a (fake) patient, reported and exported: no file of
    the export, the archive included, holds that name or the machine's paths."""
    import getpass
    import gzip
    import socket
    import tempfile

    from gen.phantoms import write_phantoms

    secret = "PATIENT-4711-STUDY-QX"
    data, held_out = tmp_path / secret / "train", tmp_path / secret / "test"
    write_phantoms(data, per_class=8)
    write_phantoms(held_out, per_class=8, seed=5)
    monkeypatch.setenv("GEN_CACHE_DIR", str(tmp_path / "cache"))
    url = f"sqlite:///{tmp_path / 'gen.db'}"
    runner = CliRunner()
    run = tmp_path / f"runs-{secret}"
    steps = [
        ["train", "--data", str(data), "--out", str(run), "--iters", "2", "--batch-size", "4"],
        ["sample", "--n", "3", "--all-classes", "--out", str(tmp_path / f"samples-{secret}")],
        ["report", "--real", str(held_out), "--n", "8", "--out", str(tmp_path / f"report-{secret}")],
    ]
    for arguments in steps:
        result = runner.invoke(cli, [*arguments, "--db", url, "-q"])
        assert result.exit_code == 0, result.output
    out = tmp_path / "exports" / "published"
    result = runner.invoke(
        cli,
        ["export", "--out", str(out), "--sql-dump", "--csv", "--archive", "--license", "CC-BY-4.0",
         "--report", str(tmp_path / f"report-{secret}"), "--db", url, "-q"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output

    forbidden = {secret, str(tmp_path), str(Path.home()), tempfile.gettempdir() + "/", str(Path.cwd())}
    hostname, user = socket.gethostname(), getpass.getuser()
    if len(hostname) > 4 and hostname != "localhost":
        forbidden.add(hostname)
    if user not in ("root", "user", "runner"):  # common words a card may hold for other reasons
        forbidden.add(user)
    contents = {path: path.read_bytes() for path in out.rglob("*") if path.is_file()}
    archive = out.with_name(out.name + ".tar.gz")
    contents[archive] = gzip.decompress(archive.read_bytes())
    assert any(path.name == "database.sql" for path in contents)
    for path, data in contents.items():
        for word in forbidden:
            assert word.encode() not in data, f"{path.name} holds {word!r}"
    # The training folder is still identified: by its fingerprint.
    assert b"dataset_fingerprint" in contents[out / "database.sql"]


def citation_value(tmp_path: Path, kind: str) -> str:
    if kind == "missing":
        return str(tmp_path / "refs" / "cite.bib")  # a mistyped path, not a citation
    if kind == "relative missing":
        return "cite.bib"
    if kind == "fifo":
        os.mkfifo(tmp_path / "cite.bib")
        return str(tmp_path / "cite.bib")
    if kind == "folder":
        (tmp_path / "refs").mkdir()
        return str(tmp_path / "refs")
    (tmp_path / "cite.bib").write_bytes(b"@article{\xff\xfe}")
    return str(tmp_path / "cite.bib")


@pytest.mark.parametrize("kind", ["missing", "relative missing", "fifo", "folder", "not UTF-8"])
def test_a_citation_file_that_cannot_be_read_is_one_sentence(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    monkeypatch.chdir(tmp_path)
    value = citation_value(tmp_path, kind)
    out = tmp_path / "out"
    result = CliRunner().invoke(
        cli,
        ["export", "--out", str(out), "--license", "CC0-1.0", "--citation", value,
         "--db", f"sqlite:///{tmp_path / 'gen.db'}"],
    )  # fmt: skip
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"Error: --citation {value}"), result.output
    assert not out.exists() and not (tmp_path / "gen.db").exists()


@pytest.mark.parametrize(
    "text",
    ["10.5281/zenodo.1234567", "https://doi.org/10.5281/zenodo.1234567", "Doe J. Synthetic cells. 2026.",
     "@misc{doe2026, title={Cells}}"],
)  # fmt: skip
def test_a_citation_that_is_text_is_published_as_given(text: str) -> None:
    assert read_citation(text) == text


def test_the_card_states_the_licences_and_the_citation(tmp_path: Path) -> None:
    from gen.phantoms import write_phantoms

    write_phantoms(tmp_path / "data", per_class=4)
    url = f"sqlite:///{tmp_path / 'gen.db'}"
    runner = CliRunner()
    for arguments in (
        ["train", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "run"), "--iters", "1"],
        ["sample", "--n", "2", "--all-classes", "--out", str(tmp_path / "samples")],
    ):
        result = runner.invoke(cli, [*arguments, "--batch-size", "4", "--db", url, "-q"])
        assert result.exit_code == 0, result.output

    missing = runner.invoke(cli, ["export", "--out", str(tmp_path / "a"), "--db", url, "-q"])
    assert missing.exit_code == 2 and "Missing option '--license'" in missing.output
    bad = runner.invoke(cli, ["export", "--out", str(tmp_path / "a"), "--license", "CC BY!", "--db", url])
    assert bad.exit_code == 1 and "is not an SPDX licence identifier" in bad.output
    assert not (tmp_path / "a").exists()

    citation = tmp_path / "cite.bib"
    citation.write_text("@article{doe2026,\n  title = {Synthetic blood cells}\n}\n")
    out = tmp_path / "published"
    result = runner.invoke(
        cli,
        ["export", "--out", str(out), "--license", "CC-BY-4.0", "--training-license", "CC-BY-4.0",
         "--citation", str(citation), "--title", "Synthetic phantoms",
         "--description", "Four phantom classes.", "--db", url, "-q"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    card = (out / "README.md").read_text()
    assert "TODO" not in card
    assert card.startswith("# Synthetic phantoms\n") and "Four phantom classes." in card
    assert "published under [CC-BY-4.0](https://spdx.org/licenses/CC-BY-4.0.html)" in card
    assert "trained on are under [CC-BY-4.0]" in card
    assert "@article{doe2026," in card
    manifest = read_manifest(out)
    assert (manifest["license"], manifest["training_license"]) == ("CC-BY-4.0", "CC-BY-4.0")
    assert "Licence: CC-BY-4.0" in (out / "index.html").read_text()

    none = tmp_path / "unlicensed"
    result = runner.invoke(cli, ["export", "--out", str(none), "--license", "none", "--db", url, "-q"])
    assert result.exit_code == 0, result.output
    card = (none / "README.md").read_text()
    assert "No licence is granted" in card and "was not stated" in card and "TODO" not in card
    assert "@misc{gen_model1_" in card  # a citation of the data set itself


def test_choose_the_images_and_publish_only_a_report_that_describes_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gen.phantoms import write_phantoms

    write_phantoms(tmp_path / "data", per_class=8)
    write_phantoms(tmp_path / "held-out", per_class=8, seed=3)
    monkeypatch.setenv("GEN_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)  # gen report writes reports/model-1 here, where export finds it
    url = f"sqlite:///{tmp_path / 'gen.db'}"
    runner = CliRunner()

    def run(*arguments: str) -> str:
        result = runner.invoke(cli, [*arguments, "--db", url, "-q"])
        assert result.exit_code == 0, result.output
        return result.output

    run("train", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "run"), "--iters", "2",
        "--batch-size", "4", "--checkpoint-every", "1")  # fmt: skip
    run("sample", "--checkpoint", "1", "--n", "2", "--all-classes", "--out", str(tmp_path / "early"))
    run("sample", "--n", "3", "--all-classes", "--seed", "7", "--out", str(tmp_path / "late"))
    run("report", "--real", str(tmp_path / "held-out"), "--n", "8")  # measures the latest, iteration 2

    def export(name: str, *selection: str) -> tuple[dict[str, Any], str]:
        out = tmp_path / "exports" / name
        run("export", "--out", str(out), "--license", "CC0-1.0", "--sql-dump", *selection)
        assert verify_dataset(out) == []
        return read_manifest(out), (out / "README.md").read_text()

    manifest, card = export("all")
    assert manifest["images"] == 5 * 4
    assert "No quality report describes these images" in card  # iterations 1 and 2 mixed
    assert not list((tmp_path / "exports" / "all").glob("plot-*"))

    manifest, card = export("early", "--checkpoint", "1")
    assert manifest["images"] == 2 * 4 and "No quality report describes these images" in card

    manifest, card = export("late", "--checkpoint", "latest", "--seed", "7")
    assert manifest["images"] == 3 * 4
    assert "No quality report describes" not in card and "domain_kid" in card
    # A stranger with the checkpoint makes the published images again from database.sql.
    late, checkpoint = tmp_path / "exports" / "late", tmp_path / "run" / "checkpoint-0000002.pt"
    result = runner.invoke(cli, ["verify", str(late), "-q", "--regenerate", "--checkpoint", str(checkpoint)])
    assert result.exit_code == 0, result.output
    assert "regenerated 12 images: 12 exact, 0 within one level, 0 differ" in result.output
    wrong = tmp_path / "run" / "checkpoint-0000001.pt"
    result = runner.invoke(cli, ["verify", str(late), "-q", "--regenerate", "--checkpoint", str(wrong)])
    assert result.exit_code == 1 and "is not the checkpoint these images were made from" in result.output

    manifest, _ = export("folder", "--folder", str(tmp_path / "early"))
    assert manifest["images"] == 2 * 4
    result = runner.invoke(
        cli, ["export", "--out", str(tmp_path / "x"), "--license", "none", "--seed", "99", "--db", url]
    )
    assert result.exit_code == 1 and "no recorded images of seed 99" in result.output


def test_a_killed_exports_leftovers_are_removed_by_the_next_export(
    source: tuple[Engine, int, Path], tmp_path: Path
) -> None:
    engine, gan_id, _ = source
    out = tmp_path / "out"
    dead = tmp_path / ".out.999999999.0a1b2c.partial"  # staging of an export whose process is gone
    dead.mkdir()
    (dead / "half.png").write_bytes(b"half")
    dead_archive = tmp_path / ".out.999999999.0a1b2c.tar.gz.partial"
    dead_archive.write_bytes(b"half an archive")
    alive = tmp_path / f".out.{os.getpid()}.ffffff.partial"  # one still being built (this process)
    alive.mkdir()
    export_dataset(engine, gan_id, out, limit_per_class=1)
    assert not dead.exists() and not dead_archive.exists()
    assert alive.is_dir()
    assert verify_dataset(out) == []
