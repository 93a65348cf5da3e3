// Try a tool: the server's tools as the signed-in person sees them through the proxy, and a
// call with a form generated from the tool's inputSchema. It speaks MCP (Streamable HTTP) to
// the server's MCP URL with a five-minute token of the person's own, so what it shows is what
// their IDE would get, refusals included.

import { call } from "../api.js";
import { h, mount, field, input, form, badge, problem, button } from "../ui.js";

/** @typedef {import('../../types/client').Schemas} Schemas */

const PROTOCOL = "2025-11-25";

/** A JSON-RPC conversation with one MCP URL. */
class McpSession {
  /** @param {string} tenant @param {string} server */
  constructor(tenant, server) {
    this.tenant = tenant;
    this.server = server;
    this.token = "";
    this.expires = 0;
    this.url = "";
    /** @type {string | null} */
    this.session = null;
    this.nextId = 1;
  }

  async authorize() {
    if (this.token && Date.now() < this.expires - 30000) return;
    const issued = await call("post", "/api/v1/tenants/{tenant}/servers/{server}/try-token", { params: { tenant: this.tenant, server: this.server } });
    this.token = issued.access_token;
    this.expires = new Date(issued.expires_at).getTime();
    this.url = new URL(issued.mcp_url).pathname;
    this.session = null;
  }

  /**
   * Sends one message; answers the response to a request (`null` for a notification).
   * @param {string} method
   * @param {object} [params]
   * @param {boolean} [notification]
   * @returns {Promise<{ message: any, requestId: string, status: number }>}
   */
  async send(method, params, notification = false) {
    await this.authorize();
    const id = notification ? undefined : this.nextId++;
    /** @type {Record<string, string>} */
    const headers = {
      authorization: `Bearer ${this.token}`,
      "content-type": "application/json",
      accept: "application/json, text/event-stream",
      "mcp-protocol-version": PROTOCOL,
    };
    if (this.session) headers["mcp-session-id"] = this.session;
    const response = await fetch(this.url, { method: "POST", headers, body: JSON.stringify({ jsonrpc: "2.0", method, params, id }) });
    const requestId = response.headers.get("x-request-id") || "";
    this.session = response.headers.get("mcp-session-id") || this.session;
    if (notification || response.status === 202) return { message: null, requestId, status: response.status };
    const type = response.headers.get("content-type") || "";
    let message = null;
    if (type.startsWith("text/event-stream")) {
      // The answer is the event whose JSON-RPC id is ours; progress and log events come first.
      const text = await response.text();
      for (const block of text.split(/\r?\n\r?\n/)) {
        const data = block.split(/\r?\n/).filter((l) => l.startsWith("data:")).map((l) => l.slice(5).trimStart()).join("\n");
        if (!data) continue;
        try {
          const parsed = JSON.parse(data);
          if (parsed.id === id) message = parsed;
        } catch {
          // not JSON: not ours
        }
      }
    } else {
      const text = await response.text();
      try {
        message = JSON.parse(text);
      } catch {
        message = { error: { code: response.status, message: text.slice(0, 300) || `HTTP ${response.status}` } };
      }
    }
    if (!message) message = { error: { code: response.status, message: `No answer (HTTP ${response.status})` } };
    return { message, requestId, status: response.status };
  }

  async open() {
    const init = await this.send("initialize", { protocolVersion: PROTOCOL, capabilities: {}, clientInfo: { name: "mcpgate-console", version: "1" } });
    if (init.message.error) return init;
    await this.send("notifications/initialized", undefined, true);
    return init;
  }
}

/**
 * @param {string} tenant
 * @param {Schemas['ServerView']} server
 */
export function tryTool(tenant, server) {
  const box = h("div", { class: "stack" });
  const mcp = new McpSession(tenant, server.slug);
  const load = async () => {
    mount(box, h("p", { class: "loading" }, "Connecting through the gateway…"));
    try {
      const init = await mcp.open();
      if (init.message.error) return mount(box, decision(init), listRetry());
      const listed = await mcp.send("tools/list", {});
      if (listed.message.error) return mount(box, decision(listed), listRetry());
      /** @type {any[]} */
      const tools = listed.message.result?.tools || [];
      const output = h("div", { class: "result", "aria-live": "polite" });
      const chooser = h("div", { class: "tool-picker" });
      const list = h(
        "ul",
        { class: "tools", "aria-label": "Tools" },
        tools.map((tool) =>
          h("li", null, h("button", { type: "button", class: "link", onclick: () => { mount(chooser, toolForm(mcp, tool, output)); mount(output); /** @type {HTMLElement | null} */ (chooser.querySelector("input, textarea, select, button"))?.focus(); } }, tool.name), tool.description && h("span", { class: "hint block" }, tool.description)),
        ),
      );
      mount(
        box,
        h("p", null, `You see ${tools.length} tool${tools.length === 1 ? "" : "s"} through the gateway, with your own access. Calls are recorded in the audit log.`),
        tools.length === 0 ? h("p", { class: "empty" }, "No tools are offered to you here.") : h("div", { class: "grid-try" }, list, h("div", null, chooser, output)),
      );
    } catch (e) {
      mount(box, problem(e), listRetry());
    }
  };
  const listRetry = () => button("Try again", load);
  load();
  return box;
}

/**
 * The gateway's decision on one request, in words.
 * @param {{ message: any, requestId: string, status: number }} answer
 */
function decision(answer) {
  const error = answer.message?.error;
  const toolError = answer.message?.result?.isError;
  const tone = error ? "bad" : toolError ? "warn" : "ok";
  const words = error ? `Refused: ${error.message}` : toolError ? "Allowed; the tool reported an error" : "Allowed";
  return h(
    "div",
    { class: `decision ${tone}`, role: "status" },
    badge(error ? "denied" : "allowed", tone),
    " ",
    h("span", null, words),
    answer.requestId && h("span", { class: "hint" }, " · request ", h("code", null, answer.requestId)),
  );
}

/**
 * A form for one tool's arguments, from its inputSchema: text, numbers, booleans and choices as
 * inputs; anything else as JSON.
 * @param {McpSession} mcp
 * @param {any} tool
 * @param {HTMLElement} output
 */
function toolForm(mcp, tool, output) {
  const schema = tool.inputSchema || {};
  const required = new Set(schema.required || []);
  /** @type {[string, any, HTMLInputElement | HTMLTextAreaElement | HTMLSelectElement][]} */
  const inputs = Object.entries(schema.properties || {}).map(([name, prop]) => {
    const p = /** @type {any} */ (prop);
    const attrs = { required: required.has(name), "data-name": name };
    /** @type {HTMLInputElement | HTMLTextAreaElement | HTMLSelectElement} */
    let el;
    if (Array.isArray(p.enum)) {
      el = /** @type {HTMLSelectElement} */ (h("select", attrs, (required.has(name) ? [] : [h("option", { value: "" }, "—")]).concat(p.enum.map((v) => h("option", { value: JSON.stringify(v) }, String(v))))));
    } else if (p.type === "boolean") {
      el = input(name, { ...attrs, type: "checkbox", required: false, checked: p.default === true });
    } else if (p.type === "number" || p.type === "integer") {
      el = input(name, { ...attrs, type: "number", step: p.type === "integer" ? "1" : "any", value: p.default ?? "" });
    } else if (p.type === "string" || p.type === undefined) {
      el = input(name, { ...attrs, value: p.default ?? "" });
    } else {
      el = /** @type {HTMLTextAreaElement} */ (h("textarea", { ...attrs, rows: 3, placeholder: p.type === "array" ? "[ … ] as JSON" : "{ … } as JSON" }, p.default !== undefined ? JSON.stringify(p.default) : ""));
    }
    return [name, p, el];
  });
  return form({ class: "stack card", "aria-label": `Call ${tool.name}` }, [
    h("h2", null, tool.name),
    tool.description && h("p", { class: "hint" }, tool.description),
    inputs.length === 0 && h("p", null, "This tool takes no arguments."),
    inputs.map(([name, p, el]) => field(`${name}${required.has(name) ? " (required)" : ""}`, el, p.description)),
    h("button", { type: "submit", class: "primary" }, `Call ${tool.name}`),
  ], async () => {
    /** @type {Record<string, any>} */
    const args = {};
    for (const [name, p, el] of inputs) {
      if (el instanceof HTMLInputElement && el.type === "checkbox") {
        args[name] = el.checked;
      } else if (el.value === "") {
        continue;
      } else if (el instanceof HTMLSelectElement) {
        args[name] = JSON.parse(el.value);
      } else if (p.type === "number" || p.type === "integer") {
        args[name] = Number(el.value);
      } else if (el instanceof HTMLTextAreaElement) {
        try {
          args[name] = JSON.parse(el.value);
        } catch {
          throw new Error(`${name} is not valid JSON`);
        }
      } else {
        args[name] = el.value;
      }
    }
    mount(output, h("p", { class: "loading" }, `Calling ${tool.name}…`));
    const answer = await mcp.send("tools/call", { name: tool.name, arguments: args });
    mount(output, decision(answer), result(answer.message));
  });
}

/** The result's content: text as text, images as images, the rest as JSON. */
function result(/** @type {any} */ message) {
  if (message.error) return h("pre", { class: "json", tabindex: "0" }, JSON.stringify(message.error, null, 2));
  const content = message.result?.content || [];
  return h(
    "div",
    { class: "content" },
    content.map((/** @type {any} */ c) =>
      c.type === "text"
        ? h("pre", { class: "text", tabindex: "0" }, c.text)
        : c.type === "image" && /^image\/(png|jpeg|gif|webp)$/.test(c.mimeType || "")
          ? h("img", { src: `data:${c.mimeType};base64,${c.data}`, alt: "Image returned by the tool" })
          : h("pre", { class: "json", tabindex: "0" }, JSON.stringify(c, null, 2)),
    ),
    message.result?.structuredContent && h("details", null, h("summary", null, "Structured content"), h("pre", { class: "json", tabindex: "0" }, JSON.stringify(message.result.structuredContent, null, 2))),
  );
}
