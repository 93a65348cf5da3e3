// A minimal MCP upstream on the official TypeScript SDK: one `echo` tool over streamable HTTP
// with sessions. bench/load measures the proxy against it beside the Rust fixture, since how
// much the gateway costs relative to a direct call depends on what the upstream itself costs.
// Usage: node tests/peers/node-upstream.mjs PORT   (serves http://127.0.0.1:PORT/mcp)

import http from "node:http";
import { randomUUID } from "node:crypto";
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { StreamableHTTPServerTransport } from "@modelcontextprotocol/sdk/server/streamableHttp.js";
import { isInitializeRequest } from "@modelcontextprotocol/sdk/types.js";
import { z } from "zod";

const port = Number(process.argv[2] ?? 3001);
const sessions = new Map();

function newSession() {
  const server = new McpServer({ name: "bench-node-upstream", version: "1.0.0" });
  server.registerTool("echo", { description: "Echoes a message back", inputSchema: { message: z.string() } }, async ({ message }) => ({
    content: [{ type: "text", text: message }],
  }));
  const transport = new StreamableHTTPServerTransport({
    sessionIdGenerator: () => randomUUID(),
    onsessioninitialized: (id) => sessions.set(id, transport),
  });
  transport.onclose = () => transport.sessionId && sessions.delete(transport.sessionId);
  return server.connect(transport).then(() => transport);
}

http
  .createServer(async (req, res) => {
    if (!req.url.startsWith("/mcp")) return res.writeHead(404).end();
    let body = "";
    for await (const chunk of req) body += chunk;
    const message = body ? JSON.parse(body) : undefined;
    let transport = sessions.get(req.headers["mcp-session-id"]);
    if (!transport) {
      if (req.method !== "POST" || !isInitializeRequest(message)) {
        return res.writeHead(404, { "content-type": "application/json" }).end('{"error":"unknown session"}');
      }
      transport = await newSession();
    }
    await transport.handleRequest(req, res, message);
  })
  .listen(port, "127.0.0.1", () => console.log(`node upstream on http://127.0.0.1:${port}/mcp`));
