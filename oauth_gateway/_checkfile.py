"""Checking one gateway file as ``oauth-gateway validate`` does: the result, apart from its reporting.

The command line reports a :class:`FileResult`; the demo checks its own file with
:func:`check_file` too. Below both, so neither imports the other.
"""

from __future__ import annotations

import sys
from typing import IO, List, NamedTuple, Optional

from . import schema
from ._helpers import literal_secret_warnings, parse_json_bytes, read_json_file

#: The file name ``validate`` reads from standard input.
STDIN = "-"


class FileResult(NamedTuple):
    """What checking one file found: problems, or why it could not be read."""

    file: str
    problems: List[schema.Problem]
    failure: Optional[str] = None
    line: Optional[int] = None
    column: Optional[int] = None

    @property
    def status(self) -> str:
        """``"error"`` (unreadable), ``"invalid"`` (an error among the problems) or ``"valid"``."""
        if self.failure:
            return "error"
        return "invalid" if any(problem.severity == "error" for problem in self.problems) else "valid"


def check_file(path: str, stdin: Optional[IO[bytes]] = None, load_providers: bool = False) -> FileResult:
    """Check one gateway file as ``oauth-gateway validate`` does: read it, validate it, warn.

    Args:
        path: the file; ``-`` reads ``stdin``.
        stdin: where ``-`` is read from (``sys.stdin``'s bytes by default).
        load_providers: import ``module:attribute`` providers (``--load-providers``).

    Returns:
        The problems found (errors first, then warnings), or why the file could not be read.
    """
    if path == STDIN:
        source = stdin if stdin is not None else sys.stdin.buffer
        document, failure = parse_json_bytes(source.read())
        secret_paths: List[str] = []  # no file mode to check
    else:
        document, failure = read_json_file(path)
    if failure is not None:
        return FileResult(path, [], failure.problem, failure.line, failure.column)
    if path != STDIN:
        secret_paths = schema.literal_secret_paths(document)
    warnings = [
        schema.Problem(json_path, message, hint, "warning")
        for json_path, message, hint in literal_secret_warnings(path, secret_paths)
    ]
    problems = schema.validate_config(document, load_providers=load_providers) + warnings
    problems.sort(key=lambda problem: problem.severity != "error")
    return FileResult(path, problems)
