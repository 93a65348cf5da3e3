// Servers: the tenant's list (search, pages, kind / auth / health at a glance) and the forms
// that register a remote or a virtual server.

import { call, all } from "../api.js";
import { h, mount, field, input, select, form, header, table, badge, paged, linkButton, button, when, toast, proposeSlug } from "../ui.js";

/** @typedef {import('../../types/client').Schemas} Schemas */

/** @param {Schemas['ServerView']} s */
export function authMode(s) {
  const a = s.auth_data;
  if (s.kind === "virtual") return badge("members' own", "info");
  if (!a) return badge("no auth", "info");
  if (a.type === "passthrough") return badge("IdP passthrough", "info");
  const level = a.auth_level === "per_user" || a.grant_type === "authorization_code" ? "per user" : "shared";
  return badge(`${a.type === "oauth2" ? "OAuth 2" : "header"} · ${level}`, level === "per user" ? "warn" : "info");
}

/** @param {Schemas['ServerView']} s */
export function health(s) {
  if (!s.probe) return badge("not probed", "warn");
  const minutes = Math.round((Date.now() - new Date(s.probe.probed_at).getTime()) / 60000);
  const age = minutes < 1 ? "just now" : minutes < 120 ? `${minutes} min ago` : `${Math.round(minutes / 60)} h ago`;
  return badge(`reachable · ${s.probe.tools.length} tools · ${age}`, "ok");
}

/** @param {import('../main.js').Context} ctx */
export async function serversPage(ctx) {
  const t = ctx.tenant;
  const search = input("q", { type: "search", placeholder: "Search by name or slug", value: ctx.query.get("q") || "" });
  const results = h("div");
  const show = () =>
    mount(
      results,
      paged(
        (cursor) => call("get", "/api/v1/tenants/{tenant}/servers", { params: { tenant: t }, query: { q: search.value || undefined, cursor, limit: 25 } }),
        (items) =>
          table(
            "Servers",
            ["Server", "Kind", "Auth", "Health", "Your role"],
            items.map((s) => [
              h("a", { href: `#/t/${t}/servers/${s.slug}` }, s.display_name, h("span", { class: "hint block" }, s.slug)),
              badge(s.kind, s.kind === "virtual" ? "info" : "plain"),
              authMode(s),
              s.kind === "virtual" ? badge(`${(s.servers || []).length} member${(s.servers || []).length === 1 ? "" : "s"}`, "info") : health(s),
              s.role,
            ]),
            search.value
              ? `No server matches “${search.value}”.`
              : h("div", null, h("p", null, "No servers yet. Register the MCP servers your organisation uses once; everyone reaches them through one governed URL."), linkButton("Register a server", `#/t/${t}/servers/new`, "primary")),
          ),
      ),
    );
  let timer = 0;
  search.addEventListener("input", () => {
    clearTimeout(timer);
    timer = window.setTimeout(show, 250);
  });
  show();
  return h(
    "div",
    null,
    header("Servers", [linkButton("Register a remote server", `#/t/${t}/servers/new?kind=remote`, "primary"), linkButton("Compose a virtual server", `#/t/${t}/servers/new?kind=virtual`)]),
    h("div", { class: "toolbar", role: "search" }, field("Search servers", search)),
    results,
  );
}

/**
 * Rows of name/value inputs (headers, template fields).
 * @param {string} label
 * @param {Record<string, string>} initial
 * @param {string} hint
 */
export function pairs(label, initial, hint) {
  const rows = h("div", { class: "pairs" });
  const add = (/** @type {string} */ k = "", /** @type {string} */ v = "") => {
    const name = input("pair-name", { value: k, "aria-label": `${label}: name`, placeholder: "Name" });
    const value = input("pair-value", { value: v, "aria-label": `${label}: value`, placeholder: "Value" });
    const row = h("div", { class: "pair" }, name, value, button("Remove", () => row.remove(), "link", { "aria-label": `Remove ${label} row` }));
    rows.append(row);
  };
  for (const [k, v] of Object.entries(initial || {})) add(k, v);
  const box = h("fieldset", { class: "pairs-box" }, h("legend", null, label), h("p", { class: "hint" }, hint), rows, button(`Add`, () => add(), "secondary small", { "aria-label": `Add ${label}` }));
  return {
    el: box,
    value() {
      /** @type {Record<string, string>} */
      const out = {};
      for (const row of rows.querySelectorAll(".pair")) {
        const [k, v] = [...row.querySelectorAll("input")].map((i) => i.value.trim());
        if (k) out[k] = v;
      }
      return out;
    },
  };
}

/**
 * The outbound auth part of a remote server's form, for every type the gateway supports.
 * @param {Schemas['AuthDataView'] | null | undefined} current
 */
export function authEditor(current) {
  const type = select("auth_type", [["none", "None"], ["header", "Header (API key, bearer token)"], ["oauth2", "OAuth 2"], ["passthrough", "Pass the caller's IdP token through"]], current?.type || "none");
  const level = select("auth_level", [["global", "Shared: one credential for everyone"], ["per_user", "Per user: each person adds their own"]], current?.auth_level || "global");
  const headers = pairs("Headers", /** @type {Record<string,string>} */ (current?.headers || {}), "Per user: write {{API_KEY}} (any UPPER_CASE name) where each person's own value goes, e.g. Authorization = Bearer {{API_KEY}}. Shared secrets are write-only: leave them out to keep the stored ones.");
  const grant = select("grant_type", [["authorization_code", "Authorization code (each person authorizes)"], ["client_credentials", "Client credentials (shared)"]], current?.grant_type || "authorization_code");
  const tokenUrl = input("token_url", { type: "url", value: current?.token_url || "" });
  const authUrl = input("authorization_url", { type: "url", value: current?.authorization_url || "" });
  const clientId = input("client_id", { value: current?.client_id || "" });
  const clientSecret = input("client_secret", { type: "password", autocomplete: "off", placeholder: current?.client_secret_set ? "(set — leave empty to keep)" : "" });
  const scopes = input("scopes", { value: (current?.scopes || []).join(" ") });
  const headerPart = h("div", { class: "stack" }, field("Who holds the credential", level), headers.el);
  const oauthPart = h(
    "div",
    { class: "stack" },
    field("Grant", grant),
    field("Authorization URL", authUrl, "Leave empty to discover it from the upstream's metadata."),
    field("Token URL", tokenUrl, "Leave empty to discover it."),
    field("Client ID", clientId, "Leave empty to register dynamically where the provider allows it."),
    field("Client secret", clientSecret),
    field("Scopes", scopes, "Space-separated."),
  );
  const show = () => {
    headerPart.hidden = type.value !== "header";
    oauthPart.hidden = type.value !== "oauth2";
  };
  type.addEventListener("change", show);
  show();
  return {
    el: h("fieldset", { class: "stack" }, h("legend", null, "Outbound auth"), field("Type", type), headerPart, oauthPart),
    /** @returns {Schemas['AuthData'] | null} */
    value() {
      if (type.value === "header") return { type: "header", auth_level: /** @type {any} */ (level.value), headers: headers.value() };
      if (type.value === "oauth2")
        return {
          type: "oauth2",
          grant_type: /** @type {any} */ (grant.value),
          token_url: tokenUrl.value || null,
          authorization_url: authUrl.value || null,
          client_id: clientId.value || null,
          client_secret: clientSecret.value || null,
          scopes: scopes.value.split(/\s+/).filter(Boolean),
        };
      if (type.value === "passthrough") return { type: "passthrough" };
      return null;
    },
  };
}

/**
 * The tool picker of a virtual server: every remote server of the tenant with the tools its last
 * probe found; per member, which tools to expose.
 * @param {string} tenant
 * @param {Schemas['MemberView'][]} current
 */
export async function memberPicker(tenant, current) {
  /** @type {Schemas['ServerView'][]} */
  const remotes = (await all("/api/v1/tenants/{tenant}/servers", { tenant })).filter((s) => s.kind === "remote");
  const chosen = new Map(current.map((m) => [m.server, m.enabled_tools]));
  const groups = remotes.map((s) => {
    const tools = s.probe?.tools || [];
    const enabled = chosen.get(s.slug);
    const include = /** @type {HTMLInputElement} */ (h("input", { type: "checkbox", name: `member-${s.slug}`, checked: chosen.has(s.slug) }));
    const boxes = tools.map((tool) =>
      /** @type {HTMLInputElement} */ (h("input", {
        type: "checkbox",
        name: `tool-${s.slug}-${tool.name}`,
        value: tool.name,
        checked: enabled === "all" || (Array.isArray(enabled) && enabled.includes(tool.name)),
      })),
    );
    const list = h(
      "ul",
      { class: "tool-list" },
      tools.map((tool, i) => h("li", null, field(tool.name, boxes[i], tool.description || undefined))),
    );
    const sync = () => (list.hidden = !include.checked);
    include.addEventListener("change", () => {
      if (include.checked && !boxes.some((b) => b.checked)) boxes.forEach((b) => (b.checked = true));
      sync();
    });
    sync();
    return {
      slug: s.slug,
      el: h(
        "fieldset",
        { class: "member" },
        h("legend", null, field(`${s.display_name} (${s.slug})`, include)),
        tools.length === 0
          ? h("p", { class: "hint" }, "Not probed yet: all of its tools are exposed. Probe it to choose tools.")
          : list,
      ),
      /** @returns {Schemas['MemberSpec'] | null} */
      value() {
        if (!include.checked) return null;
        const picked = boxes.filter((b) => b.checked).map((b) => b.value);
        return { server: s.slug, enabled_tools: picked.length === boxes.length ? "all" : picked };
      },
    };
  });
  return {
    el: h(
      "fieldset",
      { class: "stack" },
      h("legend", null, "Members and their tools"),
      groups.length === 0 ? h("p", { class: "empty" }, "Register and probe a remote server first: a virtual server is made of them.") : groups.map((g) => g.el),
    ),
    value: () => groups.map((g) => g.value()).filter((v) => v !== null),
  };
}

/** @param {import('../main.js').Context} ctx */
export async function newServerPage(ctx) {
  const t = ctx.tenant;
  const kind = ctx.query.get("kind") === "virtual" ? "virtual" : "remote";
  const name = input("display_name", { required: true });
  const slug = input("slug", { required: true, pattern: "[a-z0-9][a-z0-9\\-]*" });
  proposeSlug(name, slug);
  const description = input("description");
  const url = input("url", { type: "url", required: true, placeholder: "https://mcp.example.com/mcp" });
  const transport = select("transport", [["streamable_http", "Streamable HTTP"], ["sse", "HTTP+SSE (legacy)"]], "streamable_http");
  const headers = pairs("Additional headers", {}, "Sent to the upstream on every request (not secrets: use outbound auth for those).");
  const auth = authEditor(null);
  const members = kind === "virtual" ? await memberPicker(t, []) : null;
  const body = form({ class: "stack", "aria-label": kind === "virtual" ? "New virtual server" : "New remote server" }, [
    field("Display name", name),
    field("Slug", slug, "Lowercase letters, digits and dashes; part of the MCP URL."),
    field("Description", description),
    kind === "remote" && [field("Upstream URL", url, "The MCP server's endpoint."), field("Transport", transport), headers.el, auth.el],
    members && members.el,
    h("div", { class: "actions" }, h("button", { type: "submit", class: "primary" }, kind === "virtual" ? "Create virtual server" : "Register server"), linkButton("Cancel", `#/t/${t}/servers`, "link")),
  ], async () => {
    /** @type {Schemas['CreateServerRequest']} */
    const request = { slug: slug.value, display_name: name.value, description: description.value || null, kind };
    if (kind === "remote") {
      request.url = url.value;
      request.transport = /** @type {any} */ (transport.value);
      request.additional_headers = headers.value();
      request.auth_data = auth.value();
    } else {
      request.servers = members.value();
    }
    const created = await call("post", "/api/v1/tenants/{tenant}/servers", { params: { tenant: t }, body: request });
    toast(`${created.display_name} registered`);
    ctx.go(`#/t/${t}/servers/${created.slug}${kind === "remote" ? "?probe=1" : ""}`);
  });
  return h(
    "div",
    null,
    header(kind === "virtual" ? "Compose a virtual server" : "Register a remote server", [], kind === "virtual" ? "One MCP URL over tools of several servers, each called with its own credentials." : "An MCP server reachable over HTTP. After registering, probe it to see its tools."),
    body,
  );
}

export { when };
