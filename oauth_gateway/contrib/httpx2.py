"""An ``httpx2.Auth`` that sends a server's token: ``pip install oauth-gateway[httpx2]``.

::

    from oauth_gateway.contrib.httpx import TokenAuth

    auth = TokenAuth(manager, "oauth-api", config)
    with httpx2.Client(auth=auth) as client: ...            # sync
    async with httpx2.AsyncClient(auth=auth) as client: ...  # async, never blocks the loop

``httpx2`` is the httpx fork the MCP Python SDK 2.x and fastmcp 4 build on; for ``httpx``
use :mod:`oauth_gateway.contrib.httpx`. Both are the same flow (``contrib/_httpx_flow.py``).
"""

from __future__ import annotations

import httpx2

from ._httpx_flow import TokenFlow

__all__ = ("TokenAuth",)


class TokenAuth(TokenFlow, httpx2.Auth):
    """Attach a server's token to httpx2 requests and recover once from a rejected token. Thread-safe.

    Works with ``httpx2.Client`` (``auth_flow``: a cache miss fetches in the calling
    thread) and ``httpx2.AsyncClient`` (``async_auth_flow``: a cache hit is read inline
    with no lock and no I/O; a fetch runs in a worker thread, shared by the coroutines
    of one event loop that miss together, so the loop never blocks). It behaves as
    :class:`oauth_gateway.auth.TokenAuth` does for requests:

    * ``Authorization: Bearer <token>``, or for a config with ``OAUTH_DPOP``
      ``Authorization: DPoP <token>`` and a fresh ``DPoP`` proof per request (``htm``,
      ``htu``, ``ath``, the resource server's latest nonce).
    * A 401 with ``WWW-Authenticate: Bearer error="invalid_token"`` (or any 401 with
      ``retry_on_any_401=True``) gets a new token (many concurrent 401s for one token
      make one request) and the request is sent once more; a DPoP ``use_dpop_nonce``
      401 is sent once more with a new proof. A second 401 reaches the caller, with the
      first in ``response.history``. A streamed body cannot be sent again: then the 401
      reaches the caller and a WARNING says why.
    * The token goes over https only: any other URL raises
      :class:`~oauth_gateway.InsecureTransportError` before a token is fetched. Plain
      http is allowed to a loopback host when the config sets ``OAUTH_ENFORCE_HTTPS``
      to false, and to any host with ``allow_insecure=True``.
    * httpx2 drops ``Authorization`` on a redirect to another origin; a 401 from there
      is never recovered.

    Args:
        manager: the token manager that caches and fetches tokens.
        server_name: the server the tokens are for (part of the cache key).
        config: its OAuth settings.
        config_id: the gateway config the server belongs to (part of the cache key).
        subject_token: a per-call subject token for token exchange (not supported by
            this release's manager yet: passing one raises ``TypeError``).
        retry_on_any_401: recover from every 401, not only ``error="invalid_token"``.
        allow_insecure: also send the token over plain http to any host (local tests only).
    """

    _not_read_errors = (httpx2.RequestNotRead,)
