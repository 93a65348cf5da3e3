// First run on a fresh install: the platform admin replaces the generated password (it was
// printed in a terminal) and creates the first tenant.

import { call } from "../api.js";
import { h, field, input, form, header, toast, proposeSlug } from "../ui.js";

/** @param {import('../main.js').Context} ctx */
export async function welcomePage(ctx) {
  const current = input("current_password", { type: "password", autocomplete: "current-password", required: true });
  const next = input("new_password", { type: "password", autocomplete: "new-password", required: true, minlength: 12 });
  const password = form({ class: "stack card", "aria-labelledby": "step-password" }, [
    h("h2", { id: "step-password" }, "1. Choose your own password"),
    h("p", null, "The password printed when the gateway first started is in a terminal's scrollback: replace it with one only you know."),
    field("Current (printed) password", current),
    field("New password", next, "At least 12 characters."),
    h("button", { type: "submit", class: "secondary" }, "Change password"),
  ], async (_, f) => {
    await call("post", "/api/v1/me/password", { body: { current_password: current.value, new_password: next.value } });
    f.reset();
    toast("Password changed");
  });
  const slug = input("slug", { required: true, pattern: "[a-z0-9][a-z0-9\\-]*", placeholder: "acme" });
  const name = input("display_name", { required: true, placeholder: "Acme Corp" });
  const tenant = form({ class: "stack card", "aria-labelledby": "step-tenant" }, [
    h("h2", { id: "step-tenant" }, "2. Create the first tenant"),
    h("p", null, "A tenant is an organisation: its servers, members, teams and audit log. You become its first admin."),
    field("Display name", name),
    field("Slug", slug, "Lowercase letters, digits and dashes; it appears in every MCP URL: /<slug>/mcp/<server>/server."),
    h("button", { type: "submit", class: "primary" }, "Create tenant"),
  ], async () => {
    const created = await call("post", "/api/v1/tenants", { body: { slug: slug.value, display_name: name.value } });
    toast(`Tenant ${created.display_name} created`);
    localStorage.setItem("mcpgate.tenant", created.slug);
    await ctx.reload();
    ctx.go(`#/t/${created.slug}/servers`);
  });
  proposeSlug(name, slug);
  return h(
    "div",
    null,
    header("Welcome to mcpgate", [], "Two steps and your gateway is ready for its first MCP server."),
    h("div", { class: "grid-2" }, password, tenant),
  );
}
