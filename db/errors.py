"""The one exception type for mistakes a user can cause and fix on the storing side."""


class UserError(Exception):
    """A user-facing error: the CLI prints its message as one sentence and exits with status 1.

    db raises it for what a user can fix (an unreachable or newer database, an unknown model,
    a checkpoint without a row); gen.errors.GenError is the same kind on the generating side,
    so catching UserError catches both. Never raised for bugs: those keep their traceback.
    """


def disk_full(error: BaseException) -> bool:
    """Whether a database error says its disk is full (SQLite's SQLITE_FULL, PostgreSQL's 53100)."""
    original = getattr(error, "orig", None)
    return "database or disk is full" in str(original) or getattr(original, "pgcode", None) == "53100"
