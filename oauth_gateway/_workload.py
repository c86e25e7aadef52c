"""Workload identity: where the JWT the platform issued to this workload comes from.

One class per source behind :class:`AssertionSource` (``OAUTH_CLIENT_ASSERTION_SOURCE``):

- :class:`FileSource` (``{"type": "file", "path": ...}``, the long form of
  ``OAUTH_CLIENT_ASSERTION_FILE``) and :class:`KubernetesSource` (``{"type":
  "kubernetes"}``, the projected service-account token) read a file the platform rotates;
  reading it is cheap, so it is read again for every token request and a rotated file
  reaches the server at once.
- :class:`GitHubActionsSource` (``{"type": "github_actions", "audience": ...}``) and
  :class:`GcpMetadataSource` (``{"type": "gcp_metadata", "audience": ...}``) ask an HTTP
  endpoint; their JWT is kept in memory until its own ``exp`` comes near (the margin
  rules of access tokens), one fetch at a time, and never leaves the process (no log, no
  shared cache).

Every source checks the JWT's shape and ``exp`` (never its signature: that is the
server's job), so an expired assertion is never sent. Sources are thread-safe.
"""

from __future__ import annotations

import abc
import base64
import datetime
import os
import threading
from typing import Any, Callable, Dict, Mapping, NamedTuple, Optional, Tuple
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ._helpers import MAX_SECRET_FILE_BYTES, masked, parse_json_text, read_regular_file, redact_url
from ._jsonpath import join as _join_path
from ._singleflight import SingleFlight
from .exceptions import ConfigError, OAuthGatewayError
from .tokens import MIN_REMAINING, MIN_REMAINING_FRACTION, refresh_buffer

#: A JWT with less than this many seconds left is never sent.
ASSERTION_MIN_REMAINING = 5
#: Seconds before ``exp`` a fetched JWT is fetched again (at most half its lifetime).
ASSERTION_REFRESH_BUFFER = 60
#: The projected service-account token of a Kubernetes pod.
KUBERNETES_TOKEN_PATH = "/var/run/secrets/kubernetes.io/serviceaccount/token"
#: The metadata server's host when ``GCE_METADATA_HOST`` (or ``GCE_METADATA_ROOT``) is unset.
GCE_METADATA_DEFAULT_HOST = "metadata.google.internal"
GCE_IDENTITY_PATH = "/computeMetadata/v1/instance/service-accounts/default/identity"
#: Seconds a caller waits for another thread's fetch of the same source.
FETCH_WAIT = 30.0

#: ``(method, url, headers, body, deadline) -> (status, headers, body)``: the HTTP
#: transport, the token client's discovery transport (pooled, timeouts, no redirects);
#: the same shape as ``discovery.Fetch``, which imports this module's users.
Fetch = Callable[[str, str, Mapping[str, str], Optional[bytes], Optional[float]], Tuple[int, Mapping[str, str], bytes]]


def jwt_claims(text: str) -> Optional[Dict[str, Any]]:
    """The claims of a JWT's text (its header must be a JSON object too), or None when it is not one."""
    parts = text.split(".")
    if len(parts) != 3 or not all(parts):
        return None
    try:
        header, claims = _jwt_part(parts[0]), _jwt_part(parts[1])
    except ValueError:  # JSON, base64 and UTF-8 errors are all ValueErrors
        return None
    return claims if isinstance(header, dict) and isinstance(claims, dict) else None


def _jwt_part(segment: str) -> Any:
    padded = segment + "=" * (-len(segment) % 4)
    document, problem = parse_json_text(base64.urlsafe_b64decode(padded.encode("ascii")).decode("utf-8"))
    if problem is not None:  # not JSON, or nested deeply enough to exhaust the stack
        raise ValueError(problem.problem)
    return document


def utc(seconds: float) -> str:
    """``seconds`` since the epoch as ``YYYY-MM-DD HH:MM:SS UTC``."""
    moment = datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc)
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


class Assertion(NamedTuple):
    """A checked JWT: its text (masked in reprs), ``exp``, and the identity it carries."""

    text: str
    expires_at: float
    issued_at: float
    issuer: str
    subject: str


class AssertionSource(abc.ABC):
    """Where a workload's JWT comes from. Thread-safe.

    Attributes:
        kind: The ``type`` of ``OAUTH_CLIENT_ASSERTION_SOURCE``.
        where: The JSON path errors point at.
    """

    kind = ""

    def __init__(self, where: str) -> None:
        self.where = where

    @abc.abstractmethod
    def assertion(self, now: float) -> Assertion:
        """Return a JWT with at least :data:`ASSERTION_MIN_REMAINING` seconds left.

        Args:
            now: Wall-clock seconds since the epoch.

        Raises:
            ConfigError: the platform gave no usable JWT (unreadable, not a JWT, expired,
                refused); the message names the source, never the JWT.
            TransportError: the platform's endpoint could not be reached.
        """

    @abc.abstractmethod
    def describe(self) -> str:
        """How messages name the source (``the client assertion file /path``)."""

    def __repr__(self) -> str:
        return "%s(%s)" % (type(self).__name__, self.describe())

    def error(self, problem: str, fix: str) -> ConfigError:
        """A :class:`ConfigError` about this source (its JSON path, its name)."""
        return ConfigError("%s %s" % (self.describe(), problem), self.where, fix)

    def checked(self, text: str, now: float, fix: str) -> Assertion:
        """Check ``text`` is a JWT with a numeric ``exp`` that is not too near; ``fix`` says what to do when it is."""
        text = masked(text.strip())
        claims = jwt_claims(text) if "\ufffd" not in text else None
        # Raised here, not in an except block: the JWT stays out of __context__.
        if "\ufffd" in text:
            raise self.error("cannot be read (not UTF-8)", "point it at the token the platform issues")
        if claims is None:
            raise self.error(
                "does not hold a JWT (three base64url parts)",
                "point it at the token the platform issues (e.g. a projected service-account token)",
            )
        exp = claims.get("exp")
        if isinstance(exp, bool) or not isinstance(exp, (int, float)):
            raise self.error(
                "holds a JWT without a numeric exp claim", "use a token the platform issues with an expiry"
            )
        if exp - now < ASSERTION_MIN_REMAINING:
            raise self.error("holds a JWT that expired at %s (%d s ago)" % (utc(exp), max(0, int(now - exp))), fix)
        iat = claims.get("iat")
        issued = float(iat) if isinstance(iat, (int, float)) and not isinstance(iat, bool) and iat <= exp else now
        return Assertion(text, float(exp), issued, str(claims.get("iss") or ""), str(claims.get("sub") or ""))


class FileSource(AssertionSource):
    """A JWT in a file the platform writes and rotates, read again for every token request.

    Attributes:
        path: The file.
    """

    kind = "file"

    def __init__(self, path: str, where: str = "$.OAUTH_CLIENT_ASSERTION_FILE") -> None:
        super().__init__(where)
        self.path = path

    def describe(self) -> str:  # noqa: D102
        return "the client assertion file %s" % self.path

    def assertion(self, now: float) -> Assertion:  # noqa: D102
        read, problem = read_regular_file(self.path, MAX_SECRET_FILE_BYTES)
        if problem is not None:
            raise self.error(
                "cannot be read (it %s)" % problem.problem,
                "%s; check that the platform mounts it and that this user may read it" % problem.hint,
            )
        assert read is not None
        fix = "the platform should rotate this file; check that the token is still projected and refreshed"
        return self.checked(read.data.decode("utf-8", "replace"), now, fix)


class KubernetesSource(FileSource):
    """The pod's projected service-account token (its path, or :data:`KUBERNETES_TOKEN_PATH`)."""

    kind = "kubernetes"

    def __init__(self, path: str = "", where: str = "$.OAUTH_CLIENT_ASSERTION_SOURCE") -> None:
        super().__init__(path or KUBERNETES_TOKEN_PATH, where)

    def describe(self) -> str:  # noqa: D102
        return "the Kubernetes service-account token %s" % self.path


class _FetchedSource(AssertionSource):
    """A JWT asked of an HTTP endpoint, kept until its ``exp`` comes near; one fetch at a time."""

    def __init__(self, audience: str, fetch: Fetch, environ: Mapping[str, str], where: str) -> None:
        super().__init__(where)
        self.audience = audience
        self._fetch = fetch
        self._environ = environ
        self._lock = threading.Lock()
        self._flights: SingleFlight[str, Assertion] = SingleFlight(self._lock)
        self._kept: Optional[Assertion] = None

    def assertion(self, now: float) -> Assertion:  # noqa: D102
        kept = self._kept
        if kept is not None and not _is_stale(kept, now):
            return kept
        return self._flights.run(self.kind, lambda: self._renew(now), FETCH_WAIT, self._timed_out)

    def _renew(self, now: float) -> Assertion:
        kept = self._kept  # another thread's fetch may have finished meanwhile
        if kept is not None and not _is_stale(kept, now):
            return kept
        url, headers = self.request()
        status, _, body = self._fetch("GET", url, headers, None, None)  # the transport's own timeouts
        if status != 200:
            raise self.error(
                "answered HTTP %d at %s" % (status, redact_url(url.split("?", 1)[0])),
                self.refused_hint(),
            )
        made = self.checked(self.token_from(body), now, "the platform issued an expired token; check its clock")
        with self._lock:
            self._kept = made
        return made

    def _timed_out(self, timeout: float) -> BaseException:
        return OAuthGatewayError("%s: another thread's fetch took over %.0f s" % (self.describe(), timeout))

    @abc.abstractmethod
    def request(self) -> Tuple[str, Dict[str, str]]:
        """The URL and headers of the request (read from the environment now)."""

    @abc.abstractmethod
    def token_from(self, body: bytes) -> str:
        """The JWT in the endpoint's answer."""

    @abc.abstractmethod
    def refused_hint(self) -> str:
        """What to check when the endpoint does not answer 200."""


def _is_stale(assertion: Assertion, now: float) -> bool:
    """The access-token margins: fetch again ``min(buffer, lifetime / 2)`` before ``exp``."""
    lifetime = max(0.0, assertion.expires_at - assertion.issued_at)
    margin = max(
        refresh_buffer(ASSERTION_REFRESH_BUFFER, lifetime),
        min(MIN_REMAINING, MIN_REMAINING_FRACTION * lifetime),
        ASSERTION_MIN_REMAINING,
    )
    return now >= assertion.expires_at - margin


def _with_query(url: str, **params: str) -> str:
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True) + list(params.items())
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), parts.fragment))


class GitHubActionsSource(_FetchedSource):
    """The GitHub Actions OIDC token: ``GET $ACTIONS_ID_TOKEN_REQUEST_URL&audience=...``.

    With ``Authorization: bearer $ACTIONS_ID_TOKEN_REQUEST_TOKEN``; the answer is JSON
    ``{"value": "<jwt>"}``. The job needs ``permissions: id-token: write``.
    """

    kind = "github_actions"

    def describe(self) -> str:  # noqa: D102
        return "the GitHub Actions OIDC token (audience %r)" % self.audience

    def request(self) -> Tuple[str, Dict[str, str]]:  # noqa: D102
        url = self._environ.get("ACTIONS_ID_TOKEN_REQUEST_URL", "")
        token = self._environ.get("ACTIONS_ID_TOKEN_REQUEST_TOKEN", "")
        if not url or not token:
            raise self.error(
                "cannot be requested: ACTIONS_ID_TOKEN_REQUEST_URL and ACTIONS_ID_TOKEN_REQUEST_TOKEN are not set",
                "run inside a GitHub Actions job with `permissions: id-token: write`",
            )
        headers = {"Authorization": masked("bearer " + token), "Accept": "application/json"}
        return _with_query(url, audience=self.audience), headers

    def token_from(self, body: bytes) -> str:  # noqa: D102
        document, problem = parse_json_text(body.decode("utf-8", "replace"))
        value = document.get("value") if problem is None and isinstance(document, dict) else None
        if not isinstance(value, str):
            raise self.error("answer is not JSON with a string 'value'", "check ACTIONS_ID_TOKEN_REQUEST_URL")
        return value

    def refused_hint(self) -> str:  # noqa: D102
        return "give the job `permissions: id-token: write`; the request token lasts only as long as the job"


class GcpMetadataSource(_FetchedSource):
    """A Google-signed ID token from the metadata server's identity endpoint.

    ``GET http://$GCE_METADATA_HOST/computeMetadata/v1/instance/service-accounts/default/
    identity?audience=...&format=full`` with ``Metadata-Flavor: Google``; the answer is the
    JWT itself. The host is read as google-auth reads it: ``GCE_METADATA_HOST``, else
    ``GCE_METADATA_ROOT``, else :data:`GCE_METADATA_DEFAULT_HOST`.
    """

    kind = "gcp_metadata"

    def describe(self) -> str:  # noqa: D102
        return "the GCP metadata server's identity token (audience %r)" % self.audience

    def request(self) -> Tuple[str, Dict[str, str]]:  # noqa: D102
        host = (
            self._environ.get("GCE_METADATA_HOST")
            or self._environ.get("GCE_METADATA_ROOT")
            or GCE_METADATA_DEFAULT_HOST
        )
        url = "http://%s%s" % (host, GCE_IDENTITY_PATH)
        return _with_query(url, audience=self.audience, format="full"), {"Metadata-Flavor": "Google"}

    def token_from(self, body: bytes) -> str:  # noqa: D102
        return body.decode("utf-8", "replace")

    def refused_hint(self) -> str:  # noqa: D102
        return "run on GCE, GKE (Workload Identity), Cloud Run or Cloud Functions, with a service account attached"


#: ``type`` -> (class, the keys it takes beside ``type``, the keys it requires).
SOURCE_TYPES: Mapping[str, Tuple[type, Tuple[str, ...], Tuple[str, ...]]] = {
    "file": (FileSource, ("path",), ("path",)),
    "kubernetes": (KubernetesSource, ("path",), ()),
    "github_actions": (GitHubActionsSource, ("audience",), ("audience",)),
    "gcp_metadata": (GcpMetadataSource, ("audience",), ("audience",)),
}


def assertion_source(
    spec: Mapping[str, str],
    fetch: Optional[Fetch] = None,
    environ: Optional[Mapping[str, str]] = None,
    json_path: str = "$",
) -> AssertionSource:
    """Build the source ``OAUTH_CLIENT_ASSERTION_SOURCE`` describes.

    Args:
        spec: the object: ``type`` and its keys (the schema checked them).
        fetch: the HTTP transport of the fetched sources.
        environ: where the platform's variables are read (``os.environ`` by default),
            each time a JWT is fetched.
        json_path: the JSON path of the ``oauth_config`` object, for messages.

    Raises:
        ConfigError: an unknown type or a missing key.
    """
    where = _join_path(json_path, "OAUTH_CLIENT_ASSERTION_SOURCE")
    kind = spec.get("type", "")
    if kind not in SOURCE_TYPES:
        raise ConfigError("has an unknown type %r" % kind, where, "use one of %s" % ", ".join(sorted(SOURCE_TYPES)))
    cls, _, required = SOURCE_TYPES[kind]
    for key in required:
        if not spec.get(key):
            raise ConfigError("needs %r with type %r" % (key, kind), where, 'add "%s": ...' % key)
    if cls in (FileSource, KubernetesSource):
        path = os.path.expanduser(spec.get("path", ""))
        return FileSource(path, where) if cls is FileSource else KubernetesSource(path, where)
    if fetch is None:
        raise ConfigError("needs the token client's transport", where, "use it through a TokenManager")
    fetched: AssertionSource = cls(spec["audience"], fetch, os.environ if environ is None else environ, where)
    return fetched


__all__ = (
    "ASSERTION_MIN_REMAINING",
    "Assertion",
    "AssertionSource",
    "FileSource",
    "GcpMetadataSource",
    "GitHubActionsSource",
    "KUBERNETES_TOKEN_PATH",
    "KubernetesSource",
    "SOURCE_TYPES",
    "assertion_source",
    "jwt_claims",
    "utc",
)
