"""The Django system check: every problem of the gateway file, with its JSON path.

``manage.py check`` (and ``runserver``, ``migrate``, ``test``) runs it, so a broken
file fails the deployment or CI before a request needs a token. Each problem is one
message whose ``obj`` is ``<file>::<json_path>`` and whose ``hint`` says how to fix it:

* ``oauth_gateway.E001``: ``settings.OAUTH_GATEWAY`` is malformed.
* ``oauth_gateway.E002``: the gateway file cannot be read or is not JSON.
* ``oauth_gateway.E003``: the file breaks the schema (one error per problem, as
  ``oauth-gateway validate`` prints them).
* ``oauth_gateway.E004``: a server's ``oauth_config`` cannot be used as it stands: an
  unset ``${ENV}`` reference, a missing secret file or certificate (only with
  ``CHECK_ENVIRONMENT``, the default).
* ``oauth_gateway.E005``: a server named in ``OAUTH_GATEWAY['SERVERS']`` is missing,
  ambiguous, has no ``oauth_config`` or has it disabled.
* ``oauth_gateway.W001``: a literal client secret in a file that group or others can read.
"""

from __future__ import annotations

from typing import Any, List, Optional, Tuple

from django.core import checks

from ... import schema
from ..._helpers import CONFIG_PATH_ENV, literal_secret_warnings, read_json_file, resolve_config_path
from ...exceptions import ConfigError
from ...gateway import GatewayConfig
from .apps import read_options

E_SETTINGS = "oauth_gateway.E001"
E_FILE = "oauth_gateway.E002"
E_SCHEMA = "oauth_gateway.E003"
E_SERVER_CONFIG = "oauth_gateway.E004"
E_SERVER_MISSING = "oauth_gateway.E005"
W_LITERAL_SECRET = "oauth_gateway.W001"


def check_gateway_config(app_configs: Any = None, **kwargs: Any) -> List[checks.CheckMessage]:
    """Return one message per problem of ``settings.OAUTH_GATEWAY`` and its gateway file."""
    options, setting_problems = read_options()
    messages: List[checks.CheckMessage] = [
        checks.Error(problem, hint=hint, obj="settings.%s" % where, id=E_SETTINGS)
        for where, problem, hint in setting_problems
    ]
    path, _ = resolve_config_path(options.config_file or None)
    document, failure = _read(path)
    if failure is not None:
        reason, hint = failure
        messages.append(checks.Error(reason, hint=hint, obj=path, id=E_FILE))
        return messages
    problems = schema.validate_config(document)
    for problem in problems:
        message_class = checks.Error if problem.severity == "error" else checks.Warning
        messages.append(
            message_class(problem.message, hint=problem.hint, obj=_where(path, problem.json_path), id=E_SCHEMA)
        )
    messages.extend(_literal_secrets(path, document))
    broken = any(problem.severity == "error" for problem in problems)
    try:
        gateway = GatewayConfig(path, document)
    except ConfigError as error:
        if not broken:  # otherwise the schema problems above already say it
            messages.append(
                checks.Error(error.problem, hint=error.hint, obj=_where(path, error.json_path), id=E_SCHEMA)
            )
        return messages
    # Servers of a file that breaks the schema are looked up, but not built.
    messages.extend(_check_servers(gateway, path, options.servers, options.check_environment and not broken))
    return messages


def _check_servers(
    gateway: GatewayConfig, path: str, servers: Optional[Tuple[str, ...]], check_environment: bool
) -> List[checks.CheckMessage]:
    messages: List[checks.CheckMessage] = []
    if servers is None:
        chosen = [
            (entry["server_name"], config_id)
            for config_id, entry in gateway.iter_servers()
            if isinstance(entry.get("oauth_config"), dict) and entry["oauth_config"].get("enabled") is True
        ]
    else:
        chosen = []
        for name in servers:
            prefix = "OAUTH_GATEWAY['SERVERS'] names %r: " % name
            try:
                config_id, entry = gateway.find_server(name)
            except ConfigError as error:
                messages.append(_from_error(error, path, E_SERVER_MISSING, prefix))
                continue
            block = entry.get("oauth_config")
            if not isinstance(block, dict) or block.get("enabled") is not True:
                try:
                    gateway.oauth_config(name, config_id=config_id)  # raises the precise message
                except ConfigError as error:
                    messages.append(_from_error(error, path, E_SERVER_MISSING, prefix))
                continue
            chosen.append((name, config_id))
    if not check_environment:
        return messages
    for name, config_id in chosen:
        try:
            gateway.oauth_config(name, config_id=config_id)
        except ConfigError as error:
            messages.append(_from_error(error, path, E_SERVER_CONFIG, "server %r: " % name))
    return messages


def _from_error(error: ConfigError, path: str, check_id: str, prefix: str) -> checks.Error:
    return checks.Error(prefix + error.problem, hint=error.hint, obj=_where(path, error.json_path), id=check_id)


def _literal_secrets(path: str, document: Any) -> List[checks.CheckMessage]:
    return [
        checks.Warning(message, hint=hint, obj=_where(path, json_path), id=W_LITERAL_SECRET)
        for json_path, message, hint in literal_secret_warnings(path, schema.literal_secret_paths(document))
    ]


def _read(path: str) -> Tuple[Any, Optional[Tuple[str, str]]]:
    """Return ``(document, None)`` or ``(None, (problem, hint))``; never a file's contents."""
    document, failure = read_json_file(path)
    if failure is None:
        return document, None
    hint = failure.hint
    if failure.problem == "does not exist":
        hint = (
            "create it with `oauth-gateway config add-server`, or set OAUTH_GATEWAY['CONFIG_FILE'] or $%s to the right file"
            % CONFIG_PATH_ENV
        )
    return None, ("the gateway file %s" % failure.problem, hint)


def _where(path: str, json_path: str) -> str:
    return "%s::%s" % (path, json_path)
