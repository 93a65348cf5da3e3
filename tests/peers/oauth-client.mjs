// The official TypeScript SDK as an MCP client that signs in with the gateway (its `auth()`
// flow through StreamableHTTPClientTransport): discovery from the 401, dynamic registration,
// PKCE, the browser step done headlessly over HTTP (sign-in form, Approve), then tools/call.
//
//   node oauth-client.mjs first <mcp url> <email> <password> <state file>
//     sign in, call a tool, refresh, call again
//   node oauth-client.mjs again <mcp url> <email> <password> <state file>
//     with the saved (now expired) sign-in: the refresh is refused, the SDK starts a new
//     sign-in, and the tool works again
// Prints one line per step; exits non-zero on any failure.
import fs from "node:fs";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { auth, UnauthorizedError } from "@modelcontextprotocol/sdk/client/auth.js";
import { signInAndApprove } from "./headless-sign-in.mjs";

const [phase, mcpUrl, email, password, stateFile] = process.argv.slice(2);
const REDIRECT = "http://127.0.0.1:40200/callback";
const saved = fs.existsSync(stateFile) ? JSON.parse(fs.readFileSync(stateFile, "utf8")) : {};
const persist = () => fs.writeFileSync(stateFile, JSON.stringify(saved));

let authorizationUrl;
const provider = {
  get redirectUrl() { return REDIRECT; },
  get clientMetadata() {
    return {
      client_name: "TypeScript SDK test client",
      redirect_uris: [REDIRECT],
      grant_types: ["authorization_code", "refresh_token"],
      response_types: ["code"],
      token_endpoint_auth_method: "none",
    };
  },
  clientInformation: () => saved.client,
  saveClientInformation: (info) => { saved.client = info; persist(); console.log(`registered ${info.client_id}`); },
  tokens: () => saved.tokens,
  saveTokens: (tokens) => { saved.tokens = tokens; persist(); },
  redirectToAuthorization: (url) => { authorizationUrl = url; },
  saveCodeVerifier: (v) => { saved.verifier = v; persist(); },
  codeVerifier: () => saved.verifier,
  invalidateCredentials: (scope) => {
    if (scope === "all" || scope === "tokens") delete saved.tokens;
    if (scope === "all" || scope === "client") delete saved.client;
    persist();
  },
};

// Watches the token endpoint so the output can say what happened there.
const watchingFetch = async (url, init) => {
  const res = await fetch(url, init);
  if (String(url).endsWith("/oauth/token") && String(init?.body ?? "").includes("grant_type=refresh_token")) {
    console.log(res.ok ? "refresh accepted" : `refresh refused ${res.status}`);
  }
  return res;
};


/// Connects (signing in through the browser when the gateway asks), calls `add`.
async function connectAndCall() {
  const open = () => new StreamableHTTPClientTransport(new URL(mcpUrl), { authProvider: provider, fetch: watchingFetch });
  let transport = open();
  let client = new Client({ name: "ts-oauth", version: "1" });
  try {
    await client.connect(transport);
  } catch (e) {
    if (!(e instanceof UnauthorizedError) || !authorizationUrl) throw e;
    const back = new URL(await signInAndApprove(String(authorizationUrl), { email, password }));
    if (back.searchParams.get("iss") !== new URL(mcpUrl).origin) throw new Error(`iss missing: ${back}`);
    await transport.finishAuth(back.searchParams.get("code"));
    console.log(phase === "first" ? "signed in" : "signed in again");
    transport = open();
    client = new Client({ name: "ts-oauth", version: "1" });
    await client.connect(transport);
  }
  const result = await client.callTool({ name: "add", arguments: { a: 40, b: 2 } });
  console.log(`tool result ${result.content[0].text}`);
  await client.close();
}

await connectAndCall();
if (phase === "first") {
  const before = saved.tokens.access_token;
  const outcome = await auth(provider, { serverUrl: new URL(mcpUrl), fetchFn: watchingFetch });
  if (outcome !== "AUTHORIZED" || saved.tokens.access_token === before) throw new Error("refresh did not give new tokens");
  console.log("refreshed");
  await connectAndCall();
}
