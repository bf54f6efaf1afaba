"""The one exception type for mistakes a user can cause and fix."""

from db.errors import UserError


class GenError(UserError):
    """A user-facing error: the CLI prints its message as one sentence and exits with status 1.

    Raise it for bad input (a missing folder, an unknown class, an unreachable database),
    never for bugs: those should keep their traceback. It is a db.errors.UserError, the kind
    the storing side raises, so that one ``except UserError`` (as the CLI has) catches both.
    """
