// The signed-in person's own things: password, access tokens, connections to providers, and
// the IDE sign-ins they have approved.

import { call } from "../api.js";
import { h, mount, field, input, form, header, table, button, when, toast, paged, problem, confirmAction, badge } from "../ui.js";
import { revealed } from "./tokens.js";

/** @param {import('../main.js').Context} ctx */
export async function mePage(ctx) {
  const me = ctx.me;
  const current = input("current_password", { type: "password", autocomplete: "current-password", required: true });
  const next = input("new_password", { type: "password", autocomplete: "new-password", required: true, minlength: 12 });
  return h(
    "div",
    { class: "stack" },
    header(me.display_name, [], me.email),
    h("dl", { class: "facts" },
      h("dt", null, "Email"), h("dd", null, me.email),
      h("dt", null, "Platform admin"), h("dd", null, me.is_platform_admin ? "yes" : "no"),
      h("dt", null, "Member since"), h("dd", null, when(me.created_at))),
    me.has_password
      ? form({ class: "stack card", "aria-label": "Change password" }, [
          h("h2", null, "Change password"),
          field("Current password", current),
          field("New password", next, "At least 12 characters. Your other sessions are signed out."),
          h("button", { type: "submit", class: "primary" }, "Change password"),
        ], async (_, f) => {
          await call("post", "/api/v1/me/password", { body: { current_password: current.value, new_password: next.value } });
          f.reset();
          toast("Password changed");
        })
      : h("p", null, "You sign in with your organisation's identity provider; there is no password to change here."),
  );
}

/** @param {import('../main.js').Context} ctx */
export async function tokensPage(ctx) {
  const reveal = h("div", { "aria-live": "polite" });
  const list = h("div");
  const show = () =>
    mount(list, paged((cursor) => call("get", "/api/v1/me/tokens", { query: { cursor } }), (items) =>
      table("Your access tokens", ["Name", "Prefix", "Status", "Created", "Expires", "Last used", ""], items.map((t) => [
        t.name, h("code", null, t.prefix), badge(t.status, t.status === "active" ? "ok" : "plain"), when(t.created_at), when(t.expires_at), when(t.last_used_at),
        t.status === "active" && button("Revoke", async () => {
          if (!(await confirmAction(`Revoke ${t.name}? Clients using it stop working at once.`, "Revoke"))) return;
          await call("delete", "/api/v1/me/tokens/{id}", { params: { id: t.id } }).then(show, (e) => list.prepend(problem(e)));
        }, "link", { "aria-label": `Revoke ${t.name}` }),
      ]), "No tokens yet. A token lets an IDE or a script call MCP servers as you, in an Authorization header.")));
  const name = input("name", { required: true, placeholder: "laptop" });
  const expires = input("expires_at", { type: "date" });
  show();
  return h(
    "div",
    { class: "stack" },
    header("Access tokens", [
      button("Revoke all", async () => {
        if (!(await confirmAction("Revoke every token of yours?", "Revoke all"))) return;
        const r = await call("post", "/api/v1/me/tokens/revoke-all");
        toast(`${r.revoked} revoked`);
        show();
      }, "danger"),
    ], "Personal access tokens: use one as “Authorization: Bearer mgw_pat_…” in an IDE's configuration or a script."),
    form({ class: "inline-form card", "aria-label": "Create a token" }, [
      field("Name", name), field("Expires (optional)", expires), h("button", { type: "submit", class: "primary" }, "Create token"),
    ], async (_, f) => {
      const created = await call("post", "/api/v1/me/tokens", { body: { name: name.value, expires_at: expires.value ? new Date(`${expires.value}T23:59:59Z`).toISOString() : null } });
      mount(reveal, revealed(created));
      f.reset();
      show();
    }),
    reveal,
    list,
  );
}

/** @param {import('../main.js').Context} ctx */
export async function connectionsPage(ctx) {
  const box = h("div", { class: "stack" });
  const load = async () => {
    try {
      const list = await call("get", "/api/v1/me/connections");
      mount(box, table("Your connections", ["Server", "Status", "Scopes", "Expires", "Connected", ""], list.items.map((c) => [
        h("a", { href: `#/t/${c.tenant}/servers/${c.server}` }, `${c.tenant}/${c.server}`),
        badge(c.status, c.status === "connected" ? "ok" : "warn"),
        c.scopes || "—",
        when(c.expires_at),
        when(c.connected_at),
        h("span", null,
          button(c.status === "connected" ? "Reconnect" : "Connect", async () => {
            const started = await call("post", "/api/v1/me/connections/{tenant}/{server}", { params: { tenant: c.tenant, server: c.server }, body: { return_to: "/#/me/connections" } });
            location.assign(started.authorization_url);
          }, "secondary small"),
          button("Disconnect", async () => {
            if (!(await confirmAction(`Disconnect ${c.server}?`, "Disconnect"))) return;
            await call("delete", "/api/v1/me/connections/{tenant}/{server}", { params: { tenant: c.tenant, server: c.server } });
            load();
          }, "link")),
      ]), "No connections. Servers that act as you at a provider (OAuth per user) appear here once you authorize them — from their How To Use page."));
    } catch (e) {
      mount(box, problem(e));
    }
  };
  load();
  return h("div", null, header("Connections", [], "Your authorizations at upstream providers, used when the gateway calls them as you."), box);
}

/** @param {import('../main.js').Context} ctx */
export async function signInsPage(ctx) {
  const list = h("div");
  const show = () =>
    mount(list, paged((cursor) => call("get", "/api/v1/me/authorizations", { query: { cursor } }), (items) =>
      table("Your IDE sign-ins", ["Client", "Server", "Approved", "Last used", "Expires", ""], items.map((a) => [
        h("span", null, a.client_name || a.client_id, h("span", { class: "hint block" }, a.client_id)),
        h("code", null, a.resource), when(a.created_at), when(a.last_used_at), when(a.expires_at),
        button("Revoke", async () => {
          if (!(await confirmAction(`Sign ${a.client_name || a.client_id} out of ${a.resource}?`, "Revoke"))) return;
          await call("delete", "/api/v1/me/authorizations/{id}", { params: { id: a.id } }).then(show, (e) => list.prepend(problem(e)));
        }, "link"),
      ]), "No IDE has signed in as you. When one does (Sign in with mcpgate), it appears here and you can end it.")));
  show();
  return h("div", null, header("IDE sign-ins", [], "Clients you approved with “Sign in with mcpgate”: they hold tokens for one MCP URL each."), list);
}
