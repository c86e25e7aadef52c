"""The reporters of ``oauth-gateway validate``: text, JSON and GitHub workflow commands.

Each takes the :class:`~oauth_gateway._checkfile.FileResult` list that checking built and
prints it (check-jsonschema's ``TextReporter`` / ``JsonReporter``); :mod:`oauth_gateway.cli`
chooses one from ``--output``.
"""

from __future__ import annotations

import json
from typing import IO, List

from ._checkfile import FileResult

__all__ = ("PROG", "escape_data", "escape_property", "report_failures", "report_github", "report_json", "report_text")

PROG = "oauth-gateway"


def report_failures(results: List[FileResult], err: IO[str]) -> None:
    for result in results:
        if result.failure:
            err.write("%s: error: %s %s\n" % (PROG, result.file, result.failure))


def report_text(results: List[FileResult], out: IO[str], err: IO[str], strict: bool, quiet: bool = False) -> None:
    report_failures(results, err)
    for result in results:
        if result.failure:
            continue
        for problem in result.problems:
            label = "warning: " if problem.severity == "warning" else ""
            text = "%s::%s: %s%s" % (result.file, problem.json_path, label, problem.message)
            out.write(text + ("; %s\n" % problem.hint if problem.hint else "\n"))
        if not quiet and not any(p.severity == "error" or strict for p in result.problems):
            out.write("%s: ok\n" % result.file)


def report_json(results: List[FileResult], out: IO[str], err: IO[str], strict: bool, quiet: bool = False) -> None:
    """One object per file, in the order given: ``file``, ``status``, ``problems``, ``error``."""
    report_failures(results, err)
    rows = [
        {
            "file": result.file,
            "status": "invalid" if result.status == "valid" and strict and result.problems else result.status,
            "problems": [
                {
                    "json_path": problem.json_path,
                    "message": problem.message,
                    "hint": problem.hint,
                    "severity": problem.severity,
                }
                for problem in result.problems
            ],
            "error": None if not result.failure else "%s %s" % (result.file, result.failure),
        }
        for result in results
    ]
    out.write(json.dumps(rows, indent=2) + "\n")


def report_github(results: List[FileResult], out: IO[str], err: IO[str], strict: bool, quiet: bool = False) -> None:
    report_failures(results, err)
    for result in results:
        if result.failure:
            place = "file=%s" % escape_property(result.file)
            if result.line is not None:
                place += ",line=%d,col=%d" % (result.line, result.column or 1)
            out.write("::error %s,title=%s::%s\n" % (place, PROG, escape_data("%s %s" % (result.file, result.failure))))
        for problem in result.problems:
            level = "error" if problem.severity == "error" or strict else "warning"
            out.write(
                "::%s file=%s,title=%s::%s\n" % (level, escape_property(result.file), PROG, escape_data(str(problem)))
            )


def escape_data(text: str) -> str:
    """Escape a GitHub workflow command's message."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    """Escape a GitHub workflow command's property value (file name)."""
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")
