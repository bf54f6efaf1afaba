"""What every page and action of gen serve uses: the settings, the database, the templates, and
the answers (a page, a redirect, an error, a queued job). Routes and the application import
this module; it imports neither.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from sqlalchemy.engine import Engine

from gen import __version__
from gen.serve import safety
from gen.serve.thumbnails import default_cache_folder

PACKAGE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class ServeSettings:
    database_url: str
    allow_roots: tuple[Path, ...] = ()  # folders a form may name; none given: work_dir
    token: str | None = None  # when set, every request must carry it
    work_dir: Path = field(default_factory=Path.cwd)  # where jobs run and relative paths start
    cache: Path = field(default_factory=default_cache_folder)  # thumbnails

    @property
    def roots(self) -> tuple[Path, ...]:
        return tuple(Path(root).resolve() for root in self.allow_roots) or (self.work_dir.resolve(),)


templates = Jinja2Templates(directory=PACKAGE / "templates")


def engine_of(request: Request) -> Engine:
    return request.app.state.engine


def settings_of(request: Request) -> ServeSettings:
    return request.app.state.settings


def render(request: Request, template: str, /, status: int = 200, **context: Any) -> HTMLResponse:
    """A page from templates/, with what every page needs (its CSRF token, the version)."""
    token = safety.csrf_token(request.app.state.secret, request.state.browser_id)
    return templates.TemplateResponse(
        request, template, {"csrf_token": token, "version": __version__, **context}, status_code=status
    )


def redirect(url: str) -> RedirectResponse:
    """After a POST that changed something: the page to look at (303, so the browser GETs it)."""
    return RedirectResponse(url, status_code=303)


def _wants_json(request: Request) -> bool:
    return request.url.path.startswith("/api/")


def error_response(request: Request, message: str, status: int) -> Response:
    if _wants_json(request):
        return JSONResponse({"error": message}, status_code=status)
    if not hasattr(request.state, "browser_id"):  # refused before the guard gave it one
        request.state.browser_id = safety.new_browser_id()
    return render(request, "error.html", status=status, message=message, status_code=status)


def form_text(value: Any) -> str:
    return "" if value is None else str(value).strip()


def job_url(job_id: int) -> str:
    return f"/jobs/{job_id}"


def queue_job(request: Request, arguments: list[str]) -> RedirectResponse:
    """Queue a gen command as `gen jobs submit` does (run in the server's folder); show its job."""
    from gen.jobs import submit

    job_id = submit(engine_of(request), arguments, settings_of(request).work_dir)
    return redirect(job_url(job_id))
