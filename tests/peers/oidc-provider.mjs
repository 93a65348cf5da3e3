// A real OpenID Provider for the tests: `oidc-provider` (a certified implementation) on
// loopback, with its development login form (any login, any password).
//
// Environment:
//   PORT       the port to listen on
//   KEY_ID     the `kid` of the RSA signing key generated at start (a restart with another
//              KEY_ID is a key rotation)
//   CLIENTS    JSON array of client metadata (client_id, client_secret, redirect_uris, ...)
//   ACCOUNTS_FILE  a JSON file: login -> claims ({email, email_verified, name, groups}), read
//              at every sign-in so a test can change someone's claims; a login not listed
//              gets {email: <login>, email_verified: true}
//
// Prints "listening <issuer>" once it accepts connections.
import { generateKeyPairSync } from 'node:crypto';
import { readFileSync } from 'node:fs';
import Provider from 'oidc-provider';

const port = Number(process.env.PORT || 0);
const issuer = `http://127.0.0.1:${port}`;
const clients = JSON.parse(process.env.CLIENTS || '[]');
function claimsOf(login) {
  const file = process.env.ACCOUNTS_FILE;
  const accounts = file ? JSON.parse(readFileSync(file, 'utf8')) : {};
  const known = accounts[login];
  return known ? { ...known } : { email: login, email_verified: true };
}

// Access tokens for this audience are JWTs (machine clients use client credentials).
const API_AUDIENCE = 'https://mcp.example.test/';
const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const signingKey = { ...privateKey.export({ format: 'jwk' }), kid: process.env.KEY_ID || 'k1', alg: 'RS256', use: 'sig' };

const provider = new Provider(issuer, {
  clients,
  jwks: { keys: [signingKey] },
  // ID tokens carry the claims of the scopes granted, so the gateway reads them there.
  conformIdTokenClaims: false,
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name'],
    groups: ['groups'],
  },
  scopes: ['openid', 'email', 'profile', 'groups', 'offline_access'],
  findAccount: async (_ctx, id) => ({
    accountId: id,
    claims: async () => ({ sub: id, ...claimsOf(id) }),
  }),
  features: {
    devInteractions: { enabled: true },
    clientCredentials: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => API_AUDIENCE,
      useGrantedResource: () => true,
      getResourceServerInfo: () => ({ scope: 'mcp', audience: API_AUDIENCE, accessTokenFormat: 'jwt' }),
    },
  },
  pkce: { required: () => true },
});
provider.proxy = false;

const server = provider.listen(port, '127.0.0.1', () => {
  console.log(`listening ${issuer}`);
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
