"""Cost of one client assertion: microseconds per ``apply()`` for each signing algorithm.

Each attempt of a token request signs a fresh assertion, so this is the extra CPU per
fetch that private_key_jwt and client_secret_jwt add. Keys are made in memory (RSA 2048,
EC P-256, EC P-384); the loop is best of 5 rounds of a fixed count, a few seconds in all.

Usage: python bench/sign_cost.py   (needs: pip install 'oauth-gateway[jwt]')
"""

from __future__ import annotations

import os
import platform
import sys
import tempfile
import timeit

import cryptography
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from oauth_gateway._jwt import load_private_key
from oauth_gateway.client_auth import ClientSecretJwt, PrivateKeyJwt

ROUNDS = 5
NUMBER = 200
TOKEN_URL = "https://idp.example.test/oauth2/token"
ISSUER = "https://idp.example.test"


def _key_file(directory: str, name: str, key: object) -> str:
    path = os.path.join(directory, name)
    pem = key.private_bytes(  # type: ignore[attr-defined]
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with open(path, "wb") as handle:
        handle.write(pem)
    os.chmod(path, 0o600)
    return path


def _per_call_us(auth: object) -> float:
    def one() -> None:
        auth.apply({}, {}, token_endpoint=TOKEN_URL, issuer=ISSUER, now=1_700_000_000.0)  # type: ignore[attr-defined]

    one()
    best = min(timeit.repeat(one, number=NUMBER, repeat=ROUNDS))
    return best / NUMBER * 1e6


def main() -> None:
    with tempfile.TemporaryDirectory() as directory:
        rsa_file = _key_file(directory, "rsa.pem", rsa.generate_private_key(public_exponent=65537, key_size=2048))
        p256_file = _key_file(directory, "p256.pem", ec.generate_private_key(ec.SECP256R1()))
        p384_file = _key_file(directory, "p384.pem", ec.generate_private_key(ec.SECP384R1()))
        rows = [
            ("ES256 (EC P-256)", PrivateKeyJwt("cid", load_private_key(p256_file))),
            ("ES384 (EC P-384)", PrivateKeyJwt("cid", load_private_key(p384_file))),
            ("RS256 (RSA 2048)", PrivateKeyJwt("cid", load_private_key(rsa_file))),
            ("PS256 (RSA 2048)", PrivateKeyJwt("cid", load_private_key(rsa_file), "PS256")),
            ("HS256 (client_secret_jwt)", ClientSecretJwt("cid", "s" * 48)),
        ]
        print(
            "Python %s, PyJWT %s, cryptography %s, %s"
            % (platform.python_version(), jwt.__version__, cryptography.__version__, platform.machine())
        )
        for label, auth in rows:
            print("%-28s %8.1f us per assertion" % (label, _per_call_us(auth)))


if __name__ == "__main__":
    sys.exit(main())
