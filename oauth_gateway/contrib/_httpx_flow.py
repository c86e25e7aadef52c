"""The flows the httpx and httpx2 auths share: one token source, a sync and an async flow.

httpx2 is a fork of httpx with the same ``Auth`` protocol (a generator that yields
requests and is sent responses), so one mixin, :class:`TokenFlow`, holds the whole flow
and each adapter binds it to its library's ``Auth`` class. This module imports neither
library: it reads only what both have (``request.url``, ``.headers``, ``.method``,
``.content``; ``response.status_code``, ``.headers``, ``.request``).

What the flow does is what :class:`oauth_gateway.auth.TokenAuth` does for requests, from
the same rules (:mod:`oauth_gateway._authflow`: the headers, the 401 rule, where a token
may go): Bearer or DPoP, https only, one replay after a 401 (a fresh token for
``error="invalid_token"``, a new proof for a DPoP nonce), never a token across origins.
What is left here is httpx's: the generator flows, the worker thread, the replay check.

The async flow never blocks the event loop: a cache hit is read inline (no lock, no
I/O); a fetch runs in a worker thread (the running asyncio loop's default executor, or
``anyio.to_thread`` under any other anyio backend such as trio), and the coroutines of
one event loop that miss together await that one thread.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from typing import TYPE_CHECKING, Any, AsyncGenerator, Callable, Dict, Generator, Optional, Tuple, Type

from .._access import access
from .._authflow import (
    BEARER_SCHEMES,
    DPOP_SCHEMES,
    authorization_headers,
    check_transport,
    read_401,
    same_origin,
    sent_scheme,
)
from .._helpers import masked, redact_url
from ..dpop import DPOP_NONCE_HEADER, response_nonce

if TYPE_CHECKING:  # pragma: no cover
    from ..config import OAuthConfig
    from ..manager import TokenManager
    from ..tokens import Token

log = logging.getLogger("oauth_gateway.contrib.httpx")

#: What a 401 asks the flow to do before its one replay.
_NEW_TOKEN = "token"
_NEW_NONCE = "nonce"


class TokenFlow:
    """The body of ``TokenAuth`` for httpx and httpx2 (see those modules). Thread-safe.

    One object may serve many clients, threads and event loops at once: per-call state
    lives in the flow's generator frame, and the fetches in progress are kept per event loop.
    """

    #: The library's error for a request whose body was not read into memory (a stream).
    _not_read_errors: Tuple[Type[BaseException], ...] = ()

    def __init__(
        self,
        manager: TokenManager,
        server_name: str,
        config: OAuthConfig,
        config_id: str = "default",
        subject_token: Optional[str] = None,
        *,
        retry_on_any_401: bool = False,
        allow_insecure: bool = False,
    ) -> None:
        if subject_token is not None:
            # The manager of this release has no per-call subject token (token exchange) yet.
            raise TypeError(
                "subject_token: this TokenManager does not take a per-call subject token yet; "
                "set OAUTH_SUBJECT_TOKEN_FILE in the config instead"
            )
        self.manager = manager
        self.server_name = server_name
        self.config = config
        self.config_id = config_id
        self.subject_token = subject_token
        self.retry_on_any_401 = bool(retry_on_any_401)
        self.allow_insecure = bool(allow_insecure)
        self._dpop = bool(config.dpop)
        self._challenge_schemes = DPOP_SCHEMES if self._dpop else BEARER_SCHEMES
        # The manager's internal interface: its one hit check (inline, or None on a miss), its
        # slow path, DPoP keys and resource nonces.
        self._internal = access(manager)
        self._source = (self._internal.cached, server_name, config, config_id)
        # The fetches in progress, per (event loop, what): the coroutines of a loop share one thread.
        self._pending: Dict[Tuple[Any, Optional[str]], Any] = {}

    # -- the flows ----------------------------------------------------------------------

    def auth_flow(self, request: Any) -> Generator[Any, Any, None]:
        """The flow of a sync ``Client``: fetches (when the cache misses) in the calling thread."""
        if request.url.scheme != "https":
            check_transport(str(request.url), self.server_name, self.config.enforce_https, self.allow_insecure)
        cached, server_name, config, config_id = self._source
        token = cached(server_name, config, config_id)  # the manager's hit check: no lock, no I/O
        if token is None:
            token = self._fetch()
        # authorization_headers(token) without building a dict: the bearer hot path sets one header.
        request.headers["Authorization"] = token.authorization
        if self._dpop:
            request.headers.update(self._proof_headers(request, token))
        response = yield request
        if response.status_code != 401 and not self._dpop:
            return
        step = self._after_response(request, response, token)
        if step is None:
            return
        if step == _NEW_TOKEN:
            token = self._replacement(masked(response.request.headers["Authorization"]))
        if self._can_replay(request, step):
            self._authorize(request, token)
            yield request

    # httpx's Client calls sync_auth_flow, whose default only wraps auth_flow in one more generator.
    sync_auth_flow = auth_flow

    async def async_auth_flow(self, request: Any) -> AsyncGenerator[Any, Any]:
        """The flow of an ``AsyncClient``: a hit inline, a fetch in a worker thread."""
        if request.url.scheme != "https":
            check_transport(str(request.url), self.server_name, self.config.enforce_https, self.allow_insecure)
        cached, server_name, config, config_id = self._source
        token = cached(server_name, config, config_id)  # inline: no lock, no I/O
        if token is None:
            token = await self._in_worker(None, self._fetch)
        # authorization_headers(token) without building a dict: the bearer hot path sets one header.
        request.headers["Authorization"] = token.authorization
        if self._dpop:
            request.headers.update(self._proof_headers(request, token))
        response = yield request
        if response.status_code != 401 and not self._dpop:
            return
        step = self._after_response(request, response, token)
        if step is None:
            return
        if step == _NEW_TOKEN:
            sent = masked(response.request.headers["Authorization"])
            replaced = cached(server_name, config, config_id)
            if replaced is not None and replaced.authorization != sent:
                token = replaced  # another coroutine or thread replaced it already: no thread needed
            else:
                # Keyed by the rejected value: coroutines that saw the same rejection share the thread.
                token = await self._in_worker(sent, functools.partial(self._replacement, sent))
        if self._can_replay(request, step):
            self._authorize(request, token)
            yield request

    # -- tokens -------------------------------------------------------------------------

    def _fetch(self) -> Token:
        """The slow path: the manager's single-flight acquisition (may block on HTTP)."""
        token = self._internal.get_token(self.server_name, self.config, self.config_id)
        if self._dpop:
            self._internal.dpop_key(self.config)  # made or loaded here, off the event loop; read inline later
        return token

    def _replacement(self, rejected: str) -> Token:
        """A token to replace the rejected one; concurrent rejections of it share one request."""
        return self.manager.refresh(self.server_name, self.config, self.config_id, rejected=rejected)

    async def _in_worker(self, what: Optional[str], call: Callable[[], Token]) -> Token:
        """Run ``call`` in a worker thread; coroutines of this loop asking for the same ``what`` share it."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # not asyncio: trio (through anyio) or another anyio backend
            return await self._in_anyio_worker(what, call)
        slot = (loop, what)
        future = self._pending.get(slot)
        if future is None:
            future = loop.run_in_executor(None, call)
            self._pending[slot] = future
            future.add_done_callback(functools.partial(_forget, self._pending, slot))
        # shield: a cancelled waiter stops waiting; the shared fetch goes on for the others.
        token: Token = await asyncio.shield(future)
        return token

    async def _in_anyio_worker(self, what: Optional[str], call: Callable[[], Token]) -> Token:
        import anyio
        import anyio.lowlevel
        import anyio.to_thread

        slot = (anyio.lowlevel.current_token(), what)
        shared: Optional[_Shared] = self._pending.get(slot)
        if shared is not None:
            await shared.done.wait()
            return shared.outcome()
        shared = _Shared(anyio.Event())
        self._pending[slot] = shared
        try:
            # Not cancellable (anyio's default): the thread's result always reaches the waiters.
            shared.token = await anyio.to_thread.run_sync(call)
        except BaseException as exc:
            shared.error = exc
            raise
        finally:
            self._pending.pop(slot, None)
            shared.done.set()
        return shared.outcome()

    # -- headers ------------------------------------------------------------------------

    def _authorize(self, request: Any, token: Token) -> None:
        request.headers.update(self._proof_headers(request, token) if self._dpop else authorization_headers(token))

    def _proof_headers(self, request: Any, token: Token) -> Dict[str, str]:
        """``Authorization`` and a new DPoP proof for ``request`` (with the server's latest nonce)."""
        url = str(request.url)
        dpop_key = self._internal.dpop_key(self.config)  # a dict read once _fetch made the key
        return authorization_headers(token, dpop_key, request.method, url, self._internal.resource_nonces.get(url))

    # -- after the response -------------------------------------------------------------

    def _after_response(self, request: Any, response: Any, token: Token) -> Optional[str]:
        """What the response asks for: :data:`_NEW_TOKEN`, :data:`_NEW_NONCE`, or None (hand it over).

        ``response.request`` is the last request sent (after redirects): a 401 is recovered
        only when that request went to the origin of ``request`` and still carried this
        auth's token (httpx drops ``Authorization`` on a redirect to another origin).
        """
        sent = response.request
        sent_url = str(sent.url)
        if not same_origin(sent_url, str(request.url)):
            return None  # a redirect went elsewhere: never send our token there
        headers = response.headers
        if self._dpop and DPOP_NONCE_HEADER in headers:
            self._internal.resource_nonces.update(sent_url, headers)  # servers rotate nonces
        if response.status_code != 401:
            return None
        if sent_scheme(sent.headers.get("Authorization")) != token.token_type.lower():
            return None  # not our token
        rejection = read_401(
            headers.get("WWW-Authenticate"), sent_url, self._challenge_schemes, self.config.resource_metadata_url
        )
        if self._dpop and rejection.use_dpop_nonce and response_nonce(headers) is not None:
            return _NEW_NONCE
        if not self.retry_on_any_401 and not rejection.invalid_token:
            return None
        if rejection.refused_metadata is not None:
            log.warning(
                "The 401 from %s was not followed to its metadata: %s",
                redact_url(sent_url),
                rejection.refused_metadata.problem,
            )
        elif rejection.resource_metadata is not None and self.config.is_discovered:
            # A challenge naming other resource metadata than the cached one: the server may have moved.
            self._internal.forget_discovery(self.config, resource_metadata=rejection.resource_metadata)
        return _NEW_TOKEN

    def _can_replay(self, request: Any, step: str) -> bool:
        """True when ``request``'s body can be sent again; else log why (the 401 goes to the caller)."""
        try:
            request.content  # noqa: B018 - raises for a stream body that was not read
        except self._not_read_errors:
            pass
        else:
            log.info(
                "%s for %s was refused by %s (401); sending the %s request once more",
                "Token" if step == _NEW_TOKEN else "DPoP proof",
                self.server_name,
                redact_url(str(request.url)),
                request.method,
            )
            return True
        log.warning(
            "%s refused the %s request for %s (401, %s); did not send it again: its body is a stream, "
            "which cannot be rewound (pass bytes, or send it again)",
            redact_url(str(request.url)),
            request.method,
            self.server_name,
            "token rejected, got a new one" if step == _NEW_TOKEN else "DPoP nonce received",
        )
        return False

    def __eq__(self, other: Any) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self._identity() == other._identity()

    def __hash__(self) -> int:
        return hash((type(self), self.server_name, self.config_id))

    def _identity(self) -> Tuple[Any, ...]:
        return (
            self.manager,
            self.server_name,
            self.config,
            self.config_id,
            self.retry_on_any_401,
            self.allow_insecure,
        )

    def __repr__(self) -> str:
        return "%s(server_name=%r, config_id=%r, dpop=%r)" % (
            type(self).__name__,
            self.server_name,
            self.config_id,
            self._dpop,
        )


class _Shared:
    """One fetch in progress under a non-asyncio backend, and its outcome."""

    __slots__ = ("done", "token", "error")

    def __init__(self, done: Any) -> None:
        self.done = done
        self.token: Any = None
        self.error: Optional[BaseException] = None

    def outcome(self) -> Token:
        if self.error is not None:
            raise self.error
        token: Token = self.token
        return token


def _forget(pending: Dict[Any, Any], slot: Any, future: Any) -> None:
    if pending.get(slot) is future:
        del pending[slot]
