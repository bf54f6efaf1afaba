"""How the storing side reads a reference that a user typed and stores a path.

Names work wherever an id does: a reference that is all digits is an id, anything else a name,
which is why names may not be all digits. Paths are stored absolute (resolved), so rows stay
true whichever folder a later command runs from; an export rewrites them relative to its root.
"""

from __future__ import annotations

import re
from pathlib import Path

from db.errors import UserError

# Ids are positive and fit a signed 64-bit integer, the widest any database column holds; a
# reference outside that range is refused here rather than by the driver (SQLite overflows).
MAX_ID = 2**63 - 1


_ID = re.compile(r"[0-9]+")


def as_id(reference: str | int) -> int | None:
    """The id a reference names, or None when it is a name. All ASCII digits is an id, and only
    1..MAX_ID is one (UserError otherwise): the one place where ids typed by a user are read."""
    text = str(reference).strip()
    if not _ID.fullmatch(text):
        return None
    number = int(text)
    if not 1 <= number <= MAX_ID:
        shown = text if len(text) <= 30 else f"{text[:12]}...{text[-6:]}"
        raise UserError(f"{shown} is not an id: ids are whole numbers from 1 to {MAX_ID}.")
    return number


def check_name(name: str, what: str) -> None:
    """UserError unless name can name a data set or model: not empty, not all digits (an id)."""
    if not name or name != name.strip() or not name.isprintable():
        raise UserError(f"{what} name {name!r} must not be empty or start or end with a space.")
    if _ID.fullmatch(name):
        raise UserError(f"{what} name {name!r} is all digits, which would read as an id; add a letter.")


def stored_path(path: str | Path) -> str:
    return str(Path(path).resolve())
