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
import { signInAndApprove } from "../peers/headless-sign-in.mjs";

const [entry, issuer, mcpUrl, email, password, outputDir] = process.argv.slice(2);

const freePort = () =>
  new Promise((resolve) => {
    const s = net.createServer();
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });


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
    signInAndApprove(line, { email, password })
      .then((callback) => fetch(callback))
      .then((res) => console.log(`[harness] delivered the code to the suite's callback (${res.status})`))
      .catch((e) => { console.error(`[harness] ${e.message}`); suite.kill(); });
  }
});
suite.on("exit", (code) => process.exit(code ?? 1));
