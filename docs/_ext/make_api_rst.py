"""Writes docs/api.rst: the API reference by concept, every public name of every public module.

Run it from the repository root with the package installed, after adding a public module or
a name to a module's ``__all__`` (tests/test_docs.py fails until the page lists it)::

    python docs/_ext/make_api_rst.py

The sections and the modules in each are the lists below; errors come last.
"""

from __future__ import annotations

import importlib
import inspect
from typing import List

import oauth_gateway as og

pub = list(og.__all__)


def section(title: str, intro: str, package_names: List[str], modules: List[str], char: str = "-") -> List[str]:
    out = [title, char * len(title), "", intro, ""]
    for name in package_names:
        obj = getattr(og, name)
        if isinstance(obj, type):
            out += [
                ".. autoclass:: oauth_gateway.%s" % name,
                "   :members:",
                "   :undoc-members:",
                "   :show-inheritance:",
                "",
            ]
        else:
            out += [".. autofunction:: oauth_gateway.%s" % name, ""]
    for mod in modules:
        m = importlib.import_module(mod)
        excl = [n for n in pub if getattr(m, n, None) is getattr(og, n, None) and hasattr(m, n)]

        later = []
        if hasattr(m, "__all__"):
            for n in m.__all__:
                if n in excl:
                    continue
                v = getattr(m, n)
                if inspect.isclass(v) or inspect.isfunction(v):
                    if getattr(v, "__module__", mod) != mod:  # re-exported from another module
                        later += [
                            ".. py:data:: %s" % n,
                            "   :module: %s" % mod,
                            "",
                            "   The same object as :%s:`%s.%s`, importable from here too."
                            % ("class" if inspect.isclass(v) else "func", v.__module__, n),
                            "",
                        ]
                        excl.append(n)
                else:
                    later += [".. autodata:: %s.%s" % (mod, n), ""]
                    excl.append(n)
        out += [".. automodule:: %s" % mod, "   :members:", "   :undoc-members:", "   :show-inheritance:"]
        if excl:
            out += ["   :exclude-members: %s" % ", ".join(sorted(excl))]
        out += [""] + later
    return out


lines = [
    "API reference",
    "=============",
    "",
    "The reference is grouped by concept: the manager and its tokens first, errors last. The",
    "names of ``oauth_gateway.__all__`` are documented where you import them",
    "(``import oauth_gateway as og``; ``og.TokenManager``); every other public name is under",
    "its module. Names starting with ``_`` are private and may change without notice.",
    "The pages are generated from the docstrings of the installed package.",
    "",
    ".. py:data:: oauth_gateway.__version__",
    "   :type: str",
    "",
    '   The installed version, like ``"0.3.0"``; ``oauth-gateway --version`` prints it too.',
    "",
    "",
]
lines += section(
    "The manager and tokens",
    "One :class:`~oauth_gateway.TokenManager` per process gets, caches, refreshes and revokes tokens; a :class:`~oauth_gateway.Token` is what it returns.",
    ["TokenManager", "Token"],
    [
        "oauth_gateway.manager",
        "oauth_gateway.tokens",
        "oauth_gateway.metrics",
        "oauth_gateway.endpoint",
        "oauth_gateway.client",
    ],
)
lines += section(
    "Configuration",
    "An ``oauth_config`` block as an immutable :class:`~oauth_gateway.OAuthConfig`, its checks, and the pieces a config chooses: discovery, client authentication, token providers. Every key is in the :doc:`configuration`.",
    ["OAuthConfig", "validate_config"],
    [
        "oauth_gateway.config",
        "oauth_gateway.schema",
        "oauth_gateway.discovery",
        "oauth_gateway.client_auth",
        "oauth_gateway.grants",
        "oauth_gateway.providers",
        "oauth_gateway.providers.static",
        "oauth_gateway.providers.legacy_json",
    ],
)
lines += section(
    "Auth objects",
    "``requests`` auth objects that put the cached token on every request and recover from a 401 once; DPoP proofs for sender-constrained tokens.",
    ["TokenAuth"],
    ["oauth_gateway.auth", "oauth_gateway.dpop"],
)
lines += section(
    "The gateway file and injection",
    "The MCP gateway file (:doc:`gateway-file`), putting tokens into a server's launch spec, and the seed gateway's calls (:doc:`seed-gateway`).",
    [
        "GatewayConfig",
        "load_gateway_config",
        "inject_token",
        "is_remote_server",
        "OAuthService",
        "get_oauth_service",
        "refresh_server_oauth_token",
        "invalidate_server_oauth_token",
    ],
    ["oauth_gateway.gateway", "oauth_gateway.injection", "oauth_gateway.compat"],
)
lines += section(
    "Caches",
    "Where tokens are kept: the in-process cache, and the file and Redis caches shared by processes (:doc:`shared-caches`).",
    ["TokenCache", "MemoryTokenCache", "cache_from_settings"],
    [
        "oauth_gateway.cache",
        "oauth_gateway.contrib.cache_settings",
        "oauth_gateway.contrib.store",
        "oauth_gateway.contrib.file_cache",
        "oauth_gateway.contrib.redis_cache",
    ],
)
adapters = section(
    "Contrib adapters",
    "Integrations with other libraries, each an extra (``pip install 'oauth-gateway[flask]'``...). See :doc:`integrations`.",
    [],
    [
        "oauth_gateway.contrib.flask",
        "oauth_gateway.contrib.django",
        "oauth_gateway.contrib.django.apps",
        "oauth_gateway.contrib.django.checks",
        "oauth_gateway.contrib.django.views",
        "oauth_gateway.contrib.django.management.commands.oauth_gateway_token",
        "oauth_gateway.contrib.prometheus",
        "oauth_gateway.contrib.checks",
    ],
)
# a place for the httpx adapters (oauth_gateway.contrib.httpx, httpx2): added with them
adapters += [
    "httpx and httpx2",
    "~~~~~~~~~~~~~~~~",
    "",
    "The auth objects for httpx and httpx2 clients (:doc:`guides/mcp-python-sdk`); each is",
    "behind its extra, ``oauth-gateway[httpx]`` or ``oauth-gateway[httpx2]``.",
    "",
    ".. autoclass:: oauth_gateway.contrib.httpx.TokenAuth",
    "",
    '.. py:class:: oauth_gateway.contrib.httpx2.TokenAuth(manager, server_name, config, config_id="default", subject_token=None, *, retry_on_any_401=False, allow_insecure=False)',
    "",
    "   The same as :class:`oauth_gateway.contrib.httpx.TokenAuth`, a subclass of",
    "   ``httpx2.Auth`` (the httpx fork of the MCP Python SDK 2.x and fastmcp 4; Python 3.10+).",
    "   Both run one flow, ``oauth_gateway/contrib/_httpx_flow.py``.",
    "",
]
lines += adapters
lines += section(
    "The command line",
    "``oauth-gateway`` as a function: ``main(argv, stdout, stderr)`` returns the exit status. The commands are in the :doc:`cli`.",
    [],
    ["oauth_gateway.cli"],
)
lines += section(
    "Errors",
    "Everything raised derives from :class:`~oauth_gateway.OAuthGatewayError`, branched by what the caller does next; each has ``retryable`` and pickles.",
    [
        "OAuthGatewayError",
        "ConfigError",
        "TokenRequestError",
        "InvalidRequest",
        "InvalidClient",
        "InvalidGrant",
        "UnauthorizedClient",
        "UnsupportedGrantType",
        "InvalidScope",
        "InvalidTarget",
        "RevocationNotConfigured",
        "TransportError",
        "DiscoveryError",
        "InsecureTransportError",
        "TokenBindingError",
    ],
    ["oauth_gateway.exceptions"],
)

open("docs/api.rst", "w").write("\n".join(lines).rstrip() + "\n")
