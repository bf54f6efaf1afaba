"""gen serve: the web application (gen.serve) on uvicorn."""

from __future__ import annotations

from pathlib import Path

import click

from gen.commands.options import absolute_sqlite_url, database_option, echo_error


@click.command("serve")
@click.option(
    "--host", default="127.0.0.1", show_default=True, help="Address to listen on (loopback by default)."
)
@click.option(
    "--port", type=click.IntRange(1, 65535), default=8000, show_default=True, help="Port to listen on."
)
@click.option(
    "--allow-root",
    "allow_roots",
    multiple=True,
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    help="A folder that folders typed into a form may lie in (repeatable) [default: the current folder].",
)
@click.option(
    "--token",
    envvar="GEN_SERVE_TOKEN",
    help="Require this token on every request (open the printed address once; it becomes a cookie). "
    "[default: $GEN_SERVE_TOKEN]",
)
@click.option(
    "--cache",
    type=click.Path(path_type=Path, file_okay=False),
    help="Folder for thumbnails [default: ~/.cache/gen/thumbnails].",
)
@database_option
def serve(
    host: str,
    port: int,
    allow_roots: tuple[Path, ...],
    token: str | None,
    cache: Path | None,
    database_url: str | None,
) -> None:
    """Browse and manage data sets, generators, classifiers, searches and jobs in a web browser.

    Every change goes through the same functions as the commands; long work (training,
    sampling, reports, exports) is queued as a job for gen worker. Pages and a JSON API
    (/api/openapi.json) are served from this machine alone; nothing is loaded from the internet.
    """
    import uvicorn

    from db import resolve_database_url
    from gen.serve import ServeSettings, create_app
    from gen.serve.safety import is_loopback

    if token is not None and len(token) < 16:
        raise click.BadParameter("use a token of at least 16 characters.", param_hint="--token")
    if not is_loopback(host) and token is None:
        echo_error(
            f"warning: serving on {host}, reachable from other machines, without --token: anyone who "
            "reaches it can change the database and queue jobs."
        )
    settings = ServeSettings(
        absolute_sqlite_url(resolve_database_url(database_url)), tuple(allow_roots), token, Path.cwd()
    )
    if cache is not None:
        settings = ServeSettings(settings.database_url, settings.allow_roots, token, settings.work_dir, cache)
    app = create_app(settings)
    shown = "localhost" if is_loopback(host) else host
    address = f"http://{shown}:{port}/" + (f"?token={token}" if token else "")
    click.echo(f"gen serve: {address}  (Ctrl-C stops it)", err=True)
    uvicorn.run(app, host=host, port=port, log_level="warning")
