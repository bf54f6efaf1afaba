"""Data sets, model names, classifiers and deletes that ask first (gen data, gen models
rename, gen classifiers), on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from db import classifiers as classifier_rows
from db import datasets as dataset_rows
from db import generators as generator_rows
from db.models import Checkpoint, Classifier, Dataset, GanArchitecture, TrainingParameters
from db.session import make_engine, migrate, open_database
from gen import dataset_registry
from gen.architecture import preset, to_json
from gen.cli import cli
from gen.commands import confirm
from gen.errors import GenError
from gen.image_folder import load_image_folder
from gen.phantoms import write_phantoms

TRAINING = {
    "g_optimizer": "adam",
    "d_optimizer": "adam",
    "loss": "hinge",
    "batch_size": 4,
    "g_lr": 1e-4,
    "d_lr": 4e-4,
}


def gen(url: str, *arguments: str, input: str | None = None) -> Result:
    return CliRunner().invoke(cli, [*arguments, "--db", url], input=input)


def ok(result: Result) -> str:
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code == 0, result.output
    return result.stdout


def user_error(result: Result) -> str:
    """One line `Error: ...`, exit status 1, no traceback; returns the line."""
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), result.exception
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    return lines[0]


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("catalog") / "phantoms"
    write_phantoms(root, per_class=3)
    return root


def count(url: str, model: type) -> int:
    engine = make_engine(url)
    try:
        with Session(engine) as session:
            return session.scalar(select(func.count()).select_from(model)) or 0
    finally:
        engine.dispose()


def record_model(url: str, *, folder: Path | None = None, fingerprint: str | None = None) -> int:
    """A model row set with one checkpoint row, as training records it (without training)."""
    engine = open_database(url)
    try:
        with Session(engine) as session:
            training = dict(TRAINING)
            if folder is not None:
                training.update(dataset_path=str(folder.resolve()), dataset_fingerprint=fingerprint)
            generator, discriminator = preset("tiny", 2)
            gan_id = generator_rows.record_model(
                session,
                preset="tiny",
                generator=to_json(generator),
                discriminator=to_json(discriminator),
                class_names=["a", "b"],
                training=training,
            )
            generator_rows.record_checkpoint(
                session, gan_id, f"/runs/{gan_id}/checkpoint-0000002.pt", 2, "0" * 64
            )
            return gan_id
    finally:
        engine.dispose()


def test_data_add_list_show_rename(database_url: str, phantoms: Path) -> None:
    added = ok(gen(database_url, "data", "add", "pbc", str(phantoms), "-q"))
    fingerprint = load_image_folder(phantoms).fingerprint
    assert (
        added.strip()
        == f"data set pbc: 12 images in 4 classes at {phantoms.resolve()} (fingerprint {fingerprint[:12]})"
    )
    listed = ok(gen(database_url, "data", "list")).splitlines()
    assert listed[0].split() == ["id", "name", "classes", "images", "models", "classifiers", "folder"]
    assert listed[1].split() == ["1", "pbc", "4", "12", "0", "0", str(phantoms.resolve())]

    assert ok(gen(database_url, "data", "rename", "pbc", "pbc4")).strip() == "renamed data set pbc to pbc4"
    shown = ok(gen(database_url, "data", "show", "pbc4"))
    assert f"fingerprint  {fingerprint}" in shown
    assert "phantom_binucleate (3)" in shown
    assert "unchanged since registration" in shown
    assert "pbc4" in user_error(gen(database_url, "data", "show", "pbc"))  # names what exists

    assert "registered already as 'pbc4'" in user_error(
        gen(database_url, "data", "add", "other", str(phantoms), "-q")
    )
    assert "all digits" in user_error(gen(database_url, "data", "rename", "pbc4", "42"))
    assert count(database_url, Dataset) == 1


def test_models_rename_and_names_work_where_ids_do(database_url: str) -> None:
    first, second = record_model(database_url), record_model(database_url)
    assert ok(gen(database_url, "models", "rename", str(first), "pbc-sagan")).strip() == (
        f"model {first} is now called pbc-sagan"
    )
    assert ok(gen(database_url, "models", "show", "pbc-sagan")).startswith(f"model {first} pbc-sagan (tiny)")
    assert "is already called 'pbc-sagan'" in user_error(
        gen(database_url, "models", "rename", str(second), "pbc-sagan")
    )
    assert "all digits" in user_error(gen(database_url, "models", "rename", "pbc-sagan", "7"))
    assert "no model called 'nope'; named models: pbc-sagan" in user_error(
        gen(database_url, "models", "show", "nope")
    )
    ok(gen(database_url, "models", "delete", "pbc-sagan", "--yes"))
    assert count(database_url, GanArchitecture) == 1


def test_delete_without_a_terminal_and_without_yes_fails_cleanly(database_url: str, phantoms: Path) -> None:
    gan_id = record_model(database_url)
    line = user_error(gen(database_url, "models", "delete", str(gan_id)))
    assert line == (
        f"Error: deleting model {gan_id} also affects 1 checkpoints; "
        "pass --yes to confirm without a terminal."
    )
    assert count(database_url, GanArchitecture) == 1 and count(database_url, Checkpoint) == 1

    ok(gen(database_url, "data", "add", "pbc", str(phantoms), "-q"))
    with Session(engine := make_engine(database_url)) as session:
        dataset_rows.link_model_to_dataset(session, gan_id, dataset_rows.get_dataset(session, "pbc").id)
    engine.dispose()
    assert "1 models (unlinked)" in user_error(gen(database_url, "data", "delete", "pbc"))
    assert count(database_url, Dataset) == 1


def test_the_confirmation_prompt_and_yes(
    database_url: str, phantoms: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(confirm, "stdin_is_terminal", lambda: True)
    gan_id = record_model(database_url)
    declined = gen(database_url, "models", "delete", str(gan_id), input="n\n")
    assert declined.exit_code == 1 and "Aborted" in declined.output
    assert f"deleting model {gan_id} also affects 1 checkpoints." in declined.output
    assert count(database_url, GanArchitecture) == 1
    accepted = gen(database_url, "models", "delete", str(gan_id), input="y\n")
    assert ok(accepted).strip().endswith(f"deleted model {gan_id}")
    assert count(database_url, GanArchitecture) == 0 and count(database_url, Checkpoint) == 0

    # --yes asks nothing (no input given), and files stay unless --delete-files.
    folder = tmp_path / "copy"
    shutil.copytree(phantoms, folder)
    ok(gen(database_url, "data", "add", "copy", str(folder), "-q"))
    ok(gen(database_url, "data", "add", "again", str(phantoms), "-q"))
    assert (
        ok(gen(database_url, "data", "delete", "again", "--yes")).strip()
        == "deleted data set again (files kept)"
    )
    assert phantoms.is_dir()
    declined = gen(database_url, "data", "delete", "copy", "--delete-files", input="n\n")
    assert "Aborted" in declined.output and folder.is_dir()
    ok(gen(database_url, "data", "delete", "copy", "--delete-files", "--yes"))
    assert not folder.exists() and count(database_url, Dataset) == 0


def test_a_changed_folder_is_reported_and_refused(database_url: str, phantoms: Path, tmp_path: Path) -> None:
    folder = tmp_path / "data"
    shutil.copytree(phantoms, folder)
    ok(gen(database_url, "data", "add", "pbc", str(folder), "-q"))
    extra = next((folder / "phantom_granular").iterdir())
    shutil.copy(extra, extra.with_name("added.png"))
    assert "CHANGED since registration" in ok(gen(database_url, "data", "show", "pbc"))

    refused = user_error(
        gen(database_url, "train", "--data", "pbc", "--out", str(tmp_path / "run"), "--iters", "1", "-q")
    )
    assert f"the files in {folder.resolve()} changed since it was registered as data set 'pbc'" in refused
    assert count(database_url, GanArchitecture) == 0
    assert not (tmp_path / "run").exists() or not any((tmp_path / "run").glob("checkpoint-*"))

    # gen data move: the same files elsewhere, refused while a model uses the data set.
    moved = tmp_path / "moved"
    shutil.copytree(folder, moved)
    assert "differ from the ones registered" in user_error(
        gen(database_url, "data", "move", "pbc", str(moved))
    )
    ok(gen(database_url, "data", "add", "now", str(folder), "-q"))
    assert (
        ok(gen(database_url, "data", "move", "now", str(moved))).strip()
        == f"data set now now at {moved.resolve()}"
    )
    gan_id = record_model(database_url)
    with Session(engine := make_engine(database_url)) as session:
        dataset_rows.link_model_to_dataset(session, gan_id, dataset_rows.get_dataset(session, "now").id)
    engine.dispose()
    assert "used by 1 models and 0 classifiers, so its folder cannot change" in user_error(
        gen(database_url, "data", "move", "now", str(folder))
    )


def test_migration_registers_the_folders_models_were_trained_on(database_url: str, phantoms: Path) -> None:
    fingerprint = dataset_registry.scan_folder(phantoms).fingerprint
    first = record_model(database_url, folder=phantoms, fingerprint=fingerprint)
    second = record_model(database_url, folder=phantoms, fingerprint=fingerprint)
    engine = make_engine(database_url)
    try:
        with Session(engine) as session:
            classifier_rows.record_classifier(
                session,
                dataset_fingerprint=fingerprint,
                path="/c.pt",
                sha256="0" * 64,
                architecture={},
                accuracy=0.5,
            )
        migrate(engine, "0003", downgrade=True)
        migrate(engine, "head")
        with Session(engine) as session:
            [info] = dataset_rows.list_datasets(session)
            links = set(session.scalars(select(TrainingParameters.dataset_id)))
            [classifier] = classifier_rows.list_classifiers(session)
    finally:
        engine.dispose()
    assert (info.name, info.folder, info.fingerprint, info.models, info.classifiers) == (
        "phantoms",
        str(phantoms.resolve()),
        fingerprint,
        2,
        1,
    )
    assert links == {info.id} and classifier.dataset == "phantoms"
    assert {first, second} == {1, 2}


def test_classifiers_list_show_delete(database_url: str, tmp_path: Path) -> None:
    engine = open_database(database_url)
    assert ok(gen(database_url, "classifiers", "list")).strip().startswith("no classifiers yet")
    weights = tmp_path / "classifier.pt"
    weights.write_bytes(b"weights")
    with Session(engine) as session:
        classifier_id = classifier_rows.record_classifier(
            session,
            dataset_fingerprint="f" * 64,
            path=str(weights),
            sha256=hashlib.sha256(b"weights").hexdigest(),
            architecture={"a": 1},
            accuracy=0.75,
        )
    engine.dispose()
    assert f"{classifier_id}  {'f' * 12}" in ok(gen(database_url, "classifiers", "list"))
    assert "accuracy      0.7500" in ok(gen(database_url, "classifiers", "show", str(classifier_id)))
    assert "weights file" in user_error(
        gen(database_url, "classifiers", "delete", str(classifier_id), "--delete-files")
    )
    ok(gen(database_url, "classifiers", "delete", str(classifier_id)))
    assert weights.is_file()
    assert "no classifier 99" in user_error(gen(database_url, "classifiers", "show", "99"))


def test_training_on_a_changed_folder_by_path_says_so(
    database_url: str, phantoms: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "cells"
    shutil.copytree(phantoms, folder)
    engine = open_database(database_url)
    try:
        registered = dataset_registry.register(engine, "pbc", folder)
        classes = tuple(registered.classes)
        with Session(engine) as session:
            assert dataset_registry.dataset_for_run(
                session, None, folder, registered.fingerprint, classes, ()
            ) == (
                registered.id,
                None,
            )
        extra = next((folder / "phantom_granular").iterdir())
        shutil.copy(extra, extra.with_name("added.png"))
        changed = dataset_registry.scan_folder(folder).fingerprint
        with Session(engine) as session:
            with pytest.raises(GenError, match="changed since it was registered as data set 'pbc'"):
                dataset_registry.dataset_for_run(session, "pbc", folder, changed, classes, ())
            new_id, warning = dataset_registry.dataset_for_run(session, None, folder, changed, classes, ())
            info = dataset_rows.get_dataset(session, new_id)
        assert warning is not None and "changed since it was registered as data set pbc" in warning
        assert (info.name, info.fingerprint, info.classes["phantom_granular"]) == ("cells", changed, 4)
    finally:
        engine.dispose()


def test_deleting_a_data_sets_files_deletes_only_the_images_it_counted(
    database_url: str, phantoms: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "cells"
    shutil.copytree(phantoms, folder)
    nested = folder / "phantom_small_round" / "batch2"
    nested.mkdir()
    shutil.copy(next((folder / "phantom_small_round").glob("*.png")), nested / "again.png")
    ok(gen(database_url, "data", "add", "pbc", str(folder), "-q"))
    images = sorted(folder.rglob("*.png"))
    assert len(images) == 13
    # What the user keeps beside and among the images: never part of the data set.
    (folder / "gen.db").write_bytes(b"SQLite format 3\0 the user's own database")
    (folder / "notes.txt").write_text("what these cells are")
    (folder / "phantom_granular" / "notes.txt").write_text("stain batch 7")
    (folder / "phantom_binucleate" / ".DS_Store").write_bytes(b"\0")

    monkeypatch.setattr(confirm, "stdin_is_terminal", lambda: True)
    declined = gen(database_url, "data", "delete", "pbc", "--delete-files", input="n\n")
    assert f"also affects 13 image files in {folder.resolve()}." in declined.output
    assert f"{folder.resolve()} (gen.db, notes.txt, phantom_binucleate/ and 1 more)" in declined.output
    assert f"{folder.resolve() / 'phantom_granular'} (notes.txt)" in declined.output
    assert "Aborted" in declined.output and all(path.is_file() for path in images)

    out = ok(gen(database_url, "data", "delete", "pbc", "--delete-files", "--yes")).splitlines()
    assert out[0] == "deleted data set pbc and its 13 image files"
    assert out[1].startswith(f"kept, as they hold other files: {folder.resolve()} (gen.db, notes.txt, ")
    assert not any(path.exists() for path in images)
    assert sorted(path.relative_to(folder).as_posix() for path in folder.rglob("*")) == [
        "gen.db",
        "notes.txt",
        "phantom_binucleate",
        "phantom_binucleate/.DS_Store",
        "phantom_granular",
        "phantom_granular/notes.txt",
    ]
    assert count(database_url, Dataset) == 0

    # A folder holding nothing but the images goes whole.
    alone = tmp_path / "alone"
    shutil.copytree(phantoms, alone)
    ok(gen(database_url, "data", "add", "alone", str(alone), "-q"))
    assert ok(gen(database_url, "data", "delete", "alone", "--delete-files", "--yes")).strip() == (
        "deleted data set alone and its 12 image files"
    )
    assert not alone.exists()


@pytest.mark.parametrize("change", ["added", "edited", "unreadable"])
def test_a_data_set_whose_files_changed_keeps_them_all(
    database_url: str, phantoms: Path, tmp_path: Path, change: str
) -> None:
    folder = tmp_path / "cells"
    shutil.copytree(phantoms, folder)
    ok(gen(database_url, "data", "add", "pbc", str(folder), "-q"))
    first = sorted((folder / "phantom_granular").glob("*.png"))[0]
    if change == "added":
        shutil.copy(first, first.with_name("added.png"))
        how = "(phantom_granular had 3 images, now 4)"
    elif change == "edited":
        shutil.copy(sorted((folder / "phantom_binucleate").glob("*.png"))[0], first)
        how = "(as many images per class, but some files' contents differ)"
    else:
        for path in (folder / "phantom_granular").iterdir():
            path.write_bytes(b"not an image any more")
        how = "holds no readable PNG"
    before = sorted((path, path.read_bytes()) for path in folder.rglob("*") if path.is_file())

    line = user_error(gen(database_url, "data", "delete", "pbc", "--delete-files", "--yes"))
    assert f"the files in {folder.resolve()} changed since it was registered as data set 'pbc'" in line
    assert how in line and "none was deleted; delete the record alone, without --delete-files." in line
    assert sorted((path, path.read_bytes()) for path in folder.rglob("*") if path.is_file()) == before
    assert count(database_url, Dataset) == 1


def test_deleting_a_classifiers_file_keeps_a_changed_or_shared_one(database_url: str, tmp_path: Path) -> None:
    def record(path: Path) -> int:
        engine = open_database(database_url)
        try:
            with Session(engine) as session:
                return classifier_rows.record_classifier(
                    session,
                    dataset_fingerprint="f" * 64,
                    path=str(path),
                    sha256=hashlib.sha256(b"weights").hexdigest(),
                    architecture={},
                    accuracy=0.5,
                )
        finally:
            engine.dispose()

    unchanged, changed, shared = tmp_path / "a.pt", tmp_path / "b.pt", tmp_path / "c.pt"
    for path in (unchanged, changed, shared):
        path.write_bytes(b"weights")
    first, second, third, fourth = record(unchanged), record(changed), record(shared), record(shared)
    changed.write_bytes(b"weights retrained by hand")

    assert ok(gen(database_url, "classifiers", "delete", str(first), "--delete-files", "--yes")).strip() == (
        f"deleted classifier {first} and its file"
    )
    assert not unchanged.exists()
    assert ok(gen(database_url, "classifiers", "delete", str(second), "--delete-files", "--yes")).strip() == (
        f"deleted classifier {second}; its file {changed} stays, it changed since recorded"
    )
    assert ok(gen(database_url, "classifiers", "delete", str(third), "--delete-files", "--yes")).strip() == (
        f"deleted classifier {third}; its file {shared} stays, classifier {fourth} uses it"
    )
    assert changed.read_bytes() == b"weights retrained by hand" and shared.is_file()
    assert count(database_url, Classifier) == 1
