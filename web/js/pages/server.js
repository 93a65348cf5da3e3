// One server: overview and probe, settings, How To Use, Try a tool, collaborators, and the
// per-user credentials (Auth Overrides).

import { call, all } from "../api.js";
import { h, mount, field, input, select, form, header, table, badge, button, linkButton, when, toast, tabs, copyText, copy, problem, confirmAction } from "../ui.js";
import { authMode, health, authEditor, memberPicker, pairs } from "./servers.js";
import { tryTool } from "./try.js";

/** @typedef {import('../../types/client').Schemas} Schemas */

/** @param {import('../main.js').Context} ctx */
export async function serverPage(ctx) {
  const t = ctx.tenant;
  const slug = ctx.params.server;
  const params = { tenant: t, server: slug };
  const server = await call("get", "/api/v1/tenants/{tenant}/servers/{server}", { params });
  const manager = server.role === "manager";
  const tab = ctx.params.tab || "overview";
  /** @param {string} id @param {string} label @param {() => Node} render */
  const pane = (id, label, render) => ({ id, label, render });
  const panes = [
    pane("overview", "Overview", () => overview(ctx, server, manager)),
    pane("how-to-use", "How To Use", () => howToUse(ctx, server)),
    pane("try", "Try a tool", () => tryTool(t, server)),
    pane("collaborators", "Collaborators", () => collaborators(params, manager)),
    pane("credentials", "Credentials", () => overrides(ctx, params, manager)),
  ];
  if (manager) panes.splice(1, 0, pane("settings", "Settings", () => settings(ctx, server)));
  return h(
    "div",
    null,
    header(server.display_name, [], h("span", null, badge(server.kind, "info"), " ", authMode(server), " ", server.kind === "remote" && health(server))),
    tabs(panes, tab),
  );
}

/**
 * @param {import('../main.js').Context} ctx
 * @param {Schemas['ServerView']} server
 * @param {boolean} manager
 */
function overview(ctx, server, manager) {
  const params = { tenant: ctx.tenant, server: server.slug };
  const result = h("div", { "aria-live": "polite" });
  const probe = async () => {
    const started = Date.now();
    const progress = /** @type {HTMLProgressElement} */ (h("progress", { "aria-label": "Probing" }));
    const elapsed = h("span", null, "0 s");
    mount(result, h("div", { class: "progress" }, progress, " Probing the upstream (initialize, tools/list)… ", elapsed));
    const tick = setInterval(() => (elapsed.textContent = `${Math.round((Date.now() - started) / 1000)} s`), 500);
    try {
      const report = await call("post", "/api/v1/tenants/{tenant}/servers/{server}/probe", { params });
      mount(result, probeReport(report));
    } catch (e) {
      mount(result, problem(e));
    } finally {
      clearInterval(tick);
    }
  };
  if (ctx.query.get("probe") === "1" && manager && server.kind === "remote") setTimeout(probe, 0);
  const tools = server.probe?.tools || [];
  return h(
    "div",
    { class: "stack" },
    h(
      "dl",
      { class: "facts" },
      h("dt", null, "MCP URL"),
      h("dd", null, copyText(server.mcp_url)),
      server.description && [h("dt", null, "Description"), h("dd", null, server.description)],
      server.url && [h("dt", null, "Upstream"), h("dd", null, h("code", null, server.url), " ", badge(server.transport === "sse" ? "HTTP+SSE" : "Streamable HTTP", "plain"))],
      server.kind === "virtual" && [
        h("dt", null, "Members"),
        h("dd", null, h("ul", null, (server.servers || []).map((m) => h("li", null, h("a", { href: `#/t/${ctx.tenant}/servers/${m.server}` }, m.server), ": ", m.enabled_tools === "all" ? "all tools" : m.enabled_tools.join(", "))))),
      ],
      h("dt", null, "Your role"),
      h("dd", null, server.role),
      h("dt", null, "Last probe"),
      h("dd", null, server.probe ? [when(server.probe.probed_at), ` · ${server.probe.protocol_version || "?"} · ${tools.length} tools`] : "never"),
    ),
    manager && server.kind === "remote" && h("div", { class: "actions" }, button("Probe now", probe, "primary")),
    result,
    tools.length > 0 && h("h2", null, "Tools"),
    tools.length > 0 && table("Tools", ["Name", "Description"], tools.map((tool) => [h("code", null, tool.name), tool.description || ""]), ""),
  );
}

/** @param {Schemas['ProbeReport']} report */
function probeReport(report) {
  if (!report.reachable || report.error) {
    return h(
      "div",
      { class: "problem", role: "alert" },
      h("strong", null, "The upstream did not answer as an MCP server"),
      h("p", null, report.error ? `${report.error.message} (${report.error.code})` : "No answer."),
      h("p", { class: "hint" }, `After ${report.duration_ms} ms.`),
    );
  }
  return h(
    "div",
    { class: "success", role: "status" },
    h("strong", null, `Reachable: ${report.server_name || "server"} ${report.server_version || ""}`),
    h("p", null, `Protocol ${report.protocol_version}, ${report.tools.length} tools, in ${report.duration_ms} ms.`),
    h("ul", null, report.tools.map((tool) => h("li", null, h("code", null, tool.name), tool.description ? ` — ${tool.description}` : ""))),
  );
}

/**
 * Managers: what the server is and how it is reached, which tools are shown, deletion.
 * @param {import('../main.js').Context} ctx
 * @param {Schemas['ServerView']} server
 */
function settings(ctx, server) {
  const params = { tenant: ctx.tenant, server: server.slug };
  const box = h("div", { class: "stack" }, h("p", { class: "loading" }, "Loading…"));
  (async () => {
    const name = input("display_name", { value: server.display_name, required: true });
    const description = input("description", { value: server.description || "" });
    const url = input("url", { type: "url", value: server.url || "" });
    const transport = select("transport", [["streamable_http", "Streamable HTTP"], ["sse", "HTTP+SSE (legacy)"]], server.transport || "streamable_http");
    const headers = pairs("Additional headers", server.additional_headers || {}, "Sent to the upstream on every request.");
    const auth = server.kind === "remote" ? authEditor(server.auth_data) : null;
    const members = server.kind === "virtual" ? await memberPicker(ctx.tenant, server.servers || []) : null;
    // A virtual server's tools are its members' probed tools that it exposes.
    let offered = (server.probe?.tools || []).map((t) => t.name);
    if (server.kind === "virtual") {
      /** @type {Schemas['ServerView'][]} */
      const remotes = await all("/api/v1/tenants/{tenant}/servers", { tenant: ctx.tenant });
      offered = (server.servers || []).flatMap((m) => {
        const tools = (remotes.find((r) => r.slug === m.server)?.probe?.tools || []).map((t) => t.name);
        return m.enabled_tools === "all" ? tools : tools.filter((t) => m.enabled_tools.includes(t));
      });
    }
    const toolRows = toolSettings(server, offered);
    const toolMetrics = input("metrics_tool_names", { type: "checkbox", checked: server.metrics_tool_names });
    const edit = form({ class: "stack", "aria-label": "Server settings" }, [
      field("Display name", name),
      field("Description", description),
      server.kind === "remote" && [field("Upstream URL", url), field("Transport", transport), headers.el, auth.el],
      members && members.el,
      toolRows.el,
      field("Count tool calls by tool name in the metrics", toolMetrics,
        "Only the tools the last probe saw or that have settings here are named; any other name counts as “other”."),
      h("div", { class: "actions" }, h("button", { type: "submit", class: "primary" }, "Save changes")),
    ], async () => {
      /** @type {Schemas['UpdateServerRequest']} */
      const change = {
        display_name: name.value,
        description: description.value || null,
        tool_settings: toolRows.value(),
        metrics_tool_names: toolMetrics.checked,
      };
      if (server.kind === "remote") {
        Object.assign(change, { url: url.value, transport: transport.value, additional_headers: headers.value(), auth_data: auth.value() });
      } else {
        change.servers = members.value();
      }
      await call("patch", "/api/v1/tenants/{tenant}/servers/{server}", { params, body: change });
      toast("Saved");
      ctx.go(`#/t/${ctx.tenant}/servers/${server.slug}/settings`);
    });
    mount(
      box,
      edit,
      h("section", { class: "danger-zone" }, h("h2", null, "Delete this server"), h("p", null, "Its MCP URL stops answering at once for everyone; its collaborators and credentials are removed."),
        button("Delete server", async () => {
          if (!(await confirmAction(`Delete ${server.display_name}?`, "Delete"))) return;
          await call("delete", "/api/v1/tenants/{tenant}/servers/{server}", { params });
          toast("Deleted");
          ctx.go(`#/t/${ctx.tenant}/servers`);
        }, "danger")),
    );
  })().catch((e) => mount(box, problem(e)));
  return box;
}

/**
 * Per tool: shown or hidden, and a description that replaces the upstream's.
 * @param {Schemas['ServerView']} server
 * @param {string[]} offered  the tool names the server can offer
 */
function toolSettings(server, offered) {
  const known = new Map(server.tool_settings.map((s) => [s.name, s]));
  const names = [...new Set([...offered, ...known.keys()])];
  const rows = names.map((name) => {
    const setting = known.get(name);
    const enabled = /** @type {HTMLInputElement} */ (h("input", { type: "checkbox", checked: !setting?.disabled, "aria-label": `Offer ${name}` }));
    const text = input(`description-${name}`, { value: setting?.description || "", "aria-label": `Description of ${name}`, placeholder: "Upstream description" });
    return { name, annotations: setting?.annotations, row: [h("code", null, name), enabled, text], enabled, text };
  });
  return {
    el: h("fieldset", { class: "stack" }, h("legend", null, "Tools offered"),
      rows.length === 0 ? h("p", { class: "hint" }, server.kind === "virtual" ? "The members' tools appear here once they are probed." : "Probe the server to list its tools here.")
        : table("Tool settings", ["Tool", "Offered", "Description shown to clients"], rows.map((r) => r.row), "")),
    /** @returns {Schemas['ToolSetting'][]} */
    value: () =>
      rows
        .filter((r) => !r.enabled.checked || r.text.value || r.annotations)
        .map((r) => ({ name: r.name, disabled: !r.enabled.checked, description: r.text.value || null, annotations: r.annotations })),
  };
}

/**
 * The source of truth for connecting: the URL, each client's configuration in both methods,
 * install links, and what the person must still do first.
 * @param {import('../main.js').Context} ctx
 * @param {Schemas['ServerView']} server
 */
function howToUse(ctx, server) {
  const box = h("div", { class: "stack" }, h("p", { class: "loading" }, "Loading…"));
  (async () => {
    const how = await call("get", "/api/v1/tenants/{tenant}/servers/{server}/how-to-use", { params: { tenant: ctx.tenant, server: server.slug } });
    const connections = await call("get", "/api/v1/me/connections").catch(() => ({ items: [] }));
    const steps = (how.before_first_use || []).map((step) => {
      const connected = connections.items.find((c) => c.tenant === ctx.tenant && c.server === step.server && c.status === "connected");
      const action = step.kind === "key"
        ? linkButton(`Add your key for ${step.server}`, `#/t/${ctx.tenant}/servers/${step.server}/credentials`, "primary")
        : button(connected ? `Reauthorize ${step.server}` : `Authorize ${step.server}`, async () => {
            const started = await call("post", "/api/v1/me/connections/{tenant}/{server}", { params: { tenant: ctx.tenant, server: step.server }, body: { return_to: `/#/t/${ctx.tenant}/servers/${server.slug}/how-to-use` } });
            location.assign(started.authorization_url);
          }, connected ? "secondary" : "primary");
      return h("li", null, step.kind === "key" ? `Add your own API key for ${step.server}. ` : `Authorize the gateway at ${step.server}'s provider. `, connected && badge("connected", "ok"), " ", action);
    });
    /** @param {Schemas['Snippet']} s */
    const snippet = (s) =>
      h("div", { class: "snippet" }, h("p", null, s.instructions), s.file && h("p", { class: "hint" }, "File: ", h("code", null, s.file)),
        h("pre", { tabindex: "0", "aria-label": `${s.language} configuration` }, h("code", { class: `language-${s.language}` }, s.content)), button("Copy", () => copy(s.content), "secondary small", { "aria-label": "Copy configuration" }));
    /** @param {Schemas['ClientSetup']} setup @param {(s: Schemas['Snippet']) => Node | null} [install] */
    const both = (setup, install) =>
      h("div", { class: "grid-2" },
        h("section", null, h("h3", null, "Sign in with the browser"), install && install(setup.sign_in), snippet(setup.sign_in)),
        h("section", null, h("h3", null, "API key in a header"), install && install(setup.api_key), snippet(setup.api_key), h("p", { class: "hint" }, "Create a key under ", h("a", { href: "#/me/tokens" }, "Access tokens"), ".")));
    const entryOf = (/** @type {Schemas['Snippet']} */ s, /** @type {string} */ key) => {
      try {
        const doc = JSON.parse(s.content);
        return doc[key]?.[how.name] || Object.values(doc[key] || {})[0] || null;
      } catch {
        return null;
      }
    };
    const cursorInstall = (/** @type {Schemas['Snippet']} */ s) => {
      const entry = entryOf(s, "mcpServers");
      if (!entry) return null;
      const config = btoa(JSON.stringify(entry));
      return h("p", null, h("a", { class: "button primary", href: `cursor://anysphere.cursor-deeplink/mcp/install?name=${encodeURIComponent(how.name)}&config=${encodeURIComponent(config)}` }, "Add to Cursor"));
    };
    const vscodeInstall = (/** @type {Schemas['Snippet']} */ s) => {
      const entry = entryOf(s, "servers");
      if (!entry) return null;
      return h("p", null, h("a", { class: "button primary", href: `vscode:mcp/install?${encodeURIComponent(JSON.stringify({ name: how.name, ...entry }))}` }, "Add to VS Code"));
    };
    mount(
      box,
      h("p", null, "This page is the source of truth for connecting to ", h("strong", null, server.display_name), ". Every client uses the same URL:"),
      copyText(how.mcp_url, "Copy URL"),
      steps.length > 0 && h("section", { class: "callout" }, h("h2", null, "Before your first call"), h("ul", null, steps)),
      tabs([
        { id: "cursor", label: "Cursor", render: () => both(how.cursor, cursorInstall) },
        { id: "claude-code", label: "Claude Code", render: () => both(how.claude_code) },
        { id: "vscode", label: "VS Code", render: () => both(how.vscode, vscodeInstall) },
        { id: "python", label: "Python", render: () => snippet(how.python) },
        { id: "typescript", label: "TypeScript", render: () => snippet(how.typescript) },
      ], "claude-code"),
    );
  })().catch((e) => mount(box, problem(e)));
  return box;
}

/**
 * @param {{ tenant: string, server: string }} params
 * @param {boolean} manager
 */
function collaborators(params, manager) {
  const box = h("div", { class: "stack" });
  const load = async () => {
    try {
      const list = await call("get", "/api/v1/tenants/{tenant}/servers/{server}/collaborators", { params });
      const subject = input("subject", { required: true, placeholder: "user:ann@example.com, team:platform, virtualaccount:ci-bot" });
      const role = select("role", [["user", "User: may call its tools"], ["manager", "Manager: may also change it"]], "user");
      mount(
        box,
        table("Collaborators", ["Who", "Role", "Since", ""], list.items.map((c) => [
          h("span", null, c.display_name, h("span", { class: "hint block" }, c.subject)),
          manager ? select("role", [["user", "user"], ["manager", "manager"]], c.role, { "aria-label": `Role of ${c.subject}`, onchange: async (/** @type {Event} */ e) => {
            await call("put", "/api/v1/tenants/{tenant}/servers/{server}/collaborators", { params, body: { subject: c.subject, role: /** @type {any} */ (/** @type {HTMLSelectElement} */ (e.target).value) } }).then(() => toast("Role changed"), (err) => box.prepend(problem(err)));
          } }) : c.role,
          when(c.added_at),
          manager && button("Remove", async () => {
            if (!(await confirmAction(`Remove ${c.subject}?`, "Remove"))) return;
            await call("delete", "/api/v1/tenants/{tenant}/servers/{server}/collaborators/{subject}", { params: { ...params, subject: c.subject } }).then(load, (err) => box.prepend(problem(err)));
          }, "link"),
        ]), "Nobody but tenant admins can use this server yet: add its users."),
        manager && form({ class: "inline-form", "aria-label": "Add a collaborator" }, [
          field("Who", subject, "A person (user:email), a team (team:slug, team:everyone) or a virtual account (virtualaccount:name)."),
          field("Role", role),
          h("button", { type: "submit", class: "primary" }, "Add collaborator"),
        ], async () => {
          await call("put", "/api/v1/tenants/{tenant}/servers/{server}/collaborators", { params, body: { subject: subject.value.trim(), role: /** @type {any} */ (role.value) } });
          toast("Collaborator added");
          await load();
        }),
      );
    } catch (e) {
      mount(box, problem(e));
    }
  };
  load();
  return box;
}

/**
 * Auth Overrides: one's own values for a server's per-user fields, and everyone's for managers.
 * Values are write-only: the list says which are set, never what they are.
 * @param {import('../main.js').Context} ctx
 * @param {{ tenant: string, server: string }} params
 * @param {boolean} manager
 */
function overrides(ctx, params, manager) {
  const box = h("div", { class: "stack" });
  const load = async () => {
    try {
      const schema = await call("get", "/api/v1/tenants/{tenant}/servers/{server}/auth-override-schema", { params });
      const list = await call("get", "/api/v1/tenants/{tenant}/servers/{server}/auth-overrides", { params });
      const own = `user:${ctx.me.email}`;
      const fields = [...schema.placeholders, ...schema.overridable_headers];
      const subject = input("subject", { value: own, required: true, readonly: !manager });
      const inputs = fields.map((name) => input(name, { type: "password", autocomplete: "off", "aria-label": name }));
      mount(
        box,
        fields.length === 0
          ? h("p", { class: "empty" }, "This server takes no per-user values: it uses a shared credential or none.")
          : form({ class: "stack card", "aria-label": "Set credentials" }, [
              h("h2", null, manager ? "Set a person's values" : "Your values"),
              h("p", null, "Stored sealed, used only for calls made as this person, and never shown again."),
              field("For", subject, manager ? "Yourself, or another collaborator (user:email, virtualaccount:name)." : undefined),
              inputs.map((i, n) => field(fields[n], i)),
              h("button", { type: "submit", class: "primary" }, "Save"),
            ], async () => {
              /** @type {Record<string, string>} */
              const values = {};
              inputs.forEach((i, n) => i.value && (values[fields[n]] = i.value));
              await call("put", "/api/v1/tenants/{tenant}/servers/{server}/auth-overrides/{subject}", { params: { ...params, subject: subject.value.trim() }, body: { values } });
              toast("Saved");
              await load();
            }),
        h("h2", null, manager ? "Who has values set" : "Your values"),
        table("Overrides", ["Who", "Set", "Updated", ""], list.items.map((o) => [
          o.subject,
          o.values_set.map((v) => badge(v, "ok")),
          when(o.updated_at),
          button("Remove", async () => {
            if (!(await confirmAction(`Remove the values of ${o.subject}?`, "Remove"))) return;
            await call("delete", "/api/v1/tenants/{tenant}/servers/{server}/auth-overrides/{subject}", { params: { ...params, subject: o.subject } });
            await load();
          }, "link"),
        ]), "No values set."),
      );
    } catch (e) {
      mount(box, problem(e));
    }
  };
  load();
  return box;
}
