// mcpgate as the MCP *client* of the conformance suite's auth scenarios. The suite starts an
// OAuth-protected MCP server and runs `node auth-client.mjs <server-url>`; this harness plays
// the operator and the user around the gateway:
//   1. registers <server-url> as an upstream of tenant `acme` with `oauth2` outbound auth
//      (authorization_code, or client_credentials where the scenario asks; the scenario's
//      pre-registered credentials from MCP_CONFORMANCE_CONTEXT when it gives some),
//   2. completes the user's authorization headlessly (POST /api/v1/me/connections/..., then
//      the provider's redirect back to the gateway's callback),
//   3. calls the scenario's tool through the gateway's MCP URL with a gateway token.
// Discovery, registration, PKCE, scopes, token requests and refreshes are the gateway's own.
// When the gateway answers that the user must authorize (again) — a step-up — the harness
// does, at most 3 times in all.
//
// Env: MCPGATE_URL (gateway base URL), MCPGATE_TOKEN (a tenant admin's PAT), MCPGATE_EMAIL and
//      MCPGATE_PASSWORD (the same person, whose browser the provider returns to),
//      MCP_CONFORMANCE_SCENARIO, MCP_CONFORMANCE_CONTEXT (set by the suite).

const gateway = process.env.MCPGATE_URL;
const token = process.env.MCPGATE_TOKEN;
const upstream = process.argv[2];
const scenario = process.env.MCP_CONFORMANCE_SCENARIO ?? "";
const context = JSON.parse(process.env.MCP_CONFORMANCE_CONTEXT ?? "{}");
const MAX_AUTHORIZATIONS = 3;
// The Client ID Metadata Document the operator publishes for the gateway, in the CIMD scenario.
const CIMD_URL = "https://conformance-test.local/client-metadata.json";

function log(...args) {
  console.error("[auth-client]", ...args);
}

async function api(method, path, body) {
  const response = await fetch(`${gateway}/api/v1${path}`, {
    method,
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  if (!response.ok) throw new Error(`${method} ${path}: ${response.status} ${text}`);
  return text ? JSON.parse(text) : null;
}

function outboundAuth() {
  if (scenario.startsWith("auth/client-credentials")) {
    return { type: "oauth2", grant_type: "client_credentials", client_id: context.client_id, client_secret: context.client_secret };
  }
  const auth = { type: "oauth2", grant_type: "authorization_code" };
  if (context.client_id) auth.client_id = context.client_id;
  if (context.client_secret) auth.client_secret = context.client_secret;
  if (scenario === "auth/basic-cimd") auth.client_id = CIMD_URL;
  return auth;
}

const slug = `conf-${Math.random().toString(16).slice(2, 10)}`;
const mcpUrl = `${gateway}/acme/mcp/${slug}/server`;
let authorizations = 0;
let session;
let nextId = 1;

/// The user's browser session at the gateway: the provider's answer is accepted only in the
/// browser of the person who started the authorization.
let browserCookie;
async function browserSession() {
  if (browserCookie) return browserCookie;
  const response = await fetch(`${gateway}/api/v1/auth/login`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ email: process.env.MCPGATE_EMAIL, password: process.env.MCPGATE_PASSWORD }),
  });
  if (!response.ok) throw new Error(`signing the browser in: ${response.status}`);
  browserCookie = response.headers.getSetCookie().map((c) => c.split(";")[0]).join("; ");
  return browserCookie;
}

/// The user's browser: the authorization URL from the gateway, the provider's redirect, the
/// gateway's callback (with the session cookie, which only the gateway gets).
async function authorize() {
  authorizations += 1;
  if (authorizations > MAX_AUTHORIZATIONS) throw new Error("still not authorized after 3 attempts; giving up");
  const { authorization_url } = await api("POST", `/me/connections/acme/${slug}`, {});
  log("authorizing at", new URL(authorization_url).origin);
  let response = await fetch(authorization_url, { redirect: "manual" });
  const cookie = await browserSession();
  for (let hops = 0; response.status >= 300 && response.status < 400 && hops < 5; hops++) {
    const next = new URL(response.headers.get("location"), response.url);
    const headers = next.origin === new URL(gateway).origin ? { cookie } : {};
    response = await fetch(next, { redirect: "manual", headers });
  }
  const page = await response.text();
  if (response.status !== 200 || !page.includes("Connected")) throw new Error(`the callback answered ${response.status}: ${page}`);
}

async function rpc(method, params, notification = false) {
  const message = { jsonrpc: "2.0", method, ...(params ? { params } : {}) };
  if (!notification) message.id = nextId++;
  const headers = {
    authorization: `Bearer ${token}`,
    "content-type": "application/json",
    accept: "application/json, text/event-stream",
    "mcp-protocol-version": "2025-11-25",
  };
  if (session) headers["mcp-session-id"] = session;
  const response = await fetch(mcpUrl, { method: "POST", headers, body: JSON.stringify(message) });
  session = response.headers.get("mcp-session-id") ?? session;
  const text = await response.text();
  if (notification) return null;
  const messages = (response.headers.get("content-type") ?? "").startsWith("text/event-stream")
    ? text.split("\n").filter((l) => l.startsWith("data:")).map((l) => JSON.parse(l.slice(5)))
    : [JSON.parse(text)];
  const reply = messages.find((m) => m.id === message.id);
  if (!reply) throw new Error(`${method}: HTTP ${response.status} ${text}`);
  return reply;
}

/// One MCP request; when the gateway says the user must authorize (-32003), authorize and retry.
async function call(method, params) {
  for (;;) {
    const reply = await rpc(method, params);
    if (reply.error?.code === -32003 && scenario.startsWith("auth/client-credentials") === false) {
      log(`${method}: ${reply.error.message}`);
      await authorize();
      continue;
    }
    if (reply.error) throw new Error(`${method}: ${JSON.stringify(reply.error)}`);
    return reply.result;
  }
}

async function main() {
  await api("POST", "/tenants/acme/servers", {
    slug,
    display_name: `conformance ${scenario}`,
    kind: "remote",
    url: upstream,
    auth_data: outboundAuth(),
  });
  // The new server reaches the proxy with the next snapshot (~100 ms).
  for (let i = 0; i < 50; i++) {
    const probe = await fetch(mcpUrl, { method: "POST", headers: { authorization: `Bearer ${token}`, "content-type": "application/json" }, body: "{}" });
    if (probe.status !== 404) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  await call("initialize", { protocolVersion: "2025-11-25", capabilities: {}, clientInfo: { name: "mcpgate-conformance", version: "1" } });
  await rpc("notifications/initialized", undefined, true);
  const { tools } = await call("tools/list", {});
  const tool = tools[0]?.name ?? "test-tool";
  const result = await call("tools/call", { name: tool, arguments: {} });
  log(`${tool} answered`, JSON.stringify(result).slice(0, 200));
}

main().then(
  () => process.exit(0),
  (error) => {
    log(error.message);
    process.exit(1);
  },
);
