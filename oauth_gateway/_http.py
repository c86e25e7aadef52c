"""The HTTP rules the package applies in many places, each written once.

* where a URL may receive a credential or be fetched (:func:`transport_problem`), which
  hosts are loopback (:func:`is_loopback_host`), what an origin is (:func:`origin_of`)
  and whether a URL hides credentials (:func:`credential_problem`);
* the rule for a challenge's ``resource_metadata`` URL (:func:`resource_metadata_problem`);
* what a header name and value may hold (:data:`TCHARS`, :func:`header_value_problem`);
* the one ``WWW-Authenticate`` parser (:func:`parse_www_authenticate`), linear and capped;
* the one remote-server detector of a launch spec (:func:`remote_program`, :func:`remote_url`).

Pure: no I/O, no logging, the standard library only (and the URL redactor); every
function is safe to call from any thread. A problem is returned as data, a
``(problem, hint)`` pair, and each caller raises it as its own error.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from typing import Any, List, NamedTuple, Optional, Tuple
from urllib.parse import urlsplit

from ._helpers import redact_url

#: Longest ``WWW-Authenticate`` value parsed; the rest is ignored (a hostile server may
#: send 100 header lines of 64 KiB, which requests joins into one value).
MAX_CHALLENGE_LENGTH = 16 * 1024

#: RFC 9110 section 5.6.2: the characters of a token (header names, auth schemes, parameter names).
TCHARS = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")

_DEFAULT_PORTS = {"https": 443, "http": 80}


class UrlProblem(NamedTuple):
    """Why a URL is refused: the problem (it names the URL, redacted) and how to fix it."""

    problem: str
    hint: str
    #: True when the URL is not an absolute http(s) URL at all (not merely plain http).
    malformed: bool = False


# --------------------------------------------------------------------------- hosts and origins


def is_loopback_host(host: Optional[str]) -> bool:
    """True for ``localhost``, ``*.localhost`` (RFC 6761) and loopback IP addresses (127/8, ::1)."""
    if not host:
        return False
    host = host.strip("[]").lower().rstrip(".")
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def origin_of(url: Optional[str]) -> str:
    """The origin of ``url`` (``https://host:port``, lower-cased, default port filled in).

    A URL without a scheme or host, or with a broken port, gives a value no real origin has.
    """
    try:
        parts = urlsplit(url or "")
        port = parts.port
    except ValueError:
        return "invalid:"
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if ":" in host:
        host = "[%s]" % host
    return "%s://%s:%d" % (scheme, host, port or _DEFAULT_PORTS.get(scheme, 0))


def transport_problem(url: str, *, enforce_https: bool = True, any_http_host: bool = False) -> Optional[UrlProblem]:
    """Why ``url`` may not carry a credential or be fetched; None when it may.

    https always may. Plain http may when ``enforce_https`` is false and the host is
    loopback, or any host with ``any_http_host`` (the token endpoint of an OAuth 2.0
    config with ``OAUTH_ENFORCE_HTTPS`` false). Anything but an absolute http(s) URL never.
    """
    scheme, host = "", None
    try:
        parts = urlsplit(url)
        scheme, host = parts.scheme.lower(), parts.hostname
    except ValueError:
        pass
    if not host:
        scheme = ""
    if scheme not in ("http", "https"):
        return UrlProblem(
            "must be an absolute http(s) URL, got %r" % redact_url(url),
            "write it like https://idp.example.com/oauth/token",
            malformed=True,
        )
    if scheme == "https":
        return None
    allowed_host = any_http_host or is_loopback_host(host)
    if not enforce_https and allowed_host:
        return None
    if not allowed_host:
        hint = "plain http is allowed only to loopback hosts (localhost, 127.0.0.1, ::1), for local tests; use https"
    else:
        hint = "use https, or set OAUTH_ENFORCE_HTTPS to false for local tests"
    return UrlProblem("must be https, got %r" % redact_url(url), hint)


#: Query parameter names that say "credential": refused in endpoint URLs, whose query
#: urllib3 writes to its DEBUG log (``"POST /token?p=... HTTP/1.1" 200``).
_SECRET_QUERY_NAME = re.compile(
    r"secret|passw|pwd|token|api_?key|assertion|signature|credential|^(key|code|sig|auth|authorization)$", re.I
)


def credential_problem(url: str) -> Optional[UrlProblem]:
    """Credentials inside an endpoint URL: user info, or a query value under a secret-looking name."""
    parts = urlsplit(url)
    if "@" in parts.netloc:
        return UrlProblem(
            "must not carry credentials (user:password@), got %r" % redact_url(url),
            "remove them from the URL; the client authenticates with OAUTH_CLIENT_ID and OAUTH_CLIENT_SECRET",
        )
    for field in parts.query.split("&") if parts.query else ():
        name = field.partition("=")[0]
        if _SECRET_QUERY_NAME.search(name):
            return UrlProblem(
                "carries %r in its query, which urllib3's DEBUG log would show, got %r" % (name, redact_url(url)),
                "send it in the POST body with OAUTH_ADDITIONAL_PARAMS, or as OAUTH_CLIENT_SECRET",
            )
    return None


def resource_metadata_problem(resource_url: str, metadata_url: str, configured: str = "") -> Optional[UrlProblem]:
    """Why a 401 challenge's ``resource_metadata`` URL may not be followed; None when it may.

    It must be on the origin of the resource that sent the challenge, or be exactly the
    configured ``OAUTH_RESOURCE_METADATA_URL``: otherwise any resource server could make
    the client fetch an internal URL (SSRF), and learn from the error what answered there.
    The message names the two origins only.
    """
    if configured and metadata_url == configured:
        return None
    if origin_of(metadata_url) == origin_of(resource_url) and not origin_of(resource_url).startswith("invalid:"):
        return None
    return UrlProblem(
        "the 401 challenge's resource_metadata is on %s, not on the server's origin %s"
        % (redact_url(origin_of(metadata_url)), redact_url(origin_of(resource_url))),
        "nothing was fetched from it; if the server's operator publishes its metadata there, "
        "set OAUTH_RESOURCE_METADATA_URL to that URL",
    )


# --------------------------------------------------------------------------- headers


def header_value_problem(value: str) -> Optional[str]:
    """What makes ``value`` unfit for an HTTP header (RFC 9110 field-value), without quoting it."""
    for char in value:
        if char in "\r\n":
            return "holds a line break (CR or LF)"
        if char == "\0":
            return "holds a NUL character"
        if (char < " " and char != "\t") or char == "\x7f":
            return "holds the control character U+%04X" % ord(char)
    if value != value.strip(" \t"):
        return "starts or ends with whitespace"
    return None


def is_header_name(name: str) -> bool:
    """True when ``name`` is an HTTP token (RFC 9110 section 5.1)."""
    return bool(name) and set(name) <= TCHARS


# --------------------------------------------------------------------------- WWW-Authenticate


@dataclasses.dataclass(frozen=True)
class Challenge:
    """One challenge of a ``WWW-Authenticate`` header. Immutable.

    Attributes:
        scheme: the auth scheme as sent (``Bearer``, ``DPoP``...); compare it lowercased.
        params: ``(name, value)`` pairs, names lowercased, first occurrence of each name.
        token68: the token68 value of schemes like Basic, or None.
    """

    scheme: str
    params: Tuple[Tuple[str, str], ...] = ()
    token68: Optional[str] = None

    def get(self, name: str) -> Optional[str]:
        """Return the parameter ``name`` (case-insensitive), or None."""
        name = name.lower()
        for key, value in self.params:
            if key == name:
                return value
        return None

    @property
    def resource_metadata(self) -> Optional[str]:
        """The RFC 9728 ``resource_metadata`` URL, or None."""
        return self.get("resource_metadata")

    @property
    def scope(self) -> Optional[str]:
        """The ``scope`` parameter, or None."""
        return self.get("scope")

    @property
    def error(self) -> Optional[str]:
        """The RFC 6750 ``error`` code, or None."""
        return self.get("error")


_WORD_CHARS = TCHARS | frozenset("/")  # token68 also allows "/"
_SPACE = frozenset(" \t")


def parse_www_authenticate(value: str) -> List[Challenge]:
    """Parse a ``WWW-Authenticate`` value into its challenges (RFC 9110 section 11.6.1).

    One left-to-right pass, no regular expressions: linear time in ``len(value)``, and at
    most :data:`MAX_CHALLENGE_LENGTH` characters are read, so the cost is bounded
    whatever the server sends. Malformed parts are skipped, never raised.

    Args:
        value: the header value; several headers may be joined with ``", "``.

    Returns:
        The challenges in order; parameters with a quoted-string value are unescaped.
    """
    text = value[:MAX_CHALLENGE_LENGTH]
    n = len(text)
    i = 0
    challenges: List[Challenge] = []
    scheme: Optional[str] = None
    params: List[Tuple[str, str]] = []
    token68: Optional[str] = None

    def flush() -> None:
        if scheme is not None:
            seen = set()
            unique = []
            for key, val in params:
                if key not in seen:
                    seen.add(key)
                    unique.append((key, val))
            challenges.append(Challenge(scheme, tuple(unique), token68))

    while i < n:
        char = text[i]
        if char in _SPACE or char == ",":
            i += 1
            continue
        start = i
        while i < n and text[i] in _WORD_CHARS:
            i += 1
        word = text[start:i]
        if not word:
            i += 1  # a stray character: skip it
            continue
        j = i
        while j < n and text[j] in _SPACE:
            j += 1
        if j < n and text[j] == "=" and scheme is not None:
            # "name = value", or a token68 ending in "=" padding
            k = j + 1
            while k < n and text[k] in _SPACE:
                k += 1
            if k >= n or text[k] in ",=":
                while k < n and text[k] == "=":
                    k += 1
                if not params and token68 is None:
                    token68 = text[start:k].rstrip()
                i = k
                continue
            if text[k] == '"':
                k += 1
                chunks = []
                while k < n and text[k] != '"':
                    if text[k] == "\\" and k + 1 < n:
                        k += 1
                    chunks.append(text[k])
                    k += 1
                params.append((word.lower(), "".join(chunks)))
                i = k + 1
            else:
                vstart = k
                while k < n and text[k] in _WORD_CHARS:
                    k += 1
                if k == vstart:
                    k += 1  # a stray character after "=": skip it
                params.append((word.lower(), text[vstart:k]))
                i = k
            continue
        # a word not followed by "=": a new challenge's scheme
        flush()
        scheme, params, token68 = word, [], None
        i = j
    flush()
    return challenges


# --------------------------------------------------------------------------- remote servers

#: Programs that reach an MCP server over HTTP and take the token as a header; their URL
#: argument is the server's URL.
REMOTE_PROGRAMS = ("mcp-remote", "curl")
_WINDOWS_SUFFIX = re.compile(r"\.(cmd|exe|bat|ps1)$", re.IGNORECASE)


def _program_name(arg: str) -> str:
    """The lower-case file name of ``arg`` without a Windows launcher suffix (``.../mcp-remote.cmd``)."""
    name = arg.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1].lower()
    return _WINDOWS_SUFFIX.sub("", name)


def _remote_words(command: Any, args: Any) -> List[Tuple[Optional[str], str]]:
    """``(program, word)`` for each string of a launch spec: the remote program it names, or None."""
    words = ([command] if isinstance(command, str) else []) + (list(args) if isinstance(args, list) else [])
    found: List[Tuple[Optional[str], str]] = []
    for word in words:
        if not isinstance(word, str):
            continue
        program: Optional[str] = None
        if "://" not in word:  # a URL is an argument to something, not a program (https://host/mcp-remote)
            name = _program_name(word)
            for candidate in REMOTE_PROGRAMS:
                if name == candidate or (candidate == "mcp-remote" and name.startswith("mcp-remote@")):
                    program = candidate
        found.append((program, word))
    return found


def remote_program(command: Any, args: Any) -> Optional[str]:
    """The remote program (``mcp-remote``, ``mcp-remote@<version>``, ``curl``) a launch spec runs, or None.

    ``npx`` or ``uvx`` alone is not one, and neither is a URL (``https://host/mcp-remote``).
    """
    for program, _word in _remote_words(command, args):
        if program is not None:
            return program
    return None


def remote_url(command: Any, args: Any) -> Optional[str]:
    """The server URL given to the remote program of a launch spec: its first http(s) argument after it, or None."""
    seen_program = False
    for program, word in _remote_words(command, args):
        if program is not None:
            seen_program = True
        elif seen_program and "://" in word and urlsplit(word).scheme.lower() in ("http", "https"):
            return word
    return None
