"""Values from servers and files, made safe to print on one terminal line."""

from __future__ import annotations

from typing import Any


def printable(value: Any) -> str:
    """``value`` as text that cannot move the cursor, colour the terminal or start a new line.

    Printable text is returned as it is; anything holding a control, format or separator
    character (an escape sequence, CR/LF, a bidi override) is shown as its ``repr``, which
    writes those characters as escapes. Pure.
    """
    text = value if isinstance(value, str) else str(value)
    return text if text.isprintable() else repr(text)


def escape_controls(text: str) -> str:
    """``text`` with every unprintable character but newline and tab written as an escape (``\\x1b``).

    The last line of defence of the command line: whatever a value holds, no escape
    sequence, carriage return or bidi override reaches the terminal. Pure.
    """
    if text.replace("\n", "").replace("\t", "").isprintable():
        return text
    return "".join(
        char if char.isprintable() or char in "\n\t" else char.encode("unicode_escape").decode("ascii") for char in text
    )


class PrintableStream:
    """A text stream that writes through :func:`escape_controls`; everything else is the stream's."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        written: int = self._stream.write(escape_controls(text))
        return written

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)
