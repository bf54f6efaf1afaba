"""The application: the guard every request passes, and the error pages.

Every page and action calls the same Python functions as the CLI (db.generators, db.images,
db.datasets, db.jobs, ..., gen.dataset_registry, gen.jobs); long work is queued as a job, exactly as
`gen jobs submit` would, and run by `gen worker`. Nothing here writes SQL.

The guard, in order: the access token (only when --token was given), a body size limit checked
from Content-Length before a byte of the body is read, and a CSRF token on every POST. Errors
a user can cause are a page with one sentence (JSON {"error": ...} under /api); anything else is
a page that says the server failed, with the traceback in the server's log only.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from urllib.parse import urlencode

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException

from db.errors import UserError
from gen import __version__
from gen.serve import safety
from gen.serve.context import PACKAGE, ServeSettings, error_response

# A form is small; an upload is one image. Larger bodies are refused before they are read.
MAX_BODY_BYTES = safety.MAX_UPLOAD_BYTES + 64 * 1024
logger = logging.getLogger("gen.serve")


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
    app.middleware("http")(guard_of(settings))
    add_error_pages(app)
    return app


Guard = Callable[[Request, Callable[[Request], Awaitable[Response]]], Awaitable[Response]]


def guard_of(settings: ServeSettings) -> Guard:
    """The middleware every request passes: the browser's CSRF cookie, the access token, the body
    size; then the page, with the headers every answer carries."""

    async def guard(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
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

    return guard


def add_error_pages(app: FastAPI) -> None:
    """A user's error is a page with one sentence (JSON under /api); any other failure says the
    server failed, its traceback in the server's log only."""

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
