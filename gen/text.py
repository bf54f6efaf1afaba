"""Text that others wrote (job arguments, worker and folder names, a command's output), made safe
to print on a terminal.

A terminal acts on control characters rather than showing them: ESC starts sequences that move
the cursor, clear the screen, set the window title or write the clipboard (OSC 52), C1 controls
such as U+009B do the same without the ESC, and bidirectional overrides (U+202E) reorder what
is shown. Printed through `printable`, each of them shows as its Python escape (``\\x1b``,
``\\x9b``, ``\\u202e``) instead, as repr() would write it.

Text written into a CSV file goes through `csv_cell`: a spreadsheet runs a cell that starts
like a formula.
"""

from __future__ import annotations

from typing import Any

# A spreadsheet runs a cell that starts with one of these as a formula; OWASP's advice for CSV
# files is to prefix such a cell with a single quote, which shows it as text.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def printable(text: str, keep: str = "") -> str:
    """text with every character that str.isprintable() refuses (C0 and C1 controls, DEL, format
    characters such as bidirectional overrides, line and paragraph separators) written as its
    escape; the characters in keep (e.g. "\\n" for many lines) are left as they are."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() or c in keep else repr(c)[1:-1] for c in text)


def csv_cell(value: Any) -> Any:
    """A value as a CSV cell: None empty, text a spreadsheet would run escaped, anything else as is.

    A carriage return in text becomes a line feed: the csv module quotes a cell holding the line
    terminator ("\\n" here) but not a lone "\\r", which a reader would take for the end of the row.
    """
    if value is None:
        return ""
    if not isinstance(value, str):
        return value
    escaped = "'" + value if value.startswith(FORMULA_STARTS) else value
    return escaped.replace("\r\n", "\n").replace("\r", "\n")
