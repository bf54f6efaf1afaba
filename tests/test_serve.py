"""gen serve through the application's test client, on SQLite and PostgreSQL: every page answers,
every action changes the database through the same functions as the CLI (or queues the same
argv as gen jobs submit), a POST without its CSRF token is refused, folders outside
--allow-root and bad uploads are one sentence, and errors never show a traceback."""

from __future__ import annotations

import io
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import click
import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session
from test_export import TRAINING, write_png

from db import classifiers as classifier_rows
from db import datasets as dataset_rows
from db import generators as generator_rows
from db import images as image_rows
from db import jobs as job_rows
from db import reports as report_rows
from db import searches as search_rows
from db.names import stored_path
from db.session import open_database
from gen.architecture import preset, to_json
from gen.cli import cli
from gen.dataset_registry import register
from gen.jobs import submit
from gen.phantoms import PHANTOM_CLASSES, write_phantoms
from gen.serve import ServeSettings, create_app

CLASSES = PHANTOM_CLASSES  # the model is "trained" on the phantoms: the same classes
IMAGES_PER_CLASS = 5


@dataclass
class World:
    client: TestClient
    engine: Engine
    root: Path  # the server's folder, and its only --allow-root
    outside: Path  # a folder outside it
    dataset_id: int
    gan_id: int
    other_gan_id: int
    image_id: int
    classifier_id: int
    search_id: int
    job_id: int


def record_model_with_run(engine: Engine, root: Path, name: str, seed: int) -> int:
    """A recorded model like gen train leaves one: its run folder with history.csv and progress
    grids, two checkpoints (one evaluated), images from the latest and a report."""
    run = root / "runs" / name
    run.mkdir(parents=True)
    generator, discriminator = preset("tiny", len(CLASSES))
    rows = ["iteration,seconds,d_loss,g_loss,domain_fid"]
    rows += [f"{i},{i * 0.5},{1.5 - i * 0.1},{0.8 + i * 0.05}," for i in range(1, 5)] + ["4,,,,2.5"]
    (run / "history.csv").write_text("\n".join(rows) + "\n")
    rng = np.random.default_rng(seed)
    for iteration in (2, 4):
        write_png(run / f"grid-{iteration:07d}.png", rng, 130)
    with Session(engine) as session:
        gan_id = generator_rows.record_model(
            session,
            preset="tiny",
            generator=to_json(generator),
            discriminator=to_json(discriminator),
            class_names=CLASSES,
            training={**TRAINING, "settings": {"preset": "tiny", "run_dir": stored_path(run)}},
        )
        generator_rows.record_checkpoint(session, gan_id, str(run / "checkpoint-0000002.pt"), 2, "b" * 64)
        checkpoint = generator_rows.record_checkpoint(
            session, gan_id, str(run / "checkpoint-0000004.pt"), 4, "c" * 64, domain_fid=2.5
        )
        images = []
        for name_ in CLASSES:
            class_id = generator_rows.resolve_class(session, gan_id, name_)
            for index in range(IMAGES_PER_CLASS):
                path = root / "samples" / f"model-{gan_id}" / name_ / f"{index:05d}.png"
                images.append(
                    {
                        "file_path": stored_path(path),
                        "class_id": class_id,
                        "md5": write_png(path, rng),
                        "width": 64,
                        "height": 64,
                        "seed": index % 2,
                        "sample_index": index,
                        "checkpoint_id": checkpoint,
                        "iteration": 4,
                    }
                )
        image_rows.record_images(session, images)
        report_rows.record_report(
            session,
            gan_id,
            [
                {"metric": "fid", "value": 40.0 + seed},
                {"metric": "kid", "value": 0.1, "class_name": CLASSES[0]},
            ],
        )
    return gan_id


@pytest.fixture
def world(database_url: str, tmp_path: Path) -> Iterator[World]:
    root, outside = tmp_path / "work", tmp_path / "outside"
    root.mkdir()
    write_phantoms(root / "phantoms", per_class=3)
    write_phantoms(outside / "phantoms", per_class=3)
    engine = open_database(database_url)
    dataset_id = register(engine, "phantoms", root / "phantoms").id
    gan_id = record_model_with_run(engine, root, "first", seed=0)
    other_gan_id = record_model_with_run(engine, root, "second", seed=1)
    with Session(engine) as session:
        dataset_rows.link_model_to_dataset(session, gan_id, dataset_id)
        image_id = image_rows.image_records(session, [1])[0]["id"]
        classifier_id = classifier_rows.record_classifier(
            session,
            dataset_fingerprint=dataset_rows.get_dataset(session, dataset_id).fingerprint,
            path=str(root / "classifier.pt"),
            sha256="d" * 64,
            architecture={"nodes": 4, "code": "235-66-7", "cells": 2, "pool": [1]},
            accuracy=0.75,
            dataset_id=dataset_id,
        )
        search_id = search_rows.create_search(
            session,
            stage="generator",
            dataset_path=str(root / "phantoms"),
            dataset_fingerprint="e" * 64,
            settings={"total": 2},
            seed=0,
        )
        for step, (model, fitness) in enumerate([(gan_id, 3.0), (other_gan_id, 2.0)]):
            search_rows.record_search_candidate(
                session,
                search_id=search_id,
                model_id=model,
                step=step,
                parent_step=None,
                fitness=fitness,
                budget={"iterations": 2},
                seconds=1.0,
                worker=None,
                status="done",
            )
    job_id = submit(engine, ["demo-data", "--out", "more"], root)
    settings = ServeSettings(database_url, (root,), None, root, tmp_path / "cache")
    with TestClient(create_app(settings, engine), raise_server_exceptions=False) as client:
        yield World(
            client,
            engine,
            root,
            outside,
            dataset_id,
            gan_id,
            other_gan_id,
            image_id,
            classifier_id,
            search_id,
            job_id,
        )
    engine.dispose()


def csrf_of(client: TestClient, page: str = "/datasets") -> str:
    response = client.get(page)
    assert response.status_code == 200, response.text
    found = re.search(r'name="csrf_token" value="([0-9a-f]+)"', response.text)
    assert found, f"{page} has no form with a CSRF token"
    return found.group(1)


def post(world: World, url: str, data: dict | None = None, page: str = "/datasets", **kwargs: object):  # noqa: ANN201
    return world.client.post(url, data={**(data or {}), "csrf_token": csrf_of(world.client, page)}, **kwargs)


def sentence(response) -> str:  # noqa: ANN001 - an httpx response
    """The one sentence of an error page (and that it shows no traceback)."""
    assert "Traceback" not in response.text and 'File "' not in response.text
    found = re.search(r'<p class="error" id="error-message">(.*?)</p>', response.text, re.DOTALL)
    assert found, response.text[:2000]
    return found.group(1)


def jobs(world: World) -> list[list[str]]:
    with Session(world.engine) as session:
        return [job.arguments for job in job_rows.list_jobs(session)]


# Pages


def test_every_page_and_api_answers(world: World) -> None:
    g, other = world.gan_id, world.other_gan_id
    pages = [
        "/",
        "/datasets",
        f"/datasets/{world.dataset_id}",
        "/datasets/phantoms",
        f"/datasets/{world.dataset_id}/thumbnails/{CLASSES[0]}/0",
        "/generators",
        f"/generators/{g}",
        f"/generators/{g}/grids/2.png",
        f"/generators/{g}/images",
        f"/generators/{g}/images?class_name={CLASSES[1]}&checkpoint=4&seed=1&page=1",
        f"/images/{world.image_id}",
        f"/images/{world.image_id}?panel=1",
        f"/images/{world.image_id}/thumbnail",
        f"/images/{world.image_id}/file",
        "/compare",
        f"/compare?model={g}&model={other}&curve=domain_fid",
        "/classifiers",
        f"/classifiers/{world.classifier_id}",
        "/searches",
        f"/searches/{world.search_id}",
        "/jobs",
        f"/jobs/{world.job_id}",
        f"/generators/{g}/delete",
        f"/datasets/{world.dataset_id}/delete",
        "/static/style.css",
        "/static/app.js",
        "/api/openapi.json",
        "/api/summary",
        "/api/datasets",
        f"/api/datasets/{world.dataset_id}",
        "/api/models",
        f"/api/models/{g}",
        f"/api/models/{g}/history",
        f"/api/models/{g}/images?class_name={CLASSES[0]}",
        f"/api/images/{world.image_id}",
        "/api/classifiers",
        f"/api/classifiers/{world.classifier_id}",
        "/api/searches",
        f"/api/searches/{world.search_id}",
        "/api/jobs",
        f"/api/jobs/{world.job_id}",
        f"/api/jobs/{world.job_id}/log",
    ]
    for page in pages:
        response = world.client.get(page)
        assert response.status_code == 200, (page, response.text[:500])
    assert "http://" not in world.client.get("/").text.replace("http://www.w3.org", "")


def test_pages_show_what_the_database_holds(world: World) -> None:
    g = world.gan_id
    model = world.client.get(f"/generators/{g}").text
    assert "{4, " in model  # the architecture in the source's notation
    assert "<svg" in model and "<polyline" in model  # loss and domain FID curves
    assert 'data-iterations="2,4"' in model  # the slider over the progress grids
    assert "2.5000" in model and "40.0000" in model  # checkpoint quality, report figure
    browse = world.client.get(f"/generators/{g}/images?class_name={CLASSES[1]}&seed=1").text
    assert browse.count('class="image-link"') == 2 and f'data-class="{CLASSES[1]}"' in browse
    assert "2 images" in browse
    panel = world.client.get(f"/images/{world.image_id}?panel=1").text
    record = world.client.get(f"/api/images/{world.image_id}").json()
    assert record["md5"] in panel and record["checkpoint_path"] in panel and "Reproduce" in panel
    page = world.client.get(f"/generators/{g}/images?page=2").text
    assert "page 2 of 1" not in page  # 20 images fit one page of 48
    compare = world.client.get(f"/compare?model={g}&model={world.other_gan_id}").text
    assert compare.count("<polyline") == 2 and "40.0000" in compare and "41.0000" in compare
    search = world.client.get(f"/searches/{world.search_id}").text
    assert search.index(f'/generators/{world.other_gan_id}"') < search.index(
        f'/generators/{g}"'
    )  # best first
    dataset = world.client.get(f"/datasets/{world.dataset_id}").text
    assert dataset.count(f"/datasets/{world.dataset_id}/thumbnails/") == 3 * len(CLASSES)
    openapi = world.client.get("/api/openapi.json").json()
    assert "/api/models/{reference}/images" in openapi["paths"] and "/generators" not in openapi["paths"]


def test_thumbnails_are_made_once(world: World, tmp_path: Path) -> None:
    url = f"/datasets/{world.dataset_id}/thumbnails/{CLASSES[0]}/1"
    first = world.client.get(url)
    cached = sorted((tmp_path / "cache").rglob("*.png"))
    assert first.status_code == 200 and len(cached) == 1
    made_at = cached[0].stat().st_mtime_ns
    time.sleep(0.01)
    assert world.client.get(url).content == first.content
    assert sorted((tmp_path / "cache").rglob("*.png")) == cached and cached[0].stat().st_mtime_ns == made_at
    # A 64x64 sample is a thumbnail already: served as it is, nothing cached.
    world.client.get(f"/images/{world.image_id}/thumbnail")
    assert sorted((tmp_path / "cache").rglob("*.png")) == cached


# Safety


def test_a_post_without_its_csrf_token_is_refused(world: World) -> None:
    before = jobs(world)
    actions = [
        ("/datasets", {"name": "again", "folder": str(world.root / "phantoms")}),
        (f"/datasets/{world.dataset_id}/rename", {"new_name": "renamed"}),
        (f"/datasets/{world.dataset_id}/delete", {}),
        (f"/generators/{world.gan_id}/rename", {"new_name": "renamed"}),
        (f"/generators/{world.gan_id}/delete", {}),
        (f"/generators/{world.gan_id}/sample", {"count": "2"}),
        (
            "/generators/train",
            {
                "dataset": "phantoms",
                "run_name": "x",
                "preset": "tiny",
                "iterations": "2",
                "checkpoint_every": "1",
            },
        ),
        (f"/jobs/{world.job_id}/cancel", {}),
    ]
    world.client.get("/")  # the browser has its cookie; only the token is missing or wrong
    for url, data in actions:
        for token in (None, "0" * 64):
            response = world.client.post(url, data={**data, **({"csrf_token": token} if token else {})})
            assert response.status_code == 403, (url, response.status_code)
            assert "CSRF" in sentence(response)
    # A token from another browser (another cookie) is refused too.
    stranger = TestClient(world.client.app)
    token = csrf_of(stranger)
    refused = world.client.post(
        f"/generators/{world.gan_id}/rename", data={"new_name": "x", "csrf_token": token}
    )
    assert refused.status_code == 403
    with Session(world.engine) as session:
        assert dataset_rows.get_dataset(session, world.dataset_id).name == "phantoms"
        assert generator_rows.model_name(session, world.gan_id) is None
        assert len(generator_rows.list_models(session)) == 2
    assert jobs(world) == before


def test_folders_outside_allow_root_are_refused(world: World) -> None:
    for folder in (str(world.outside / "phantoms"), "../outside/phantoms", "/etc"):
        response = post(world, "/datasets", {"name": "elsewhere", "folder": folder})
        assert response.status_code == 400
        assert "outside the folders this server may read" in sentence(response)
    # A link inside the root that points outside it is outside.
    (world.root / "link").symlink_to(world.outside / "phantoms")
    assert post(world, "/datasets", {"name": "linked", "folder": "link"}).status_code == 400
    response = post(world, f"/generators/{world.gan_id}/report", {"real": str(world.outside)})
    assert "outside the folders" in sentence(response)
    with Session(world.engine) as session:
        assert [d.name for d in dataset_rows.list_datasets(session)] == ["phantoms"]
    assert len(jobs(world)) == 1


def test_uploads_are_checked_before_they_are_read(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    if "classify" not in cli.commands:  # gen classify is built beside gen serve: its argv is the interface
        monkeypatch.setitem(cli.commands, "classify", click.Command("classify"))
    url = f"/classifiers/{world.classifier_id}/classify"
    page = f"/classifiers/{world.classifier_id}"

    def upload(data: bytes, name: str = "cell.png", type_: str = "image/png"):  # noqa: ANN202
        return world.client.post(
            url, data={"csrf_token": csrf_of(world.client, page)}, files={"image": (name, data, type_)}
        )

    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), "red").save(buffer, format="PNG")
    accepted = upload(buffer.getvalue())
    assert accepted.status_code == 200, accepted.text
    stored = sorted((world.root / "uploads").iterdir())
    assert len(stored) == 1 and stored[0].read_bytes() == buffer.getvalue()
    assert jobs(world)[-1] == [
        "classify",
        f"uploads/{stored[0].name}",
        "--classifier",
        str(world.classifier_id),
    ]

    # A decompression bomb: a small file whose header declares 20000 x 20000 pixels.
    bomb = io.BytesIO()
    Image.new("1", (20000, 20000)).save(bomb, format="PNG")
    assert len(bomb.getvalue()) < 100_000
    assert "decompression bomb" in sentence(upload(bomb.getvalue()))
    assert "not an image" in sentence(upload(b"<svg></svg>", "cell.svg", "image/svg+xml"))
    gif = io.BytesIO()
    Image.new("RGB", (8, 8)).save(gif, format="GIF")
    assert "GIF" in sentence(upload(gif.getvalue(), "cell.gif", "image/gif"))
    # Too large: refused from its declared length, before the body is read.
    too_large = upload(b"\0" * (11 * 1024 * 1024))
    assert too_large.status_code == 413 and "larger than 10 MiB" in sentence(too_large)
    assert len(sorted((world.root / "uploads").iterdir())) == 1 and len(jobs(world)) == 2


def test_errors_are_one_sentence_never_a_traceback(world: World) -> None:
    unknown = world.client.get("/generators/999")
    assert unknown.status_code == 400 and "no model 999" in sentence(unknown)
    assert "no page at this address" in sentence(world.client.get("/nowhere"))
    assert world.client.get("/api/models/999").json() == {"error": unknown_model_sentence(world)}
    bad = world.client.get(f"/generators/{world.gan_id}/images?seed=abc")
    assert bad.status_code == 400 and "seed filter" in sentence(bad)
    missing = post(world, f"/generators/{world.gan_id}/sample", {})
    assert missing.status_code == 400 and "count" in sentence(missing)

    @world.client.app.get("/boom")
    def boom() -> None:
        raise RuntimeError("a bug with a secret in it")

    failed = world.client.get("/boom")
    assert failed.status_code == 500 and "the server failed" in sentence(failed)
    assert "secret" not in failed.text


def unknown_model_sentence(world: World) -> str:
    return f"no model 999; models in the database: {world.gan_id}, {world.other_gan_id}"


def test_a_token_is_needed_on_every_request_when_given(database_url: str, tmp_path: Path) -> None:
    token = "s3cret-token-of-the-test"
    settings = ServeSettings(database_url, (tmp_path,), token, tmp_path, tmp_path / "cache")
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        for page in ("/", "/generators", "/static/style.css", "/api/models", "/api/openapi.json"):
            assert client.get(page).status_code == 401, page
        assert "access token" in sentence(client.get("/"))
        assert client.get("/", headers={"Authorization": f"Bearer {token}x"}).status_code == 401
        assert client.get("/api/models", headers={"Authorization": f"Bearer {token}"}).status_code == 200
        entered = client.get(f"/jobs?token={token}", follow_redirects=False)
        assert entered.status_code == 303 and entered.headers["location"] == "/jobs"
        assert client.get("/generators").status_code == 200  # the cookie carries it from now on


# Actions


def test_data_set_actions(world: World) -> None:
    more = world.root / "more"
    write_phantoms(more, per_class=2)
    registered = post(world, "/datasets", {"name": "more", "folder": "more"})
    assert registered.status_code == 200 and "Data set more" in registered.text
    with Session(world.engine) as session:
        info = dataset_rows.get_dataset(session, "more")
    assert info.folder == str(more.resolve()) and info.images == 8
    again = post(world, "/datasets", {"name": "twice", "folder": "more"})
    assert "registered already" in sentence(again)
    renamed = post(world, f"/datasets/{info.id}/rename", {"new_name": "more-cells"})
    assert "Data set more-cells" in renamed.text
    # Moving: to a copy of the same files; refused while a model uses the data set.
    copy = world.root / "copy"
    copy.mkdir()
    for path in more.rglob("*.png"):
        (copy / path.relative_to(more)).parent.mkdir(parents=True, exist_ok=True)
        (copy / path.relative_to(more)).write_bytes(path.read_bytes())
    moved = post(world, f"/datasets/{info.id}/move", {"folder": "copy"})
    assert moved.status_code == 200 and str(copy.resolve()) in moved.text
    used = post(world, f"/datasets/{world.dataset_id}/move", {"folder": "copy"})
    assert "used by 1 models" in sentence(used)
    # Deleting shows what uses it, then deletes the row only.
    confirm = world.client.get(f"/datasets/{world.dataset_id}/delete").text
    assert "1 models (unlinked, kept)" in confirm
    deleted = post(world, f"/datasets/{world.dataset_id}/delete")
    assert deleted.status_code == 200
    with Session(world.engine) as session:
        assert [d.name for d in dataset_rows.list_datasets(session)] == ["more-cells"]
        assert dataset_rows.model_dataset(session, world.gan_id) is None
    assert (world.root / "phantoms").is_dir()


def test_generator_actions_queue_the_commands_gen_would_run(world: World) -> None:
    g = world.gan_id
    train = post(
        world,
        "/generators/train",
        {
            "dataset": str(world.dataset_id),
            "run_name": "fresh",
            "preset": "tiny",
            "iterations": "2",
            "checkpoint_every": "1",
            "batch_size": "4",
            "seed": "3",
        },
    )
    assert train.status_code == 200 and "queued" in train.text
    post(world, f"/generators/{g}/sample", {"count": "2", "seed": "5"})
    post(world, f"/generators/{g}/report", {"real": "phantoms"})
    post(world, f"/generators/{g}/export", {"license": "CC0-1.0"})
    post(world, f"/generators/{g}/retrain", {"iterations": "10"})
    post(world, f"/images/{world.image_id}/reproduce", page=f"/images/{world.image_id}")
    assert jobs(world)[1:] == [
        [
            "train",
            "--data",
            "phantoms",
            "--out",
            "runs/fresh",
            "--preset",
            "tiny",
            "--iters",
            "2",
            "--checkpoint-every",
            "1",
            "--seed",
            "3",
            "--quiet",
            "--batch-size",
            "4",
        ],
        [
            "sample",
            "--model",
            str(g),
            "--n",
            "2",
            "--all-classes",
            "--seed",
            "5",
            "--out",
            f"samples/model-{g}",
            "--quiet",
        ],
        [
            "report",
            "--model",
            str(g),
            "--real",
            str((world.root / "phantoms").resolve()),
            "--force",
            "--quiet",
        ],
        ["export", "--model", str(g), "--license", "CC0-1.0", "--out", f"exports/model-{g}", "--quiet"],
        ["models", "retrain", str(g), "--iters", "10", "--quiet"],
        ["reproduce", str(world.image_id)],
    ]
    # Nothing is overwritten: an existing run folder, a bad licence, a bad run name are sentences.
    existing = post(
        world,
        "/generators/train",
        {
            "dataset": "phantoms",
            "run_name": "first",
            "preset": "tiny",
            "iterations": "2",
            "checkpoint_every": "1",
        },
    )
    assert "runs/first exists already" in sentence(existing)
    assert "SPDX" in sentence(post(world, f"/generators/{g}/export", {"license": "my licence"}))
    assert "run name" in sentence(
        post(
            world,
            "/generators/train",
            {
                "dataset": "phantoms",
                "run_name": "../up",
                "preset": "tiny",
                "iterations": "2",
                "checkpoint_every": "1",
            },
        )
    )
    assert len(jobs(world)) == 7


def test_rename_and_delete_a_model_after_confirmation(world: World) -> None:
    g = world.gan_id
    renamed = post(world, f"/generators/{g}/rename", {"new_name": "pbc-sagan"})
    assert "pbc-sagan" in renamed.text and world.client.get("/generators/pbc-sagan").status_code == 200
    clash = post(world, f"/generators/{world.other_gan_id}/rename", {"new_name": "pbc-sagan"})
    assert "already called" in sentence(clash)
    confirm = world.client.get(f"/generators/{g}/delete").text
    assert f"{IMAGES_PER_CLASS * len(CLASSES)} images" in confirm and "2 checkpoints" in confirm
    files = sorted((world.root / "samples" / f"model-{g}").rglob("*.png"))
    # A model that is a search candidate is kept (the search keeps every candidate).
    refused = post(world, f"/generators/{g}/delete", page=f"/generators/{g}/delete")
    assert "candidate of search" in sentence(refused)
    with Session(world.engine) as session:
        fresh = generator_rows.record_model(
            session, preset="tiny", generator={}, discriminator={}, class_names=["a"], training=TRAINING
        )
    deleted = post(world, f"/generators/{fresh}/delete", page=f"/generators/{fresh}/delete")
    assert deleted.status_code == 200
    with Session(world.engine) as session:
        assert [m.id for m in generator_rows.list_models(session)] == [g, world.other_gan_id]
    assert all(path.is_file() for path in files)


def test_classifier_search_and_job_actions(world: World) -> None:
    queued = post(
        world,
        "/classifiers/train",
        {
            "dataset": "phantoms",
            "architecture": "searched:3",
            "learning_rate": "0.01",
            "optimizer": "sgd",
            "epochs": "2",
            "name": "first-cnn",
        },
    )
    assert queued.status_code == 200
    assert jobs(world)[-1] == [
        "classifiers",
        "train",
        "--data",
        "phantoms",
        "--arch",
        "searched:3",
        "--lr",
        "0.01",
        "--optimizer",
        "sgd",
        "--epochs",
        "2",
        "--name",
        "first-cnn",
    ]
    bad = post(
        world,
        "/classifiers/train",
        {
            "dataset": "phantoms",
            "architecture": "vgg",
            "learning_rate": "0.01",
            "optimizer": "sgd",
            "epochs": "2",
        },
    )
    assert "resnet18, simple or searched:ID" in sentence(bad)
    best = post(world, f"/searches/{world.search_id}/train-best", {"dataset": "phantoms", "iterations": "20"})
    assert best.status_code == 200
    assert jobs(world)[-1] == [
        "train",
        "--data",
        "phantoms",
        "--out",
        f"runs/search-{world.search_id}-best",
        "--preset",
        "tiny",
        "--iters",
        "20",
        "--architecture",
        str(world.other_gan_id),
        "--quiet",
    ]
    cancelled = post(world, f"/jobs/{world.job_id}/cancel", page="/jobs")
    assert cancelled.status_code == 200 and 'class="status-cancelled"' in cancelled.text
    assert "already finished" in sentence(post(world, f"/jobs/{world.job_id}/cancel", page="/jobs"))


# The command


@pytest.mark.slow
@pytest.mark.usefixtures("one_torch_thread")
def test_gen_serve_on_a_free_port(tmp_path: Path) -> None:
    """A real server over a database holding a tiny trained model with images."""
    import urllib.error
    import urllib.request

    from click.testing import CliRunner
    from serve_server import gen_serve

    url = f"sqlite:///{tmp_path / 'gen.db'}"
    write_phantoms(tmp_path / "data", per_class=4)
    for command in (
        f"train --data {tmp_path / 'data'} --out {tmp_path / 'run'} --iters 2 --preset tiny --batch-size 4 "
        "--checkpoint-every 1 --device cpu --quiet",
        f"sample --n 2 --all-classes --out {tmp_path / 'samples'} --batch-size 4 --device cpu --quiet",
    ):
        result = CliRunner().invoke(cli, [*command.split(), "--db", url])
        assert result.exit_code == 0, result.output
    with gen_serve(url, tmp_path) as address:
        for page in (
            "/",
            "/datasets",
            "/generators",
            "/classifiers",
            "/jobs",
            "/searches",
            "/generators/1",
            "/generators/1/images",
            "/images/1",
            "/datasets/1",
        ):
            with urllib.request.urlopen(address + page, timeout=30) as response:
                assert response.status == 200, page
                assert response.headers["Content-Security-Policy"].startswith("default-src 'self'")
        request = urllib.request.Request(
            address + "/generators/1/rename",
            data=b"new_name=stolen",
            method="POST",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=30)
        assert refused.value.code == 403
    engine = open_database(url)
    with Session(engine) as session:
        assert generator_rows.model_name(session, 1) is None
    engine.dispose()


def test_serving_beyond_loopback_warns_unless_a_token_is_given(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import uvicorn
    from click.testing import CliRunner

    served: list[dict] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: served.append(options))
    monkeypatch.chdir(tmp_path)
    url = f"sqlite:///{tmp_path / 'gen.db'}"
    loopback = CliRunner().invoke(cli, ["serve", "--db", url])
    assert loopback.exit_code == 0 and "warning" not in loopback.output
    assert served[-1] == {"host": "127.0.0.1", "port": 8000, "log_level": "warning"}
    exposed = CliRunner().invoke(cli, ["serve", "--host", "0.0.0.0", "--db", url])
    assert exposed.exit_code == 0 and "warning: serving on 0.0.0.0" in exposed.output
    guarded = CliRunner().invoke(
        cli, ["serve", "--host", "0.0.0.0", "--token", "a-long-enough-token", "--db", url]
    )
    assert (
        guarded.exit_code == 0
        and "warning" not in guarded.output
        and "?token=a-long-enough-token" in guarded.output
    )
    short = CliRunner().invoke(cli, ["serve", "--token", "short", "--db", url])
    assert short.exit_code == 2 and "at least 16 characters" in short.output
