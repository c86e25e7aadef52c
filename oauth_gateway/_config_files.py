"""The files a config names: the TLS identity checked once per file version, secret files read.

:func:`check_tls_files` checks the client certificate, its key and the CA bundle the way
the token client will load them (fail closed, each file version loaded once);
:func:`read_secret_file` reads ``OAUTH_CLIENT_SECRET_FILE``. Used by
:mod:`oauth_gateway.config` while a config loads.
"""

from __future__ import annotations

import datetime
import logging
import os
import ssl
import stat
import threading
from collections import OrderedDict
from typing import Callable, Optional, Tuple

from ._helpers import MAX_SECRET_FILE_BYTES, read_regular_file
from .exceptions import ConfigError

__all__ = ("check_tls_files", "expand_path", "read_secret_file")

log = logging.getLogger("oauth_gateway.config")  # the config logger, as before the move


def expand_path(path: str) -> str:
    return os.path.expanduser(path) if path else ""


def _cert_not_after(path: str) -> Optional[datetime.datetime]:
    """Return the certificate's expiry, or None when the interpreter cannot tell."""
    decode = getattr(getattr(ssl, "_ssl", None), "_test_decode_cert", None)
    if decode is None:  # pragma: no cover - CPython always has it
        return None
    try:
        not_after = decode(path)["notAfter"]
    except Exception:  # an unparsable certificate is reported by load_cert_chain instead
        return None
    return datetime.datetime.fromtimestamp(ssl.cert_time_to_seconds(not_after), datetime.timezone.utc)


# Files that loaded into an SSL context before, by identity and version: building a context
# costs about a millisecond (OpenSSL 3), and callers that pass a dict to the seed's calls
# load the same config on every call. Only successes are remembered; a file that changes
# (inode, size or mtime) is loaded again.
_LOADED_TLS_FILES: OrderedDict[Tuple[Tuple[str, int, int, int, int], ...], None] = OrderedDict()
_LOADED_TLS_LOCK = threading.Lock()
_LOADED_TLS_MAX = 64


def _file_versions(*paths: str) -> Optional[Tuple[Tuple[str, int, int, int, int], ...]]:
    try:
        stats = [(path, os.stat(path)) for path in paths if path]
    except OSError:
        return None
    return tuple((path, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns) for path, st in stats)


def _loads_once(versions: Optional[Tuple[Tuple[str, int, int, int, int], ...]], load: Callable[[], object]) -> None:
    """Run ``load`` unless these exact file versions loaded before; remember a success."""
    if versions is not None:
        with _LOADED_TLS_LOCK:
            if versions in _LOADED_TLS_FILES:
                _LOADED_TLS_FILES.move_to_end(versions)
                return
    load()
    if versions is not None:
        with _LOADED_TLS_LOCK:
            _LOADED_TLS_FILES[versions] = None
            while len(_LOADED_TLS_FILES) > _LOADED_TLS_MAX:
                _LOADED_TLS_FILES.popitem(last=False)


def check_tls_files(cert: str, key: str, ca: str, path_of: Callable[[str], str]) -> None:
    for value, label, name in (
        (cert, "Client certificate", "OAUTH_CLIENT_CERT_PATH"),
        (key, "Client key", "OAUTH_CLIENT_KEY_PATH"),
        (ca, "CA bundle", "OAUTH_CA_BUNDLE_PATH"),
    ):
        if value and not os.path.isfile(value):
            raise ConfigError(
                "%s not found: %s" % (label, value),
                path_of(name),
                "check the path and its permissions (chmod 600)",
            )
        if value and not os.access(value, os.R_OK):
            raise ConfigError(
                "%s is not readable: %s" % (label, value),
                path_of(name),
                "make it readable by this user (chmod 600, owned by the gateway's user)",
            )
    if key:
        _, problem = read_regular_file(key, MAX_SECRET_FILE_BYTES)
        if problem is not None:
            raise ConfigError(
                "Client key %s %s" % (key, problem.problem), path_of("OAUTH_CLIENT_KEY_PATH"), problem.hint
            )
    if ca:
        try:
            _loads_once(_file_versions(ca), lambda: ssl.create_default_context(cafile=ca))
        except (ssl.SSLError, ValueError, OSError) as exc:
            raise ConfigError(
                "CA bundle %s holds no usable PEM certificate (%s)" % (ca, exc.__class__.__name__),
                path_of("OAUTH_CA_BUNDLE_PATH"),
                "point it at a PEM file of CA certificates",
            ) from None
    if not cert:
        return
    try:
        _loads_once(
            _file_versions(cert, key),
            lambda: ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_cert_chain(cert, key or None),
        )
    except (ssl.SSLError, ValueError, OSError) as exc:
        raise ConfigError(
            "client certificate %s and key %s do not load as a pair (%s)"
            % (cert, key, getattr(exc, "reason", None) or exc.__class__.__name__),
            path_of("OAUTH_CLIENT_KEY_PATH"),
            "use the PEM private key that belongs to this certificate, unencrypted",
        ) from None
    not_after = _cert_not_after(cert)
    if not_after is not None and not_after <= datetime.datetime.now(datetime.timezone.utc):
        raise ConfigError(
            "Client certificate expired on %s: %s" % (not_after.strftime("%Y-%m-%d %H:%M UTC"), cert),
            path_of("OAUTH_CLIENT_CERT_PATH"),
            "renew the certificate and register the new one with the authorization server",
        )
    if key:
        mode = os.stat(key).st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            log.warning(
                "Client key %s is readable by group or others (mode %o); run chmod 600 on it",
                key,
                stat.S_IMODE(mode),
            )


def read_secret_file(path: str, json_path: str) -> str:
    read, problem = read_regular_file(path, MAX_SECRET_FILE_BYTES)
    if problem is not None:
        raise ConfigError(
            "cannot read the secret file %s: it %s" % (path, problem.problem),
            json_path,
            "%s; it must be a regular file readable by this user" % problem.hint,
        )
    assert read is not None
    try:
        secret = read.data.decode("utf-8").strip("\r\n")
    except UnicodeDecodeError:
        raise ConfigError(
            "the secret file %s is not UTF-8 text" % path, json_path, "write the client secret as UTF-8 text"
        ) from None
    if read.is_exposed:
        log.warning(
            "Client secret file %s is readable by group or others (mode %04o); run chmod 600 on it", path, read.mode
        )
    if not secret:
        raise ConfigError("the secret file %s is empty" % path, json_path, "write the client secret into it")
    return secret
