"""The start-up check of the gateway file, shared by the framework integrations.

Django's system check (``manage.py check``) and Flask's ``flask oauth-gateway check``
both call :func:`check_gateway_file` and only translate its :class:`CheckProblem` list
into their own messages, so the two frameworks find exactly the same problems:

* ``oauth_gateway.E002``: the gateway file cannot be read or is not JSON.
* ``oauth_gateway.E003``: the file breaks the schema (one error per problem, as
  ``oauth-gateway validate`` prints them).
* ``oauth_gateway.E004``: a server's ``oauth_config`` cannot be used as it stands: an
  unset ``${ENV}`` reference, a missing secret file or certificate (only with
  ``check_environment``, the default).
* ``oauth_gateway.E005``: a server named in ``servers`` is missing, ambiguous, has no
  ``oauth_config`` or has it disabled.
* ``oauth_gateway.W001``: a literal client secret in a file that group or others can read.

(``oauth_gateway.E001``, a malformed ``settings.OAUTH_GATEWAY``, is Django's own.)
"""

from __future__ import annotations

from typing import Any, Iterable, List, NamedTuple, Optional, Tuple

from .. import schema
from .._helpers import CONFIG_PATH_ENV, literal_secret_warnings, read_json_file, resolve_config_path
from ..exceptions import ConfigError
from ..gateway import GatewayConfig
from ..providers import is_code_reference

__all__ = ("check_gateway_file",)

E_SETTINGS = "oauth_gateway.E001"
_E_FILE = "oauth_gateway.E002"
_E_SCHEMA = "oauth_gateway.E003"
_E_SERVER_CONFIG = "oauth_gateway.E004"
_E_SERVER_MISSING = "oauth_gateway.E005"
_W_LITERAL_SECRET = "oauth_gateway.W001"


class CheckProblem(NamedTuple):
    """One problem the start-up check found. Never holds a secret or a file's contents.

    Attributes:
        level: ``"error"`` or ``"warning"``.
        id: the check id, like ``oauth_gateway.E003``.
        message: what is wrong.
        hint: how to fix it, or None.
        obj: where: the file, or ``<file>::<json_path>``.
    """

    level: str
    id: str
    message: str
    hint: Optional[str]
    obj: str

    def __str__(self) -> str:
        text = "%s: %s: %s (%s)" % (self.obj, self.level, self.message, self.id)
        return text + ("; %s" % self.hint if self.hint else "")


def check_gateway_file(
    config_file: Optional[str] = None,
    servers: Optional[Iterable[str]] = None,
    check_environment: bool = True,
    file_setting: str = "the gateway file setting",
    servers_setting: str = "servers",
) -> List[CheckProblem]:
    """Return every problem of a gateway file, as the framework start-up checks report them.

    Args:
        config_file: the gateway file; None means ``$OAUTH_GATEWAY_CONFIG``, else
            ``~/.enkrypt/enkrypt_mcp_config.json``.
        servers: server names that must be present and enabled; None checks every
            server whose ``oauth_config`` is enabled.
        check_environment: also build each server's config, so unset ``${ENV}``
            references and missing secret files or certificates are found now.
        file_setting: how the framework's setting of the file is written, for the hint
            of a missing file (Django: ``OAUTH_GATEWAY['CONFIG_FILE']``).
        servers_setting: how the framework's setting of ``servers`` is written, for the
            messages about them (Django: ``OAUTH_GATEWAY['SERVERS']``).

    Returns:
        The problems, errors and warnings, in file order; empty when all is well.
    """
    path, _ = resolve_config_path(config_file or None)
    document, failure = _read(path, file_setting)
    if failure is not None:
        reason, hint = failure
        return [CheckProblem("error", _E_FILE, reason, hint, path)]
    found: List[CheckProblem] = []
    problems = schema.validate_config(document)
    for problem in problems:
        found.append(
            CheckProblem(problem.severity, _E_SCHEMA, problem.message, problem.hint, _where(path, problem.json_path))
        )
    found.extend(
        CheckProblem("warning", _W_LITERAL_SECRET, message, hint, _where(path, json_path))
        for json_path, message, hint in literal_secret_warnings(path, schema.literal_secret_paths(document))
    )
    broken = any(problem.severity == "error" for problem in problems)
    try:
        gateway = GatewayConfig(path, document)
    except ConfigError as error:
        if not broken:  # otherwise the schema problems above already say it
            found.append(_from_error(error, path, _E_SCHEMA, ""))
        return found
    # Servers of a file that breaks the schema are looked up, but not built.
    chosen = None if servers is None else tuple(servers)
    found.extend(_check_servers(gateway, path, chosen, check_environment and not broken, servers_setting))
    return found


def _check_servers(
    gateway: GatewayConfig,
    path: str,
    servers: Optional[Tuple[str, ...]],
    check_environment: bool,
    servers_setting: str,
) -> List[CheckProblem]:
    found: List[CheckProblem] = []
    if servers is None:
        chosen = [
            (entry["server_name"], config_id)
            for config_id, entry in gateway.iter_servers()
            if isinstance(entry.get("oauth_config"), dict) and entry["oauth_config"].get("enabled") is True
        ]
    else:
        chosen = []
        for name in servers:
            prefix = "%s names %r: " % (servers_setting, name)
            try:
                config_id, entry = gateway.find_server(name)
            except ConfigError as error:
                found.append(_from_error(error, path, _E_SERVER_MISSING, prefix))
                continue
            block = entry.get("oauth_config")
            if not isinstance(block, dict) or block.get("enabled") is not True:
                try:
                    gateway.oauth_config(name, config_id=config_id)  # raises the precise message
                except ConfigError as error:
                    found.append(_from_error(error, path, _E_SERVER_MISSING, prefix))
                continue
            chosen.append((name, config_id))
    if not check_environment:
        return found
    for name, config_id in chosen:
        _, entry = gateway.find_server(name, config_id=config_id)
        if is_code_reference(entry["oauth_config"].get("OAUTH_PROVIDER")):
            continue  # building it would import the module; the schema check said "not checked (code)"
        try:
            gateway.oauth_config(name, config_id=config_id)
        except ConfigError as error:
            found.append(_from_error(error, path, _E_SERVER_CONFIG, "server %r: " % name))
    return found


def _from_error(error: ConfigError, path: str, check_id: str, prefix: str) -> CheckProblem:
    return CheckProblem("error", check_id, prefix + error.problem, error.hint, _where(path, error.json_path))


def _read(path: str, file_setting: str) -> Tuple[Any, Optional[Tuple[str, Optional[str]]]]:
    """Return ``(document, None)`` or ``(None, (problem, hint))``; never a file's contents."""
    document, failure = read_json_file(path)
    if failure is None:
        return document, None
    hint = failure.hint
    if failure.problem == "does not exist":
        hint = "create it with `oauth-gateway config add-server`, or set %s or $%s to the right file" % (
            file_setting,
            CONFIG_PATH_ENV,
        )
    return None, ("the gateway file %s" % failure.problem, hint)


def _where(path: str, json_path: str) -> str:
    return "%s::%s" % (path, json_path)
