"""What every auth adapter does, whatever its HTTP library: the headers, the 401 rule, where a token goes.

The requests adapter (auth.py) and the httpx ones build on these and keep only what
their library needs (hooks, rewinding a body, sending again):

* :func:`check_transport`: a token goes over https only; plain http to a loopback host
  when the config turns ``OAUTH_ENFORCE_HTTPS`` off, or to any host with ``allow_insecure``;
* :func:`same_origin`: a 401 is recovered only on the origin the token was sent to;
* :func:`authorization_headers`: ``Authorization``, and for DPoP a fresh proof;
* :func:`read_401`: does a 401 ask for a new token (``error="invalid_token"`` in a
  challenge of our scheme), for a DPoP nonce, and which ``resource_metadata`` URL it
  names that may be followed (the origin rule of :mod:`oauth_gateway._http`).

Pure but for the proof, which signs with the wall clock; no I/O, no logging.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Callable, Dict, NamedTuple, Optional, Tuple

from ._helpers import redact_url
from ._http import UrlProblem, origin_of, parse_www_authenticate, resource_metadata_problem, transport_problem
from .dpop import DPOP_HEADER, USE_DPOP_NONCE
from .exceptions import InsecureTransportError

if TYPE_CHECKING:  # pragma: no cover
    from .dpop import DPoPKey
    from .tokens import Token

#: The challenge schemes whose ``error="invalid_token"`` means "get a new token".
BEARER_SCHEMES: Tuple[str, ...] = ("bearer",)
#: The same for a DPoP config (a server may still answer with a Bearer challenge).
DPOP_SCHEMES: Tuple[str, ...] = ("dpop", "bearer")
_METADATA_SCHEMES = ("bearer", "dpop")


def check_transport(url: str, server_name: str, enforce_https: bool, allow_insecure: bool = False) -> None:
    """Refuse to send ``server_name``'s token to ``url`` unless it is https (or an allowed http).

    Raises:
        InsecureTransportError: the URL is plain http where that is refused, or not http(s).
    """
    problem = transport_problem(
        url, enforce_https=enforce_https and not allow_insecure, any_http_host=bool(allow_insecure)
    )
    if problem is None:
        return
    where = redact_url(url) if "://" in url else "a URL without a scheme"
    fix = "use an https URL"
    if not problem.malformed:
        fix += (
            ", or for a local test server set OAUTH_ENFORCE_HTTPS to false (loopback hosts only)"
            " or pass allow_insecure=True to manager.auth()"
        )
    raise InsecureTransportError(
        "refusing to send the %s token to %s: OAuth 2 bearer tokens go over https only; %s" % (server_name, where, fix)
    )


def same_origin(url: Optional[str], other: Optional[str]) -> bool:
    """True when both URLs have the same scheme, host and port (default ports filled in)."""
    return origin_of(url) == origin_of(other)


def sent_scheme(authorization: Any) -> Optional[str]:
    """The scheme of an ``Authorization`` value, lower-case; None when there is none.

    Only the scheme is read: the token itself never becomes a local of the caller's frame.
    """
    if not authorization:
        return None
    if not isinstance(authorization, str):
        authorization = authorization.decode("latin-1")
    return str(authorization).partition(" ")[0].lower()


def authorization_headers(
    token: Token,
    dpop_key: Optional[DPoPKey] = None,
    method: str = "GET",
    url: str = "",
    nonce: Optional[str] = None,
    wall_clock: Callable[[], float] = time.time,
) -> Dict[str, str]:
    """The headers that carry ``token``: ``Authorization``, and with ``dpop_key`` a new ``DPoP`` proof.

    A proof is for one request attempt (RFC 9449 section 4.2): call this again for every
    replay. It binds ``method``, ``url`` (without query and fragment), the token's hash and
    the resource server's latest ``nonce``.
    """
    headers = {"Authorization": token.authorization}
    if dpop_key is not None:
        headers[DPOP_HEADER] = dpop_key.proof(
            method, url, now=wall_clock(), nonce=nonce, access_token=token.access_token
        )
    return headers


class Rejection(NamedTuple):
    """What a 401's ``WWW-Authenticate`` tells an auth adapter (see :func:`read_401`)."""

    #: A challenge of our schemes says ``error="invalid_token"``: get a new token.
    invalid_token: bool
    #: A DPoP challenge says ``error="use_dpop_nonce"``: send again with the new nonce.
    use_dpop_nonce: bool
    #: The first Bearer or DPoP challenge's ``resource_metadata`` URL, when it may be followed.
    resource_metadata: Optional[str]
    #: Why that URL may not be followed (then ``resource_metadata`` is None), or None.
    refused_metadata: Optional[UrlProblem]


def read_401(
    header: Optional[str], request_url: str, schemes: Tuple[str, ...] = BEARER_SCHEMES, configured_metadata: str = ""
) -> Rejection:
    """Read a 401's ``WWW-Authenticate`` value once (the one parser, capped in length).

    Args:
        header: the header value (several headers joined with ``", "``), or None.
        request_url: the URL that answered 401: a ``resource_metadata`` URL must be on its
            origin unless it is ``configured_metadata``.
        schemes: the lower-case challenge schemes whose ``invalid_token`` counts.
        configured_metadata: the config's ``OAUTH_RESOURCE_METADATA_URL`` ("" for none).
    """
    invalid_token = use_nonce = False
    metadata: Optional[str] = None
    for challenge in parse_www_authenticate(header or ""):
        scheme, error = challenge.scheme.lower(), challenge.error
        if error == "invalid_token" and scheme in schemes:
            invalid_token = True
        elif error == USE_DPOP_NONCE and scheme == "dpop":
            use_nonce = True
        if metadata is None and scheme in _METADATA_SCHEMES and challenge.resource_metadata:
            metadata = challenge.resource_metadata
    refused = None
    if metadata is not None:
        refused = resource_metadata_problem(request_url, metadata, configured_metadata)
        if refused is not None:
            metadata = None
    return Rejection(invalid_token, use_nonce, metadata, refused)


def is_invalid_token_challenge(header: Optional[str], schemes: Tuple[str, ...] = BEARER_SCHEMES) -> bool:
    """Return True when a ``WWW-Authenticate`` value has a Bearer challenge with ``error="invalid_token"``.

    Several challenges may share one header (``Basic realm="x", Bearer error="invalid_token"``);
    parameter values may be quoted strings holding commas. At most
    :data:`~oauth_gateway._http.MAX_CHALLENGE_LENGTH` characters are read.

    Args:
        header: the header value, or None.
        schemes: the challenge schemes that count, lower-case (``("dpop", "bearer")`` for DPoP).
    """
    return read_401(header, "", schemes).invalid_token
