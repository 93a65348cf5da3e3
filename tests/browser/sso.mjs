// SSO on the authorize page in a real browser: the sign-in page of an authorization request
// offers the tenant's identity provider (a real OpenID Provider, oidc-provider); the person
// continues there, signs in and consents at the provider, comes back signed in to the
// gateway (created just in time), approves the client and the client gets its code.
// Usage: node sso.mjs <gateway base> <mcp url> <provider login> <screenshot dir>
import http from "node:http";
import crypto from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { chromium } from "playwright-core";
import { accessible } from "./axe.mjs";

const [base, mcpUrl, login, shots] = process.argv.slice(2);
fs.mkdirSync(shots, { recursive: true });
const check = (ok, what) => {
  if (!ok) throw new Error(what);
  console.log(`ok - ${what}`);
};

const received = [];
const receiver = http.createServer((req, res) => {
  const url = new URL(req.url, "http://127.0.0.1");
  if (url.pathname !== "/callback") return res.writeHead(404).end();
  received.push(url);
  res.writeHead(200, { "content-type": "text/html" }).end("<h1>Back in the MCP client</h1>");
});
await new Promise((r) => receiver.listen(0, "127.0.0.1", r));
const redirectUri = `http://127.0.0.1:${receiver.address().port}/callback`;

const registration = await fetch(`${base}/oauth/register`, {
  method: "POST",
  headers: { "content-type": "application/json" },
  body: JSON.stringify({ client_name: "SSO Test IDE", redirect_uris: ["http://127.0.0.1/callback"], token_endpoint_auth_method: "none" }),
});
const client = await registration.json();
check(registration.status === 201, `registered ${client.client_id}`);
const verifier = crypto.randomBytes(32).toString("base64url");
const challenge = crypto.createHash("sha256").update(verifier).digest("base64url");
const authorize = new URL(`${base}/oauth/authorize`);
for (const [k, v] of Object.entries({
  response_type: "code", client_id: client.client_id, redirect_uri: redirectUri, state: "sso",
  code_challenge: challenge, code_challenge_method: "S256", resource: mcpUrl,
})) authorize.searchParams.set(k, v);

const browser = await chromium.launch({ executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium", args: ["--no-sandbox"] });
try {
  const page = await browser.newPage();
  await page.goto(authorize.toString());
  const offer = page.getByRole("link", { name: "Continue with Corp SSO" });
  check(await offer.isVisible(), "the sign-in page offers the tenant's identity provider");
  await page.screenshot({ path: path.join(shots, "sso-offer.png") });
  check(await accessible(page), "sso-offer page: axe finds no serious or critical accessibility violation");
  await offer.click();
  // The provider's own login and consent pages.
  await page.locator("input[name=login]").fill(login);
  await page.locator("input[name=password]").fill("any-password");
  await page.screenshot({ path: path.join(shots, "sso-provider-login.png") });
  await page.getByRole("button", { name: "Sign-in" }).click();
  await page.getByRole("button", { name: "Continue" }).click();
  // Back at the gateway, signed in: the same consent page as after a password.
  await page.getByRole("heading", { name: "Allow access?" }).waitFor();
  check((await page.textContent("body")).includes(login), "back at the gateway, signed in as the provider's user");
  await page.screenshot({ path: path.join(shots, "sso-consent.png") });
  check(await accessible(page), "sso-consent page: axe finds no serious or critical accessibility violation");
  await page.getByRole("button", { name: "Approve" }).click();
  await page.waitForURL((u) => u.toString().startsWith(redirectUri));
  const back = received.at(-1);
  check(back.searchParams.get("state") === "sso" && back.searchParams.has("code"), "the client gets its code");
  const tokenRes = await fetch(`${base}/oauth/token`, {
    method: "POST",
    headers: { "content-type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams({
      grant_type: "authorization_code", code: back.searchParams.get("code"), redirect_uri: redirectUri,
      client_id: client.client_id, code_verifier: verifier,
    }).toString(),
  });
  const tokens = await tokenRes.json();
  check(tokenRes.status === 200 && tokens.access_token, "the code is exchanged for tokens");
  const init = await fetch(mcpUrl, {
    method: "POST",
    headers: { authorization: `Bearer ${tokens.access_token}`, "content-type": "application/json", accept: "application/json, text/event-stream" },
    body: JSON.stringify({ jsonrpc: "2.0", id: 1, method: "initialize", params: { protocolVersion: "2025-06-18", capabilities: {}, clientInfo: { name: "sso", version: "1" } } }),
  });
  check(init.status === 200, "the token opens an MCP session through the gateway");
} finally {
  await browser.close();
  receiver.close();
}
