"""The one exception type for mistakes a user can cause and fix."""


class GenError(Exception):
    """A user-facing error: the CLI prints its message as one sentence and exits with status 1.

    Raise it for bad input (a missing folder, an unknown class, an unreachable database),
    never for bugs: those should keep their traceback.
    """
