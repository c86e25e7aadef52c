"""``settings.OAUTH_GATEWAY``, read and checked: shared by the app and its system check (below both)."""

from __future__ import annotations

import os
from typing import Any, Dict, List, NamedTuple, Optional, Tuple

from django.conf import settings

#: The Django setting this app reads.
SETTING = "OAUTH_GATEWAY"
#: Keys accepted in ``settings.OAUTH_GATEWAY``.
SETTING_KEYS = ("CONFIG_FILE", "SERVERS", "CHECK_ENVIRONMENT")


class Options(NamedTuple):
    """``settings.OAUTH_GATEWAY``, checked.

    Attributes:
        config_file: the gateway file, or None for ``$OAUTH_GATEWAY_CONFIG`` or the default path.
        servers: the server names the project uses, or None for every server in the file.
        check_environment: whether the system check also builds each server's config
            (``${ENV}`` references, secret files, TLS files), not only the schema.
    """

    config_file: Optional[str] = None
    servers: Optional[Tuple[str, ...]] = None
    check_environment: bool = True


def read_options() -> Tuple[Options, List[Tuple[str, str, str]]]:
    """Read ``settings.OAUTH_GATEWAY``.

    Returns:
        The options (defaults where a value is wrong) and the problems found, each
        ``(where, problem, hint)``, like ``("OAUTH_GATEWAY['SERVERS']", "must be ...", "...")``.
    """
    raw = getattr(settings, SETTING, None)
    if raw is None:
        return Options(), []
    problems: List[Tuple[str, str, str]] = []
    if not isinstance(raw, dict):
        got = "must be a dict, got %s" % type(raw).__name__
        problems.append((SETTING, got, 'write it as {"CONFIG_FILE": "/path/to/file.json"}'))
        return Options(), problems
    values: Dict[str, Any] = {}
    for key in raw:
        if key not in SETTING_KEYS:
            problems.append(
                ("%s[%r]" % (SETTING, key), "unknown key", "remove it; the keys are %s" % ", ".join(SETTING_KEYS))
            )
    config_file = raw.get("CONFIG_FILE")
    if config_file is not None:
        if isinstance(config_file, (str, os.PathLike)) and os.fspath(config_file):
            values["config_file"] = os.fspath(config_file)
        else:
            problems.append(
                (
                    "%s['CONFIG_FILE']" % SETTING,
                    "must be a file path or None, got %s" % type(config_file).__name__,
                    "give the path of the gateway file, or None for $OAUTH_GATEWAY_CONFIG "
                    "or ~/.enkrypt/enkrypt_mcp_config.json",
                )
            )
    servers = raw.get("SERVERS")
    if servers is not None:
        if isinstance(servers, (list, tuple)) and all(isinstance(s, str) and s for s in servers):
            values["servers"] = tuple(servers)
        else:
            problems.append(
                (
                    "%s['SERVERS']" % SETTING,
                    "must be a list of server names",
                    'write it as ["oauth-api"], or leave it out to check every server',
                )
            )
    check_environment = raw.get("CHECK_ENVIRONMENT", True)
    if isinstance(check_environment, bool):
        values["check_environment"] = check_environment
    else:
        problems.append(("%s['CHECK_ENVIRONMENT']" % SETTING, "must be True or False", "use a boolean, not a string"))
    return Options(**values), problems
