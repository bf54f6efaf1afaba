"""db.session, db.generators, db.images, db.reports and db.classifiers, each test run on SQLite
and on PostgreSQL (see conftest)."""

from __future__ import annotations

import hashlib
import os
import pwd
import shutil
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, insert, inspect, select, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from db import classifiers as classifier_rows
from db import generators as generator_rows
from db import reports as report_rows
from db.errors import UserError
from db.images import record_images, recorded_paths, recorded_samples
from db.models import Checkpoint, ClassName, GanArchitecture, Image, Report, TrainingParameters
from db.session import (
    DEFAULT_DATABASE_URL,
    head_revision,
    make_engine,
    mask_url,
    migrate,
    open_database,
    resolve_database_url,
    upgrade_database,
)
from tests.pg_server import PostgresServer

# Deliberately not alphabetical, so that label order is what is checked.
CLASSES = ["cyt_nep_mast", "cyt_mast", "cyt_kist_mast", "cyt_nep_fib_mast"]
GENERATOR = {"noise_dim": 128, "cell": {"nodes": 4, "code": "12-6"}, "attention": [2, 3], "gain": 0.1}
DISCRIMINATOR = {"cell": {"nodes": 5, "code": "235-66-7"}, "attention": [1], "channels": [64, 128]}
TRAINING: dict[str, Any] = {
    "g_optimizer": "adam",
    "d_optimizer": "adam",
    "loss": "hinge",
    "batch_size": 128,
    "epochs": None,
    "g_lr": 1e-4,
    "d_lr": 4e-4,
    "betas": {"g": [0.5, 0.999], "d": [0.5, 0.999]},
    "ema_decay": 0.999,
    "diffaugment": "color,translation",
    "iterations": 0,
    "dataset_path": "data/cytology",
    "dataset_fingerprint": "ab" * 32,
    "device": "cpu",
    "seed": 7,
    "settings": {"noise_dim": 128, "nested": {"list": [1, 2.5, None, "x"], "flag": True}},
}


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = open_database(database_url)
    yield engine
    engine.dispose()


def add_model(session: Session, classes: list[str] = CLASSES, preset: str = "tiny") -> int:
    return generator_rows.record_model(
        session,
        preset=preset,
        generator=GENERATOR,
        discriminator=DISCRIMINATOR,
        class_names=classes,
        training=TRAINING,
    )


def image_rows(
    class_id: int, checkpoint_id: int, directory: str, indices: range, seed: int = 1
) -> list[dict[str, Any]]:
    return [
        {
            "file_path": f"{directory}/{index:05d}.png",
            "class_id": class_id,
            "md5": hashlib.md5(f"{directory}{seed}{index}".encode()).hexdigest(),
            "width": 64,
            "height": 64,
            "seed": seed,
            "sample_index": index,
            "checkpoint_id": checkpoint_id,
            "iteration": 1000,
        }
        for index in indices
    ]


def count(session: Session, model: type) -> int:
    return session.scalar(select(func.count()).select_from(model)) or 0


# Opening and creating


def test_new_database_is_created_at_head(database_url: str) -> None:
    engine = open_database(database_url)
    try:
        tables = set(inspect(engine).get_table_names())
        assert tables == {
            "alembic_version",
            "gan_architectures",
            "class_names",
            "training_parameters",
            "images",
            "checkpoints",
            "reports",
            "classifiers",
            "searches",
            "search_candidates",
            "datasets",
            "jobs",
            "curations",
        }
        with engine.connect() as connection:
            assert (
                connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
                == head_revision()
            )
    finally:
        engine.dispose()
    # Opening again finds it at head and changes nothing.
    open_database(database_url).dispose()


def test_create_false_refuses_an_empty_database(database_url: str, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="run gen train first"):
        open_database(database_url, create=False)
    # Nothing was created on the way.
    assert not (tmp_path / "gen.db").exists()


def test_database_url_resolution(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GEN_DATABASE_URL", raising=False)
    assert resolve_database_url(None) == DEFAULT_DATABASE_URL == "sqlite:///gen.db"
    monkeypatch.setenv("GEN_DATABASE_URL", "postgresql://me@db/gen")
    assert resolve_database_url(None) == "postgresql://me@db/gen"
    assert resolve_database_url("sqlite:///other.db") == "sqlite:///other.db"


def test_postgresql_urls_use_psycopg2() -> None:
    engine = make_engine("postgresql://user@127.0.0.1:5433/gen")
    assert engine.dialect.driver == "psycopg2"
    engine.dispose()


def test_passwords_are_masked() -> None:
    assert mask_url("postgresql://me:secret@db:5432/gen") == "postgresql://me:***@db:5432/gen"
    assert "secret" not in mask_url("postgresql://me:secret@")
    assert mask_url("sqlite:///gen.db") == "sqlite:///gen.db"


def test_unreachable_server_fails_quickly_with_masked_url() -> None:
    started = time.monotonic()
    with pytest.raises(
        UserError, match=r"cannot connect to the database postgresql://u:\*\*\*@127.0.0.1:1/x"
    ) as error:
        open_database("postgresql://u:secret@127.0.0.1:1/x")
    assert "secret" not in str(error.value)
    assert time.monotonic() - started < 10


@pytest.mark.postgres
def test_unknown_role_and_database_are_user_errors(postgres_server: PostgresServer) -> None:
    with pytest.raises(UserError, match='role "ghost" does not exist') as error:
        open_database(f"postgresql://ghost:pw@127.0.0.1:{postgres_server.port}/postgres")
    assert "pw@" not in str(error.value)
    with pytest.raises(UserError, match='database "missing" does not exist'):
        open_database(postgres_server.url("missing"))


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("not a url", "malformed database URL"),
        ("mysql://me:secret@db/gen", r"unsupported database URL mysql://me:\*\*\*@db/gen"),
        ("sqlite:////no/such/folder/gen.db", "the folder /no/such/folder does not exist"),
    ],
)
def test_bad_urls_are_user_errors(url: str, message: str) -> None:
    with pytest.raises(UserError, match=message):
        open_database(url)


def test_read_only_sqlite_url_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "gen.db"
    open_database(f"sqlite:///{path}").dispose()
    with pytest.raises(UserError, match="read-only"):
        open_database(f"sqlite:///file:{path}?mode=ro&uri=true")


def open_as_unprivileged_user(url: str) -> str:
    """open_database(url) as a user who is not root (root may write to any file); returns the
    UserError's message, or "" when it opened."""
    if os.geteuid() != 0:
        try:
            open_database(url).dispose()
        except UserError as error:
            return str(error)
        return ""
    user = pwd.getpwnam("nobody")
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the forked child
        message = ""
        try:
            os.setgid(user.pw_gid)
            os.setuid(user.pw_uid)
            open_database(url).dispose()
        except UserError as error:
            message = str(error)
        except BaseException as error:
            message = f"unexpected {error!r}"
        finally:
            os.write(write, message.encode())
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        message = pipe.read()
    os.waitpid(child, 0)
    return message


def test_read_only_sqlite_file_and_folder_are_refused() -> None:
    # A folder of its own, which the unprivileged user can reach, unlike pytest's tmp_path.
    folder = Path(tempfile.mkdtemp(prefix="gen-read-only-"))
    try:
        path = folder / "gen.db"
        open_database(f"sqlite:///{path}").dispose()
        folder.chmod(0o777)
        path.chmod(0o444)
        assert open_as_unprivileged_user(f"sqlite:///{path}") == (
            f"cannot use the database sqlite:///{path}: the file {path} is read-only"
        )
        path.chmod(0o666)
        folder.chmod(0o555)
        assert open_as_unprivileged_user(f"sqlite:///{path}") == (
            f"cannot use the database sqlite:///{path}: the folder {folder.resolve()} is read-only"
        )
    finally:
        folder.chmod(0o755)
        shutil.rmtree(folder)


def test_tables_not_made_by_gen_are_left_alone(database_url: str) -> None:
    foreign = make_engine(database_url)
    with foreign.begin() as connection:
        connection.execute(text("CREATE TABLE images (id INTEGER PRIMARY KEY)"))
    foreign.dispose()
    with pytest.raises(UserError, match="tables that gen did not make"):
        open_database(database_url)


def test_older_revision_asks_for_upgrade(database_url: str) -> None:
    engine = make_engine(database_url)
    migrate(engine, "0001")
    engine.dispose()
    with pytest.raises(UserError, match="schema revision 0001 .* run gen db upgrade"):
        open_database(database_url)
    assert upgrade_database(database_url) == ("0001", head_revision())
    assert upgrade_database(database_url) == (head_revision(), head_revision())
    open_database(database_url).dispose()


def test_unknown_revision_is_from_a_newer_gen(engine: Engine, database_url: str) -> None:
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    engine.dispose()
    with pytest.raises(UserError, match="made by a newer version of gen"):
        open_database(database_url)
    with pytest.raises(UserError, match="made by a newer version of gen"):
        upgrade_database(database_url)


# Models


def test_record_model_round_trip(engine: Engine) -> None:
    with Session(engine) as session:
        gan_id = add_model(session)
        model = generator_rows.get_model(session, gan_id)
    assert model.id == gan_id
    assert model.preset == "tiny"
    assert model.generator == GENERATOR
    assert model.discriminator == DISCRIMINATOR
    assert model.class_names == tuple(CLASSES)
    assert model.training == TRAINING
    assert model.checkpoints == ()
    assert model.image_counts == dict.fromkeys(CLASSES, 0)
    assert model.created_at.tzinfo is not None and model.created_at.utcoffset().total_seconds() == 0
    with Session(engine) as session:
        labels = session.execute(
            select(ClassName.label, ClassName.name)
            .where(ClassName.gan_id == gan_id)
            .order_by(ClassName.label)
        ).all()
    assert [tuple(row) for row in labels] == list(enumerate(CLASSES))


def test_null_json_is_sql_null(engine: Engine) -> None:
    with Session(engine) as session:
        gan_id = generator_rows.record_model(
            session,
            preset=None,
            generator=GENERATOR,
            discriminator=DISCRIMINATOR,
            class_names=["a"],
            training={**TRAINING, "settings": None, "betas": None},
        )
        assert session.scalar(select(func.count()).where(TrainingParameters.settings.is_(None))) == 1
        assert generator_rows.get_model(session, gan_id).training["settings"] is None


def test_record_model_rejects_bad_input(engine: Engine) -> None:
    with Session(engine) as session:
        with pytest.raises(TypeError, match="unknown training parameters"):
            generator_rows.record_model(
                session,
                preset="tiny",
                generator={},
                discriminator={},
                class_names=["a"],
                training={"learning_rate": 1},
            )
        with pytest.raises(UserError, match="unique"):
            add_model(session, classes=["a", "b", "a"])
        assert count(session, GanArchitecture) == 0


def test_training_iterations_and_checkpoints(engine: Engine) -> None:
    with Session(engine) as session:
        gan_id = add_model(session)
        generator_rows.update_training_iterations(session, gan_id, 5000)
        second = generator_rows.record_checkpoint(session, gan_id, "runs/1/5000.pt", 5000, "b" * 64)
        first = generator_rows.record_checkpoint(session, gan_id, "runs/1/1000.pt", 1000, "a" * 64)
        model = generator_rows.get_model(session, gan_id)
    assert model.training["iterations"] == 5000
    assert [c.id for c in model.checkpoints] == [first, second]
    assert model.latest_checkpoint is not None and model.latest_checkpoint.path == "runs/1/5000.pt"
    with Session(engine) as session, pytest.raises(UserError, match="no model 99"):
        generator_rows.record_checkpoint(session, 99, "x.pt", 1, "c" * 64)


def test_latest_model_id(engine: Engine) -> None:
    with Session(engine) as session:
        with pytest.raises(UserError, match="^no model in the database yet; run gen train first$"):
            generator_rows.latest_model_id(session)
        add_model(session)
        second = add_model(session, preset="ga_gan")
        assert generator_rows.latest_model_id(session) == second


def test_unknown_model_lists_the_ids_that_exist(engine: Engine) -> None:
    with Session(engine) as session:
        with pytest.raises(UserError, match="no model 7; the database has no models yet"):
            generator_rows.get_model(session, 7)
        ids = [add_model(session) for _ in range(3)]
        with pytest.raises(UserError) as error:
            generator_rows.get_model(session, 77)
    assert str(error.value) == f"no model 77; models in the database: {', '.join(map(str, ids))}"


def test_resolve_class(engine: Engine) -> None:
    with Session(engine) as session:
        gan_id = add_model(session)
        class_id = generator_rows.resolve_class(session, gan_id, "cyt_mast")
        assert session.get(ClassName, class_id).label == 1
        with pytest.raises(UserError) as error:
            generator_rows.resolve_class(session, gan_id, "cyt_unknown")
        with pytest.raises(UserError, match="no model 99"):
            generator_rows.resolve_class(session, 99, "cyt_mast")
    assert str(error.value) == f"model {gan_id} has no class 'cyt_unknown'; its classes: {', '.join(CLASSES)}"


def test_list_models(engine: Engine) -> None:
    with Session(engine) as session:
        assert generator_rows.list_models(session) == []
        first = add_model(session, classes=["a", "b"])
        second = add_model(session, preset="ga_gan")
        generator_rows.update_training_iterations(session, first, 300)
        checkpoint = generator_rows.record_checkpoint(session, first, "c.pt", 300, "a" * 64)
        record_images(
            session,
            image_rows(generator_rows.resolve_class(session, first, "b"), checkpoint, "out", range(5)),
        )
        summaries = generator_rows.list_models(session)
    assert [(s.id, s.preset, s.class_names, s.iterations, s.image_count) for s in summaries] == [
        (first, "tiny", ("a", "b"), 300, 5),
        (second, "ga_gan", tuple(CLASSES), 0, 0),
    ]


# Foreign keys and deletion


def test_foreign_keys_are_enforced(engine: Engine) -> None:
    with Session(engine) as session:
        gan_id = add_model(session)
        checkpoint = generator_rows.record_checkpoint(session, gan_id, "c.pt", 10, "a" * 64)
        class_id = generator_rows.resolve_class(session, gan_id, "cyt_mast")
        rows = image_rows(class_id, checkpoint, "out", range(3))
        rows[2]["class_id"] = 987654
        with pytest.raises(IntegrityError):
            record_images(session, rows)
        # The whole batch was rolled back, not just the bad row.
        assert count(session, Image) == 0
    with engine.connect() as connection, pytest.raises(IntegrityError):
        connection.execute(insert(ClassName).values(name="x", gan_id=424242, label=0))


def test_delete_refuses_while_images_exist_then_cascades(engine: Engine) -> None:
    with Session(engine) as session:
        gan_id = add_model(session)
        kept = add_model(session, classes=["other"])
        checkpoint = generator_rows.record_checkpoint(session, gan_id, "c.pt", 10, "a" * 64)
        kept_checkpoint = generator_rows.record_checkpoint(session, kept, "k.pt", 10, "b" * 64)
        for name in CLASSES[:2]:
            class_id = generator_rows.resolve_class(session, gan_id, name)
            record_images(session, image_rows(class_id, checkpoint, f"out/{name}", range(4)))
        kept_class = generator_rows.resolve_class(session, kept, "other")
        record_images(session, image_rows(kept_class, kept_checkpoint, "out/other", range(2)))
        report_rows.record_report(session, gan_id, [{"metric": "fid", "value": 3.4, "class_name": None}])

        with pytest.raises(UserError, match=f"model {gan_id} still has 8 recorded images"):
            generator_rows.delete_model(session, gan_id)
        assert count(session, Image) == 10

        assert generator_rows.delete_model(session, gan_id, cascade=True) == 8
        assert [m.id for m in generator_rows.list_models(session)] == [kept]
        for model, remaining in [
            (Image, 2),
            (Checkpoint, 1),
            (ClassName, 1),
            (TrainingParameters, 1),
            (GanArchitecture, 1),
            (Report, 0),
        ]:
            assert count(session, model) == remaining, model.__tablename__
        with pytest.raises(UserError, match=f"no model {gan_id}; models in the database: {kept}"):
            generator_rows.delete_model(session, gan_id)


def test_delete_without_images_needs_no_cascade(engine: Engine) -> None:
    with Session(engine) as session:
        gan_id = add_model(session)
        generator_rows.record_checkpoint(session, gan_id, "c.pt", 10, "a" * 64)
        assert generator_rows.delete_model(session, gan_id) == 0
        assert count(session, GanArchitecture) == 0
        assert count(session, Checkpoint) == 0
        # A deleted model's id is never handed out again, on SQLite as on PostgreSQL.
        assert add_model(session) == gan_id + 1


# Images


def test_record_images_and_recorded_samples(engine: Engine) -> None:
    with Session(engine) as session:
        gan_id = add_model(session)
        checkpoint = generator_rows.record_checkpoint(session, gan_id, "c.pt", 10, "a" * 64)
        mast = generator_rows.resolve_class(session, gan_id, "cyt_mast")
        other = generator_rows.resolve_class(session, gan_id, "cyt_kist_mast")
        done = image_rows(mast, checkpoint, "out/cyt_mast", range(0, 40, 2))
        record_images(session, done)
        # Same samples elsewhere, or differing in class, seed or folder depth: not "done" here.
        record_images(session, image_rows(mast, checkpoint, "elsewhere/cyt_mast", range(40)))
        record_images(session, image_rows(other, checkpoint, "out/cyt_mast", range(40)))
        record_images(session, image_rows(mast, checkpoint, "out/cyt_mast", range(40), seed=2))
        record_images(session, image_rows(mast, checkpoint, "out/cyt_mast/deeper", range(40)))
        record_images(session, image_rows(mast, checkpoint, "out/cyt_mast_2", range(40)))

        expected = {row["sample_index"]: (row["file_path"], row["md5"]) for row in done}
        assert recorded_samples(session, checkpoint, mast, 1, "out/cyt_mast") == expected
        assert recorded_samples(session, checkpoint, mast, 1, "out/cyt_mast/") == expected
        assert recorded_samples(session, checkpoint, mast, 1, "out/nothing") == {}

        # A sample is recorded once per file: a rerun that inserts it again fails as a whole.
        with pytest.raises(IntegrityError):
            record_images(session, image_rows(mast, checkpoint, "out/cyt_mast", range(37, 40)))
        assert len(recorded_samples(session, checkpoint, mast, 1, "out/cyt_mast")) == 20


def test_recorded_samples_escapes_like_wildcards(engine: Engine) -> None:
    with Session(engine) as session:
        gan_id = add_model(session)
        checkpoint = generator_rows.record_checkpoint(session, gan_id, "c.pt", 10, "a" * 64)
        class_id = generator_rows.resolve_class(session, gan_id, "cyt_mast")
        record_images(session, image_rows(class_id, checkpoint, "out/a_b", range(3)))
        record_images(session, image_rows(class_id, checkpoint, "out/aXb", range(3, 6)))
        assert sorted(recorded_samples(session, checkpoint, class_id, 1, "out/a_b")) == [0, 1, 2]
        assert sorted(recorded_samples(session, checkpoint, class_id, 1, "out/a%")) == []
        assert recorded_paths(session, "out/a_b") == {f"out/a_b/{i:05d}.png" for i in range(3)}


def test_recorded_paths_cover_every_request(engine: Engine) -> None:
    with Session(engine) as session:
        first = add_model(session)
        second = add_model(session)
        for gan_id, seed, indices in [(first, 1, range(2)), (second, 9, range(2, 4))]:
            checkpoint = generator_rows.record_checkpoint(session, gan_id, "c.pt", 10, "a" * 64)
            class_id = generator_rows.resolve_class(session, gan_id, "cyt_mast")
            record_images(session, image_rows(class_id, checkpoint, "out", indices, seed=seed))
            record_images(session, image_rows(class_id, checkpoint, "out/sub", indices, seed=seed))
        assert recorded_paths(session, "out") == {f"out/{i:05d}.png" for i in range(4)}
        assert recorded_paths(session, "elsewhere") == set()


def test_bulk_insert_of_a_data_set(engine: Engine) -> None:
    """16,000 rows (4 classes x 4,000) in batches of 256, each batch its own transaction."""
    with Session(engine) as session:
        gan_id = add_model(session)
        checkpoint = generator_rows.record_checkpoint(session, gan_id, "c.pt", 100_000, "a" * 64)
        for name in CLASSES:
            class_id = generator_rows.resolve_class(session, gan_id, name)
            rows = image_rows(class_id, checkpoint, f"out/{name}", range(4000))
            for start in range(0, len(rows), 256):
                record_images(session, rows[start : start + 256])
        assert generator_rows.get_model(session, gan_id).image_counts == dict.fromkeys(CLASSES, 4000)
        created = session.scalars(select(Image.created_at).limit(1)).one()
    assert created.tzinfo is not None and created.astimezone(UTC) == created


# Reports and classifiers


def test_reports_keep_the_newest_figure_per_metric_and_class(engine: Engine) -> None:
    with Session(engine) as session:
        gan_id = add_model(session)
        report_rows.record_report(
            session,
            gan_id,
            [
                {"metric": "fid", "value": 9.0, "class_name": None},
                {"metric": "histogram_kl", "value": 0.01, "class_name": "cyt_mast"},
                {"metric": "histogram_kl", "value": 0.02, "class_name": "cyt_nep_mast"},
            ],
        )
        report_rows.record_report(
            session, gan_id, [{"metric": "fid", "value": 3.4, "settings": {"samples": 16000}}]
        )
        with pytest.raises(UserError, match="has no class 'nope'"):
            report_rows.record_report(session, gan_id, [{"metric": "kid", "value": 1, "class_name": "nope"}])
        report = report_rows.latest_report(session, gan_id)
    assert [(r.metric, r.class_name, r.value, r.settings) for r in report] == [
        ("fid", None, 3.4, {"samples": 16000}),
        ("histogram_kl", "cyt_nep_mast", 0.02, None),
        ("histogram_kl", "cyt_mast", 0.01, None),
    ]


def test_classifiers_are_found_by_data_set(engine: Engine) -> None:
    with Session(engine) as session:
        assert classifier_rows.latest_classifier(session, "f" * 64) is None
        classifier_rows.record_classifier(
            session,
            dataset_fingerprint="f" * 64,
            path="old.pt",
            sha256="a" * 64,
            architecture={},
            accuracy=0.9,
        )
        newest = classifier_rows.record_classifier(
            session,
            dataset_fingerprint="f" * 64,
            path="new.pt",
            sha256="b" * 64,
            architecture={"cells": 5, "channels": 32},
            accuracy=0.99125,
        )
        found = classifier_rows.latest_classifier(session, "f" * 64)
    assert found is not None
    assert (found.id, found.path, found.architecture, found.accuracy) == (
        newest,
        "new.pt",
        {"cells": 5, "channels": 32},
        0.99125,
    )
