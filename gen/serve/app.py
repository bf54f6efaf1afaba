"""The application: settings, the guard every request passes, error pages, templates.

Every page and action calls the same Python functions as the CLI (db.catalog, db.queries,
db.jobs, db.browse, gen.datasets, gen.jobs); long work is queued as a job, exactly as
`gen jobs submit` would, and run by `gen worker`. Nothing here writes SQL.

The guard, in order: the access token (only when --token was given), a body size limit checked
from Content-Length before a byte of the body is read, and a CSRF token on every POST. Errors
a user can cause are a page with one sentence (JSON {"error": ...} under /api); anything else is
a page that says the server failed, with the traceback in the server's log only.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException

from db.errors import UserError
from gen import __version__
from gen.serve import safety
from gen.serve.thumbnails import default_cache_folder

PACKAGE = Path(__file__).resolve().parent
# A form is small; an upload is one image. Larger bodies are refused before they are read.
MAX_BODY_BYTES = safety.MAX_UPLOAD_BYTES + 64 * 1024
logger = logging.getLogger("gen.serve")


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


async def check_csrf(request: Request) -> None:
    """Every POST carries the CSRF token of its browser's cookie (a form field or a header)."""
    if request.method != "POST":
        return
    given = request.headers.get(safety.CSRF_HEADER)
    if given is None:
        given = (await request.form()).get(safety.CSRF_FIELD)
    safety.check_csrf(request.app.state.secret, request.cookies.get(safety.CSRF_COOKIE), given)


def create_app(settings: ServeSettings, engine: Engine | None = None) -> FastAPI:
    """The application over the database settings.database_url (opened here unless given)."""
    from db import open_database
    from gen.serve.routes import all_routers

    app = FastAPI(
        title="gen",
        version=__version__,
        description="The web application of gen: pages, and this JSON API beside them.",
        # The interactive docs load scripts from the internet; the description is served alone.
        docs_url=None,
        redoc_url=None,
        openapi_url="/api/openapi.json",
        dependencies=[Depends(check_csrf)],
    )
    app.state.settings = settings
    app.state.engine = engine or open_database(settings.database_url)
    app.state.secret = safety.new_secret()
    app.mount("/static", StaticFiles(directory=PACKAGE / "static"), name="static")
    for router in all_routers():
        app.include_router(router)

    @app.middleware("http")
    async def guard(request: Request, call_next: Any) -> Response:
        request.state.browser_id = request.cookies.get(safety.CSRF_COOKIE) or ""
        new_browser = not request.state.browser_id
        if new_browser:
            request.state.browser_id = safety.new_browser_id()
        if settings.token is not None:
            refused = _check_token(request, settings.token)
            if refused is not None:
                return refused
        if request.method not in ("GET", "HEAD"):
            length = request.headers.get("content-length")
            if length is None or not length.isdigit():
                return error_response(request, "a request that changes data must declare its size.", 411)
            if int(length) > MAX_BODY_BYTES:
                limit = safety.MAX_UPLOAD_BYTES // (1024 * 1024)
                return error_response(
                    request, f"the request is larger than {limit} MiB; send one image.", 413
                )
        started = time.perf_counter()
        response = await call_next(request)
        # What the page cost this server (bench/bench_serve.py reads it; so can a browser's tools).
        response.headers["Server-Timing"] = f"app;dur={(time.perf_counter() - started) * 1000:.1f}"
        if new_browser:
            response.set_cookie(
                safety.CSRF_COOKIE, request.state.browser_id, httponly=True, samesite="strict", path="/"
            )
        response.headers.setdefault(
            "Content-Security-Policy",
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
            "frame-ancestors 'none'; form-action 'self'",
        )
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        return response

    @app.exception_handler(UserError)
    async def user_error(request: Request, error: UserError) -> Response:
        return error_response(request, str(error), getattr(error, "status", 400))

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException) -> Response:
        messages = {404: "there is no page at this address.", 405: "this address does not take that method."}
        message = messages.get(error.status_code) or str(error.detail)
        return error_response(request, message, error.status_code)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: RequestValidationError) -> Response:
        problem = error.errors()[0] if error.errors() else {}
        where = str(problem.get("loc", ["", "the request"])[-1]).replace("_", " ")
        return error_response(request, f"{where}: {str(problem.get('msg', 'is not valid')).lower()}.", 400)

    @app.exception_handler(OperationalError)
    async def database_error(request: Request, error: OperationalError) -> Response:
        logger.exception("database error on %s", request.url.path)
        if "locked" in str(error.orig):
            message = "the database stayed locked by another gen process; nothing was changed, try again."
        else:
            message = "the database could not be reached; nothing was changed."
        return error_response(request, message, 503)

    @app.exception_handler(Exception)
    async def failure(request: Request, error: Exception) -> Response:
        logger.exception("failed on %s", request.url.path)
        return error_response(request, "the server failed on this request; its log says why.", 500)

    return app


def _check_token(request: Request, token: str) -> Response | None:
    """None when the request carries the token (cookie, Bearer header, or ?token= which then
    becomes the cookie); else the refusal."""
    if safety.token_matches(token, request.cookies.get(safety.TOKEN_COOKIE)):
        return None
    authorization = request.headers.get("authorization", "")
    if authorization.startswith("Bearer ") and safety.token_matches(token, authorization[7:]):
        return None
    if safety.token_matches(token, request.query_params.get(safety.TOKEN_PARAMETER)):
        rest = [(k, v) for k, v in request.query_params.multi_items() if k != safety.TOKEN_PARAMETER]
        response = RedirectResponse(request.url.path + (f"?{urlencode(rest)}" if rest else ""), 303)
        response.set_cookie(safety.TOKEN_COOKIE, token, httponly=True, samesite="strict", path="/")
        return response
    return error_response(
        request, "this server needs its access token: open the address gen serve printed.", 401
    )


def form_text(value: Any) -> str:
    return "" if value is None else str(value).strip()


def job_url(job_id: int) -> str:
    return f"/jobs/{job_id}"


def queue_job(request: Request, arguments: list[str]) -> RedirectResponse:
    """Queue a gen command as `gen jobs submit` does (run in the server's folder); show its job."""
    from gen.jobs import submit

    job_id = submit(engine_of(request), arguments, settings_of(request).work_dir)
    return redirect(job_url(job_id))
