// Latency of the gateway's OAuth server, measured from one client on the same machine:
// a whole reconnect (authorize with remembered consent → code → token), a refresh (rotation:
// a new refresh token and a newly signed access token each time), a virtual account's
// client-credentials JWT; sequentially, then 8 at a time.
// Usage: node bench/oauth.mjs <gateway base> <mcp url> <email> <password> <va client id> <va token> [rounds]
import crypto from "node:crypto";
import { signInAndApprove } from "../tests/peers/headless-sign-in.mjs";

const [base, mcpUrl, email, password, vaId, vaToken, roundsArg] = process.argv.slice(2);
const rounds = Number(roundsArg ?? 300);
const redirect = "http://127.0.0.1:45555/callback";

const form = (body) => ({ method: "POST", headers: { "content-type": "application/x-www-form-urlencoded" }, body: new URLSearchParams(body).toString() });
const token = async (body, headers = {}) => {
  const init = form(body);
  init.headers = { ...init.headers, ...headers };
  const res = await fetch(`${base}/oauth/token`, init);
  const json = await res.json();
  if (res.status !== 200) throw new Error(JSON.stringify(json));
  return json;
};
const stats = (name, samples) => {
  samples.sort((a, b) => a - b);
  const at = (q) => samples[Math.min(samples.length - 1, Math.floor(q * samples.length))].toFixed(2);
  console.log(`${name.padEnd(44)} n=${String(samples.length).padStart(4)}  p50 ${at(0.5)} ms  p99 ${at(0.99)} ms`);
};
const time = async (f) => {
  const t = performance.now();
  await f();
  return performance.now() - t;
};

const client = await (await fetch(`${base}/oauth/register`, {
  method: "POST", headers: { "content-type": "application/json" },
  body: JSON.stringify({ client_name: "bench", redirect_uris: [redirect], token_endpoint_auth_method: "none" }),
})).json();

// One reconnect: the user's browser session and remembered consent make it redirects only.
let cookie;
const reconnect = async () => {
  const verifier = crypto.randomBytes(32).toString("base64url");
  const challenge = crypto.createHash("sha256").update(verifier).digest("base64url");
  const url = `${base}/oauth/authorize?` + new URLSearchParams({
    response_type: "code", client_id: client.client_id, redirect_uri: redirect, state: "s",
    code_challenge: challenge, code_challenge_method: "S256", resource: mcpUrl,
  });
  const back = cookie
    ? (await fetch(url, { redirect: "manual", headers: { cookie } })).headers.get("location")
    : await signInAndApprove(url, { email, password });
  const code = new URL(back).searchParams.get("code");
  return token({ grant_type: "authorization_code", code, redirect_uri: redirect, client_id: client.client_id, code_verifier: verifier });
};
// The first one signs in (and approves); later ones reuse the session cookie.
await reconnect();
{
  const res = await fetch(`${base}/api/v1/auth/login`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ email, password }) });
  cookie = res.headers.getSetCookie()[0].split(";")[0];
}

const reconnects = [];
for (let i = 0; i < Math.min(rounds, 200); i++) reconnects.push(await time(reconnect));
stats("reconnect (authorize → code → tokens)", reconnects);

let { refresh_token: refresh } = await reconnect();
const refreshes = [];
for (let i = 0; i < rounds; i++) {
  refreshes.push(await time(async () => {
    refresh = (await token({ grant_type: "refresh_token", refresh_token: refresh, client_id: client.client_id })).refresh_token;
  }));
}
stats("refresh (rotation + new JWT)", refreshes);

const basic = { authorization: `Basic ${Buffer.from(`${encodeURIComponent(vaId)}:${vaToken}`).toString("base64")}` };
const machine = [];
for (let i = 0; i < rounds; i++) {
  machine.push(await time(() => token({ grant_type: "client_credentials", resource: mcpUrl }, basic)));
}
stats("client_credentials (virtual account)", machine);

// 8 clients refreshing their own sign-ins at once.
const families = await Promise.all(Array.from({ length: 8 }, () => reconnect()));
const concurrent = [];
const started = performance.now();
await Promise.all(families.map(async (f) => {
  let r = f.refresh_token;
  for (let i = 0; i < rounds / 8; i++) {
    concurrent.push(await time(async () => {
      r = (await token({ grant_type: "refresh_token", refresh_token: r, client_id: client.client_id })).refresh_token;
    }));
  }
}));
stats("refresh, 8 concurrent clients", concurrent);
console.log(`refresh throughput at 8 concurrent: ${(concurrent.length / ((performance.now() - started) / 1000)).toFixed(0)} /s`);
