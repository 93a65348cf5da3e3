// Virtual accounts: automation identities with their permissions, tokens and rotation.

import { call } from "../api.js";
import { h, mount, field, input, select, form, header, table, button, when, toast, paged, problem, confirmAction, badge } from "../ui.js";
import { revealed } from "./tokens.js";

/** @typedef {import('../../types/client').Schemas} Schemas */

/** @param {import('../main.js').Context} ctx */
export async function accountsPage(ctx) {
  const tenant = ctx.tenant;
  const box = h("div", { class: "stack" });
  const load = () => {
    const name = input("name", { required: true, pattern: "[a-z0-9][a-z0-9\\-]*" });
    const description = input("description");
    const perms = permissionsEditor([]);
    const interval = input("interval_days", { type: "number", min: 1, placeholder: "off" });
    const grace = input("grace_days", { type: "number", min: 0, value: 7 });
    mount(
      box,
      paged((cursor) => call("get", "/api/v1/tenants/{tenant}/virtual-accounts", { params: { tenant }, query: { cursor } }), (items) =>
        h("div", { class: "stack" }, items.length === 0 ? h("p", { class: "empty" }, "No virtual accounts. Create one for each script, CI job or service that calls MCP servers.") : items.map((va) => account(tenant, va, load)))),
      form({ class: "stack card", "aria-label": "Create a virtual account" }, [
        h("h2", null, "New virtual account"),
        field("Name", name, "Lowercase letters, digits and dashes, e.g. ci-bot."),
        field("Description", description),
        perms.el,
        h("div", { class: "grid-2" }, field("Rotate tokens every (days)", interval, "Leave empty for no automatic rotation."), field("Grace period (days)", grace, "How long the previous token keeps working after a rotation.")),
        h("button", { type: "submit", class: "primary" }, "Create virtual account"),
      ], async () => {
        await call("post", "/api/v1/tenants/{tenant}/virtual-accounts", { params: { tenant }, body: {
          name: name.value, description: description.value || null, permissions: perms.value(),
          auto_rotate: interval.value ? { interval_days: Number(interval.value), grace_days: Number(grace.value || 0) } : null,
        } });
        toast("Virtual account created");
        load();
      }),
    );
  };
  load();
  return h("div", null, header("Virtual accounts", [], "Identities for automation: each has its own permissions per server and its own tokens."), box);
}

/** @param {Schemas['Permission'][]} initial */
function permissionsEditor(initial) {
  const rows = h("div", { class: "pairs" });
  const add = (/** @type {string} */ server = "", /** @type {string} */ role = "user") => {
    const s = input("server", { value: server, "aria-label": "Server slug", placeholder: "server slug" });
    const r = select("role", [["user", "user"], ["manager", "manager"]], role, { "aria-label": "Role" });
    const row = h("div", { class: "pair" }, s, r, button("Remove", () => row.remove(), "link", { "aria-label": "Remove permission" }));
    rows.append(row);
  };
  initial.forEach((p) => add(p.server, p.role));
  return {
    el: h("fieldset", { class: "pairs-box" }, h("legend", null, "Permissions"), h("p", { class: "hint" }, "The servers it may use, and whether it may also change them."), rows, button("Add permission", () => add(), "secondary small")),
    /** @returns {Schemas['Permission'][]} */
    value: () => [...rows.querySelectorAll(".pair")].map((row) => ({ server: row.querySelector("input").value.trim(), role: /** @type {any} */ (row.querySelector("select").value) })).filter((p) => p.server),
  };
}

/**
 * @param {string} tenant
 * @param {Schemas['VirtualAccountView']} va
 * @param {() => void} reload
 */
function account(tenant, va, reload) {
  const params = { tenant, name: va.name };
  const body = h("div", { class: "stack" });
  const reveal = h("div", { "aria-live": "polite" });
  const tokens = h("div");
  const showTokens = () =>
    mount(tokens, paged((cursor) => call("get", "/api/v1/tenants/{tenant}/virtual-accounts/{name}/tokens", { params, query: { cursor } }), (items) =>
      table(`Tokens of ${va.name}`, ["Name", "Prefix", "Status", "Created", "Expires", "Last used", ""], items.map((t) => [
        t.name, h("code", null, t.prefix), badge(t.status, t.status === "active" ? "ok" : "plain"), when(t.created_at), when(t.expires_at), when(t.last_used_at),
        h("span", null,
          t.claimable && button("Claim", async () => {
            const claimed = await call("post", "/api/v1/tenants/{tenant}/virtual-accounts/{name}/tokens/{id}/claim", { params: { ...params, id: t.id } });
            mount(reveal, revealed(claimed));
            showTokens();
          }, "secondary small"),
          t.status === "active" && button("Revoke", async () => {
            if (!(await confirmAction(`Revoke ${t.name}?`, "Revoke"))) return;
            await call("delete", "/api/v1/tenants/{tenant}/virtual-accounts/{name}/tokens/{id}", { params: { ...params, id: t.id } });
            showTokens();
          }, "link", { "aria-label": `Revoke ${t.name}` })),
      ]), "No tokens yet.")));
  const perms = permissionsEditor(va.permissions);
  const interval = input("interval_days", { type: "number", min: 1, value: va.auto_rotate?.interval_days ?? "" });
  const rotateGrace = input("rotate_grace_days", { type: "number", min: 0, value: va.auto_rotate?.grace_days ?? 7 });
  const tokenName = input("name", { placeholder: "e.g. github-actions" });
  const grace = input("grace_days", { type: "number", min: 0, value: va.auto_rotate?.grace_days ?? 7 });
  mount(
    body,
    va.description && h("p", null, va.description),
    h("p", { class: "hint" }, va.auto_rotate ? `Rotates every ${va.auto_rotate.interval_days} days, ${va.auto_rotate.grace_days} days of grace; last rotated ` : "No automatic rotation. ", va.auto_rotate && when(va.last_rotated_at)),
    form({ class: "stack", "aria-label": `Permissions and rotation of ${va.name}` }, [
      perms.el,
      h("div", { class: "grid-2" }, field("Rotate tokens every (days)", interval, "Empty: no automatic rotation."), field("Grace period (days)", rotateGrace)),
      h("button", { type: "submit", class: "secondary" }, "Save"),
    ], async () => {
      await call("patch", "/api/v1/tenants/{tenant}/virtual-accounts/{name}", { params, body: {
        permissions: perms.value(),
        auto_rotate: interval.value ? { interval_days: Number(interval.value), grace_days: Number(rotateGrace.value || 0) } : null,
      } });
      toast("Saved");
    }),
    h("h3", null, "Tokens"),
    reveal,
    tokens,
    h("div", { class: "actions" },
      form({ class: "inline-form", "aria-label": `Issue a token for ${va.name}` }, [field("Token name", tokenName), h("button", { type: "submit", class: "primary" }, "Issue token")], async () => {
        const created = await call("post", "/api/v1/tenants/{tenant}/virtual-accounts/{name}/tokens", { params, body: { name: tokenName.value || null } });
        mount(reveal, revealed(created));
        showTokens();
      }),
      form({ class: "inline-form", "aria-label": `Regenerate the tokens of ${va.name}` }, [field("Old tokens keep working for (days)", grace), h("button", { type: "submit", class: "secondary" }, "Regenerate")], async () => {
        const created = await call("post", "/api/v1/tenants/{tenant}/virtual-accounts/{name}/tokens/regenerate", { params, body: { grace_days: Number(grace.value || 0) } });
        mount(reveal, revealed(created));
        showTokens();
      }),
    ),
    button("Delete virtual account", async () => {
      if (!(await confirmAction(`Delete ${va.name} and all its tokens?`, "Delete"))) return;
      await call("delete", "/api/v1/tenants/{tenant}/virtual-accounts/{name}", { params }).then(reload, (e) => body.prepend(problem(e)));
    }, "danger small"),
  );
  showTokens();
  return h("details", { class: "card" }, h("summary", null, h("strong", null, va.name), " ", h("code", null, `virtualaccount:${va.name}`), " ", `${va.permissions.length} permission${va.permissions.length === 1 ? "" : "s"}`), body);
}
