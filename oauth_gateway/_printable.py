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
