"""The ``static`` token provider: a token read from a file or an environment variable.

For servers that take a fixed API key or a token another process rotates (a secret
store agent, a Kubernetes projected volume). Options (``OAUTH_PROVIDER_OPTIONS``)::

    {"file": "/run/secrets/api-token", "lifetime": 300}
    {"env": "LEGACY_API_TOKEN", "token_type": "Bearer"}

``file`` or ``env`` (exactly one) says where the token is; ``lifetime`` (seconds,
default :data:`_DEFAULT_LIFETIME`) is how long the manager keeps it before asking again,
so a rotated file is picked up within ``lifetime`` minus the refresh buffer, at once
after :meth:`~oauth_gateway.TokenManager.refresh`, and after a 401 through the
``requests`` auth object. The file is re-read only when its modification time, size or
inode changed; surrounding whitespace is stripped.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Dict, Mapping, Optional, Tuple

from .._jsonpath import join as _join_path
from ..exceptions import ConfigError, TokenRequestError
from . import ProviderContext, TokenProvider

if TYPE_CHECKING:  # pragma: no cover
    from ..client import TokenResponse
    from ..config import OAuthConfig

__all__ = ("StaticTokenProvider",)

#: Seconds a static token is kept when ``lifetime`` is not set.
_DEFAULT_LIFETIME = 300
#: The longest token file read, in bytes; a bigger file is refused (it is not a token).
_MAX_TOKEN_BYTES = 16384

_OPTIONS = "$.oauth_config.OAUTH_PROVIDER_OPTIONS"

# (st_mtime_ns, st_size, st_ino) of a file as last read.
_Signature = Tuple[int, int, int]


class StaticTokenProvider(TokenProvider):
    """A token from a file or an environment variable. Thread-safe.

    The memo of file contents (path -> signature and token) takes one dict assignment
    per read, atomic under the GIL, so it needs no lock (and nothing to reset after fork).
    """

    options_schema: Optional[Dict[str, Any]] = {
        "type": "object",
        "properties": {
            "file": {
                "type": "string",
                "minLength": 1,
                "description": "Path of a file holding the token (whitespace stripped; ~ expanded).",
            },
            "env": {
                "type": "string",
                "pattern": "^[A-Za-z_][A-Za-z0-9_]*$",
                "description": "Name of an environment variable holding the token, read at each fetch.",
                "x-message": {"pattern": "must be an environment variable name, got {value}"},
                "x-hint": {"pattern": 'write the variable\'s name, like "LEGACY_API_TOKEN", not ${...}'},
            },
            "lifetime": {
                "type": "number",
                "exclusiveMinimum": 0,
                "maximum": 86400,
                "default": _DEFAULT_LIFETIME,
                "description": "Seconds the token is kept before the source is read again.",
            },
            "token_type": {"type": "string", "minLength": 1, "default": "Bearer"},
        },
        "additionalProperties": False,
        "oneOf": [{"required": ["file"]}, {"required": ["env"]}],
        "x-message": {"oneOf": "set exactly one of file and env"},
        "x-hint": {"oneOf": 'name a token file ("file") or an environment variable ("env")'},
    }

    identity_options: Mapping[str, str] = {"file": "file", "env": "env"}

    def __init__(self) -> None:
        self._memo: Dict[str, Tuple[_Signature, str]] = {}

    def check_options(self, options: Mapping[str, Any], json_path: str) -> None:
        path = options.get("file")
        if path and not os.path.isfile(os.path.expanduser(path)):
            raise ConfigError(
                "token file not found: %s" % path,
                _join_path(json_path, "file"),
                "check the path, or that the agent writing the token has started",
            )

    def fetch(self, config: OAuthConfig, context: ProviderContext) -> TokenResponse:
        from ..client import TokenResponse

        options = context.options
        if "env" in options:
            token = os.environ.get(options["env"], "").strip()
            if not token:
                raise ConfigError(
                    "the environment variable %s is not set or empty" % options["env"],
                    _join_path(_OPTIONS, "env"),
                    "export %s with the token before starting the gateway" % options["env"],
                )
        else:
            token = self._read(os.path.expanduser(options["file"]))
        lifetime = float(options.get("lifetime", _DEFAULT_LIFETIME))
        return TokenResponse(token, options.get("token_type", "Bearer"), lifetime, None)

    def _read(self, path: str) -> str:
        where = _join_path(_OPTIONS, "file")
        try:
            info = os.stat(path)
        except OSError as exc:
            raise ConfigError(
                "cannot read the token file %s (%s)" % (path, exc.strerror or exc.__class__.__name__),
                where,
                "check the path and that this user may read it",
            ) from None
        signature = (info.st_mtime_ns, info.st_size, info.st_ino)
        memo = self._memo.get(path)
        if memo is not None and memo[0] == signature:
            return memo[1]
        if info.st_size > _MAX_TOKEN_BYTES:
            raise TokenRequestError(
                "the token file %s holds %d bytes, more than a token (%d at most)"
                % (path, info.st_size, _MAX_TOKEN_BYTES),
                retryable=False,
            )
        try:
            with open(path, encoding="utf-8") as handle:
                token = handle.read(_MAX_TOKEN_BYTES + 1).strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(
                "cannot read the token file %s (%s)" % (path, getattr(exc, "strerror", None) or exc.__class__.__name__),
                where,
                "check the path and that this user may read it",
            ) from None
        if not token:
            raise TokenRequestError("the token file %s is empty" % path, retryable=True)
        self._memo[path] = (signature, token)
        return token

    def __repr__(self) -> str:
        return "StaticTokenProvider(files=%d)" % len(self._memo)
