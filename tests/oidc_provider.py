"""A real OAuth 2.0 authorization server for conformance tests: oidc-provider over HTTPS.

``OidcProvider`` issues trustme certificates, writes a config for ``tests/oidc/server.js``,
starts it with Node on 127.0.0.1, waits for its ``READY <port>`` line and reads the
endpoints from its discovery document. The server (npm ``oidc-provider`` 8.x, pinned by
``tests/oidc/package-lock.json``) knows six client-credentials clients, one per
authentication method (two for private_key_jwt: an EC P-256 and an RSA 2048 key, whose
public keys are registered as the client's ``jwks``), two more for sender-constrained
tokens (``dpop``: client_secret_basic with ``dpop_bound_access_tokens``; ``mtls-bound``:
tls_client_auth with ``tls_client_certificate_bound_access_tokens``, same certificate
subject as ``mtls``), and two resource servers that grant ``read`` and ``write`` with
access tokens living 3600 seconds: ``RESOURCE`` (opaque tokens) and ``JWT_RESOURCE`` (JWT
access tokens signed ES256, so a client can read their ``cnf``).

What a client must know about this server:

* A token request without ``resource`` gets a token for ``RESOURCE`` (the server's default
  resource, see ``default_resource``); any other ``resource`` value is ``invalid_target``,
  and only one ``resource`` per request is allowed.
* ``scope`` is optional; without it the response has no ``scope`` member. ``admin`` is a
  scope the server knows but no client may have: asking for it is ``invalid_scope``. Scope
  values the server does not know are dropped silently.
* ``audience`` is ignored.
* Client secrets contain ``:``, ``+``, ``/``, ``%`` and a space, and the basic client's id
  contains ``:``, so only RFC 6749 section 2.3.1 form-encoded Basic credentials work.
* A wrong secret is HTTP 401 ``invalid_client``. Revocation answers 200 with an empty body.
* DPoP (RFC 9449) is on for every client: a token request with a valid ``DPoP`` proof gets
  ``token_type`` ``DPoP`` and a token bound to the proof's key (``cnf.jkt``; in the JWT of
  ``JWT_RESOURCE``, at introspection otherwise). ``dpop`` without a proof is
  ``invalid_grant``. With ``dpop_require_nonce=True`` a proof without the server's nonce is
  HTTP 400 ``use_dpop_nonce`` with a ``DPoP-Nonce`` header; without it the server never
  demands one. Proof ``jti`` values are checked for replay.
* ``mtls-bound`` tokens carry ``cnf`` ``x5t#S256`` of the certificate the request used.
* A client assertion (private_key_jwt, client_secret_jwt) must have ``iss`` = client_id,
  ``exp``, a ``jti`` never seen before (a replay is ``invalid_client``) and an ``aud`` equal
  to the issuer or the token endpoint URL; RS256, PS256, ES256, ES384 and HS256 are accepted.

Run ``npm ci`` in ``tests/oidc`` first; without ``node_modules`` the fixture skips.
"""

from __future__ import annotations

import base64
import json
import os
import queue
import secrets
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import pytest
import requests
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

SERVER_DIR = Path(__file__).resolve().parent / "oidc"
SERVER_SCRIPT = SERVER_DIR / "server.js"

RESOURCE = "https://api.example.test/mcp"
JWT_RESOURCE = "https://api.example.test/mcp-jwt"
SCOPE = "read write"
FORBIDDEN_SCOPE = "admin"
ACCESS_TOKEN_TTL = 3600
NO_RESOURCE_TTL = 600  # oidc-provider's default ClientCredentials TTL, for tokens with no resource

DEFAULT_STARTUP_TIMEOUT = 30.0
DEFAULT_STOP_TIMEOUT = 5.0

CLIENT_COMMON_NAME = "oauth-gateway-test-client"
CLIENT_ORGANIZATION = "oauth-gateway"
CLIENT_ORGANIZATION_UNIT = "conformance-tests"
CLIENT_EMAIL = "client@example.test"

# Characters that RFC 6749 section 2.3.1 form-encoding must change: a raw Basic header
# with them is rejected ('%' is not a valid escape) or decodes to another secret ('+').
_SECRET_SPECIALS = ":+/% "


def _new_secret(label: str) -> str:
    return "{0}{1}{2}".format(label, _SECRET_SPECIALS, secrets.token_urlsafe(16))


def _b64url_uint(value: int, size: int) -> str:
    return base64.urlsafe_b64encode(value.to_bytes(size, "big")).rstrip(b"=").decode("ascii")


def _public_jwk(key: Any, kid: str) -> Dict[str, str]:
    """The public JWK of an RSA or EC private key, as oidc-provider's client ``jwks`` wants."""
    numbers = key.public_key().public_numbers()
    if isinstance(key, rsa.RSAPrivateKey):
        return {
            "kty": "RSA",
            "kid": kid,
            "n": _b64url_uint(numbers.n, (numbers.n.bit_length() + 7) // 8),
            "e": _b64url_uint(numbers.e, (numbers.e.bit_length() + 7) // 8),
        }
    size = (key.key_size + 7) // 8
    crv = {"secp256r1": "P-256", "secp384r1": "P-384"}[key.curve.name]
    return {
        "kty": "EC",
        "kid": kid,
        "crv": crv,
        "x": _b64url_uint(numbers.x, size),
        "y": _b64url_uint(numbers.y, size),
    }


def _subject_dn(cert: trustme.LeafCert) -> str:
    pem = cert.cert_chain_pems[0].bytes()
    return x509.load_pem_x509_certificate(pem).subject.rfc4514_string()


def _read_lines(stream: Any, lines: queue.Queue[Optional[str]]) -> None:
    # Runs until the server's stdout closes, so the pipe never fills up and blocks Node.
    try:
        for raw in iter(stream.readline, b""):
            lines.put(raw.decode("utf-8", "replace").rstrip("\r\n"))
    except (OSError, ValueError):
        pass
    finally:
        lines.put(None)


class OidcProvider:
    """A running oidc-provider server, started on ``__enter__`` and stopped on ``__exit__``.

    Not thread-safe to start or stop; once started, its attributes are read-only and the
    server itself serves concurrent requests.

    Attributes (set by ``start()``):
        issuer: ``https://127.0.0.1:<port>``.
        port: The TCP port the server listens on.
        discovery: The parsed ``/.well-known/openid-configuration`` document.
        token_url, revocation_url, introspection_url: Endpoints read from ``discovery``.
        clients: ``{"basic": (id, secret), "post": (id, secret), "mtls": (id, None),
            "jwt-ec": (id, None), "jwt-rsa": (id, None), "secret-jwt": (id, secret),
            "dpop": (id, secret), "mtls-bound": (id, None)}``.
        private_key_files: ``{"jwt-ec": path, "jwt-rsa": path}``: unencrypted PEM private
            keys (mode 0600) whose public keys the private_key_jwt clients registered.
        key_ids: ``{"jwt-ec": kid, "jwt-rsa": kid}``: the ``kid`` of each registered key.
        ca: The trustme CA that issued the server and client certificates.
        ca_file: PEM path of that CA, for ``verify=``.
        client_cert_file, client_key_file: PEM paths of the mtls client's certificate and key,
            for ``cert=(client_cert_file, client_key_file)``.
        tls_client_auth_subject_dn: The subject DN registered for the mtls client.
        resource, scope: ``RESOURCE`` and ``SCOPE``.
        log_file: Path of the server's stderr.
    """

    def __init__(
        self,
        ca: trustme.CA,
        tmp_path: os.PathLike[str] | str,
        client_common_name: str = CLIENT_COMMON_NAME,
        client_organization: str = CLIENT_ORGANIZATION,
        client_organization_unit: str = CLIENT_ORGANIZATION_UNIT,
        default_resource: Optional[str] = RESOURCE,
        startup_timeout: float = DEFAULT_STARTUP_TIMEOUT,
        dpop_require_nonce: bool = False,
        extra_resources: Tuple[str, ...] = (),
    ) -> None:
        """Prepares certificates, clients and the config; starts nothing.

        Args:
            ca: The trustme CA that issues the server certificate (for 127.0.0.1) and the
                mtls client's certificate, and that the server trusts for client certificates.
            tmp_path: A directory for certificates, the config and the server log.
            client_common_name: CN of the mtls client certificate's subject.
            client_organization: O of that subject.
            client_organization_unit: OU of that subject.
            default_resource: The resource a token request without ``resource`` gets a
                token for; ``None`` makes such requests get a token with no audience that
                lives ``NO_RESOURCE_TTL`` seconds (the requested scope is still granted).
            startup_timeout: Seconds to wait for the ``READY`` line before failing.
            dpop_require_nonce: Demand a server nonce in every DPoP proof.
            extra_resources: More resource indicators the server accepts (same scope and
                lifetime as ``RESOURCE``, opaque tokens), like the URL of a test MCP server.
        """
        self.extra_resources = tuple(extra_resources)
        self.ca = ca
        self.directory = Path(tmp_path)
        self.startup_timeout = startup_timeout
        self.default_resource = default_resource
        self.dpop_require_nonce = dpop_require_nonce
        self.resource = RESOURCE
        self.scope = SCOPE
        self.clients: Dict[str, Tuple[str, Optional[str]]] = {
            "basic": ("og-basic:client", _new_secret("basic")),
            "post": ("og-post-client", _new_secret("post")),
            "mtls": ("og-mtls-client", None),
            "jwt-ec": ("og-jwt-ec-client", None),
            "jwt-rsa": ("og-jwt-rsa-client", None),
            # HS256 wants a key of 32 bytes or more (RFC 7518 section 3.2).
            "secret-jwt": ("og-hs256-jwt-client", _new_secret("secret-jwt") + secrets.token_urlsafe(16)),
            "dpop": ("og-dpop-client", _new_secret("dpop")),
            "mtls-bound": ("og-mtls-bound-client", None),
        }
        self._private_keys: Dict[str, Any] = {
            "jwt-ec": ec.generate_private_key(ec.SECP256R1()),
            "jwt-rsa": rsa.generate_private_key(public_exponent=65537, key_size=2048),
        }
        self.key_ids = {name: "{0}-key-1".format(name) for name in self._private_keys}
        self.private_key_files = {name: self.directory / "oidc-{0}.key".format(name) for name in self._private_keys}
        self.client_cert = ca.issue_cert(
            CLIENT_EMAIL,
            common_name=client_common_name,
            organization_name=client_organization,
            organization_unit_name=client_organization_unit,
        )
        self.tls_client_auth_subject_dn = _subject_dn(self.client_cert)
        self.ca_file = self.directory / "oidc-ca.pem"
        self.client_cert_file = self.directory / "oidc-client.pem"
        self.client_key_file = self.directory / "oidc-client.key"
        self.config_file = self.directory / "oidc-server.json"
        self.log_file = self.directory / "oidc-server.log"
        self.issuer = ""
        self.port = 0
        self.discovery: Dict[str, Any] = {}
        self.token_url = ""
        self.revocation_url = ""
        self.introspection_url = ""
        self._process: Optional[subprocess.Popen[bytes]] = None
        self._reader: Optional[threading.Thread] = None
        self._log: Any = None

    def __repr__(self) -> str:
        # Secrets stay out: only the issuer and the client ids.
        ids = sorted(client_id for client_id, _ in self.clients.values())
        return "OidcProvider(issuer={0!r}, client_ids={1!r})".format(self.issuer, ids)

    def __enter__(self) -> OidcProvider:
        self.start()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()

    @property
    def process(self) -> Optional[subprocess.Popen[bytes]]:
        """The Node process, or None before ``start()``."""
        return self._process

    def start(self) -> None:
        """Writes certificates and config, starts the server and reads its discovery.

        Raises:
            pytest.skip.Exception: ``tests/oidc/node_modules`` is missing (run ``npm ci``).
            RuntimeError: Node is missing, the server exited or did not print READY in
                time, or discovery failed. The server is stopped first.
        """
        if not (SERVER_DIR / "node_modules" / "oidc-provider").is_dir():
            pytest.skip(
                "oidc-provider is not installed: run `npm ci` in {0} to run the "
                "conformance tests against a real authorization server".format(SERVER_DIR)
            )
        node = shutil.which("node")
        if node is None:
            raise RuntimeError(
                "node: not found on PATH, but {0}/node_modules exists; install Node.js 18 "
                "or later to run the oidc-provider test server".format(SERVER_DIR)
            )
        self.directory.mkdir(parents=True, exist_ok=True)
        self._write_files()
        self._log = open(str(self.log_file), "wb")
        self._process = subprocess.Popen(
            [node, str(SERVER_SCRIPT), str(self.config_file)],
            cwd=str(SERVER_DIR),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._log,
        )
        try:
            self.port = self._wait_ready()
            self.issuer = "https://127.0.0.1:{0}".format(self.port)
            self._read_discovery()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Terminates the server, kills it if it does not exit in time, and closes its pipes."""
        process = self._process
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=DEFAULT_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=DEFAULT_STOP_TIMEOUT)
        if process is not None and process.stdout is not None:
            process.stdout.close()
        if self._reader is not None:
            self._reader.join(timeout=DEFAULT_STOP_TIMEOUT)
            self._reader = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def _client_metadata(self) -> List[Dict[str, Any]]:
        basic_id, basic_secret = self.clients["basic"]
        post_id, post_secret = self.clients["post"]
        mtls_id, _ = self.clients["mtls"]
        dpop_id, dpop_secret = self.clients["dpop"]
        mtls_bound_id, _ = self.clients["mtls-bound"]
        secret_jwt_id, secret_jwt_secret = self.clients["secret-jwt"]
        jwt_clients = [
            {
                "client_id": self.clients[name][0],
                "token_endpoint_auth_method": "private_key_jwt",
                "jwks": {"keys": [_public_jwk(key, self.key_ids[name])]},
                "scope": SCOPE,
            }
            for name, key in sorted(self._private_keys.items())
        ]
        return jwt_clients + [
            {
                "client_id": secret_jwt_id,
                "client_secret": secret_jwt_secret,
                "token_endpoint_auth_method": "client_secret_jwt",
                "scope": SCOPE,
            },
            {
                "client_id": basic_id,
                "client_secret": basic_secret,
                "token_endpoint_auth_method": "client_secret_basic",
                "scope": SCOPE,
            },
            {
                "client_id": post_id,
                "client_secret": post_secret,
                "token_endpoint_auth_method": "client_secret_post",
                "scope": SCOPE,
            },
            {
                "client_id": mtls_id,
                "token_endpoint_auth_method": "tls_client_auth",
                "tls_client_auth_subject_dn": self.tls_client_auth_subject_dn,
                "scope": SCOPE,
            },
            {
                "client_id": dpop_id,
                "client_secret": dpop_secret,
                "token_endpoint_auth_method": "client_secret_basic",
                "dpop_bound_access_tokens": True,
                "scope": SCOPE,
            },
            {
                "client_id": mtls_bound_id,
                "token_endpoint_auth_method": "tls_client_auth",
                "tls_client_auth_subject_dn": self.tls_client_auth_subject_dn,
                "tls_client_certificate_bound_access_tokens": True,
                "scope": SCOPE,
            },
        ]

    def _write_files(self) -> None:
        server_cert = self.ca.issue_cert("127.0.0.1")
        server_cert_file = self.directory / "oidc-server.pem"
        server_key_file = self.directory / "oidc-server.key"
        with open(str(server_cert_file), "wb") as handle:
            for blob in server_cert.cert_chain_pems:
                handle.write(blob.bytes())
        server_cert.private_key_pem.write_to_path(str(server_key_file))
        self.ca.cert_pem.write_to_path(str(self.ca_file))
        self.client_cert.cert_chain_pems[0].write_to_path(str(self.client_cert_file))
        self.client_cert.private_key_pem.write_to_path(str(self.client_key_file))
        for name, key in self._private_keys.items():
            pem = key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            fd = os.open(str(self.private_key_files[name]), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(pem)
        config = {
            "port": 0,
            "cert": str(server_cert_file),
            "key": str(server_key_file),
            "client_ca": str(self.ca_file),
            "clients": self._client_metadata(),
            "scopes": SCOPE.split() + [FORBIDDEN_SCOPE],
            "resources": {
                **{
                    resource: {
                        "scope": SCOPE,
                        "accessTokenTTL": ACCESS_TOKEN_TTL,
                        "accessTokenFormat": "opaque",
                    }
                    for resource in (RESOURCE,) + self.extra_resources
                },
                JWT_RESOURCE: {
                    "scope": SCOPE,
                    "accessTokenTTL": ACCESS_TOKEN_TTL,
                    "accessTokenFormat": "jwt",
                    "jwt": {"sign": {"alg": "ES256"}},
                },
            },
            "default_resource": self.default_resource,
            "dpop_require_nonce": self.dpop_require_nonce,
        }
        # The config holds client secrets: readable by this user only.
        fd = os.open(str(self.config_file), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(config, handle)

    def _wait_ready(self) -> int:
        process = self._process
        assert process is not None and process.stdout is not None
        lines: queue.Queue[Optional[str]] = queue.Queue()
        self._reader = threading.Thread(target=_read_lines, args=(process.stdout, lines), name="oidc-provider-stdout")
        self._reader.daemon = True
        self._reader.start()
        deadline = time.monotonic() + self.startup_timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RuntimeError(self._failure("did not print READY within {0:g} s".format(self.startup_timeout)))
            try:
                line = lines.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                process.wait(timeout=DEFAULT_STOP_TIMEOUT)
                raise RuntimeError(self._failure("exited with code {0} before READY".format(process.returncode)))
            if line.startswith("READY "):
                return int(line.split()[1])

    def _read_discovery(self) -> None:
        url = self.issuer + "/.well-known/openid-configuration"
        response = requests.get(url, verify=str(self.ca_file), timeout=10)
        if response.status_code != 200:
            raise RuntimeError(self._failure("discovery {0} answered HTTP {1}".format(url, response.status_code)))
        self.discovery = response.json()
        if self.discovery.get("issuer") != self.issuer:
            raise RuntimeError(
                self._failure("discovery issuer {0!r} is not {1!r}".format(self.discovery.get("issuer"), self.issuer))
            )
        self.token_url = self.discovery["token_endpoint"]
        self.revocation_url = self.discovery["revocation_endpoint"]
        self.introspection_url = self.discovery["introspection_endpoint"]

    def _failure(self, problem: str) -> str:
        if self._log is not None:
            self._log.flush()
        try:
            log = self.log_file.read_text(encoding="utf-8", errors="replace")[-2000:]
        except OSError:
            log = ""
        return "oidc-provider test server {0}; its stderr ({1}):\n{2}".format(
            problem, self.log_file, log.strip() or "(empty)"
        )


@pytest.fixture(scope="session")
def oidc_provider(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A running ``OidcProvider`` shared by the session, with its own trustme CA.

    Skips when ``tests/oidc/node_modules`` is missing (run ``npm ci`` there).
    """
    ca = trustme.CA()
    with OidcProvider(ca, tmp_path_factory.mktemp("oidc-provider")) as provider:
        yield provider


@pytest.fixture(scope="session")
def oidc_provider_dpop_nonce(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A running ``OidcProvider`` that demands a server nonce in every DPoP proof.

    Skips when ``tests/oidc/node_modules`` is missing (run ``npm ci`` there).
    """
    ca = trustme.CA()
    directory = tmp_path_factory.mktemp("oidc-provider-dpop-nonce")
    with OidcProvider(ca, directory, dpop_require_nonce=True) as provider:
        yield provider
