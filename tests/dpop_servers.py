"""A real DPoP-checking resource server on 127.0.0.1 (HTTPS, trustme), for tests/test_dpop.py.

:class:`DPoPResourceServer` answers every GET and POST path the way an RFC 9449 section 7
resource server does. It wants ``Authorization: DPoP <token>`` and a ``DPoP`` proof, and
checks the proof on its own, without oauth_gateway's code: the ``typ`` (``dpop+jwt``), the
signature by the ``jwk`` in the header (public key only), ``htm`` and ``htu`` against the
request, ``ath`` against the token, a ``jti`` never seen before, ``iat`` within a window
of its clock, and, when the token is a JWT with ``cnf.jkt``, that ``jkt`` is the RFC 7638
thumbprint of the proof's key. With ``require_nonce`` it also wants its current nonce:
without it (or with an old one) it answers 401 ``WWW-Authenticate: DPoP
error="use_dpop_nonce"`` with a ``DPoP-Nonce`` header. Other failures are 401
``invalid_dpop_proof`` or ``invalid_token``; a success is 200 with a small JSON body.

It records every request (:class:`Checked`) so tests count round trips. It is
thread-safe: connections are served on daemon threads, and the shared state (seen
``jti`` values, records, the nonce) sits behind one lock. Only the standard library,
PyJWT, cryptography and trustme are used.
"""

from __future__ import annotations

import base64
import hashlib
import json as _json
import secrets
import time
from email.message import Message
from typing import Any, Callable, Dict, List, Optional, Set, Tuple

import jwt

from loopback import LoopbackServer, Reply

__all__ = ("Checked", "DPoPResourceServer", "jwk_thumbprint", "ALGORITHMS")

#: Algorithms the server accepts in proofs (advertised in its challenge's ``algs``).
ALGORITHMS = ("ES256", "ES384", "RS256", "PS256")
#: Seconds a proof's ``iat`` may differ from the server's clock.
DEFAULT_IAT_WINDOW = 60


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(part: str) -> bytes:
    return base64.urlsafe_b64decode((part + "=" * (-len(part) % 4)).encode("ascii"))


def jwk_thumbprint(jwk: Dict[str, Any]) -> str:
    """RFC 7638 SHA-256 thumbprint, written here again so the server checks independently."""
    if jwk.get("kty") == "RSA":
        required = {"e": jwk["e"], "kty": "RSA", "n": jwk["n"]}
    else:
        required = {"crv": jwk["crv"], "kty": jwk["kty"], "x": jwk["x"], "y": jwk["y"]}
    text = _json.dumps(required, separators=(",", ":"), sort_keys=True)
    return _b64url(hashlib.sha256(text.encode("utf-8")).digest())


class Checked:
    """One request as the server judged it.

    Attributes:
        method, path: The request line (path without query).
        status: The status answered (200 or 401).
        error: ``None`` on success, else the error code answered (``use_dpop_nonce``,
            ``invalid_dpop_proof``, ``invalid_token``).
        reason: Why, in words (never the token or the proof).
        jkt: The thumbprint of the proof's key, when a proof was parsed.
        nonce: The nonce the proof carried, or None.
    """

    def __init__(
        self,
        method: str,
        path: str,
        status: int,
        error: Optional[str],
        reason: str,
        jkt: Optional[str],
        nonce: Optional[str],
    ) -> None:
        self.method = method
        self.path = path
        self.status = status
        self.error = error
        self.reason = reason
        self.jkt = jkt
        self.nonce = nonce

    def __repr__(self) -> str:
        return "Checked(%s %s -> %d %s: %s)" % (
            self.method,
            self.path,
            self.status,
            self.error or "ok",
            self.reason,
        )


class _Refusal(Exception):
    def __init__(self, error: str, reason: str) -> None:
        super().__init__(reason)
        self.error = error
        self.reason = reason


class DPoPResourceServer(LoopbackServer):
    """An HTTPS resource server that accepts only DPoP-bound tokens with valid proofs.

    Thread-safe. Use as a context manager, or call :meth:`start` and :meth:`stop`.

    Attributes:
        url: ``https://127.0.0.1:<port>`` once started.
        require_nonce: Demand the current nonce in every proof.
        nonce: The nonce the server hands out now (:meth:`rotate_nonce` changes it).
        checked: Every request, in arrival order (:class:`Checked`).
    """

    thread_name = "dpop-resource-server"

    def __init__(
        self,
        ca: Any,
        *,
        require_nonce: bool = False,
        iat_window: int = DEFAULT_IAT_WINDOW,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """Prepare the server; nothing listens before :meth:`start`.

        Args:
            ca: The trustme CA that issues the server certificate for 127.0.0.1.
            require_nonce: Demand the server's nonce in every proof.
            iat_window: Seconds a proof's ``iat`` may be off the clock, either way.
            clock: Wall-clock seconds (``time.time``), for the ``iat`` check.
        """
        super().__init__(ca)
        self.require_nonce = require_nonce
        self.iat_window = iat_window
        self.clock = clock
        self._seen_jti: Set[str] = set()
        self._nonce = secrets.token_urlsafe(24)

    @property
    def checked(self) -> List[Checked]:
        """Every request, in arrival order (:class:`Checked`)."""
        return self.records

    # -- state

    @property
    def nonce(self) -> str:
        """The nonce the server hands out and accepts now."""
        with self._lock:
            return self._nonce

    def rotate_nonce(self) -> str:
        """Start handing out a new nonce; the old one is refused from now on."""
        with self._lock:
            self._nonce = secrets.token_urlsafe(24)
            return self._nonce

    def count(self, error: Optional[str] = "any") -> int:  # type: ignore[override]
        """Requests seen; with ``error`` given (None for successes), only those."""
        with self._lock:
            if error == "any":
                return len(self.checked)
            return sum(1 for item in self.checked if item.error == error)

    def reset(self) -> None:
        """Forget the recorded requests (seen ``jti`` values stay: replays stay refused)."""
        with self._lock:
            self.checked.clear()

    # -- the checks

    def respond(self, method: str, target: str, headers: Message, body: bytes) -> Reply:
        """Check the request's token and proof; answer 200, or 401 with a challenge."""
        status, answer_headers, answer = self._answer(
            method, target, headers.get("Authorization"), headers.get_all("DPoP") or []
        )
        return status, answer_headers + [("Content-Type", "application/json")], answer

    def _answer(
        self, method: str, raw_path: str, authorization: Optional[str], proofs: List[str]
    ) -> Tuple[int, List[Tuple[str, str]], bytes]:
        path = raw_path.split("?", 1)[0].split("#", 1)[0]
        jkt: Optional[str] = None
        nonce: Optional[str] = None
        try:
            token = self._token(authorization)
            if len(proofs) != 1:
                raise _Refusal("invalid_dpop_proof", "%d DPoP headers, want exactly 1" % len(proofs))
            header, claims = self._verify_signature(proofs[0])
            jkt = jwk_thumbprint(header["jwk"])
            nonce = claims.get("nonce")
            self._check_claims(method, path, token, claims)
            self._check_binding(token, jkt)
        except _Refusal as refusal:
            return self._refuse(method, path, refusal, jkt, nonce)
        self._record(Checked(method, path, 200, None, "ok", jkt, nonce))
        body = _json.dumps({"ok": True, "method": method, "path": path, "jkt": jkt}).encode("utf-8")
        return 200, [], body

    def _token(self, authorization: Optional[str]) -> str:
        if not authorization:
            raise _Refusal("invalid_token", "no Authorization header")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "dpop" or not token.strip():
            raise _Refusal("invalid_token", "Authorization scheme %r, want DPoP" % scheme[:16])
        return token.strip()

    def _verify_signature(self, proof: str) -> Tuple[Dict[str, Any], Dict[str, Any]]:
        try:
            header = jwt.get_unverified_header(proof)
        except jwt.PyJWTError:
            raise _Refusal("invalid_dpop_proof", "the proof is not a JWS") from None
        if header.get("typ") != "dpop+jwt":
            raise _Refusal("invalid_dpop_proof", "typ %r, want dpop+jwt" % header.get("typ"))
        alg = header.get("alg")
        if alg not in ALGORITHMS:
            raise _Refusal("invalid_dpop_proof", "alg %r is not accepted" % alg)
        jwk = header.get("jwk")
        if not isinstance(jwk, dict):
            raise _Refusal("invalid_dpop_proof", "no jwk header")
        if any(member in jwk for member in ("d", "p", "q", "dp", "dq", "qi", "k")):
            raise _Refusal("invalid_dpop_proof", "the jwk header holds private key members")
        try:
            key = jwt.PyJWK(jwk, alg).key
            claims = jwt.decode(
                proof,
                key,
                algorithms=[alg],
                options={"verify_aud": False, "verify_exp": False, "verify_iat": False},
            )
        except (jwt.PyJWTError, KeyError, ValueError, TypeError):
            raise _Refusal("invalid_dpop_proof", "the signature does not verify with the jwk header") from None
        return header, claims

    def _check_claims(self, method: str, path: str, token: str, claims: Dict[str, Any]) -> None:
        if claims.get("htm") != method:
            raise _Refusal("invalid_dpop_proof", "htm %r, want %r" % (claims.get("htm"), method))
        if claims.get("htu") != self.url + path:
            raise _Refusal("invalid_dpop_proof", "htu %r, want %r" % (claims.get("htu"), self.url + path))
        ath = _b64url(hashlib.sha256(token.encode("utf-8")).digest())
        if claims.get("ath") != ath:
            raise _Refusal("invalid_dpop_proof", "ath is missing or not the token's hash")
        iat = claims.get("iat")
        if isinstance(iat, bool) or not isinstance(iat, (int, float)):
            raise _Refusal("invalid_dpop_proof", "no numeric iat")
        if abs(self.clock() - iat) > self.iat_window:
            raise _Refusal("invalid_dpop_proof", "iat is %+d s off the server clock" % (iat - self.clock()))
        jti = claims.get("jti")
        if not isinstance(jti, str) or not jti:
            raise _Refusal("invalid_dpop_proof", "no jti")
        with self._lock:
            if jti in self._seen_jti:
                raise _Refusal("invalid_dpop_proof", "jti replayed")
            self._seen_jti.add(jti)
            current = self._nonce
        if self.require_nonce and claims.get("nonce") != current:
            why = "no nonce" if "nonce" not in claims else "an old nonce"
            raise _Refusal("use_dpop_nonce", "the proof has %s" % why)

    def _check_binding(self, token: str, jkt: str) -> None:
        parts = token.split(".")
        if len(parts) != 3:
            return  # opaque: only introspection could tell
        try:
            claims = _json.loads(_b64decode(parts[1]).decode("utf-8"))
        except ValueError:
            raise _Refusal("invalid_token", "the token looks like a JWT but does not decode") from None
        cnf = claims.get("cnf") if isinstance(claims, dict) else None
        if not isinstance(cnf, dict) or "jkt" not in cnf:
            raise _Refusal("invalid_token", "the JWT access token is not DPoP-bound (no cnf.jkt)")
        if cnf["jkt"] != jkt:
            raise _Refusal("invalid_token", "cnf.jkt is not the proof key's thumbprint")

    def _refuse(
        self, method: str, path: str, refusal: _Refusal, jkt: Optional[str], nonce: Optional[str]
    ) -> Tuple[int, List[Tuple[str, str]], bytes]:
        self._record(Checked(method, path, 401, refusal.error, refusal.reason, jkt, nonce))
        challenge = 'DPoP error="%s", error_description="%s", algs="%s"' % (
            refusal.error,
            refusal.reason.replace('"', "'"),
            " ".join(ALGORITHMS),
        )
        headers = [("WWW-Authenticate", challenge)]
        if refusal.error == "use_dpop_nonce":
            headers.append(("DPoP-Nonce", self.nonce))
        body = _json.dumps({"error": refusal.error, "error_description": refusal.reason}).encode("utf-8")
        return 401, headers, body

    def _record(self, item: Checked) -> None:
        self.record(item)
