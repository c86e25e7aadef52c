"""The token endpoint's answer: the RFC 6749 token response and error response, parsed.

:func:`parse_token_response` turns a successful answer into a :class:`TokenResponse`
(checking ``token_type``, ``expires_in`` and ``scope``), :func:`error_from_response`
maps an error answer to the :class:`~oauth_gateway.exceptions.TokenRequestError` of its
RFC 6749 section 5.2 code, and :func:`safe_text` shortens what a server said for a
message; those are pure. :func:`read_body` reads an answer's body first, bounded in time
and size. :mod:`oauth_gateway.client` sends the requests.
"""

from __future__ import annotations

import http.client
import logging
import math
import re
import time
import zlib
from typing import TYPE_CHECKING, Any, Dict, FrozenSet, List, NamedTuple, Optional, Sequence
from urllib.parse import quote_plus

import requests
from urllib3.exceptions import HTTPError, ProtocolError, ReadTimeoutError

from ._helpers import loads_bounded, masked, redact_url
from .dpop import DPOP_TOKEN_TYPE, check_dpop_token_type
from .exceptions import InvalidScope, TokenRequestError, error_class_for
from .grants import NOT_APPLICABLE, check_exchange_answer
from .tokens import Token, parse_scope

if TYPE_CHECKING:  # pragma: no cover
    from .client import CallState
    from .config import OAuthConfig

log = logging.getLogger("oauth_gateway")

__all__ = (
    "MAX_DESCRIPTION",
    "MAX_RESPONSE_BYTES",
    "READ_CHUNK",
    "AttemptTooSlow",
    "read_body",
    "MAX_SCOPE_LENGTH",
    "MAX_TOKEN_LIFETIME",
    "MAX_URI",
    "TokenResponse",
    "error_from_response",
    "json_object",
    "parse_token_response",
    "safe_text",
    "granted_scopes",
    "build_token",
)

#: Longest lifetime believed from ``expires_in``; longer tokens are refreshed daily anyway.
MAX_TOKEN_LIFETIME = 86400.0
#: Longest ``error_description`` carried into an exception message.
MAX_DESCRIPTION = 200
#: Longest granted ``scope`` accepted (characters).
MAX_SCOPE_LENGTH = 4096
#: Longest ``Location`` or ``error_uri`` repeated in a message or kept on an error.
MAX_URI = 200

#: Largest token or revocation response body read, after gzip or deflate is undone (bytes).
MAX_RESPONSE_BYTES = 256 * 1024
#: Bytes asked of the socket per read while a body streams in.
READ_CHUNK = 16 * 1024


class TokenResponse(NamedTuple):
    """A successful, checked token endpoint response.

    ``sent_at`` is the clock time at which the attempt that succeeded was sent (None
    from :func:`parse_token_response`, which sees no request).
    """

    access_token: str
    token_type: str
    expires_in: Optional[float]
    scope: Optional[str]
    sent_at: Optional[float] = None

    def __repr__(self) -> str:
        return "TokenResponse(access_token='***', token_type=%r, expires_in=%r, scope=%r, sent_at=%r)" % (
            self.token_type,
            self.expires_in,
            self.scope,
            self.sent_at,
        )


def json_object(body: bytes) -> Optional[Dict[str, Any]]:
    def refuse(value: str) -> Any:
        raise ValueError(value)

    try:
        data: Any = loads_bounded(body.decode("utf-8"), parse_constant=refuse)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


# RFC 6749 section 5.2: error codes and descriptions use %x20-21 / %x23-5B / %x5D-7E.
_ERROR_CODE = re.compile(r"[\x20\x21\x23-\x5b\x5d-\x7e]{1,64}\Z")
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f]")
#: RFC 6750 section 2.1: the characters of a bearer token (b64token).
_B64TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*\Z")
#: RFC 6749 section 3.3: scope tokens of %x21 / %x23-5B / %x5D-7E, separated by spaces.
_SCOPE = re.compile(r"[\x20\x21\x23-\x5b\x5d-\x7e]*\Z")


def _short(value: Any, redact: Sequence[str] = (), limit: int = MAX_DESCRIPTION) -> Optional[str]:
    """Server-provided text made safe to repeat: one line, at most ``limit`` long, our secrets removed."""
    if not isinstance(value, str):
        return None
    value = value[: limit * 4]  # the rest is never shown: no work on a megabyte
    text = " ".join(_UNPRINTABLE.sub(" ", value).split())
    for secret in redact:
        for form in {secret, quote_plus(secret)}:
            if len(form) >= 4:
                text = text.replace(form, "***")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def safe_text(value: Any, limit: int = MAX_DESCRIPTION) -> str:
    """Server-provided text made safe for a message or a log line.

    Control characters (ESC sequences, CR/LF that would forge a log line) become
    spaces, runs of spaces one, and the text is cut to ``limit`` characters.
    """
    return _short(value if isinstance(value, str) else str(value), (), limit) or ""


def _safe_uri(value: Any, redact: Sequence[str] = ()) -> Optional[str]:
    """A server-provided URI (``Location``, ``error_uri``) fit to repeat: redacted, one line, short."""
    if not isinstance(value, str):
        return None
    return _short(redact_url(_UNPRINTABLE.sub("", value[: MAX_URI * 4])), redact, MAX_URI)


def error_from_response(
    status: int,
    body: bytes,
    prefix: str,
    server_name: Optional[str],
    correlation_id: Optional[str],
    location: Optional[str] = None,
    retry_after_refused: Optional[float] = None,
    redact: Sequence[str] = (),
) -> TokenRequestError:
    body, redact = masked(body), masked(redact)  # frame locals may be printed with a traceback
    if 300 <= status < 400:
        shown = _safe_uri(location, redact)
        where = " to %s" % shown if shown else ""
        return TokenRequestError(
            "%s: the server answered %d, a redirect%s, which is never followed with client credentials; "
            "set the URL to the final endpoint" % (prefix, status, where),
            status_code=status,
            correlation_id=correlation_id,
            server_name=server_name,
            retryable=False,
        )
    data = masked(json_object(body) or {})
    code = data.get("error")
    if not isinstance(code, str) or not _ERROR_CODE.match(code) or any(code == secret for secret in redact):
        code = None  # not an RFC 6749 code: never repeated
    description = _short(data.get("error_description"), redact)
    uri = _safe_uri(data.get("error_uri"), redact)
    message = "%s: %s" % (prefix, code or "HTTP %d" % status)
    if description:
        message += " (%s)" % description
    if code is None and status < 400:
        message = "%s: unexpected HTTP %d" % (prefix, status)
    if retry_after_refused is not None:
        message += "; the server asked to wait %.0f s, longer than OAUTH_RETRY_AFTER_MAX" % retry_after_refused
    if correlation_id:
        message += " [correlation_id=%s]" % correlation_id
    return error_class_for(code)(
        message,
        error=code,
        error_description=description,
        error_uri=uri,
        status_code=status,
        correlation_id=correlation_id,
        server_name=server_name,
    )


#: What :func:`_parse_expires_in` returns for a value that is not a positive number.
_UNUSABLE = -1.0


def _parse_expires_in(value: Any) -> Optional[float]:
    """Seconds from ``expires_in`` (a number or a numeric string), None when absent, ``_UNUSABLE`` otherwise.

    Pure, and it raises nothing: the caller's error is raised outside any ``except`` block.
    """
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            return _UNUSABLE
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return _UNUSABLE
    try:
        seconds = float(value)
    except OverflowError:  # an int too large for a float
        return _UNUSABLE
    if math.isnan(seconds) or seconds <= 0:
        return _UNUSABLE
    return min(seconds, MAX_TOKEN_LIFETIME)


def parse_token_response(
    status: int,
    body: bytes,
    server_name: Optional[str] = None,
    correlation_id: Optional[str] = None,
    location: Optional[str] = None,
    retry_after_refused: Optional[float] = None,
    redact: Sequence[str] = (),
    dpop: bool = False,
    exchange: Optional[str] = None,
) -> TokenResponse:
    """Check a token endpoint response (RFC 6749 section 5.1) and return its fields.

    Args:
        status: the HTTP status code.
        body: the raw response body.
        redact: strings of the request (the client secret) that server-provided text
            may echo; they are replaced by ``***`` in messages.
        dpop: the request carried a DPoP proof: the ``token_type`` must be ``DPoP``.

    Returns:
        The access token, its type (``"Bearer"``, or ``"DPoP"`` with ``dpop``), lifetime
        in seconds (None when absent; at most :data:`MAX_TOKEN_LIFETIME`) and the
        granted scope (None when absent).

    Raises:
        TokenRequestError: for an error status or a body that is not a usable token.
        TokenBindingError: with ``dpop``, a ``token_type`` other than ``DPoP``.
    """
    prefix = "OAuth token request failed"
    body, redact = masked(body), masked(redact)  # frame locals may be printed with a traceback
    if status != 200:
        raise error_from_response(
            status, body, prefix, server_name, correlation_id, location, retry_after_refused, redact
        )

    def bad(problem: str) -> TokenRequestError:
        suffix = " [correlation_id=%s]" % correlation_id if correlation_id else ""
        return TokenRequestError(
            "%s: the token endpoint answered 200 but %s%s" % (prefix, problem, suffix),
            status_code=status,
            correlation_id=correlation_id,
            server_name=server_name,
            retryable=False,
        )

    data = masked(json_object(body))
    if data is None:
        raise bad("its body is not a JSON object; check OAUTH_TOKEN_URL points at the token endpoint")
    if "error" in data:
        raise error_from_response(400, body, prefix, server_name, correlation_id, redact=redact)
    access_token = masked(data.get("access_token"))
    if not isinstance(access_token, str) or not access_token.strip():
        raise bad("access_token is missing or empty")
    if not _B64TOKEN.match(access_token):
        # Never repeated: CR/LF would reach a header or a child's environment.
        raise bad("access_token holds characters outside RFC 6750's b64token syntax ([A-Za-z0-9-._~+/]+=*)")
    token_type = data.get("token_type")
    kind = DPOP_TOKEN_TYPE if dpop else "Bearer"
    if exchange is not None:  # RFC 8693: issued_token_type checked, N_A for a token that is not an access token
        answer, problem = check_exchange_answer(data, exchange)
        if answer is None:
            raise bad(problem)
        if not answer.is_access_token:
            kind = NOT_APPLICABLE
    if dpop and kind != NOT_APPLICABLE:
        check_dpop_token_type(token_type)
    elif kind == "Bearer" and (not isinstance(token_type, str) or token_type.lower() != "bearer"):
        shown = token_type if isinstance(token_type, str) and len(token_type) < 20 else type(token_type).__name__
        raise bad("token_type is %r, not Bearer; only bearer tokens are supported" % shown)
    expires_in = _parse_expires_in(data.get("expires_in"))
    if expires_in == _UNUSABLE:
        raise bad("expires_in is not a positive number of seconds")
    scope = data.get("scope")
    if scope is not None and not isinstance(scope, str):
        raise bad("scope is not a space-separated string")
    if scope is not None and scope != "" and (len(scope) > MAX_SCOPE_LENGTH or not _SCOPE.match(scope)):
        raise bad(
            "scope is not an RFC 6749 scope (printable ASCII tokens separated by spaces, "
            "at most %d characters)" % MAX_SCOPE_LENGTH
        )
    # A plain str for the caller.
    return TokenResponse(str(access_token), kind, expires_in, scope)


class AttemptTooSlow(requests.exceptions.Timeout):
    """An attempt's body was still arriving when its deadline passed; retried like a read timeout."""

    def __init__(self, url: str, deadline: float) -> None:
        reason = "the attempt's deadline of %.1f s passed" % deadline
        super().__init__(ReadTimeoutError(None, url, reason))  # type: ignore[arg-type]  # no pool: ours
        self.deadline = deadline


_DECODED_ENCODINGS = frozenset(["gzip", "x-gzip", "deflate"])


def read_body(response: requests.Response, url: str, deadline: float, seconds: float, call: CallState) -> None:
    """Read a streamed response's body into ``response.content``, bounded in time and size.

    One socket read at a time (``read1``), the clock checked between reads, gzip and
    deflate inflated here, incrementally, with the output capped at
    :data:`MAX_RESPONSE_BYTES`: a body that drips, never ends, or inflates to gigabytes
    stops early, with little memory used.

    Raises:
        AttemptTooSlow: ``deadline`` (``time.monotonic``) passed while reading.
        requests.exceptions.ConnectionError, requests.exceptions.Timeout: the read failed.
        TokenRequestError: the body is too large or uses an encoding we do not undo.
    """
    raw = response.raw
    read1 = getattr(raw, "read1", None)
    if read1 is not None:  # urllib3 2.x

        def read() -> bytes:
            return bytes(read1(READ_CHUNK, decode_content=False) or b"")

    else:  # urllib3 1.26 has no read1: http.client's response below it does one socket read at a time
        source = raw._fp

        def read() -> bytes:
            if source is None:
                return b""
            data = source.read1(READ_CHUNK)
            if not data:
                # At the end, read() marks http.client's response closed (3.8's read1 does not),
                # so the connection can carry the next request; a body cut short raises here.
                data = source.read()
            return bytes(data or b"")

    encoding = response.headers.get("Content-Encoding", "").strip().lower()
    if encoding not in ("", "identity") and encoding not in _DECODED_ENCODINGS:
        response.close()
        raise _refusal(call, response.status_code, "its Content-Encoding is not gzip or deflate")
    decoder = zlib.decompressobj(32 + zlib.MAX_WBITS) if encoding in _DECODED_ENCODINGS else None
    parts: List[bytes] = masked([])  # masked: the body may hold a token, and locals may be printed
    size = received = 0
    try:
        while True:
            if time.monotonic() > deadline:
                response.close()  # not consumed: the connection is closed, never reused
                raise AttemptTooSlow(url, seconds)
            chunk = masked(read())
            if not chunk:
                break
            received += len(chunk)
            if decoder is not None:
                chunk = masked(decoder.decompress(chunk, MAX_RESPONSE_BYTES + 1 - size))
            size += len(chunk)
            if size > MAX_RESPONSE_BYTES or received > MAX_RESPONSE_BYTES:
                response.close()
                raise _refusal(call, response.status_code, "its body is larger than %d bytes" % MAX_RESPONSE_BYTES)
            parts.append(chunk)
    except requests.exceptions.RequestException:  # ours, above (requests' errors are OSErrors)
        raise
    except zlib.error:
        failure: Optional[Exception] = _refusal(call, response.status_code, "its %s body is corrupt" % encoding)
    except (HTTPError, OSError, http.client.HTTPException) as exc:
        failure = requests.exceptions.ConnectionError(ProtocolError("Connection broken", exc.__class__.__name__))
        if isinstance(exc, (ReadTimeoutError, TimeoutError)) or "timed out" in str(exc):
            failure = requests.exceptions.ReadTimeout(ReadTimeoutError(None, url, "Read timed out."))  # type: ignore[arg-type]  # no pool
    else:
        failure = None
    if failure is not None:
        # Raised here, outside the except block: the error it replaces stays out of its __context__.
        response.close()
        raise failure
    if decoder is not None:
        try:
            parts.append(decoder.flush())
        except zlib.error:
            parts = masked([])
    response._content = b"".join(parts)  # what requests stores after reading the body itself
    response._content_consumed = True  # type: ignore[attr-defined]
    release = getattr(raw, "release_conn", None)
    if release is not None:
        release()  # the whole body was read: the connection goes back to the pool


def _refusal(call: CallState, status: int, problem: str) -> TokenRequestError:
    return TokenRequestError(
        "OAuth %s failed: the server answered %d but %s; check the endpoint URL [correlation_id=%s]"
        % (call.what, status, problem, call.correlation_id),
        status_code=status,
        correlation_id=call.correlation_id,
        server_name=call.server_name,
        retryable=False,
    )


def granted_scopes(config: OAuthConfig, response: TokenResponse) -> FrozenSet[str]:
    """The scopes ``response`` grants; checked against the requested ones when ``config`` says so.

    Raises:
        InvalidScope: ``OAUTH_VALIDATE_SCOPES`` is on and a requested scope was not granted.
    """
    if response.scope is None:
        return config.scopes  # RFC 6749 section 5.1: omitted means granted as requested
    granted = parse_scope(response.scope)
    if config.validate_scopes and config.scopes and not config.scopes <= granted:
        raise InvalidScope(
            "Token scopes validation failed. Requested: %s, Received: %s"
            % (" ".join(sorted(config.scopes)), safe_text(" ".join(sorted(granted))) or "(none)"),
            error="invalid_scope",
            retryable=False,
        )
    return granted


def build_token(
    response: TokenResponse,
    granted: FrozenSet[str],
    config: OAuthConfig,
    issued_at: float,
    issued_at_epoch: float,
    default_lifetime: float,
    server_name: str,
) -> Token:
    """The :class:`~oauth_gateway.tokens.Token` of an accepted ``response``, issued at ``issued_at`` (monotonic)."""
    token = Token(
        response.access_token,
        response.token_type,
        expires_in=response.expires_in,
        issued_at=issued_at,
        scopes=granted,
        expiry_buffer=config.expiry_buffer,
        default_lifetime=default_lifetime,
        issued_at_epoch=issued_at_epoch,
    )
    if response.expires_in is None:
        log.debug("Successfully obtained token for %s, no expires_in: assuming %ds", server_name, default_lifetime)
    else:
        log.debug("Successfully obtained token for %s, expires in %ds", server_name, response.expires_in)
    return token
