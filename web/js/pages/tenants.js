// Tenants: the ones you belong to (and all of them for platform admins), creating one, and a
// tenant's own settings.

import { call } from "../api.js";
import { h, field, input, form, header, table, button, when, toast, confirmAction, badge } from "../ui.js";

/** @param {import('../main.js').Context} ctx */
export async function tenantsPage(ctx) {
  const slug = input("slug", { required: true, pattern: "[a-z0-9][a-z0-9\\-]*" });
  const name = input("display_name", { required: true });
  return h(
    "div",
    { class: "stack" },
    header("Tenants", [], "The organisations on this gateway you can reach."),
    table("Tenants", ["Tenant", "Your role", "Created"], ctx.tenants.map((t) => [
      h("a", { href: `#/t/${t.slug}/servers` }, t.display_name, h("span", { class: "hint block" }, t.slug)),
      t.role ? badge(t.role, t.role === "admin" ? "ok" : "info") : "platform admin",
      when(t.created_at),
    ]), "You belong to no tenant yet. Ask a tenant admin to add or invite you."),
    form({ class: "inline-form card", "aria-label": "Create a tenant" }, [
      field("Display name", name), field("Slug", slug), h("button", { type: "submit", class: "primary" }, "Create tenant"),
    ], async () => {
      const created = await call("post", "/api/v1/tenants", { body: { slug: slug.value, display_name: name.value } });
      toast(`Tenant ${created.display_name} created`);
      await ctx.reload();
      ctx.go(`#/t/${created.slug}/servers`);
    }),
  );
}

/** @param {import('../main.js').Context} ctx */
export async function tenantSettingsPage(ctx) {
  const params = { tenant: ctx.tenant };
  const tenant = await call("get", "/api/v1/tenants/{tenant}", { params });
  const name = input("display_name", { value: tenant.display_name, required: true });
  const logo = input("logo_url", { type: "url", value: tenant.logo_url || "", placeholder: "https://example.com/logo.svg" });
  return h(
    "div",
    { class: "stack" },
    header("Tenant settings", [], h("span", null, "Slug ", h("code", null, tenant.slug), " · created ", when(tenant.created_at))),
    form({ class: "stack card", "aria-label": "Tenant details" }, [
      field("Display name", name, "Shown to people on the sign-in and consent pages of this tenant's servers."),
      field("Logo URL", logo, "Optional, https: shown beside the name on those pages so people know whose gateway is asking."),
      h("button", { type: "submit", class: "primary" }, "Save"),
    ], async () => {
      await call("patch", "/api/v1/tenants/{tenant}", { params, body: { display_name: name.value, logo_url: logo.value } });
      toast("Saved");
      await ctx.reload();
    }),
    ctx.me.is_platform_admin && h("section", { class: "danger-zone" }, h("h2", null, "Delete this tenant"), h("p", null, "Every server, member, token and audit event of the tenant goes with it."),
      button("Delete tenant", async () => {
        if (!(await confirmAction(`Delete ${tenant.display_name} and everything in it?`, "Delete tenant"))) return;
        await call("delete", "/api/v1/tenants/{tenant}", { params });
        localStorage.removeItem("mcpgate.tenant");
        await ctx.reload();
        ctx.go("#/tenants");
      }, "danger")),
  );
}
