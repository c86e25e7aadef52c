// A real, independent OAuth 2.0 authorization server for oauth-gateway's conformance tests.
//
// It wraps the `oidc-provider` package (8.x) with only the client credentials grant,
// RFC 8707 resource indicators, RFC 7009 revocation, RFC 7662 introspection, RFC 8705
// tls_client_auth and certificate-bound access tokens, RFC 9449 DPoP (with server nonces),
// and RFC 7523 JWT client authentication (private_key_jwt with the client's `jwks`,
// client_secret_jwt) enabled, and serves HTTPS itself on 127.0.0.1 so that the peer
// certificate of each TLS connection reaches the mTLS client authentication.
//
// Usage: node server.js CONFIG_JSON_PATH   (or OIDC_TEST_SERVER_CONFIG=CONFIG_JSON_PATH)
//
// The config file (written by tests/oidc_provider.py) holds:
//   port             TCP port on 127.0.0.1, 0 picks a free one
//   cert, key        PEM paths of the server certificate and its key
//   client_ca        PEM path of the CA that issued tls_client_auth client certificates
//   clients          oidc-provider client metadata; grant_types, response_types and
//                    redirect_uris default to a client-credentials-only client. A
//                    private_key_jwt client carries its public keys as `jwks`.
//   scopes           scope values the server knows (default ["read", "write", "admin"])
//   resources        {resource indicator: {scope, accessTokenTTL, accessTokenFormat}}
//   default_resource resource used when a token request has no `resource` (null: none)
//   dpop_require_nonce  true: every DPoP proof must carry a server nonce (400
//                    use_dpop_nonce with a DPoP-Nonce header otherwise); default false,
//                    nonces are then only handed out, never demanded
//
// Clients opt in to bound tokens with `dpop_bound_access_tokens: true` (a token request
// without a DPoP proof is then invalid_grant) or `tls_client_certificate_bound_access_tokens:
// true` (the token's cnf carries the x5t#S256 of the client certificate). A DPoP proof on
// any client's token request binds that token (token_type DPoP, cnf.jkt).
//
// Once listening it prints exactly one line `READY <port>` on stdout. oidc-provider may
// print NOTICE lines on stdout before it, and warnings on stderr. Nothing here prints the
// config, which holds client secrets.
import { X509Certificate, generateKeyPairSync, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import https from 'node:https';
import process from 'node:process';

import Provider, { errors } from 'oidc-provider';

const DEFAULT_RESOURCE = 'https://api.example.test/mcp';

function loadConfig() {
  const path = process.argv[2] || process.env.OIDC_TEST_SERVER_CONFIG;
  if (!path) {
    throw new Error('config: no path given; pass the JSON config path as the first argument '
      + 'or set OIDC_TEST_SERVER_CONFIG');
  }
  let config;
  try {
    config = JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    // The message names the file and the parse problem, never the content (it has secrets).
    throw new Error(`config: cannot read JSON from ${path}: ${err.code || err.name}; `
      + 'write the file with tests/oidc_provider.py');
  }
  for (const field of ['cert', 'key', 'client_ca']) {
    if (typeof config[field] !== 'string' || !config[field]) {
      throw new Error(`config.${field}: missing; set it to a PEM file path`);
    }
  }
  if (!Array.isArray(config.clients) || config.clients.length === 0) {
    throw new Error('config.clients: missing or empty; give at least one client metadata object');
  }
  return config;
}

// Parses an RFC 4514 distinguished name into a sorted list of "TYPE=value" strings, so that
// "CN=a,OU=b,O=c" and the same attributes in another order compare equal. Handles backslash
// escapes (`\,` and `\2C`); multi-valued RDNs (`+`) are split like separate attributes.
function parseDn(dn) {
  const parts = [];
  let current = '';
  for (let i = 0; i < dn.length; i += 1) {
    const ch = dn[i];
    if (ch === '\\' && i + 1 < dn.length) {
      const hex = dn.slice(i + 1, i + 3);
      if (/^[0-9a-fA-F]{2}$/.test(hex)) {
        current += String.fromCharCode(parseInt(hex, 16));
        i += 2;
      } else {
        current += dn[i + 1];
        i += 1;
      }
    } else if (ch === ',' || ch === '+') {
      parts.push(current);
      current = '';
    } else {
      current += ch;
    }
  }
  parts.push(current);
  return parts
    .map((part) => {
      const eq = part.indexOf('=');
      if (eq === -1) return part.trim();
      return `${part.slice(0, eq).trim().toUpperCase()}=${part.slice(eq + 1).trim()}`;
    })
    .filter(Boolean)
    .sort();
}

// The subject of a getPeerCertificate() object ({CN: 'x', OU: ['a', 'b']}) in parseDn's form.
function subjectEntries(subject) {
  const entries = [];
  for (const [type, value] of Object.entries(subject || {})) {
    for (const one of Array.isArray(value) ? value : [value]) {
      entries.push(`${type.toUpperCase()}=${one}`);
    }
  }
  return entries.sort();
}

function peerCertificate(ctx) {
  const { socket } = ctx;
  if (!socket || typeof socket.getPeerCertificate !== 'function') return undefined;
  const peer = socket.getPeerCertificate(false);
  if (!peer || !peer.raw) return undefined;
  return peer;
}

// subjectaltname looks like 'DNS:a.test, email:c@example.test, IP Address:127.0.0.1'.
function sanValues(peer, prefix) {
  return (peer.subjectaltname || '')
    .split(', ')
    .filter((entry) => entry.startsWith(`${prefix}:`))
    .map((entry) => entry.slice(prefix.length + 1));
}

function certificateSubjectMatches(ctx, property, expected) {
  const peer = peerCertificate(ctx);
  if (!peer) return false;
  switch (property) {
    case 'tls_client_auth_subject_dn': {
      const want = parseDn(expected);
      const got = subjectEntries(peer.subject);
      return want.length === got.length && want.every((entry, i) => entry === got[i]);
    }
    case 'tls_client_auth_san_dns':
      return sanValues(peer, 'DNS').includes(expected);
    case 'tls_client_auth_san_email':
      return sanValues(peer, 'email').includes(expected);
    case 'tls_client_auth_san_uri':
      return sanValues(peer, 'URI').includes(expected);
    case 'tls_client_auth_san_ip':
      return sanValues(peer, 'IP Address').includes(expected);
    default:
      return false;
  }
}

function clientMetadata(client) {
  return {
    grant_types: ['client_credentials'],
    response_types: [],
    redirect_uris: [],
    ...client,
  };
}

function signingKeys() {
  // Fresh keys each run: nothing is signed with them (tokens are opaque), but without
  // them oidc-provider falls back to its published development keys and warns.
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  return { keys: [{ ...privateKey.export({ format: 'jwk' }), use: 'sig', alg: 'ES256' }] };
}

function buildProvider(issuer, config) {
  const resources = config.resources || {
    [DEFAULT_RESOURCE]: { scope: 'read write', accessTokenTTL: 3600, accessTokenFormat: 'opaque' },
  };
  const defaultResource = config.default_resource === undefined
    ? DEFAULT_RESOURCE : config.default_resource;

  return new Provider(issuer, {
    clients: config.clients.map(clientMetadata),
    scopes: config.scopes || ['read', 'write', 'admin'],
    clientAuthMethods: [
      'client_secret_basic', 'client_secret_post', 'tls_client_auth',
      'private_key_jwt', 'client_secret_jwt',
    ],
    // oidc-provider's default list lacks ES384, which oauth-gateway signs with for P-384 keys.
    enabledJWA: {
      clientAuthSigningAlgValues: ['HS256', 'RS256', 'PS256', 'ES256', 'ES384'],
      // What oauth-gateway's DPoP keys sign with (EC P-256 by default, P-384, RSA).
      dPoPSigningAlgValues: ['ES256', 'ES384', 'RS256', 'PS256'],
    },
    jwks: signingKeys(),
    // No ID tokens are issued here; this only has to agree with the one signing key.
    clientDefaults: { id_token_signed_response_alg: 'ES256' },
    cookies: { keys: [randomBytes(32).toString('hex')] },
    features: {
      devInteractions: { enabled: false },
      dPoP: {
        enabled: true,
        // Nonces are stateless HMACs of a time window under this secret.
        nonceSecret: randomBytes(32),
        requireNonce() {
          return config.dpop_require_nonce === true;
        },
      },
      clientCredentials: { enabled: true },
      revocation: { enabled: true },
      introspection: { enabled: true },
      resourceIndicators: {
        enabled: true,
        // Called with oneOf only for code/refresh exchanges; client credentials calls it
        // without, and a request without `resource` then gets this one.
        async defaultResource(ctx, client, oneOf) {
          if (oneOf) return oneOf;
          return defaultResource || undefined;
        },
        async getResourceServerInfo(ctx, resourceIndicator) {
          const info = resources[resourceIndicator];
          if (!info) {
            throw new errors.InvalidTarget(`unknown resource ${resourceIndicator}`);
          }
          return { accessTokenFormat: 'opaque', ...info };
        },
        async useGrantedResource() {
          return true;
        },
      },
      mTLS: {
        enabled: true,
        tlsClientAuth: true,
        selfSignedTlsClientAuth: false,
        certificateBoundAccessTokens: true,
        getCertificate(ctx) {
          const peer = peerCertificate(ctx);
          return peer ? new X509Certificate(peer.raw) : undefined;
        },
        certificateAuthorized(ctx) {
          return Boolean(peerCertificate(ctx)) && ctx.socket.authorized === true;
        },
        certificateSubjectMatches,
      },
    },
  });
}

function main() {
  const config = loadConfig();
  const server = https.createServer({
    cert: readFileSync(config.cert),
    key: readFileSync(config.key),
    ca: readFileSync(config.client_ca),
    // Ask for a client certificate but let the connection through without one (or with an
    // unverified one): the tls_client_auth check decides, and answers invalid_client.
    requestCert: true,
    rejectUnauthorized: false,
  });

  server.on('error', (err) => {
    console.error(`server error: ${err.message}`);
    process.exit(1);
  });

  server.listen(config.port || 0, '127.0.0.1', () => {
    const { port } = server.address();
    const provider = buildProvider(`https://127.0.0.1:${port}`, config);
    provider.on('server_error', (ctx, err) => {
      console.error(`server_error: ${err.message}`);
    });
    server.on('request', provider.callback());
    process.stdout.write(`READY ${port}\n`);
  });

  const stop = () => server.close(() => process.exit(0));
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

try {
  main();
} catch (err) {
  console.error(err.message);
  process.exit(2);
}
