"""Who a token is for, when the identity is held in a file or an environment variable.

The config fingerprint names a file or a variable, not what it holds: two tenants with
the same config text and different assertion files would share one cache key. This
module is the one home of the digest that tells them apart, for the config fingerprint
and for the check made when a shared cache entry is loaded.

A JWT is identified by its ``iss`` and ``sub`` (so a rotated token of the same workload
keeps its digest); anything else by its content. Pure apart from reading the file or
variable; nothing here logs or returns the content.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from typing import TYPE_CHECKING, List, Mapping, Optional

if TYPE_CHECKING:  # pragma: no cover
    from .config import OAuthConfig

#: The digest of a file or variable that does not exist (or cannot be read).
ABSENT = "absent"
#: The most bytes read from an identity file; a longer file is digested by its first bytes.
MAX_IDENTITY_BYTES = 65536


def _hash(kind: str, data: bytes) -> str:
    return "%s:%s" % (kind, hashlib.sha256(data).hexdigest()[:32])


def _jwt_principal(text: str) -> Optional[bytes]:
    """``[iss, sub]`` of a JWT as JSON bytes, or None when ``text`` is not a JWT with both."""
    parts = text.split(".")
    if len(parts) != 3 or len(parts[1]) > MAX_IDENTITY_BYTES:
        return None
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, TypeError):
        return None
    if not isinstance(claims, dict):
        return None
    issuer, subject = claims.get("iss"), claims.get("sub")
    if not (isinstance(issuer, str) and isinstance(subject, str)):
        return None
    return json.dumps([issuer, subject]).encode("utf-8")


def principal_digest(
    file: Optional[str] = None, env: Optional[str] = None, environ: Optional[Mapping[str, str]] = None
) -> str:
    """The digest of the principal held in ``file`` (a path) or the variable ``env``.

    ``jwt:...`` for a JWT (its ``iss`` and ``sub``), ``sha256:...`` for other content,
    :data:`ABSENT` for a missing file, an unset variable or one that cannot be read.
    """
    if file is not None:
        try:
            with open(os.path.expanduser(file), "rb") as handle:
                data = handle.read(MAX_IDENTITY_BYTES)
        except OSError:
            return ABSENT
    elif env is not None:
        value = (os.environ if environ is None else environ).get(env)
        if value is None:
            return ABSENT
        data = value.encode("utf-8", "surrogatepass")
    else:
        raise TypeError("principal_digest needs a file or an env name")
    data = data.strip()
    try:
        claims = _jwt_principal(data.decode("ascii"))
    except UnicodeDecodeError:
        claims = None
    return _hash("jwt", claims) if claims is not None else _hash("sha256", data)


def config_principal(config: OAuthConfig) -> str:
    """The combined digest of every identity source of ``config``, "" when it has none.

    Sources: ``OAUTH_CLIENT_ASSERTION_FILE``, and the provider options its provider
    names in :attr:`~oauth_gateway.providers.TokenProvider.identity_options`.
    """
    from .providers import get_provider

    parts: List[str] = []
    if config.client_assertion_file:
        parts.append("assertion_file=" + principal_digest(file=config.client_assertion_file))
    if config.enabled and config.provider_options:
        # Loaded (and kept) when the options were checked: no new import here.
        kinds = get_provider(config.provider).identity_options
        for option in sorted(kinds):
            value = config.provider_options.get(option)
            if isinstance(value, str) and value:
                digest = principal_digest(file=value) if kinds[option] == "file" else principal_digest(env=value)
                parts.append("option.%s=%s" % (option, digest))
    return ";".join(parts) and _hash("principal", ";".join(parts).encode("utf-8"))
