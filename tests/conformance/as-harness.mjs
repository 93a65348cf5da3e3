// Runs the conformance suite's authorization-server scenarios against mcpgate's own OAuth
// server, doing the browser step the suite leaves to a person:
//   1. registers a public client (RFC 7591) whose redirect URI is the suite's callback server,
//   2. starts `conformance authorization --url <issuer> --client-id … --resource <MCP URL>`,
//   3. when the suite prints the authorization URL, signs in and approves over HTTP (the same
//      forms a browser would fill) and follows the redirect to the suite's callback.
// Usage: node as-harness.mjs <conformance entry> <issuer> <mcp url> <email> <password> <output dir>
import { spawn } from "node:child_process";
import net from "node:net";
import readline from "node:readline";

const [entry, issuer, mcpUrl, email, password, outputDir] = process.argv.slice(2);

const freePort = () =>
  new Promise((resolve) => {
    const s = net.createServer();
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });

async function browse(url) {
  let cookie = "";
  let current = url;
  const hidden = (page, name) => {
    const m = page.match(new RegExp(`name="${name}" value="([^"]*)"`));
    if (!m) throw new Error(`no ${name} on the page`);
    return m[1].replaceAll("&quot;", '"').replaceAll("&#39;", "'").replaceAll("&lt;", "<").replaceAll("&gt;", ">").replaceAll("&amp;", "&");
  };
  const send = async (target, body) => {
    const res = await fetch(target, {
      method: body ? "POST" : "GET",
      redirect: "manual",
      headers: { cookie, ...(body ? { "content-type": "application/x-www-form-urlencoded" } : {}) },
      body: body ? new URLSearchParams(body).toString() : undefined,
    });
    for (const c of res.headers.getSetCookie()) cookie = c.split(";")[0];
    return res;
  };
  for (let i = 0; i < 10; i++) {
    let res = await send(current);
    if (res.status === 200) {
      const page = await res.text();
      if (page.includes('action="/oauth/authorize/sign-in"')) {
        console.log("[harness] signing in");
        res = await send(`${issuer}/oauth/authorize/sign-in`, { email, password, return_to: hidden(page, "return_to") });
      } else if (page.includes('action="/oauth/authorize/decision"')) {
        console.log("[harness] approving");
        res = await send(`${issuer}/oauth/authorize/decision`, {
          csrf_token: hidden(page, "csrf_token"), request: hidden(page, "request"), decision: "approve",
        });
      } else {
        throw new Error(`unexpected page at ${current}: ${page.slice(0, 400)}`);
      }
    }
    if (res.status < 300 || res.status >= 400) throw new Error(`unexpected ${res.status} at ${current}`);
    const location = new URL(res.headers.get("location"), issuer).toString();
    if (!location.startsWith(issuer)) return location;
    current = location;
  }
  throw new Error("the authorization did not end");
}

const port = await freePort();
const registration = await fetch(`${issuer}/oauth/register`, {
  method: "POST",
  headers: { "content-type": "application/json" },
  body: JSON.stringify({
    client_name: "MCP conformance suite",
    redirect_uris: [`http://127.0.0.1:${port}/callback`],
    token_endpoint_auth_method: "none",
    grant_types: ["authorization_code", "refresh_token"],
  }),
});
const client = await registration.json();
if (registration.status !== 201) throw new Error(`registration failed: ${JSON.stringify(client)}`);
console.log(`[harness] registered ${client.client_id}, callback port ${port}`);

const suite = spawn(process.execPath, [entry, "authorization", "--url", issuer, "--client-id", client.client_id,
  "--resource", mcpUrl, "--port", String(port), "-o", outputDir], { stdio: ["ignore", "pipe", "inherit"] });
readline.createInterface({ input: suite.stdout }).on("line", (line) => {
  console.log(line);
  if (line.startsWith(`${issuer}/oauth/authorize?`)) {
    browse(line)
      .then((callback) => fetch(callback))
      .then((res) => console.log(`[harness] delivered the code to the suite's callback (${res.status})`))
      .catch((e) => { console.error(`[harness] ${e.message}`); suite.kill(); });
  }
});
suite.on("exit", (code) => process.exit(code ?? 1));
