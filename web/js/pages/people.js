// Members, teams and invitations of a tenant.

import { call } from "../api.js";
import { h, mount, field, input, select, form, header, table, button, when, toast, tabs, paged, problem, confirmAction, copyText, badge } from "../ui.js";

/** @param {import('../main.js').Context} ctx */
export async function peoplePage(ctx) {
  const tenant = ctx.tenant;
  const current = ctx.tenants.find((t) => t.slug === tenant);
  const admin = ctx.me.is_platform_admin || current?.role === "admin";
  return h(
    "div",
    null,
    header("Members & teams", [], "Who belongs to this tenant. Servers are shared with people and teams on each server's Collaborators tab."),
    tabs([
      { id: "members", label: "Members", render: () => members(tenant, admin) },
      { id: "teams", label: "Teams", render: () => teams(tenant, admin) },
      ...(admin ? [{ id: "invitations", label: "Invitations", render: () => invitations(tenant) }] : []),
    ], ctx.params.tab || "members"),
  );
}

/** @param {string} tenant @param {boolean} admin */
function members(tenant, admin) {
  const box = h("div", { class: "stack" });
  const params = { tenant };
  const load = () => {
    const email = input("email", { type: "email", required: true });
    const role = select("role", [["member", "Member"], ["admin", "Admin"]], "member");
    mount(
      box,
      paged((cursor) => call("get", "/api/v1/tenants/{tenant}/members", { params, query: { cursor } }), (items) =>
        table("Members", ["Person", "Role", "Since", ""], items.map((m) => [
          h("span", null, m.display_name, h("span", { class: "hint block" }, m.email)),
          admin ? select("role", [["member", "member"], ["admin", "admin"]], m.role, { "aria-label": `Role of ${m.email}`, onchange: (/** @type {Event} */ e) =>
            call("patch", "/api/v1/tenants/{tenant}/members/{email}", { params: { tenant, email: m.email }, body: { role: /** @type {any} */ (/** @type {HTMLSelectElement} */ (e.target).value) } }).then(() => toast("Role changed"), (err) => box.prepend(problem(err))) }) : m.role,
          when(m.added_at),
          admin && button("Remove", async () => {
            if (!(await confirmAction(`Remove ${m.email} from the tenant?`, "Remove"))) return;
            await call("delete", "/api/v1/tenants/{tenant}/members/{email}", { params: { tenant, email: m.email } }).then(load, (err) => box.prepend(problem(err)));
          }, "link"),
        ]), "No members.")),
      admin && form({ class: "inline-form", "aria-label": "Add a member" }, [
        field("Email", email, "Someone with an account on this gateway; invite anyone else."), field("Role", role),
        h("button", { type: "submit", class: "primary" }, "Add member"),
      ], async () => {
        await call("post", "/api/v1/tenants/{tenant}/members", { params, body: { email: email.value, role: /** @type {any} */ (role.value) } });
        toast("Member added");
        load();
      }),
    );
  };
  load();
  return box;
}

/** @param {string} tenant @param {boolean} admin */
function teams(tenant, admin) {
  const box = h("div", { class: "stack" });
  const load = () => {
    const slug = input("slug", { required: true, pattern: "[a-z0-9][a-z0-9\\-]*" });
    const name = input("display_name", { required: true });
    mount(
      box,
      paged((cursor) => call("get", "/api/v1/tenants/{tenant}/teams", { params: { tenant }, query: { cursor } }), (items) =>
        h("div", { class: "stack" }, items.length === 0 ? h("p", { class: "empty" }, "No teams yet.") : items.map((t) => team(tenant, t, admin, load)))),
      admin && form({ class: "inline-form", "aria-label": "Create a team" }, [
        field("Team name", name), field("Slug", slug), h("button", { type: "submit", class: "primary" }, "Create team"),
      ], async () => {
        await call("post", "/api/v1/tenants/{tenant}/teams", { params: { tenant }, body: { slug: slug.value, display_name: name.value } });
        toast("Team created");
        load();
      }),
    );
  };
  load();
  return box;
}

/**
 * @param {string} tenant
 * @param {import('../../types/client').Schemas['TeamView']} t
 * @param {boolean} admin
 * @param {() => void} reload
 */
function team(tenant, t, admin, reload) {
  const params = { tenant, team: t.slug };
  const list = h("div");
  const show = () =>
    mount(list, paged((cursor) => call("get", "/api/v1/tenants/{tenant}/teams/{team}/members", { params, query: { cursor } }), (items) =>
      table(`Members of ${t.display_name}`, ["Person", ""], items.map((m) => [
        h("span", null, m.display_name, h("span", { class: "hint block" }, m.email)),
        admin && !t.builtin && button("Remove", () => call("delete", "/api/v1/tenants/{tenant}/teams/{team}/members/{email}", { params: { ...params, email: m.email } }).then(show, (e) => list.prepend(problem(e))), "link", { "aria-label": `Remove ${m.email} from ${t.slug}` }),
      ]), t.builtin ? "Every member of the tenant." : "Nobody in this team yet.")));
  const email = input("email", { type: "email", required: true });
  return h(
    "details",
    { class: "card", ontoggle: show },
    h("summary", null, h("strong", null, t.display_name), " ", h("code", null, `team:${t.slug}`), t.builtin && badge("everyone", "info")),
    h("div", { class: "stack" }, list,
      admin && !t.builtin && form({ class: "inline-form", "aria-label": `Add to ${t.slug}` }, [field("Email", email), h("button", { type: "submit", class: "secondary" }, "Add to team")], async () => {
        await call("post", "/api/v1/tenants/{tenant}/teams/{team}/members", { params, body: { email: email.value } });
        show();
      }),
      admin && !t.builtin && button("Delete team", async () => {
        if (!(await confirmAction(`Delete team ${t.display_name}?`, "Delete"))) return;
        await call("delete", "/api/v1/tenants/{tenant}/teams/{team}", { params });
        reload();
      }, "danger small"),
    ),
  );
}

/** @param {string} tenant */
function invitations(tenant) {
  const box = h("div", { class: "stack" });
  const created = h("div", { "aria-live": "polite" });
  const load = () => {
    const email = input("email", { type: "email", required: true });
    const role = select("role", [["member", "Member"], ["admin", "Admin"]], "member");
    mount(
      box,
      form({ class: "inline-form", "aria-label": "Invite someone" }, [field("Email", email), field("Role", role), h("button", { type: "submit", class: "primary" }, "Invite")], async () => {
        const invite = await call("post", "/api/v1/tenants/{tenant}/invitations", { params: { tenant }, body: { email: email.value, role: /** @type {any} */ (role.value) } });
        mount(created, h("div", { class: "success" }, h("p", null, `Send ${invite.email} this link (shown once):`), invite.url ? copyText(invite.url, "Copy link") : null));
        load();
      }),
      created,
      paged((cursor) => call("get", "/api/v1/tenants/{tenant}/invitations", { params: { tenant }, query: { cursor } }), (items) =>
        table("Invitations", ["Email", "Role", "Status", "Expires", ""], items.map((i) => [
          i.email, i.role, badge(i.status, i.status === "pending" ? "warn" : i.status === "accepted" ? "ok" : "plain"), when(i.expires_at),
          i.status === "pending" && button("Withdraw", () => call("delete", "/api/v1/tenants/{tenant}/invitations/{id}", { params: { tenant, id: i.id } }).then(load, (e) => box.prepend(problem(e))), "link"),
        ]), "No invitations. Invite people who have no account yet: they choose a password or sign in with SSO.")),
    );
  };
  load();
  return box;
}
