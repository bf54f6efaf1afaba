"""gen.text.printable: what a terminal would act on is shown as its escape, the rest as it is."""

from __future__ import annotations

from gen.text import printable


def test_controls_and_overrides_are_escaped_and_the_rest_kept() -> None:
    assert printable("runs/a b/Ünïcode 日本 'x' \\\\ ok") == "runs/a b/Ünïcode 日本 'x' \\\\ ok"
    assert printable("\x1b]52;c;cGF3bmVk\x07") == "\\x1b]52;c;cGF3bmVk\\x07"  # OSC 52: the clipboard
    assert printable("\x9b2J\x7f\x00") == "\\x9b2J\\x7f\\x00"  # C1 CSI, DEL, NUL
    assert printable("abc\u202edef\u2028") == "abc\\u202edef\\u2028"  # bidi override, line separator
    assert printable("one\ntwo\tthree\r") == "one\\ntwo\\tthree\\r"
    assert printable("one\ntwo\tthree\r", keep="\n\t") == "one\ntwo\tthree\\r"
