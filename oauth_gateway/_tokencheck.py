"""The checks a token answer must pass before its token is used, whoever produced it.

Pure functions, no I/O: each returns what is wrong (never quoting the token) or None.
``client.py`` applies the same rules to token endpoint responses; the providers'
answers go through :func:`token_problem` in ``providers.call_provider``.
"""

from __future__ import annotations

import math
import re
from typing import Any, Optional

#: Longest access token accepted from a provider (a JWT with many claims is a few KiB).
MAX_ACCESS_TOKEN = 16384
#: Longest granted scope accepted (as for token endpoint responses).
MAX_SCOPE_LENGTH = 4096

#: RFC 6750 section 2.1: the characters of a bearer token (b64token).
_B64TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*\Z")
#: RFC 7230 section 3.2.6: the token_type is written before the token in a header (a token).
_TOKEN_TYPE = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,64}\Z")
#: RFC 6749 section 3.3: scope tokens of %x21 / %x23-5B / %x5D-7E, separated by spaces.
_SCOPE = re.compile(r"[\x20\x21\x23-\x5b\x5d-\x7e]*\Z")


def access_token_problem(value: Any) -> Optional[str]:
    """What makes ``value`` unusable as an access token: missing, too long, or not b64token."""
    if not isinstance(value, str) or not value:
        return "the access token is missing or empty"
    if len(value) > MAX_ACCESS_TOKEN:
        return "the access token is longer than %d characters" % MAX_ACCESS_TOKEN
    if not _B64TOKEN.match(value):
        # Never repeated: CR/LF would reach a header or a child's environment.
        return "the access token holds characters outside RFC 6750's b64token syntax ([A-Za-z0-9-._~+/]+=*)"
    return None


def token_type_problem(value: Any) -> Optional[str]:
    """What makes ``value`` unfit to precede the token in an ``Authorization`` header."""
    if not isinstance(value, str) or not _TOKEN_TYPE.match(value):
        return "the token type is not an HTTP token (letters, digits and !#$%&'*+-.^_`|~, at most 64)"
    return None


def scope_problem(value: Any) -> Optional[str]:
    """What makes ``value`` not an RFC 6749 scope; None (absent) and "" are fine."""
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > MAX_SCOPE_LENGTH or not _SCOPE.match(value):
        return (
            "the scope is not an RFC 6749 scope (printable ASCII tokens separated by spaces, "
            "at most %d characters)" % MAX_SCOPE_LENGTH
        )
    return None


def lifetime_problem(value: Any) -> Optional[str]:
    """What makes ``value`` not a lifetime in seconds; None means the default lifetime."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value) or value <= 0:
        return "the lifetime is not a positive number of seconds"
    return None


def token_problem(access_token: Any, token_type: Any, expires_in: Any, scope: Any) -> Optional[str]:
    """The first problem of a token answer's fields, or None when it may be used."""
    return (
        access_token_problem(access_token)
        or token_type_problem(token_type)
        or lifetime_problem(expires_in)
        or scope_problem(scope)
    )
