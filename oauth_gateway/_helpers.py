"""Shared internals, written once: URL redaction, ``${ENV}`` references, the gateway
file's path, reading a JSON file (with a nesting limit), reading a small secret or key
file (regular files only, capped), the atomic file write and the literal-secret warning.

Private to the package; the adapters and the core both import from here, and this
module imports nothing of the package but exceptions, JSON paths and :mod:`._redact`
(which exceptions imports too: the URL redactor sits below both).
"""

from __future__ import annotations

import json
import os
import re
import stat
import tempfile
from typing import Any, Iterable, List, Mapping, NamedTuple, Optional, Tuple

from ._jsonpath import join as _join_path
from ._redact import redact_url as redact_url
from .exceptions import ConfigError

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")

#: Where the gateway file lives unless told otherwise (``~`` is expanded).
DEFAULT_CONFIG_PATH = os.path.join("~", ".enkrypt", "enkrypt_mcp_config.json")
#: Environment variable that overrides :data:`DEFAULT_CONFIG_PATH`.
CONFIG_PATH_ENV = "OAUTH_GATEWAY_CONFIG"
#: The deepest nesting of arrays and objects accepted in a JSON document. Checked by a
#: linear scan before parsing, so no document can make the parser recurse deeply.
MAX_JSON_DEPTH = 64
#: The largest gateway or ``oauth_config`` JSON file read.
MAX_JSON_FILE_BYTES = 16 * 1024 * 1024
#: The largest secret, private key or assertion file read (they are a few KB).
MAX_SECRET_FILE_BYTES = 64 * 1024

# One token of a JSON text for the depth scan: a whole string (escapes included, an
# unterminated one running to the end) or a bracket. Every part is deterministic and
# the final alternative cannot fail, so the scan is linear in the text's length.
_JSON_STRUCTURE = re.compile(r'"[^"\\]*(?:\\[\s\S][^"\\]*)*(?:"|\\?\Z)|[\[\]{}]')


def resolve_env(value: Any, json_path: str, environ: Mapping[str, str]) -> Any:
    """Replace every ``${NAME}`` in the strings of ``value`` (recursively) from ``environ``.

    Raises:
        ConfigError: a referenced variable is not set; names ``json_path`` and the variable.
    """
    if isinstance(value, str):
        if "${" not in value:
            return value

        def substitute(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in environ:
                raise ConfigError(
                    "refers to the environment variable %s, which is not set" % name,
                    json_path,
                    "export %s before loading the config, or write the value directly" % name,
                )
            return environ[name]

        return _ENV_REF.sub(substitute, value)
    if isinstance(value, list):
        return [resolve_env(item, "%s[%d]" % (json_path, i), environ) for i, item in enumerate(value)]
    if isinstance(value, dict):
        return {k: resolve_env(v, _join_path(json_path, k), environ) for k, v in value.items()}
    return value


def resolve_config_path(path: Optional[str] = None, environ: Optional[Mapping[str, str]] = None) -> Tuple[str, str]:
    """Return the gateway file's absolute path and where it came from, for messages.

    ``path`` when given, else ``$OAUTH_GATEWAY_CONFIG`` when set and not empty, else
    :data:`DEFAULT_CONFIG_PATH`; ``~`` is expanded.

    Returns:
        ``(absolute path, source)``, source being ``"argument"``, ``"$OAUTH_GATEWAY_CONFIG"``
        or ``"default"``.
    """
    env = os.environ if environ is None else environ
    if path is not None:
        raw, source = os.fspath(path), "argument"
    elif env.get(CONFIG_PATH_ENV):
        raw, source = env[CONFIG_PATH_ENV], "$%s" % CONFIG_PATH_ENV
    else:
        raw, source = DEFAULT_CONFIG_PATH, "default"
    return os.path.abspath(os.path.expanduser(raw)), source


class FileProblem(NamedTuple):
    """Why a JSON file could not be read: a phrase that follows the file's name, and a hint."""

    #: Follows the file name: ``"does not exist"``, ``"is not valid JSON: ... at line 2, column 13"``.
    problem: str
    #: What to do about it.
    hint: str
    #: Line and column of a JSON syntax error, else None.
    line: Optional[int] = None
    column: Optional[int] = None


def json_too_deep(text: str, limit: int = MAX_JSON_DEPTH) -> Optional[Tuple[int, int]]:
    """Find where a JSON text nests arrays and objects more than ``limit`` deep.

    A linear scan that skips strings (and the brackets and escapes inside them); it
    stops at the first bracket past the limit, so ``"[" * 10**6`` costs 65 steps.

    Returns:
        ``(line, column)`` of the first opening bracket beyond ``limit``, or None.
    """
    if text.count("[") + text.count("{") <= limit:
        return None
    depth = 0
    for match in _JSON_STRUCTURE.finditer(text):
        char = text[match.start()]
        if char in "[{":
            depth += 1
            if depth > limit:
                position = match.start()
                line = text.count("\n", 0, position) + 1
                return line, position - text.rfind("\n", 0, position)
        elif char in "]}":
            depth -= 1
    return None


def parse_json_text(text: str) -> Tuple[Any, Optional[FileProblem]]:
    """Parse a JSON text from a user (a file, an option, standard input), never recursing deeply.

    Never raises for bad input and never quotes it (the text around an error may hold a
    secret): only the parser's message and the position.

    Returns:
        ``(document, None)``, or ``(None, FileProblem)`` when the text is not JSON or
        nests more than :data:`MAX_JSON_DEPTH` arrays and objects.
    """
    deep = json_too_deep(text)
    if deep is not None:
        return None, FileProblem(
            "is nested more than %d arrays or objects deep (line %d, column %d)" % (MAX_JSON_DEPTH, deep[0], deep[1]),
            "flatten the document; %d levels is the limit" % MAX_JSON_DEPTH,
            deep[0],
            deep[1],
        )
    try:
        return json.loads(text), None
    except json.JSONDecodeError as error:
        return None, FileProblem(
            "is not valid JSON: %s at line %d, column %d" % (error.msg, error.lineno, error.colno),
            "fix the syntax there (a trailing comma or a missing quote is common; JSON has no comments)",
            error.lineno,
            error.colno,
        )
    except ValueError as error:  # e.g. an integer longer than Python converts; the message quotes no text
        return None, FileProblem("is not valid JSON: %s" % error, "fix the value the message names")
    except RecursionError:  # pragma: no cover - the depth scan comes first
        return None, FileProblem("is nested too deeply to read", "flatten the document")


def read_json_file(path: str) -> Tuple[Any, Optional[FileProblem]]:
    """Read and parse a JSON file (UTF-8, a byte order mark allowed).

    The file must be a regular file (a FIFO or a device is refused without blocking)
    of at most :data:`MAX_JSON_FILE_BYTES`, nested at most :data:`MAX_JSON_DEPTH` deep.
    Never raises for a bad file and never quotes its contents (the text around a syntax
    error may hold a secret): only the parser's message and position.

    Returns:
        ``(document, None)``, or ``(None, FileProblem)`` when the file is missing,
        unreadable, not a regular file, too large, not UTF-8, not JSON or nested too deeply.
    """
    raw, problem = read_regular_file(path, MAX_JSON_FILE_BYTES)
    if problem is not None:
        return None, problem
    assert raw is not None
    return parse_json_bytes(raw.data)


def loads_bounded(text: str, **kwargs: Any) -> Any:
    """``json.loads`` that never recurses deeply: JSON from a server or a cache entry.

    Raises:
        ValueError: ``text`` is not JSON, or nests more than :data:`MAX_JSON_DEPTH` deep.
    """
    if json_too_deep(text) is not None:
        raise ValueError("nested more than %d deep" % MAX_JSON_DEPTH)
    return json.loads(text, **kwargs)


def parse_json_bytes(raw: bytes) -> Tuple[Any, Optional[FileProblem]]:
    """Parse JSON bytes (UTF-8, a byte order mark allowed) as :func:`read_json_file` does.

    Returns:
        ``(document, None)``, or ``(None, FileProblem)`` when the bytes are not UTF-8,
        not JSON or nested too deeply; the problem never quotes the text.
    """
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        return None, FileProblem("is not UTF-8 text (bad byte at offset %d)" % error.start, "save it as UTF-8")
    return parse_json_text(text)


class RegularFile(NamedTuple):
    """What :func:`read_regular_file` read: the bytes, and the file's permission bits."""

    data: bytes
    mode: int

    def __repr__(self) -> str:
        # The bytes may be a secret or a private key.
        return "RegularFile(%d bytes, mode=%04o)" % (len(self.data), self.mode)

    @property
    def is_exposed(self) -> bool:
        """True when group or others may read or write the file (POSIX modes)."""
        return os.name == "posix" and bool(self.mode & 0o077)


def read_regular_file(path: str, max_bytes: int) -> Tuple[Optional[RegularFile], Optional[FileProblem]]:
    """Read a small regular file (a secret, a key, an assertion, a config) safely.

    The file is opened with ``O_NONBLOCK`` and checked with ``fstat`` before any byte is
    read: a FIFO, a socket or a device is refused instead of hanging or reading forever,
    and a file larger than ``max_bytes`` is refused. Symlinks to a regular file are
    followed (Kubernetes mounts secrets that way).

    Returns:
        ``(RegularFile, None)``, or ``(None, FileProblem)`` naming what is wrong; the
        problem follows the file's name (``"is a FIFO, not a regular file"``).
    """
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        return None, FileProblem("does not exist", "check the path")
    except IsADirectoryError:
        return None, FileProblem("is a directory", "give the path of the file inside it")
    except PermissionError:
        return None, FileProblem(
            "cannot be read: permission denied", "run as the file's owner, or fix its permissions (chmod 600)"
        )
    except OSError as error:
        return None, FileProblem("cannot be read: %s" % (error.strerror or error), "check the path and the disk")
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            return None, FileProblem("is a directory", "give the path of the file inside it")
        if not stat.S_ISREG(info.st_mode):
            kind = (
                "a FIFO" if stat.S_ISFIFO(info.st_mode) else "a socket" if stat.S_ISSOCK(info.st_mode) else "a device"
            )
            return None, FileProblem("is %s, not a regular file" % kind, "point it at a regular file")
        if info.st_size > max_bytes:
            return None, FileProblem(
                "is larger than %d bytes (%d bytes)" % (max_bytes, info.st_size),
                "point it at the right file; this one is far too large for its purpose",
            )
        chunks = []
        size = 0
        while True:  # bounded: at most max_bytes + 1 bytes are read
            chunk = os.read(fd, max_bytes + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
            if size > max_bytes:
                return None, FileProblem(
                    "is larger than %d bytes" % max_bytes,
                    "point it at the right file; this one is far too large for its purpose",
                )
        return RegularFile(b"".join(chunks), stat.S_IMODE(info.st_mode)), None
    except OSError as error:
        return None, FileProblem("cannot be read: %s" % (error.strerror or error), "check the path and the disk")
    finally:
        os.close(fd)


def replace_bytes(path: str, data: bytes, mode: int, owner: Optional[Tuple[int, int]] = None) -> None:
    """Atomically replace ``path`` with ``data`` through a same-directory temporary file.

    The temporary file gets ``mode`` (and ``owner``, a ``(uid, gid)`` pair, when given)
    before any byte is written, is flushed and fsynced, then renamed over ``path``:
    readers see the old file or the new one, never a part. The directory is not fsynced
    here.

    Raises:
        OSError: the disk refused; ``path`` is unchanged and no temporary file remains.
    """
    directory, name = os.path.split(path)
    fd, temp = tempfile.mkstemp(prefix=".%s." % name, suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as handle:
            # Before any byte is written: the secrets are never readable by others.
            if owner is not None and hasattr(os, "fchown"):
                os.fchown(handle.fileno(), owner[0], owner[1])
            if hasattr(os, "fchmod"):
                os.fchmod(handle.fileno(), mode)
            else:  # pragma: no cover - Windows
                os.chmod(temp, mode)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        try:
            os.unlink(temp)
        except OSError:
            pass
        raise


def literal_secret_warnings(path: str, json_paths: Iterable[str]) -> List[Tuple[str, str, str]]:
    """Warn about literal client secrets in a file that group or others can read.

    Args:
        path: the file.
        json_paths: where it holds a literal secret (``schema.literal_secret_paths``).

    Returns:
        ``(json_path, message, hint)`` per secret; nothing when the file is private,
        unreadable, or the platform has no POSIX modes.
    """
    if os.name != "posix":  # pragma: no cover
        return []
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        return []
    if not mode & 0o077:
        return []
    message = "holds a literal client secret in a file readable by group or others (mode %04o)" % mode
    hint = 'use "${ENV_NAME}" or OAUTH_CLIENT_SECRET_FILE instead, or run chmod 600 %s' % path
    return [(json_path, message, hint) for json_path in json_paths]


# --------------------------------------------------------------------------- masked values


class _MaskedStr(str):
    """A string whose ``repr`` is ``'***'``: a secret held in a local variable."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "'***'"


class _MaskedBytes(bytes):
    """Bytes whose ``repr`` gives only their length: a body that may hold a token."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<%d bytes, hidden>" % len(self)


class _MaskedList(list):  # type: ignore[type-arg]
    """A list (form fields) whose ``repr`` hides its items."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<%d items, hidden>" % len(self)


class _MaskedTuple(tuple):  # type: ignore[type-arg]
    """A tuple whose ``repr`` hides its items."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<%d items, hidden>" % len(self)


class _MaskedDict(dict):  # type: ignore[type-arg]
    """A dict (headers, a parsed body) whose ``repr`` shows its keys, never its values."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<dict with keys %s, values hidden>" % ", ".join(sorted(str(key) for key in self))


def masked(value: Any) -> Any:
    """Return ``value`` as an equal object whose ``repr`` hides it.

    Secrets kept in local variables show up wherever frame locals are printed:
    ``traceback`` with ``capture_locals``, Django's technical 500 page and its
    ``AdminEmailHandler`` mails, Sentry. Strings, bytes, lists, tuples and dicts come
    back as subclasses that behave the same and print as ``'***'`` or a count; other
    values (None included) come back unchanged.
    """
    if isinstance(value, (_MaskedStr, _MaskedBytes, _MaskedList, _MaskedTuple, _MaskedDict)):
        return value
    if isinstance(value, str):
        return _MaskedStr(value)
    if isinstance(value, bytes):
        return _MaskedBytes(value)
    if isinstance(value, list):
        return _MaskedList(value)
    if isinstance(value, tuple):
        return _MaskedTuple(value)
    if isinstance(value, dict):
        return _MaskedDict(value)
    return value
