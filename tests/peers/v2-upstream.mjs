// An upstream built on the TypeScript SDK's v2 server (@modelcontextprotocol/server), which
// speaks protocol revision 2026-07-28. Usage: PORT=… node v2-upstream.mjs dual|modern-only —
// `dual` also serves 2025-era requests (statelessly, as the SDK does by default), `modern-only`
// refuses them, like a server written for the new revision alone. One tool, `echo`, whose
// argument is also sent as a header under the revision (SEP-2243).
import http from 'node:http';
import { Readable } from 'node:stream';
import { McpServer, createMcpHandler, fromJsonSchema } from '@modelcontextprotocol/server';

const port = process.env.PORT;
const [posture] = process.argv.slice(2);
const factory = () => {
  const server = new McpServer({ name: `v2-upstream-${posture}`, version: '2.4.0' });
  server.registerTool(
    'echo',
    {
      description: 'Echoes the message back',
      inputSchema: fromJsonSchema({
        type: 'object',
        // Mirrored into an Mcp-Param-Message header, which the SDK checks against the body.
        properties: { message: { type: 'string', 'x-mcp-header': 'Message' } },
        required: ['message'],
      }),
    },
    async ({ message }) => ({ content: [{ type: 'text', text: `v2 echo: ${message}` }] }),
  );
  return server;
};
const handler = createMcpHandler(factory, { legacy: posture === 'modern-only' ? 'reject' : 'stateless' });

http
  .createServer(async (req, res) => {
    const chunks = [];
    for await (const chunk of req) chunks.push(chunk);
    const body = chunks.length ? Buffer.concat(chunks) : undefined;
    const headers = new Headers();
    for (const [name, value] of Object.entries(req.headers)) {
      if (value !== undefined) headers.set(name, Array.isArray(value) ? value.join(', ') : value);
    }
    const request = new Request(`http://127.0.0.1:${port}${req.url}`, {
      method: req.method,
      headers,
      body: req.method === 'GET' || req.method === 'HEAD' ? undefined : body,
    });
    const response = await handler.fetch(request);
    res.writeHead(response.status, Object.fromEntries(response.headers));
    if (response.body) Readable.fromWeb(response.body).pipe(res);
    else res.end();
  })
  .listen(Number(port), '127.0.0.1', () => console.log(`listening on ${port}`));
