// The TypeScript SDK's v2 client (@modelcontextprotocol/client), driven through the gateway by
// the integration tests. Usage: node v2-client.mjs URL TOKEN stateless|legacy TOOL… — `stateless`
// pins protocol revision 2026-07-28 (server/discover, no initialize, no session; no fallback),
// `legacy` runs the 2025 handshake. Lists the tools, calls each TOOL with {message}, prints one
// JSON report on stdout.
import { Client, StreamableHTTPClientTransport } from '@modelcontextprotocol/client';

const [url, token, mode, ...tools] = process.argv.slice(2);
const transport = new StreamableHTTPClientTransport(new URL(url), {
  requestInit: { headers: { Authorization: `Bearer ${token}` } },
});
const options = mode === 'stateless' ? { versionNegotiation: { mode: { pin: '2026-07-28' } } } : {};
const client = new Client({ name: 'mcpgate-v2-test', version: '1.0.0' }, options);

const report = {};
await client.connect(transport);
report.version = client.getNegotiatedProtocolVersion();
report.session = Boolean(transport.sessionId);
report.server = client.getServerVersion()?.name;
report.tools = (await client.listTools()).tools.map((t) => t.name);
report.texts = [];
for (const name of tools) {
  const called = await client.callTool({ name, arguments: { message: 'through the gateway' } });
  report.texts.push(called.isError ? `error: ${called.content?.[0]?.text}` : called.content?.[0]?.text);
}
await client.close();
console.log(JSON.stringify(report));
