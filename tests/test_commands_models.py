"""gen models: list, show and delete, and an unknown model named in one sentence.

End to end through click's CliRunner; each test that takes `database_url` runs on SQLite and
on PostgreSQL (see conftest).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from cli_support import (
    SAMPLE,
    Trained,
    adopt,
    assert_user_error,
    files_under,
    gen,
    ok,
    row_counts,
    sha256_of,
)

from gen.commands import confirm
from gen.image_folder import load_image_folder

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_models_list_show_and_delete(
    database_url: str, trained: Trained, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "samples"
    gan_id = adopt(database_url, trained, out, n=2)

    lines = ok(gen(database_url, "models list")).stdout.splitlines()
    assert lines[0].split() == ["id", "preset", "iterations", "images", "created", "classes"]
    assert len(lines) == 2
    assert lines[1].split()[:4] == [str(gan_id), "tiny", "2", "2"]
    assert lines[1].endswith(", ".join(trained.classes))

    shown = ok(gen(database_url, f"models show {gan_id}")).stdout
    assert shown.startswith(f"model {gan_id} (tiny), created ")
    assert f"{trained.classes[0]} (2 images)" in shown
    assert all(f"{name} (0 images)" in shown for name in trained.classes[1:])
    checkpoint = trained.checkpoints[-1]
    line = rf"^\s+2\s+{re.escape(str(checkpoint.resolve()))}\s+sha256 {sha256_of(checkpoint)[:12]}$"
    assert re.search(line, shown, re.M)
    for key, value in [
        ("g_lr", "0.0001"),
        ("d_lr", "0.0004"),
        ("batch_size", "4"),
        ("iterations", "2"),
        ("betas", '{"d": [0.5, 0.999], "g": [0.5, 0.999]}'),
        ("dataset_fingerprint", load_image_folder(trained.data).fingerprint),
    ]:
        assert re.search(rf"^\s+{key}\s+{re.escape(value)}$", shown, re.M), key

    counts = row_counts(database_url)
    assert_user_error(
        gen(database_url, f"models delete {gan_id}"),
        f"model {gan_id} still has 2 recorded images",
        "--cascade",
    )
    # Without a terminal there is nobody to ask; on one, the question is asked.
    assert_user_error(gen(database_url, f"models delete {gan_id} --cascade"), "pass --yes")
    monkeypatch.setattr(confirm, "stdin_is_terminal", lambda: True)
    declined = gen(database_url, f"models delete {gan_id} --cascade", input="n\n")
    assert declined.exit_code == 1 and "Aborted" in declined.output
    assert row_counts(database_url) == counts

    deleted = ok(gen(database_url, f"models delete {gan_id} --cascade --yes"))
    assert deleted.stdout.strip() == f"deleted model {gan_id} and 2 image rows (files kept)"
    assert set(row_counts(database_url).values()) == {0}
    assert len(list(out.rglob("*.png"))) == 2
    assert ok(gen(database_url, "models list")).stdout.strip() == "no models yet; train one with gen train"


def test_models_delete_files_deletes_only_unchanged_images_it_made(
    database_url: str, trained: Trained, tmp_path: Path
) -> None:
    out = tmp_path / "samples"
    gan_id = adopt(database_url, trained, out, n=3)
    made = sorted(out.rglob("*.png"))
    edited = made[1]
    edited.write_bytes(b"the user's retouched image")
    notes = out / trained.classes[0] / "notes.txt"
    notes.write_text("keep me")

    deleted = ok(gen(database_url, f"models delete {gan_id} --cascade --delete-files --yes"))
    assert deleted.stdout.strip() == f"deleted model {gan_id} and 3 image rows (2 files deleted)"
    assert f"left in place, changed since they were made: {edited.resolve()}" in deleted.stderr
    assert sorted(out.rglob("*")) == sorted([out / trained.classes[0], edited, notes])
    assert edited.read_bytes() == b"the user's retouched image"


def test_unknown_model_id_names_the_models_that_exist(
    database_url: str, trained: Trained, tmp_path: Path
) -> None:
    gan_id = adopt(database_url, trained, tmp_path / "first")
    counts, files = row_counts(database_url), files_under(tmp_path)
    for command in [
        f"sample --model 99 --n 2 --all-classes --out {tmp_path / 'new'} {SAMPLE}",
        "models show 99",
        "models delete 99 --cascade --yes",
    ]:
        assert_user_error(gen(database_url, command), f"no model 99; models in the database: {gan_id}")
    assert row_counts(database_url) == counts
    assert files_under(tmp_path) == files
