"""The options every command shares (gen/commands/options.py): ids (RECORD_ID) and the
database (--db, $GEN_DATABASE_URL, open_db). Unusable, missing, newer, damaged or read-only
databases are one sentence and leave nothing written.

End to end through click's CliRunner; each test that takes `database_url` runs on SQLite and
on PostgreSQL (see conftest).
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

import pytest
from cli_support import (
    SAMPLE,
    TRAIN,
    UNREACHABLE_URL,
    Trained,
    adopt,
    arguments,
    assert_user_error,
    files_under,
    gen,
    image_rows,
    model_ids,
    ok,
    row_counts,
)
from click.testing import CliRunner
from sqlalchemy import delete, text

from db.models import Image
from db.session import make_engine
from gen.cli import cli
from tests.pg_server import PostgresServer

pytestmark = pytest.mark.usefixtures("one_torch_thread")


ID_COMMANDS = [
    "models show {id}",
    "models delete {id} --cascade --yes",
    "models rename {id} newname",
    "models retrain {id} --iters 3",
    "sample --model {id} --n 1 --all-classes --out {out} " + SAMPLE,
    "sample --checkpoint {id} --n 1 --all-classes --out {out} " + SAMPLE,
    "export --model {id} --license CC0-1.0 --out {out} --quiet",
    "export --checkpoint {id} --license CC0-1.0 --out {out} --quiet",
    "data show {id}",
    "data delete {id} --delete-files --yes",
    "classifiers show {id}",
    "classifiers delete {id} --yes",
    "reproduce {id}",
    "searches show {id}",
    "jobs show {id}",
    "jobs cancel {id}",
    "train --architecture {id} --data {data} --out {out} --iters 1 " + TRAIN,
    "report --classifier {id} --real {data} --out {out} --quiet",
]


@pytest.mark.parametrize("reference", ["99999999999999999999", str(2**63), "0", "1e3", "\u00b2"])
def test_ids_out_of_range_or_malformed_are_one_sentence_everywhere(
    database_url: str, trained: Trained, tmp_path: Path, reference: str
) -> None:
    adopt(database_url, trained, tmp_path / "first")
    counts, files = row_counts(database_url), files_under(tmp_path)
    for command in ID_COMMANDS:
        line = command.format(id="ID", out=tmp_path / "out", data=trained.data)
        result = CliRunner().invoke(
            cli, [reference if word == "ID" else word for word in arguments(database_url, line)]
        )
        assert result.exit_code in (1, 2) and isinstance(result.exception, SystemExit), (line, result.output)
        assert "Traceback" not in result.output and result.output.strip().splitlines()[-1].startswith(
            "Error: "
        )
        if reference.isdigit() and len(reference) > 18:
            assert "is not an id: ids are whole numbers from 1 to 9223372036854775807." in result.output or (
                "--checkpoint" in line
            ), (line, result.output)
    assert row_counts(database_url) == counts
    assert files_under(tmp_path) == files


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (UNREACHABLE_URL, f"cannot connect to the database {UNREACHABLE_URL}: "),
        (
            "postgresql://nobody:secret@127.0.0.1:1/x",
            "cannot connect to the database postgresql://nobody:***@",
        ),
        ("not a database url", "malformed database URL 'not a database url'"),
        ("mysql://me:secret@db/gen", "unsupported database URL mysql://me:***@db/gen"),
    ],
)
def test_unusable_database_url(
    url: str, message: str, trained: Trained, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    for command in [
        "models list",
        f"sample --checkpoint {trained.run} --n 2 --all-classes --out new {SAMPLE}",
        f"train --data {trained.data} --out run --iters 1 {TRAIN}",
        "db upgrade",
    ]:
        line = assert_user_error(gen(url, command), message)
        assert "secret" not in line
    assert list(tmp_path.iterdir()) == []


@pytest.mark.postgres
def test_database_missing_from_the_server(
    postgres_server: PostgresServer, trained: Trained, tmp_path: Path
) -> None:
    url = postgres_server.url("no_such_database")
    assert_user_error(
        gen(url, f"sample --checkpoint {trained.run} --n 1 --all-classes --out {tmp_path / 'new'} {SAMPLE}"),
        f"cannot connect to the database {url}: ",
        'database "no_such_database" does not exist',
    )
    assert list(tmp_path.iterdir()) == []


def test_database_from_a_newer_gen_is_refused(database_url: str, trained: Trained, tmp_path: Path) -> None:
    gan_id = adopt(database_url, trained, tmp_path / "first")
    engine = make_engine(database_url)
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '9999_from_the_future'"))
    engine.dispose()
    counts, files = row_counts(database_url), files_under(tmp_path)
    new = tmp_path / "new"
    for command in [
        "models list",
        f"models show {gan_id}",
        f"sample --model {gan_id} --n 2 --all-classes --out {new} {SAMPLE}",
        f"sample --checkpoint {trained.run} --n 2 --all-classes --out {new} {SAMPLE}",
        f"train --data {trained.data} --out {tmp_path / 'run'} --iters 1 {TRAIN}",
        "db upgrade",
    ]:
        assert_user_error(
            gen(database_url, command),
            "was made by a newer version of gen (schema revision 9999_from_the_future)",
        )
    assert row_counts(database_url) == counts
    assert files_under(tmp_path) == files


def test_a_database_that_lost_a_column_is_one_sentence(
    database_url: str, trained: Trained, tmp_path: Path
) -> None:
    gan_id = adopt(database_url, trained, tmp_path / "first")
    engine = make_engine(database_url)
    with engine.begin() as connection:
        connection.execute(text("ALTER TABLE images DROP COLUMN torch_version"))
    engine.dispose()
    counts, files = row_counts(database_url), files_under(tmp_path)
    for command in [
        f"export --model {gan_id} --license CC0-1.0 --out {tmp_path / 'export'} --quiet",
        "models list",
        f"sample --model {gan_id} --n 2 --all-classes --out {tmp_path / 'new'} {SAMPLE}",
    ]:
        line = assert_user_error(gen(database_url, command), "lacks column images.torch_version")
        assert "changed outside gen" in line and "restore it from a backup" in line
    assert row_counts(database_url) == counts
    assert files_under(tmp_path) == files


def test_a_sqlite_file_name_too_long_is_one_sentence(tmp_path: Path, trained: Trained) -> None:
    too_long = f"sqlite:///{tmp_path / ('a' * 300 + '.db')}"
    for command in ("models list", f"data add cells {trained.data} -q"):
        assert_user_error(gen(too_long, command), "cannot use the database", "File name too long")
    no_room_for_its_journal = f"sqlite:///{tmp_path / ('b' * 250 + '.db')}"
    assert_user_error(
        gen(no_room_for_its_journal, f"data add cells {trained.data} -q"), "its file name is longer than"
    )
    assert list(tmp_path.iterdir()) == []


def invoke_as_unprivileged_user(command: Sequence[str]) -> tuple[int, str]:
    """(exit status, output) of `gen COMMAND` as a user who is not root (root may write to any
    file), in a forked child when this process is root."""
    if os.geteuid() != 0:
        result = CliRunner().invoke(cli, list(command))
        return result.exit_code, result.output
    user = pwd.getpwnam("nobody")
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the forked child
        report = {"exit_code": -1, "output": ""}
        try:
            os.setgid(user.pw_gid)
            os.setuid(user.pw_uid)
            result = CliRunner().invoke(cli, list(command))
            report = {"exit_code": result.exit_code, "output": result.output}
            if result.exception is not None and not isinstance(result.exception, SystemExit):
                report["output"] += f"\nTraceback: unexpected {result.exception!r}"
        except BaseException as error:
            report["output"] = f"Traceback: unexpected {error!r}"
        finally:
            os.write(write, json.dumps(report).encode())
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        report = json.loads(pipe.read())
    os.waitpid(child, 0)
    return report["exit_code"], report["output"]


def test_a_read_only_sqlite_file_is_read_but_never_written(trained: Trained) -> None:
    # A folder of its own, which the unprivileged user can reach, unlike pytest's tmp_path.
    folder = Path(tempfile.mkdtemp(prefix="gen-cli-read-only-"))
    try:
        path = folder / "gen.db"
        url = f"sqlite:///{path}"
        gan_id = adopt(url, trained, folder / "first")
        counts, files = row_counts(url), files_under(folder)
        folder.chmod(0o777)
        path.chmod(0o444)
        # Reading works on a read-only file (it is opened read-only); writing is refused.
        exit_code, output = invoke_as_unprivileged_user(arguments(url, "models list"))
        assert exit_code == 0 and "phantom_binucleate" in output, output
        exit_code, output = invoke_as_unprivileged_user(arguments(url, f"models show {gan_id}"))
        assert exit_code == 0, output
        command = f"sample --model {gan_id} --n 2 --all-classes --out {folder / 'new'} -q"
        exit_code, output = invoke_as_unprivileged_user(arguments(url, command))
        assert exit_code == 1, output
        assert output.strip() == f"Error: cannot use the database {url}: the file {path} is read-only"
        assert row_counts(url) == counts
        assert files_under(folder) == files
    finally:
        folder.chmod(0o755)
        shutil.rmtree(folder)


def test_missing_or_empty_database_is_not_created_by_reading_it(
    database_url: str, trained: Trained, tmp_path: Path
) -> None:
    new = tmp_path / "new"
    for command in [
        "models list",
        "models show 1",
        "models delete 1 --yes",
        f"sample --n 2 --all-classes --out {new} {SAMPLE}",
    ]:
        assert_user_error(
            gen(database_url, command), "there is no gen database at", "yet; run gen train first"
        )
    if database_url.startswith("sqlite"):
        assert list(tmp_path.iterdir()) == []  # no database file, no output folder
    else:
        assert row_counts(database_url) == {}  # no tables
        assert not new.exists()

    ok(gen(database_url, "db upgrade"))
    assert ok(gen(database_url, "models list")).stdout.strip() == "no models yet; train one with gen train"
    assert_user_error(
        gen(database_url, f"sample --n 2 --all-classes --out {new} {SAMPLE}"),
        "no model in the database yet; run gen train first",
    )
    assert not new.exists()


def test_gen_database_url_environment_variable_is_honoured(
    database_url: str, trained: Trained, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    here = tmp_path / "here"
    here.mkdir()
    monkeypatch.chdir(here)
    env = {"GEN_DATABASE_URL": database_url}
    request = f"sample --checkpoint {trained.run} --n 1 --class {trained.classes[0]} --out samples {SAMPLE}"
    ok(gen(None, request, env=env))
    assert len(image_rows(database_url)) == 1
    lines = ok(gen(None, "models list", env=env)).stdout.splitlines()
    assert lines[1].split()[:4] == [str(model_ids(database_url)[0]), "tiny", "2", "1"]
    # --db wins over the variable.
    ok(gen(database_url, "models list", env={"GEN_DATABASE_URL": UNREACHABLE_URL}))
    # Neither: gen.db here, which reading does not create.
    assert_user_error(
        gen(None, "models list", env={"GEN_DATABASE_URL": None}),
        "there is no gen database at sqlite:///gen.db",
    )
    assert sorted(path.name for path in here.iterdir()) == ["samples"]


def test_a_read_only_database_can_still_be_read(trained: Trained, tmp_path: Path) -> None:
    path = tmp_path / "gen.db"
    ok(gen(f"sqlite:///{path}", f"train --data {trained.data} --out {tmp_path / 'run'} --iters 1 {TRAIN}"))
    read_only = f"sqlite:///file:{path}?mode=ro&uri=true"
    listed = ok(gen(read_only, "models list"))
    assert "tiny" in listed.output
    ok(gen(read_only, "models show 1"))
    assert_user_error(
        gen(read_only, f"train --data {trained.data} --out {tmp_path / 'run2'} --iters 1 {TRAIN}"),
        "opens it read-only",
    )
    # A read-only folder (what root cannot be shown: it may write anyway) reads through the same
    # read-only connection; what must not happen is a write through it.
    from db.session import open_database

    engine = open_database(read_only, create=False, read_only=True)
    with pytest.raises(Exception, match="readonly|read-only"), engine.begin() as connection:
        connection.execute(delete(Image))
    engine.dispose()
