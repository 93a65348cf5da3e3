// Identity providers (OIDC): the tenant's, or the platform's for platform admins. Sign-in with
// SSO, provider JWTs at the proxy, and who is let in.

import { call } from "../api.js";
import { h, mount, field, input, select, form, header, table, button, when, toast, paged, problem, confirmAction, badge, copyText } from "../ui.js";

/** @typedef {import('../../types/client').Schemas} Schemas */

/** @param {import('../main.js').Context} ctx */
export async function identityPage(ctx) {
  const tenant = ctx.params.tenant;
  const api = {
    list: (/** @type {string | undefined} */ cursor) => tenant
      ? call("get", "/api/v1/tenants/{tenant}/identity-providers", { params: { tenant }, query: { cursor } })
      : call("get", "/api/v1/identity-providers", { query: { cursor } }),
    create: (/** @type {Schemas['IdpRequest']} */ body) => tenant
      ? call("post", "/api/v1/tenants/{tenant}/identity-providers", { params: { tenant }, body })
      : call("post", "/api/v1/identity-providers", { body }),
    test: (/** @type {string} */ idp) => tenant
      ? call("post", "/api/v1/tenants/{tenant}/identity-providers/{idp}/test", { params: { tenant, idp } })
      : call("post", "/api/v1/identity-providers/{idp}/test", { params: { idp } }),
    remove: (/** @type {string} */ idp) => tenant
      ? call("delete", "/api/v1/tenants/{tenant}/identity-providers/{idp}", { params: { tenant, idp } })
      : call("delete", "/api/v1/identity-providers/{idp}", { params: { idp } }),
  };
  const box = h("div", { class: "stack" });
  const load = () => {
    const v = {
      slug: input("slug", { required: true, pattern: "[a-z0-9][a-z0-9\\-]*" }),
      name: input("display_name", { required: true, placeholder: "Okta" }),
      issuer: input("issuer", { type: "url", required: true, placeholder: "https://login.example.com" }),
      clientId: input("client_id"),
      secret: input("client_secret", { type: "password", autocomplete: "off" }),
      domains: input("allowed_domains", { placeholder: "example.com" }),
      groups: input("groups_claim", { placeholder: "groups" }),
      role: select("default_role", [["member", "member"], ["admin", "admin"]], "member"),
      login: /** @type {HTMLInputElement} */ (h("input", { type: "checkbox", checked: true })),
      jwt: /** @type {HTMLInputElement} */ (h("input", { type: "checkbox" })),
      required: /** @type {HTMLInputElement} */ (h("input", { type: "checkbox" })),
    };
    mount(
      box,
      paged(api.list, (items) =>
        h("div", { class: "stack" }, items.length === 0 ? h("p", { class: "empty" }, "No identity provider yet. Add your organisation's OpenID provider so people sign in with it.") : items.map((idp) => {
          const result = h("div", { "aria-live": "polite" });
          return h("section", { class: "card" },
            h("h2", null, idp.display_name, " ", h("code", null, idp.slug)),
            h("dl", { class: "facts" },
              h("dt", null, "Issuer"), h("dd", null, h("code", null, idp.issuer)),
              h("dt", null, "Redirect URI"), h("dd", null, copyText(idp.redirect_uri), h("span", { class: "hint block" }, "Register this at the provider.")),
              h("dt", null, "Used for"), h("dd", null, idp.login && badge("sign-in", "ok"), " ", idp.accept_jwt && badge("JWTs at the proxy", "ok"), " ", idp.sso_required && badge("SSO required", "warn")),
              h("dt", null, "Domains"), h("dd", null, idp.allowed_domains.join(", ") || "any vouched by the provider"),
              h("dt", null, "Keys fetched"), h("dd", null, when(idp.keys_fetched_at))),
            h("div", { class: "actions" },
              button("Test", async () => {
                mount(result, h("p", { class: "loading" }, h("progress", { "aria-label": "Testing" }), " Fetching discovery and keys…"));
                try {
                  const r = await api.test(idp.slug);
                  mount(result, h("div", { class: "success" }, `Discovery works: ${r.keys} signing key${r.keys === 1 ? "" : "s"} at ${r.jwks_uri}.`));
                } catch (e) {
                  mount(result, problem(e));
                }
              }),
              button("Delete", async () => {
                if (!(await confirmAction(`Delete ${idp.display_name}? People who sign in with it can no longer do so.`, "Delete"))) return;
                await api.remove(idp.slug).then(load, (e) => box.prepend(problem(e)));
              }, "danger")),
            result);
        }))),
      form({ class: "stack card", "aria-label": "Add an identity provider" }, [
        h("h2", null, "Add an OpenID provider"),
        h("div", { class: "grid-2" }, field("Display name", v.name), field("Slug", v.slug)),
        field("Issuer", v.issuer, "Its discovery document is read from <issuer>/.well-known/openid-configuration."),
        h("div", { class: "grid-2" }, field("Client ID", v.clientId), field("Client secret", v.secret)),
        field("Allowed email domains", v.domains, "Comma-separated; empty lets in anyone the provider vouches for."),
        h("div", { class: "grid-2" }, field("Groups claim", v.groups, "Groups become teams of the same slug."), field("Role of new people", v.role)),
        field("Offer it on the sign-in page", v.login),
        field("Accept its JWTs at the proxy", v.jwt),
        field("Require it for its domains (no passwords)", v.required),
        h("button", { type: "submit", class: "primary" }, "Add provider"),
      ], async () => {
        await api.create({
          slug: v.slug.value, display_name: v.name.value, issuer: v.issuer.value, client_id: v.clientId.value || null, client_secret: v.secret.value || null,
          allowed_domains: v.domains.value.split(",").map((d) => d.trim()).filter(Boolean), groups_claim: v.groups.value || null,
          default_role: /** @type {any} */ (v.role.value), login: v.login.checked, accept_jwt: v.jwt.checked, sso_required: v.required.checked,
        });
        toast("Identity provider added");
        load();
      }),
    );
  };
  load();
  return h("div", null, header(tenant ? "Identity providers" : "Platform identity providers", [], tenant ? "Your organisation's OpenID providers: sign-in with SSO, JWTs at the proxy, groups as teams." : "Providers anyone on the platform may sign in with."), box);
}
