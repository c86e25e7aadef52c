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

from typing import Any, List

from django.core import checks

from ..checks import (
    E_SETTINGS,
    check_gateway_file,
)
from ._settings import read_options

__all__ = ("check_gateway_config",)


def check_gateway_config(app_configs: Any = None, **kwargs: Any) -> List[checks.CheckMessage]:
    """Return one message per problem of ``settings.OAUTH_GATEWAY`` and its gateway file.

    The file's problems come from :func:`oauth_gateway.contrib.checks.check_gateway_file`,
    the check Flask's ``flask oauth-gateway check`` runs too.
    """
    options, setting_problems = read_options()
    messages: List[checks.CheckMessage] = [
        checks.Error(problem, hint=hint, obj="settings.%s" % where, id=E_SETTINGS)
        for where, problem, hint in setting_problems
    ]
    for problem in check_gateway_file(
        options.config_file or None,
        options.servers,
        options.check_environment,
        file_setting="OAUTH_GATEWAY['CONFIG_FILE']",
        servers_setting="OAUTH_GATEWAY['SERVERS']",
    ):
        message_class = checks.Error if problem.level == "error" else checks.Warning
        messages.append(message_class(problem.message, hint=problem.hint, obj=problem.obj, id=problem.id))
    return messages
