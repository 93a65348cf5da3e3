// The official TypeScript SDK client, driven through the gateway by the integration tests.
// Usage: node ts-client.mjs URL TOKEN everything|fixture — prints one JSON report of what it
// saw on stdout. The profile names the upstream's tools for each feature.
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { CreateMessageRequestSchema, ElicitRequestSchema } from '@modelcontextprotocol/sdk/types.js';

const [url, token, profileName] = process.argv.slice(2);
const profiles = {
  everything: {
    progress: ['trigger-long-running-operation', { duration: 1, steps: 3 }],
    sampling: ['trigger-sampling-request', { prompt: 'hello', maxTokens: 5 }],
    elicitation: ['trigger-elicitation-request', {}],
    prompt: ['args-prompt', { city: 'Paris' }],
  },
  fixture: {
    progress: ['test_tool_with_progress', {}],
    sampling: ['test_sampling', { prompt: 'hello' }],
    elicitation: ['test_elicitation', { message: 'ok?' }],
    prompt: ['test_prompt_with_arguments', { arg1: 'Paris', arg2: 'x' }],
  },
};
const profile = profiles[profileName];
const transport = new StreamableHTTPClientTransport(new URL(url), {
  requestInit: { headers: { Authorization: `Bearer ${token}` } },
});
const client = new Client(
  { name: 'mcpgate-ts-test', version: '1.0.0' },
  { capabilities: { sampling: {}, elicitation: {} } },
);
client.setRequestHandler(CreateMessageRequestSchema, async (request) => ({
  role: 'assistant',
  model: 'test-model',
  content: { type: 'text', text: `sampled: ${request.params.messages[0].content.text}` },
}));
client.setRequestHandler(ElicitRequestSchema, async () => ({ action: 'decline' }));

const report = {};
await client.connect(transport);
report.session = Boolean(transport.sessionId);
report.server = client.getServerVersion()?.name;
report.tools = (await client.listTools()).tools.map((t) => t.name);
report.echo = (await client.callTool({ name: 'echo', arguments: { message: 'through the gateway' } })).content[0].text;

const progress = [];
const long = await client.callTool(
  { name: profile.progress[0], arguments: profile.progress[1] },
  undefined,
  { onprogress: (p) => progress.push(p.progress) },
);
report.progress = progress;
report.long = long.content[0].text;

const sampled = await client.callTool({ name: profile.sampling[0], arguments: profile.sampling[1] });
report.sampling = JSON.stringify(sampled.content);
const elicited = await client.callTool({ name: profile.elicitation[0], arguments: profile.elicitation[1] });
report.elicitation = JSON.stringify(elicited.content);

const resources = await client.listResources();
report.resources = resources.resources.length;
const read = await client.readResource({ uri: resources.resources[0].uri });
report.read = read.contents[0].uri;
report.prompts = (await client.listPrompts()).prompts.map((p) => p.name);
const prompt = await client.getPrompt({ name: profile.prompt[0], arguments: profile.prompt[1] });
report.prompt = JSON.stringify(prompt.messages);

await transport.terminateSession();
report.terminated = transport.sessionId === undefined;
await client.close();
console.log(JSON.stringify(report));
