// Platform administration: user accounts and the signed policy snapshots.

import { call } from "../api.js";
import { h, mount, field, input, form, header, table, button, when, toast, paged, problem, badge, confirmAction } from "../ui.js";

/** @param {import('../main.js').Context} ctx */
export async function usersPage(ctx) {
  const list = h("div");
  const show = () =>
    mount(list, paged((cursor) => call("get", "/api/v1/users", { query: { cursor } }), (items) =>
      table("Users", ["Person", "Roles", "Sign-in", "Created", ""], items.map((u) => [
        h("a", { href: `#/admin/users/${u.id}` }, u.display_name, h("span", { class: "hint block" }, u.email)),
        h("span", null, u.is_platform_admin && badge("platform admin", "warn"), u.disabled && badge("disabled", "bad")),
        u.has_password ? "password" : "SSO",
        when(u.created_at),
        u.id !== ctx.me.id && button(u.disabled ? "Enable" : "Disable", async () => {
          if (!u.disabled && !(await confirmAction(`Disable ${u.email}? Their sessions and tokens stop working.`, "Disable"))) return;
          await call("patch", "/api/v1/users/{id}", { params: { id: String(u.id) }, body: { disabled: !u.disabled } }).then(show, (e) => list.prepend(problem(e)));
        }, "link"),
      ]), "No users.")));
  const email = input("email", { type: "email", required: true });
  const name = input("display_name", { required: true });
  const password = input("password", { type: "password", autocomplete: "new-password", minlength: 12 });
  const admin = /** @type {HTMLInputElement} */ (h("input", { type: "checkbox" }));
  show();
  return h(
    "div",
    { class: "stack" },
    header("Users", [], "Every account on this gateway."),
    list,
    form({ class: "stack card", "aria-label": "Create a user" }, [
      h("h2", null, "New user"),
      h("div", { class: "grid-2" }, field("Email", email), field("Display name", name)),
      field("Password", password, "Leave empty for someone who signs in with SSO only."),
      field("Platform admin", admin),
      h("button", { type: "submit", class: "primary" }, "Create user"),
    ], async (_, f) => {
      await call("post", "/api/v1/users", { body: { email: email.value, display_name: name.value, password: password.value || null, is_platform_admin: admin.checked } });
      toast("User created");
      f.reset();
      show();
    }),
  );
}

/**
 * One person's access (platform admins): their tokens and the IDEs signed in as them, each
 * revocable — a lost laptop, someone leaving.
 * @param {import('../main.js').Context} ctx
 */
export async function userPage(ctx) {
  const id = ctx.params.id;
  const user = await call("get", "/api/v1/users/{id}", { params: { id } });
  const tokens = h("div");
  const signIns = h("div");
  const showTokens = () =>
    mount(tokens, paged((cursor) => call("get", "/api/v1/users/{id}/tokens", { params: { id }, query: { cursor } }), (items) =>
      table(`Tokens of ${user.email}`, ["Name", "Prefix", "Status", "Created", "Last used", ""], items.map((t) => [
        t.name, h("code", null, t.prefix), badge(t.status, t.status === "active" ? "ok" : "plain"), when(t.created_at), when(t.last_used_at),
        t.status === "active" && button("Revoke", async () => {
          if (!(await confirmAction(`Revoke ${user.email}'s token ${t.name}?`, "Revoke"))) return;
          await call("delete", "/api/v1/users/{id}/tokens/{token}", { params: { id, token: t.id } }).then(showTokens, (e) => tokens.prepend(problem(e)));
        }, "link", { "aria-label": `Revoke ${t.name}` }),
      ]), "No personal access tokens.")));
  const showSignIns = () =>
    mount(signIns, paged((cursor) => call("get", "/api/v1/users/{id}/authorizations", { params: { id }, query: { cursor } }), (items) =>
      table(`IDE sign-ins of ${user.email}`, ["Client", "Server", "Approved", "Last used", ""], items.map((a) => [
        h("span", null, a.client_name || a.client_id, h("span", { class: "hint block" }, a.client_id)),
        h("code", null, a.resource), when(a.created_at), when(a.last_used_at),
        button("Revoke", async () => {
          if (!(await confirmAction(`End ${a.client_name || a.client_id}'s sign-in as ${user.email}?`, "Revoke"))) return;
          await call("delete", "/api/v1/users/{id}/authorizations/{authorization}", { params: { id, authorization: a.id } }).then(showSignIns, (e) => signIns.prepend(problem(e)));
        }, "link"),
      ]), "No IDE is signed in as this person.")));
  showTokens();
  showSignIns();
  return h(
    "div",
    { class: "stack" },
    header(user.display_name, [], user.email),
    h("h2", null, "Personal access tokens"),
    tokens,
    h("h2", null, "IDE sign-ins"),
    signIns,
  );
}

/** @param {import('../main.js').Context} ctx */
export async function policyPage(ctx) {
  const keys = await call("get", "/api/v1/policy/keys");
  const history = await call("get", "/api/v1/policy/snapshots", { query: { limit: 200 } });
  const items = history.items;
  const latest = items[0];
  const ageSeconds = latest ? Math.round((Date.now() - new Date(latest.issued_at).getTime()) / 1000) : 0;
  const from = input("from", { type: "number", value: items[Math.min(5, items.length - 1)]?.version ?? "" });
  const to = input("to", { type: "number", value: latest?.version ?? "" });
  const diff = h("div", { "aria-live": "polite" });
  /** @param {any} s */
  const summary = (s) => s?.summary || {};
  return h(
    "div",
    { class: "stack" },
    header("Policy snapshots", [], "What every proxy enforces: a signed document the control plane publishes after each change."),
    latest
      ? h("dl", { class: "facts" },
          h("dt", null, "Current version"), h("dd", null, String(latest.version)),
          h("dt", null, "Age"), h("dd", null, ageSeconds < 120 ? `${ageSeconds} s` : `${Math.round(ageSeconds / 60)} min`, " (", when(latest.issued_at), ")"),
          h("dt", null, "Size"), h("dd", null, `${(latest.size / 1024).toFixed(1)} KiB · ${summary(latest).servers ?? "?"} servers · ${summary(latest).tokens ?? "?"} tokens`),
          h("dt", null, "Signed with"), h("dd", null, h("code", null, latest.kid)))
      : h("p", { class: "empty" }, "No snapshot published yet."),
    h("h2", null, "Signing keys"),
    table("Signing keys", ["Key id", "Algorithm", "Curve"], keys.keys.map((k) => [h("code", null, k.kid), k.alg, k.crv]), "No keys."),
    h("h2", null, "What changed between two versions"),
    form({ class: "inline-form", "aria-label": "Compare versions" }, [field("From version", from), field("To version", to), h("button", { type: "submit", class: "secondary" }, "Compare")], async () => {
      const a = Number(from.value);
      const b = Number(to.value);
      const between = items.filter((s) => s.version > Math.min(a, b) && s.version <= Math.max(a, b)).sort((x, y) => x.version - y.version);
      const changes = between.flatMap((s) => (summary(s).changes || []).map((/** @type {string} */ c) => [String(s.version), h("code", null, c)]));
      mount(diff, between.length === 0 ? h("p", { class: "empty" }, "No versions in that range among the last 200.") : table("Changes", ["Version", "Change"], changes, "The versions in this range changed nothing audited."));
    }),
    diff,
    h("h2", null, "History"),
    table("Snapshot history", ["Version", "Issued", "Size", "Changes"], items.map((s) => [
      String(s.version), when(s.issued_at), `${(s.size / 1024).toFixed(1)} KiB`,
      (summary(s).changes || []).slice(0, 3).join(", ") + ((summary(s).changes || []).length > 3 ? ", …" : ""),
    ]), "No snapshots."),
  );
}
