// The official TypeScript SDK client, configured the way an IDE would be from a pasted
// configuration: the MCP URL and one header line ("Authorization: Bearer …"). Lists the tools
// and calls one. Prints {"tools": [...], "text": "..."} on stdout.
// Usage: node config-client.mjs URL "Header: value" TOOL ARGUMENTS_JSON
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';

const [url, headerLine, tool, args] = process.argv.slice(2);
const colon = headerLine.indexOf(':');
const headers = { [headerLine.slice(0, colon).trim()]: headerLine.slice(colon + 1).trim() };
const transport = new StreamableHTTPClientTransport(new URL(url), { requestInit: { headers } });
const client = new Client({ name: 'pasted-config', version: '1.0.0' });
await client.connect(transport);
const tools = (await client.listTools()).tools.map((t) => t.name);
const result = await client.callTool({ name: tool, arguments: JSON.parse(args) });
await client.close();
console.log(JSON.stringify({ tools, text: result.content.map((c) => c.text ?? '').join('\n') }));
