// "Sign in with mcpgate" in a real browser: Debian's chromium, driven by playwright-core, plays
// the person while this script plays the MCP client (registration, PKCE, its loopback redirect
// URI, the token exchange, tools/list through the gateway).
//   1. sign-in page → Deny on the consent page → the client gets error=access_denied
//   2. retry → Approve → the chained form for the user's own API key → back at the client with
//      a code → tokens → tools of both members of the virtual server
// Screenshots of the sign-in, consent and key pages go to <screenshot dir>.
// Usage: node sign-in.mjs <gateway base> <mcp url> <email> <password> <screenshot dir>
import http from "node:http";
import crypto from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { chromium } from "playwright-core";
import { accessible } from "./axe.mjs";

const [base, mcpUrl, email, password, shots] = process.argv.slice(2);
fs.mkdirSync(shots, { recursive: true });
const check = (ok, what) => {
  if (!ok) throw new Error(what);
  console.log(`ok - ${what}`);
};

// The client's redirect receiver, on a loopback port like a desktop IDE's.
const received = [];
const receiver = http.createServer((req, res) => {
  const url = new URL(req.url, "http://127.0.0.1");
  // Only the redirect itself counts: the browser also asks this origin for a favicon.
  if (url.pathname !== "/callback") {
    res.writeHead(404).end();
    return;
  }
  received.push(url);
  res.writeHead(200, { "content-type": "text/html" });
  res.end("<h1>Back in the MCP client</h1>");
});
await new Promise((r) => receiver.listen(0, "127.0.0.1", r));
const redirectUri = `http://127.0.0.1:${receiver.address().port}/callback`;

const registration = await fetch(`${base}/oauth/register`, {
  method: "POST",
  headers: { "content-type": "application/json" },
  body: JSON.stringify({ client_name: "Browser Test IDE", redirect_uris: ["http://127.0.0.1/callback"], token_endpoint_auth_method: "none" }),
});
const client = await registration.json();
check(registration.status === 201, `registered ${client.client_id}`);

const pkce = () => {
  const verifier = crypto.randomBytes(32).toString("base64url");
  return { verifier, challenge: crypto.createHash("sha256").update(verifier).digest("base64url") };
};
const authorizeUrl = (challenge, state) => {
  const u = new URL(`${base}/oauth/authorize`);
  for (const [k, v] of Object.entries({
    response_type: "code", client_id: client.client_id, redirect_uri: redirectUri, state,
    code_challenge: challenge, code_challenge_method: "S256", resource: mcpUrl,
  })) u.searchParams.set(k, v);
  return u.toString();
};

const browser = await chromium.launch({ executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium", args: ["--no-sandbox"] });
try {
  const page = await browser.newPage();

  // 1. Sign in, then Deny.
  const first = pkce();
  await page.goto(authorizeUrl(first.challenge, "first"));
  check(await page.getByRole("heading", { name: "Sign in to mcpgate" }).isVisible(), "the sign-in page is shown");
  await page.screenshot({ path: path.join(shots, "sign-in.png") });
  check(await accessible(page), "sign-in page: axe finds no serious or critical accessibility violation");
  await page.getByLabel("Email").fill(email);
  await page.getByLabel("Password").fill(password);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("heading", { name: "Allow access?" }).waitFor();
  const consent = await page.textContent("body");
  check(consent.includes("Browser Test IDE") && consent.includes(mcpUrl) && consent.includes("127.0.0.1"),
    "the consent page names the client, the MCP URL and where the answer goes");
  await page.screenshot({ path: path.join(shots, "consent.png") });
  check(await accessible(page), "consent page: axe finds no serious or critical accessibility violation");
  await page.getByRole("button", { name: "Deny" }).click();
  await page.waitForURL((u) => u.toString().startsWith(redirectUri));
  const denied = received.at(-1);
  check(denied.searchParams.get("error") === "access_denied" && denied.searchParams.get("state") === "first",
    "Deny sends the client error=access_denied with its state");

  // 2. Retry: Approve, then the chained key form, then back at the client.
  const second = pkce();
  await page.goto(authorizeUrl(second.challenge, "second"));
  await page.getByRole("button", { name: "Approve" }).click();
  await page.getByRole("heading", { name: /Your credential for/ }).waitFor();
  check((await page.textContent("body")).includes("Step 1 of 1 of your sign-in"),
    "Approve leads on to the form for the user's own API key, which says where it is in the sign-in");
  await page.screenshot({ path: path.join(shots, "key-form.png") });
  check(await accessible(page), "key-form page: axe finds no serious or critical accessibility violation");
  await page.getByLabel("API_KEY").fill("browser-test-key");
  await page.getByRole("button", { name: "Save" }).click();
  await page.waitForURL((u) => u.toString().startsWith(redirectUri));
  const approved = received.at(-1);
  check(approved.searchParams.get("state") === "second" && approved.searchParams.get("iss") === base && approved.searchParams.has("code"),
    "the browser returns to the client with a code, its state and iss, with no page in between");

  const tokenRes = await fetch(`${base}/oauth/token`, {
    method: "POST",
    headers: { "content-type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams({
      grant_type: "authorization_code", code: approved.searchParams.get("code"), redirect_uri: redirectUri,
      client_id: client.client_id, code_verifier: second.verifier,
    }).toString(),
  });
  const tokens = await tokenRes.json();
  check(tokenRes.status === 200 && tokens.refresh_token, "the code is exchanged for tokens");

  const rpc = async (body, session) => {
    const res = await fetch(mcpUrl, {
      method: "POST",
      headers: {
        authorization: `Bearer ${tokens.access_token}`, "content-type": "application/json",
        accept: "application/json, text/event-stream", ...(session ? { "mcp-session-id": session } : {}),
      },
      body: JSON.stringify(body),
    });
    const text = await res.text();
    const data = text.split("\n").find((l) => l.startsWith("data: "));
    const json = text.startsWith("{") ? JSON.parse(text) : data ? JSON.parse(data.slice(6)) : null;
    return { status: res.status, session: res.headers.get("mcp-session-id"), json };
  };
  const init = await rpc({ jsonrpc: "2.0", id: 1, method: "initialize", params: { protocolVersion: "2025-06-18", capabilities: {}, clientInfo: { name: "browser-test", version: "1" } } });
  check(init.status === 200 && !init.json.result._meta?.["mcpgate/actions"],
    "the access token opens an MCP session through the gateway, with no member waiting for an action");
  await rpc({ jsonrpc: "2.0", method: "notifications/initialized" }, init.session);
  const list = await rpc({ jsonrpc: "2.0", id: 2, method: "tools/list" }, init.session);
  const names = list.json.result.tools.map((t) => t.name);
  check(names.length > 0, `tools/list answers (${names.length} tools from both members)`);
} finally {
  await browser.close();
  receiver.close();
}
console.log(`screenshots in ${shots}`);
