// The conformance suite's server scenarios, served by the TypeScript SDK's v2 server
// (@modelcontextprotocol/server 2.x), which implements protocol revision 2026-07-28: envelope
// checks, server/discover, input_required results with signed requestState,
// subscriptions/listen, Mcp-Param header validation and cache hints all come from the SDK;
// this file only supplies the tools, prompts and resources the scenarios call.
// Usage: node v2-everything.mjs [PORT] [--modern-only] (or PORT in the environment) — serves
// http://127.0.0.1:PORT/mcp; 2025 requests too, unless --modern-only.
import http from 'node:http';
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import {
  McpServer,
  MissingRequiredClientCapabilityError,
  ProtocolError,
  ProtocolErrorCode,
  createMcpHandler,
  createRequestStateCodec,
  fromJsonSchema,
  hostHeaderValidationResponse,
  inputRequired,
  inputResponse,
  localhostAllowedHostnames,
} from '@modelcontextprotocol/server';

const args = process.argv.slice(2);
const port = Number(args.find((a) => !a.startsWith('--')) ?? process.env.PORT ?? 8002);
const modernOnly = args.includes('--modern-only');
const PNG = 'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg==';
const WAV = 'UklGRiYAAABXQVZFZm10IBAAAAABAAEAQB8AAAB9AAACABAAZGF0YQIAAAA=';
// One key per process: every round of a flow reaches this process.
const codec = createRequestStateCodec({ key: randomBytes(32) });

const text = (t) => ({ content: [{ type: 'text', text: t }] });
const noArgs = { type: 'object', properties: {} };
const tool = (name, description, inputSchema = noArgs) => ({ name, description, inputSchema });
const nameSchema = (property) => ({
  type: 'object',
  properties: { [property]: { type: 'string' } },
  required: [property],
});
const ask = (message, property) => inputRequired.elicit({ message, requestedSchema: nameSchema(property) });
const accepted = (ctx, key) => {
  const view = inputResponse(ctx.mcpReq.inputResponses, key);
  return view.kind === 'elicit' && view.action === 'accept' ? view.content ?? {} : undefined;
};
const capabilities = (ctx) => ctx.mcpReq.envelope?.['io.modelcontextprotocol/clientCapabilities'] ?? {};
const header = (description, name, type = 'string') => ({ type, description, 'x-mcp-header': name });

// Extra tools and prompts the list-changed triggers add, so each trigger really changes a list.
let extraTools = 0;
let extraPrompts = 0;

const TOOLS = () => [
  tool('test_simple_text', 'Returns simple text'),
  tool('test_image_content', 'Returns an image'),
  tool('test_audio_content', 'Returns audio'),
  tool('test_embedded_resource', 'Returns an embedded resource'),
  tool('test_multiple_content_types', 'Returns text, an image and a resource'),
  tool('test_tool_with_logging', 'Emits log messages while it runs'),
  tool('test_logging_tool', 'Emits a log message (only to callers that set a log level)'),
  tool('test_tool_with_progress', 'Reports progress while it runs'),
  tool('test_error_handling', 'Always fails'),
  tool('test_missing_capability', 'Needs the sampling capability'),
  tool('test_streaming_elicitation', 'Asks for input while streaming progress'),
  tool('test_trigger_tool_change', 'Changes the tool list'),
  tool('test_trigger_prompt_change', 'Changes the prompt list'),
  tool('test_input_required_result_elicitation', 'Asks for a name'),
  tool('test_input_required_result_sampling', 'Asks the client model a question'),
  tool('test_input_required_result_list_roots', "Asks for the client's roots"),
  tool('test_input_required_result_request_state', 'Asks for confirmation, carrying state'),
  tool('test_input_required_result_multiple_inputs', 'Asks for three inputs at once'),
  tool('test_input_required_result_multi_round', 'Asks twice'),
  tool('test_input_required_result_tampered_state', 'Carries signed state'),
  tool('test_input_required_result_capabilities', 'Asks only for what the client can answer'),
  tool('test_sampling', "Asks the client's model to complete a prompt", {
    type: 'object',
    properties: { prompt: { type: 'string' } },
  }),
  tool('test_elicitation', 'Asks the user for input', { type: 'object', properties: { message: { type: 'string' } } }),
  tool('test_elicitation_sep1034_defaults', 'Asks for input with default values'),
  tool('test_elicitation_sep1330_enums', 'Asks for input with enum choices'),
  tool('test_custom_headers', 'Mirrors parameters into Mcp-Param headers', {
    type: 'object',
    properties: {
      region: header('Region', 'Region'),
      priority: header('Priority', 'Priority', 'integer'),
      verbose: header('Verbose', 'Verbose', 'boolean'),
      query: { type: 'string', description: 'Not mirrored' },
    },
    required: ['region', 'priority', 'query'],
  }),
  tool('json_schema_2020_12_tool', 'Tool with JSON Schema 2020-12 features', {
    $schema: 'https://json-schema.org/draft/2020-12/schema',
    type: 'object',
    $defs: {
      address: {
        $anchor: 'addressDef',
        type: 'object',
        properties: { street: { type: 'string' }, city: { type: 'string' } },
      },
    },
    properties: {
      name: { type: 'string' },
      address: { $ref: '#/$defs/address' },
      contactMethod: { type: 'string', enum: ['phone', 'email'] },
      phone: { type: 'string' },
      email: { type: 'string' },
    },
    allOf: [{ anyOf: [{ required: ['phone'] }, { required: ['email'] }] }],
    if: { properties: { contactMethod: { const: 'phone' } }, required: ['contactMethod'] },
    then: { required: ['phone'] },
    else: { required: ['email'] },
    additionalProperties: false,
  }),
  ...Array.from({ length: extraTools }, (_, i) => tool(`added_tool_${i + 1}`, 'Added by test_trigger_tool_change')),
];

const PROMPTS = () => {
  const arg = (name, description) => ({ name, description, required: true });
  return [
    { name: 'test_simple_prompt', description: 'A simple prompt without arguments' },
    {
      name: 'test_prompt_with_arguments',
      description: 'A prompt with required arguments',
      arguments: [arg('arg1', 'First test argument'), arg('arg2', 'Second test argument')],
    },
    {
      name: 'test_prompt_with_embedded_resource',
      description: 'A prompt that includes an embedded resource',
      arguments: [arg('resourceUri', 'URI of the resource to embed')],
    },
    { name: 'test_prompt_with_image', description: 'A prompt that includes image content' },
    { name: 'test_input_required_result_prompt', description: 'A prompt that asks for context first' },
    ...Array.from({ length: extraPrompts }, (_, i) => ({ name: `added_prompt_${i + 1}`, description: 'Added' })),
  ];
};

const FORMS = {
  test_elicitation: (args) => [
    args.message ?? 'Please respond',
    { type: 'object', properties: { response: { type: 'string', description: "User's response" } }, required: ['response'] },
  ],
  test_elicitation_sep1034_defaults: () => [
    'Please review and update the form fields with defaults',
    {
      type: 'object',
      properties: {
        name: { type: 'string', description: 'User name', default: 'John Doe' },
        age: { type: 'integer', description: 'User age', default: 30 },
        score: { type: 'number', description: 'User score', default: 95.5 },
        status: { type: 'string', description: 'User status', enum: ['active', 'inactive', 'pending'], default: 'active' },
        verified: { type: 'boolean', description: 'Verified user', default: true },
      },
    },
  ],
  test_elicitation_sep1330_enums: () => {
    const titled = (prefix) => [1, 2, 3].map((n) => ({ const: `value${n}`, title: `${['First', 'Second', 'Third'][n - 1]} ${prefix}` }));
    return [
      'Please select options from the enum fields',
      {
        type: 'object',
        properties: {
          untitledSingle: { type: 'string', description: 'Select one option', enum: ['option1', 'option2', 'option3'] },
          titledSingle: { type: 'string', description: 'Select one option with titles', oneOf: titled('Option') },
          legacyEnum: {
            type: 'string',
            description: 'Select one option (legacy)',
            enum: ['opt1', 'opt2', 'opt3'],
            enumNames: ['Option One', 'Option Two', 'Option Three'],
          },
          untitledMulti: {
            type: 'array',
            description: 'Select multiple options',
            minItems: 1,
            maxItems: 3,
            items: { type: 'string', enum: ['option1', 'option2', 'option3'] },
          },
          titledMulti: {
            type: 'array',
            description: 'Select multiple options with titles',
            minItems: 1,
            maxItems: 3,
            items: { anyOf: titled('Choice') },
          },
        },
        required: [],
      },
    ];
  },
};

let handler;
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function callTool({ params }, ctx) {
  const args = params.arguments ?? {};
  const progressToken = params._meta?.progressToken;
  switch (params.name) {
    case 'test_simple_text':
      return text('This is a simple text response for testing.');
    case 'test_image_content':
      return { content: [{ type: 'image', data: PNG, mimeType: 'image/png' }] };
    case 'test_audio_content':
      return { content: [{ type: 'audio', data: WAV, mimeType: 'audio/wav' }] };
    case 'test_embedded_resource':
      return {
        content: [
          {
            type: 'resource',
            resource: { uri: 'test://embedded-resource', mimeType: 'text/plain', text: 'This is an embedded resource content.' },
          },
        ],
      };
    case 'test_multiple_content_types':
      return {
        content: [
          { type: 'text', text: 'Multiple content types test:' },
          { type: 'image', data: PNG, mimeType: 'image/png' },
          {
            type: 'resource',
            resource: {
              uri: 'test://mixed-content-resource',
              mimeType: 'application/json',
              text: JSON.stringify({ test: 'data', value: 123 }),
            },
          },
        ],
      };
    case 'test_tool_with_logging':
    case 'test_logging_tool':
      for (const step of ['Tool execution started', 'Tool processing data', 'Tool execution completed']) {
        await ctx.mcpReq.log('info', step);
        await sleep(20);
      }
      return text('Tool with logging executed successfully');
    case 'test_tool_with_progress':
      for (const progress of [0, 50, 100]) {
        if (progressToken !== undefined) {
          await ctx.mcpReq.notify({
            method: 'notifications/progress',
            params: { progressToken, progress, total: 100, message: `Completed step ${progress} of 100` },
          });
        }
        await sleep(20);
      }
      return text(String(progressToken ?? ''));
    case 'test_error_handling':
      return { ...text('This tool intentionally returns an error for testing'), isError: true };
    case 'test_missing_capability':
      if (!capabilities(ctx).sampling) throw new MissingRequiredClientCapabilityError({ requiredCapabilities: { sampling: {} } });
      return text('The client declared sampling');
    case 'test_streaming_elicitation': {
      if (progressToken !== undefined) {
        await ctx.mcpReq.notify({ method: 'notifications/progress', params: { progressToken, progress: 1, total: 2 } });
      }
      const answer = accepted(ctx, 'answer');
      if (!answer) return inputRequired({ inputRequests: { answer: ask('Anything to add?', 'response') } });
      return text(`You said: ${answer.response}`);
    }
    case 'test_trigger_tool_change':
      extraTools += 1;
      handler.notify.toolsChanged();
      return text(`Tool list changed (${extraTools} added)`);
    case 'test_trigger_prompt_change':
      extraPrompts += 1;
      handler.notify.promptsChanged();
      return text(`Prompt list changed (${extraPrompts} added)`);
    case 'test_input_required_result_elicitation': {
      const answer = accepted(ctx, 'user_name');
      if (!answer?.name) return inputRequired({ inputRequests: { user_name: ask('What is your name?', 'name') } });
      return text(`Hello, ${answer.name}!`);
    }
    case 'test_input_required_result_sampling': {
      const view = inputResponse(ctx.mcpReq.inputResponses, 'capital_question');
      if (view.kind !== 'sampling') {
        return inputRequired({
          inputRequests: {
            capital_question: inputRequired.createMessage({
              messages: [{ role: 'user', content: { type: 'text', text: 'What is the capital of France?' } }],
              maxTokens: 100,
            }),
          },
        });
      }
      const content = Array.isArray(view.result.content) ? view.result.content[0] : view.result.content;
      return text(`The model answered: ${content?.text ?? ''}`);
    }
    case 'test_input_required_result_list_roots': {
      const view = inputResponse(ctx.mcpReq.inputResponses, 'client_roots');
      if (view.kind !== 'roots') return inputRequired({ inputRequests: { client_roots: inputRequired.listRoots() } });
      return text(`Roots: ${view.roots.map((root) => root.uri).join(', ')}`);
    }
    case 'test_input_required_result_request_state': {
      const state = ctx.mcpReq.requestState();
      const view = inputResponse(ctx.mcpReq.inputResponses, 'confirm');
      if (state?.step !== 'confirm' || view.kind !== 'elicit') {
        return inputRequired({
          inputRequests: {
            confirm: inputRequired.elicit({
              message: 'Please confirm',
              requestedSchema: { type: 'object', properties: { ok: { type: 'boolean' } }, required: ['ok'] },
            }),
          },
          requestState: await codec.mint({ step: 'confirm' }),
        });
      }
      return text(`state-ok: confirmed=${view.content?.ok === true}`);
    }
    case 'test_input_required_result_multiple_inputs': {
      const responses = ['user_name', 'greeting', 'client_roots'].map((key) => inputResponse(ctx.mcpReq.inputResponses, key));
      if (ctx.mcpReq.requestState()?.step !== 'all' || responses.some((view) => view.kind === 'missing')) {
        return inputRequired({
          inputRequests: {
            user_name: ask('What is your name?', 'name'),
            greeting: inputRequired.createMessage({
              messages: [{ role: 'user', content: { type: 'text', text: 'Generate a greeting' } }],
              maxTokens: 50,
            }),
            client_roots: inputRequired.listRoots(),
          },
          requestState: await codec.mint({ step: 'all' }),
        });
      }
      return text(`Got all three inputs for ${responses[0].content?.name ?? 'someone'}`);
    }
    case 'test_input_required_result_multi_round': {
      const state = ctx.mcpReq.requestState();
      const name = accepted(ctx, 'step1')?.name;
      const color = accepted(ctx, 'step2')?.color;
      if (state?.round === 2 && color) return text(`${state.name} likes ${color}`);
      if (state?.round === 2 || (state?.round === 1 && name)) {
        return inputRequired({
          inputRequests: { step2: ask('Step 2: What is your favorite color?', 'color') },
          requestState: await codec.mint({ round: 2, name: state.name ?? name }),
        });
      }
      return inputRequired({
        inputRequests: { step1: ask('Step 1: What is your name?', 'name') },
        requestState: await codec.mint({ round: 1 }),
      });
    }
    case 'test_input_required_result_tampered_state': {
      if (ctx.mcpReq.requestState()?.step === 'signed') return text('The state was intact');
      return inputRequired({
        inputRequests: { user_name: ask('What is your name?', 'name') },
        requestState: await codec.mint({ step: 'signed' }),
      });
    }
    case 'test_input_required_result_capabilities': {
      const declared = capabilities(ctx);
      const requests = {};
      if (declared.elicitation) requests.user_name = ask('What is your name?', 'name');
      if (declared.sampling) {
        requests.greeting = inputRequired.createMessage({
          messages: [{ role: 'user', content: { type: 'text', text: 'Generate a greeting' } }],
          maxTokens: 50,
        });
      }
      if (declared.roots) requests.client_roots = inputRequired.listRoots();
      const missing = Object.keys(requests).filter((key) => inputResponse(ctx.mcpReq.inputResponses, key).kind === 'missing');
      if (missing.length === 0) return text('Nothing more to ask');
      return inputRequired({ inputRequests: Object.fromEntries(missing.map((key) => [key, requests[key]])) });
    }
    // The 2025 scenarios' tools that ask the client mid-call, written the 2026 way: an
    // input_required result, then the answer on the retry (a 2025 client gets the requests on
    // its stream from whoever bridges: the SDK itself, or mcpgate for a modern-only server).
    case 'test_sampling': {
      const view = inputResponse(ctx.mcpReq.inputResponses, 'sampling');
      if (view.kind !== 'sampling') {
        return inputRequired({
          inputRequests: {
            sampling: inputRequired.createMessage({
              messages: [{ role: 'user', content: { type: 'text', text: args.prompt ?? 'Hello' } }],
              maxTokens: 100,
            }),
          },
        });
      }
      const content = Array.isArray(view.result.content) ? view.result.content[0] : view.result.content;
      return text(`LLM response: ${content?.text ?? ''}`);
    }
    case 'test_elicitation':
    case 'test_elicitation_sep1034_defaults':
    case 'test_elicitation_sep1330_enums': {
      const view = inputResponse(ctx.mcpReq.inputResponses, 'form');
      if (view.kind !== 'elicit') {
        const [message, requestedSchema] = FORMS[params.name](args);
        // Built by hand: the legacy enumNames form is one the SDK's builder would not write.
        return inputRequired({ inputRequests: { form: { method: 'elicitation/create', params: { message, requestedSchema } } } });
      }
      return text(`User response: action=${view.action}, content=${JSON.stringify(view.content ?? {})}`);
    }
    case 'test_custom_headers':
      return text(`region=${args.region} priority=${args.priority}`);
    case 'json_schema_2020_12_tool':
      return text(`JSON Schema 2020-12 tool called with: ${JSON.stringify(args)}`);
    default:
      if (/^added_tool_\d+$/.test(params.name)) return text(`${params.name} called`);
      throw new ProtocolError(ProtocolErrorCode.InvalidParams, `unknown tool ${params.name}`);
  }
}

function getPrompt({ params }, ctx) {
  const args = params.arguments ?? {};
  const user = (content) => ({ role: 'user', content });
  switch (params.name) {
    case 'test_simple_prompt':
      return { messages: [user({ type: 'text', text: 'This is a simple prompt for testing.' })] };
    case 'test_prompt_with_arguments':
      return {
        messages: [user({ type: 'text', text: `Prompt with arguments: arg1='${args.arg1}', arg2='${args.arg2}'` })],
      };
    case 'test_prompt_with_embedded_resource':
      return {
        messages: [
          user({
            type: 'resource',
            resource: { uri: args.resourceUri ?? 'test://embedded', mimeType: 'text/plain', text: 'Embedded resource content for testing.' },
          }),
          user({ type: 'text', text: 'Please process the embedded resource above.' }),
        ],
      };
    case 'test_prompt_with_image':
      return {
        messages: [
          user({ type: 'image', data: PNG, mimeType: 'image/png' }),
          user({ type: 'text', text: 'Please analyze the image above.' }),
        ],
      };
    case 'test_input_required_result_prompt': {
      const answer = accepted(ctx, 'user_context');
      if (!answer) {
        return inputRequired({
          inputRequests: { user_context: ask('What context should the prompt use?', 'context') },
        });
      }
      return { messages: [user({ type: 'text', text: `Answer with this context in mind: ${answer.context}` })] };
    }
    default:
      if (/^added_prompt_\d+$/.test(params.name)) return { messages: [user({ type: 'text', text: params.name })] };
      throw new ProtocolError(ProtocolErrorCode.InvalidParams, `unknown prompt ${params.name}`);
  }
}

function readResource({ params }) {
  const { uri } = params;
  const one = (contents) => ({ contents: [{ uri, ...contents }] });
  if (uri === 'test://static-text') {
    return one({ mimeType: 'text/plain', text: 'This is the content of the static text resource.' });
  }
  if (uri === 'test://static-binary') return one({ mimeType: 'image/png', blob: PNG });
  if (uri === 'test://watched-resource') return one({ mimeType: 'text/plain', text: 'Watched resource content' });
  const id = /^test:\/\/template\/([^/]+)\/data$/.exec(uri)?.[1];
  if (id) {
    return one({ mimeType: 'application/json', text: JSON.stringify({ id, templateTest: true, data: `Data for ID: ${id}` }) });
  }
  throw new ProtocolError(ProtocolErrorCode.InvalidParams, 'Resource not found', { uri });
}

function factory() {
  const mcp = new McpServer(
    { name: 'mcpgate-v2-conformance-fixture', version: '2.4.0' },
    {
      capabilities: {
        tools: { listChanged: true },
        prompts: { listChanged: true },
        resources: { subscribe: true, listChanged: true },
        completions: {},
        logging: {},
      },
      requestState: { verify: codec.verify },
    },
  );
  // Tools are registered with McpServer, which lists them and lets the SDK check Mcp-Param
  // headers against their schemas; calls go to a plain handler, because McpServer would turn
  // a thrown protocol error (-32021 from test_missing_capability) into an isError result.
  for (const { name, description, inputSchema } of TOOLS()) {
    mcp.registerTool(name, { description, inputSchema: fromJsonSchema(inputSchema) }, () => text('unused'));
  }
  const { server } = mcp;
  server.setRequestHandler('tools/call', callTool);
  server.setRequestHandler('prompts/list', () => ({ prompts: PROMPTS() }));
  server.setRequestHandler('prompts/get', getPrompt);
  server.setRequestHandler('resources/list', () => ({
    resources: [
      { uri: 'test://static-text', name: 'static-text', title: 'Static Text Resource', mimeType: 'text/plain' },
      { uri: 'test://static-binary', name: 'static-binary', title: 'Static Binary Resource', mimeType: 'image/png' },
      { uri: 'test://watched-resource', name: 'watched-resource', title: 'Watched Resource', mimeType: 'text/plain' },
    ],
  }));
  server.setRequestHandler('resources/templates/list', () => ({
    resourceTemplates: [
      { uriTemplate: 'test://template/{id}/data', name: 'template', title: 'Resource Template', mimeType: 'application/json' },
    ],
  }));
  server.setRequestHandler('resources/read', readResource);
  server.setRequestHandler('resources/subscribe', () => ({}));
  server.setRequestHandler('resources/unsubscribe', () => ({}));
  server.setRequestHandler('completion/complete', () => ({ completion: { values: [], total: 0, hasMore: false } }));
  server.setRequestHandler('logging/setLevel', () => ({}));
  return mcp;
}

handler = createMcpHandler(factory, { legacy: modernOnly ? 'reject' : 'stateless' });

http
  .createServer(async (req, res) => {
    const chunks = [];
    for await (const chunk of req) chunks.push(chunk);
    const headers = new Headers();
    for (const [name, value] of Object.entries(req.headers)) {
      if (value !== undefined) headers.set(name, Array.isArray(value) ? value.join(', ') : value);
    }
    const request = new Request(`http://${req.headers.host ?? `127.0.0.1:${port}`}${req.url}`, {
      method: req.method,
      headers,
      body: req.method === 'GET' || req.method === 'HEAD' || chunks.length === 0 ? undefined : Buffer.concat(chunks),
    });
    // DNS rebinding protection, as a server on loopback should have.
    const response = hostHeaderValidationResponse(request, localhostAllowedHostnames()) ?? (await handler.fetch(request));
    res.writeHead(response.status, Object.fromEntries(response.headers));
    if (response.body) {
      const body = Readable.fromWeb(response.body);
      res.on('close', () => body.destroy());
      body.pipe(res);
    } else res.end();
  })
  .listen(port, '127.0.0.1', () => console.log(`v2 conformance fixture on http://127.0.0.1:${port}/mcp`));
