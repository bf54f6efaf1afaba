"""What keeps `gen serve` safe by default: CSRF tokens, the access token, folders typed into a
form, and uploads checked before they are read.

CSRF is the signed double-submit pattern (OWASP): each browser gets a random cookie, and every
form carries an HMAC of it under a secret the server draws at start; a POST whose form (or
X-CSRF-Token header) does not carry the HMAC of its own cookie is refused. Another site can
make a browser send the cookie, but cannot read it, so cannot compute the token.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import ipaddress
import secrets
from collections.abc import Sequence
from pathlib import Path

from PIL import Image

from gen.errors import GenError

CSRF_COOKIE = "gen_csrf"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
TOKEN_COOKIE = "gen_token"
TOKEN_PARAMETER = "token"

# Uploads: what classifying one image needs, and no more.
UPLOAD_TYPES = {"PNG": "image/png", "JPEG": "image/jpeg", "TIFF": "image/tiff", "BMP": "image/bmp"}
MAX_UPLOAD_BYTES = 10 * 1024 * 1024
MAX_UPLOAD_PIXELS = 4096 * 4096  # a decompression bomb declares far more than it stores


class Forbidden(GenError):
    """A request refused for safety (a missing CSRF token or access token): status 403/401."""

    def __init__(self, message: str, status: int = 403):
        super().__init__(message)
        self.status = status


def new_secret() -> bytes:
    return secrets.token_bytes(32)


def new_browser_id() -> str:
    return secrets.token_urlsafe(24)


def csrf_token(secret: bytes, browser_id: str) -> str:
    return hmac.new(secret, browser_id.encode(), hashlib.sha256).hexdigest()


def check_csrf(secret: bytes, browser_id: str | None, token: str | None) -> None:
    """Forbidden unless token is the CSRF token of this browser's cookie."""
    if not browser_id or not token or not hmac.compare_digest(csrf_token(secret, browser_id), token):
        raise Forbidden(
            "this form has no valid CSRF token (it came from another page or an older server); "
            "reload the page and send it again."
        )


def token_matches(expected: str, given: str | None) -> bool:
    return given is not None and hmac.compare_digest(expected.encode(), given.encode())


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def allowed_folder(text: str, roots: Sequence[Path], base: Path) -> Path:
    """The folder a form named, resolved (links followed, relative to base), if it lies inside
    one of the allowed roots; one sentence otherwise."""
    text = text.strip()
    if not text:
        raise GenError("name a folder.")
    if "\x00" in text:
        raise GenError("a folder name cannot hold a NUL character.")
    folder = (base / Path(text).expanduser()).resolve()
    for root in roots:
        if folder.is_relative_to(root.resolve()):
            return folder
    allowed = ", ".join(str(root) for root in roots)
    raise GenError(
        f"{text} is outside the folders this server may read ({allowed}); see gen serve --allow-root."
    )


def check_upload_size(content_length: str | None) -> None:
    """Before the body is read: a declared length within MAX_UPLOAD_BYTES."""
    if content_length is None or not content_length.isdigit():
        raise GenError("an upload must declare its size (Content-Length); send it from the page's form.")
    if int(content_length) > MAX_UPLOAD_BYTES:
        raise GenError(
            f"the upload is larger than {MAX_UPLOAD_BYTES // (1024 * 1024)} MiB; send a single image."
        )


def check_image_upload(data: bytes) -> str:
    """The upload's format from its header, before any pixel is decoded: one of UPLOAD_TYPES,
    at most MAX_UPLOAD_BYTES and MAX_UPLOAD_PIXELS (a decompression bomb is refused here).
    Returns the file suffix to store it under."""
    if len(data) > MAX_UPLOAD_BYTES:
        raise GenError(
            f"the upload is larger than {MAX_UPLOAD_BYTES // (1024 * 1024)} MiB; send a single image."
        )
    try:
        with Image.open(io.BytesIO(data)) as image:  # reads the header only
            kind, (width, height) = image.format, image.size
    except Image.DecompressionBombError:
        raise GenError("the upload declares far too many pixels (a decompression bomb?); refused.") from None
    except (OSError, ValueError):
        raise GenError("the upload is not an image (PNG, JPEG, TIFF or BMP).") from None
    if kind not in UPLOAD_TYPES:
        raise GenError(f"the upload is a {kind} image; send a PNG, JPEG, TIFF or BMP.")
    if width * height > MAX_UPLOAD_PIXELS:
        raise GenError(
            f"the upload declares {width}x{height} pixels, more than {MAX_UPLOAD_PIXELS:,} "
            "(a decompression bomb?); refused before decoding."
        )
    return {"JPEG": ".jpg"}.get(kind, f".{kind.lower()}")
