"""An export loads as is where people already work: torchvision's ImageFolder, Hugging Face
datasets' imagefolder (through metadata.parquet) and MLCommons Croissant (croissant.json)."""

from __future__ import annotations

import csv
import hashlib
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session
from test_export import CLASSES, record_synthetic_model, write_png

from db import reports as report_rows
from db.session import open_database
from gen.export import HF_METADATA_NAME, METADATA_NAME, export_dataset
from gen.verify import verify_dataset

PER_CLASS = 3


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An export of 4 classes x 3 images, with a report folder's plots beside the images."""
    folder = tmp_path_factory.mktemp("loaders")
    engine = open_database(f"sqlite:///{folder / 'gen.db'}")
    gan_id = record_synthetic_model(engine, folder / "samples", PER_CLASS)
    out = export_dataset(engine, gan_id, folder / "export", sql_dump=True, csv=True).out
    engine.dispose()
    return out


def test_torchvision_image_folder_finds_the_classes_and_nothing_else(exported: Path) -> None:
    from gen._torchvision import torchvision

    loaded = torchvision.datasets.ImageFolder(str(exported))
    assert loaded.classes == sorted(CLASSES)
    counts = {name: 0 for name in loaded.classes}
    for path, label in loaded.samples:
        assert Path(path).parent.name == loaded.classes[label]
        counts[loaded.classes[label]] += 1
    assert counts == dict.fromkeys(sorted(CLASSES), PER_CLASS)


def test_hugging_face_imagefolder_gives_every_image_with_its_class_label(
    exported: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """load_dataset("imagefolder", data_dir=EXPORT) as written in the card: `label` is a
    ClassLabel with the class names in the data set's order, no class_encode_column needed."""
    # Nothing may be fetched: the loader is packaged with datasets, the cache is private.
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    import datasets

    loaded = datasets.load_dataset("imagefolder", data_dir=str(exported), cache_dir=str(tmp_path / "cache"))
    assert list(loaded) == ["train"]
    rows = loaded["train"]
    assert len(rows) == len(CLASSES) * PER_CLASS
    label = rows.features["label"]
    assert isinstance(label, datasets.ClassLabel)
    assert label.names == list(json.loads((exported / "manifest.json").read_text())["classes"])
    assert sorted(label.int2str(rows["label"])) == sorted(name for name in CLASSES for _ in range(PER_CLASS))
    first = rows[0]
    assert first["image"].size == (64, 64)
    with (exported / METADATA_NAME).open(newline="") as file:
        metadata = list(csv.DictReader(file))
    expected = [(row["label"], row["md5"]) for row in metadata]
    assert expected == list(zip(label.int2str(rows["label"]), rows["md5"], strict=True))
    for row in rows.select(range(len(CLASSES))):
        assert hashlib.md5(row["image"].tobytes()).hexdigest()  # decodes
    by_md5 = {
        hashlib.md5(path.read_bytes()).hexdigest(): path.parent.name for path in exported.glob("*/*.png")
    }
    assert [by_md5[md5] for md5 in rows["md5"]] == label.int2str(rows["label"])


def test_verify_checks_metadata_parquet(exported: Path, tmp_path: Path) -> None:
    import pyarrow.parquet as parquet

    copy = tmp_path / "copy"
    shutil.copytree(exported, copy)
    table = parquet.read_table(copy / HF_METADATA_NAME)
    labels = table.column("label").to_pylist()
    swapped = table.set_column(
        table.schema.get_field_index("label"), "label", [[(labels[0] + 1) % len(CLASSES), *labels[1:]]]
    )
    parquet.write_table(swapped.replace_schema_metadata(table.schema.metadata), copy / HF_METADATA_NAME)
    first = table.column("file_name")[0].as_py()
    problems = verify_dataset(copy)
    assert any(p.startswith(f"{HF_METADATA_NAME} changed") for p in problems)
    assert any(f"{HF_METADATA_NAME} row 1 gives {first} the label" in p for p in problems)
    parquet.write_table(
        table.slice(1).replace_schema_metadata(table.schema.metadata), copy / HF_METADATA_NAME
    )
    assert f"{first} has no row in {HF_METADATA_NAME}" in verify_dataset(copy)
    (copy / HF_METADATA_NAME).write_text("not parquet")
    assert any(p.startswith(f"{HF_METADATA_NAME} cannot be read") for p in verify_dataset(copy))


def test_verify_checks_the_image_table_csv(exported: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(exported, copy)
    assert verify_dataset(copy) == []
    path = copy / METADATA_NAME
    lines = path.read_text().splitlines(keepends=True)
    first = lines[1].split(",")
    wrong_label = ",".join([first[0], CLASSES[1] if first[1] != CLASSES[1] else CLASSES[0], *first[2:]])
    path.write_text("".join([lines[0], wrong_label, *lines[3:]]))
    problems = verify_dataset(copy)
    assert any(f"{METADATA_NAME} changed" in p for p in problems)
    assert any(f"gives {first[0]} the label" in p for p in problems)
    second_file = lines[2].split(",")[0]
    assert f"{second_file} has no line in {METADATA_NAME}" in problems
    (copy / "grids").mkdir()
    assert "grids/: unexpected folder (not a class of this data set)" in verify_dataset(copy)


def test_croissant_json_validates_with_the_mlcroissant_cli(exported: Path) -> None:
    checked = subprocess.run(
        [
            str(Path(sys.executable).with_name("mlcroissant")),
            "validate",
            "--jsonld",
            str(exported / "croissant.json"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "error" not in (checked.stdout + checked.stderr).lower().replace("0 error", "")
    document = json.loads((exported / "croissant.json").read_text())
    assert document["conformsTo"] == "http://mlcommons.org/croissant/1.1"
    for key in ("name", "description", "license", "citeAs", "creator", "version", "datePublished"):
        assert document[key], key
    for key in (
        "rai:dataCollection",
        "rai:dataLimitations",
        "rai:dataBiases",
        "rai:personalSensitiveInformation",
    ):
        assert document[key], key
    files = [entry for entry in document["distribution"] if entry.get("encodingFormat") == "image/png"]
    pngs = sorted(str(p.relative_to(exported)) for p in exported.glob("*/*.png"))
    described = sorted(entry["contentUrl"] for entry in files if entry["@type"] == "cr:FileObject")
    assert described == pngs
    for entry in files:
        if entry["@type"] == "cr:FileObject":
            data = (exported / entry["contentUrl"]).read_bytes()
            assert entry["md5"] == hashlib.md5(data).hexdigest()
            assert entry["sha256"] == hashlib.sha256(data).hexdigest()
    assert str(exported) not in (exported / "croissant.json").read_text()


def test_mlcroissant_loads_every_image_with_its_label(exported: Path) -> None:
    import mlcroissant as mlc

    records = list(mlc.Dataset(jsonld=str(exported / "croissant.json")).records("images"))
    assert len(records) == len(CLASSES) * PER_CLASS
    found = {}
    for record in records:
        file_name = record["images/file_name"].decode()
        assert record["images/image"].size == (64, 64)
        assert record["images/md5"].decode() == hashlib.md5((exported / file_name).read_bytes()).hexdigest()
        found[file_name] = record["images/label"].decode()
    assert found == {str(p.relative_to(exported)): p.parent.name for p in exported.glob("*/*.png")}


def test_verify_checks_croissant_json(exported: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(exported, copy)
    document = json.loads((copy / "croissant.json").read_text())
    images = [
        e for e in document["distribution"] if e["@type"] == "cr:FileObject" and e["name"] != METADATA_NAME
    ]
    images[0]["sha256"] = "0" * 64
    document["distribution"].remove(images[1])
    (copy / "croissant.json").write_text(json.dumps(document))
    problems = verify_dataset(copy)
    assert f"croissant.json: the checksums of {images[0]['contentUrl']} differ from the file's" in problems
    assert f"{images[1]['contentUrl']} is not described in croissant.json" in problems
    assert any(p.startswith("croissant.json changed:") for p in problems)


def test_the_card_shows_the_evidence_and_how_to_load(tmp_path: Path) -> None:
    engine = open_database(f"sqlite:///{tmp_path / 'gen.db'}")
    gan_id = record_synthetic_model(engine, tmp_path / "samples", 2)
    measured = {"checkpoint": "/runs/demo/checkpoint-0000200.pt"}  # the one the images come from
    rows = [
        ("near_copy_share", None, 0.0125),
        ("near_copy_share", "cyt_mast", 0.025),
        ("two_sample_auc", None, 0.6375),
        ("gradcam_similarity", "cyt_mast", 0.8125),
    ]
    with Session(engine) as session:
        report_rows.record_report(
            session,
            gan_id,
            [{"metric": m, "class_name": c, "value": v, "settings": measured} for m, c, v in rows],
        )
    report_dir = tmp_path / "report"
    report_dir.mkdir()
    (report_dir / "report.json").write_text(json.dumps(measured))
    plots = ["near-copies-cyt_mast.png", "two-sample-cyt_mast.png", "gradcam-cyt_mast.png", "histogram-a.png"]
    for index, plot in enumerate(plots):
        write_png(report_dir / plot, np.random.default_rng(index), 16)
    out = export_dataset(engine, gan_id, tmp_path / "out", report_dir=report_dir).out
    engine.dispose()
    readme, index = (out / "README.md").read_text(), (out / "index.html").read_text()
    for title, table_row, plot in [
        ("### Near copies", "| cyt_mast | 0.025 |", "plot-near-copies-cyt_mast.png"),
        (
            "### Realism: classifier two-sample test",
            "| all classes | 0.6375 |",
            "plot-two-sample-cyt_mast.png",
        ),
        ("### Grad-CAM: where a classifier looks", "| cyt_mast | 0.8125 |", "plot-gradcam-cyt_mast.png"),
    ]:
        assert title in readme and table_row in readme and f"]({plot})" in readme
        assert f'src="{plot}"' in index and title.removeprefix("### ") in index
    assert 'ImageFolder(".")' in readme and 'load_dataset("imagefolder", data_dir=".")' in readme
    assert 'mlc.Dataset(jsonld="croissant.json").records("images")' in readme
    assert "md5sum -c MD5SUMS" in readme
    assert "ImageFolder" in index and 'src="plot-histogram-a.png"' in index
    assert verify_dataset(out) == []


def test_the_card_lists_every_file_and_names_the_networks(tmp_path: Path) -> None:
    """The card's contents table names every file at the top level (grids and plots by pattern),
    and a preset without a searched cell reads as plain blocks, not "cell no cells"."""
    from gen.architecture import preset, to_json

    engine = open_database(f"sqlite:///{tmp_path / 'gen.db'}")
    gan_id = record_synthetic_model(engine, tmp_path / "samples", 2)
    generator, discriminator = preset("cpu", len(CLASSES))
    with engine.begin() as connection:
        connection.execute(
            text("UPDATE gan_architectures SET generator = :g, discriminator = :d WHERE id = :id"),
            {"g": json.dumps(to_json(generator)), "d": json.dumps(to_json(discriminator)), "id": gan_id},
        )
    report_dir = tmp_path / "report"
    report_dir.mkdir()
    (report_dir / "report.json").write_text("{}")
    (report_dir / "report.md").write_text("# report\n")
    write_png(report_dir / "histogram-a.png", np.random.default_rng(0), 16)
    out = export_dataset(engine, gan_id, tmp_path / "out", sql_dump=True, csv=True, report_dir=report_dir).out
    engine.dispose()
    readme = (out / "README.md").read_text()
    contents = readme[readme.index("## Contents") : readme.index("## Classes")]
    for path in out.iterdir():
        if path.is_file():
            shown = re.sub(r"^(grid|plot)-.*\.png$", r"\1-", path.name)
            assert f"`{shown}" in contents, path.name
    generator_row = next(line for line in readme.splitlines() if line.startswith("| generator |"))
    assert "no cells" not in generator_row and "plain convolution blocks" in generator_row
    assert "self-attention at stages" in generator_row
