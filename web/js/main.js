// The console's shell: who is signed in, the tenant switcher, the navigation, and a hash router
// (`#/t/acme/servers`), so the server answers one page and every console address is
// bookmarkable without colliding with the gateway's own paths.

import { call, all, setCsrf, whenSignedOut } from "./api.js";
import { h, mount, main, problem, select } from "./ui.js";
import { signInPage } from "./pages/signin.js";
import { welcomePage } from "./pages/welcome.js";
import { serversPage, newServerPage } from "./pages/servers.js";
import { serverPage } from "./pages/server.js";
import { peoplePage } from "./pages/people.js";
import { accountsPage } from "./pages/accounts.js";
import { identityPage } from "./pages/identity.js";
import { auditPage } from "./pages/audit.js";
import { tenantSettingsPage, tenantsPage } from "./pages/tenants.js";
import { mePage, tokensPage, connectionsPage, signInsPage } from "./pages/me.js";
import { usersPage, userPage, policyPage } from "./pages/admin.js";

/** @typedef {import('../types/client').Schemas} Schemas */

/**
 * What every page gets.
 * @typedef {object} Context
 * @property {Schemas['UserView']} me
 * @property {Schemas['TenantView'][]} tenants
 * @property {string} tenant  the current tenant's slug ("" when there is none)
 * @property {Record<string, string>} params
 * @property {URLSearchParams} query
 * @property {(hash: string) => void} go
 * @property {() => Promise<void>} reload  re-reads the tenants (after creating one) and re-renders
 */

/** @type {{ me: Schemas['UserView'] | null, tenants: Schemas['TenantView'][] }} */
const session = { me: null, tenants: [] };

/** @type {[RegExp, (ctx: Context) => Node | Promise<Node>, string][]} route, page, nav key */
const routes = [
  [/^\/welcome$/, welcomePage, ""],
  [/^\/t\/(?<tenant>[^/]+)\/servers$/, serversPage, "servers"],
  [/^\/t\/(?<tenant>[^/]+)\/servers\/new$/, newServerPage, "servers"],
  [/^\/t\/(?<tenant>[^/]+)\/servers\/(?<server>[^/]+)(?:\/(?<tab>[a-z-]+))?$/, serverPage, "servers"],
  [/^\/t\/(?<tenant>[^/]+)\/people(?:\/(?<tab>[a-z-]+))?$/, peoplePage, "people"],
  [/^\/t\/(?<tenant>[^/]+)\/accounts$/, accountsPage, "accounts"],
  [/^\/t\/(?<tenant>[^/]+)\/identity$/, identityPage, "identity"],
  [/^\/t\/(?<tenant>[^/]+)\/audit$/, auditPage, "audit"],
  [/^\/t\/(?<tenant>[^/]+)\/settings$/, tenantSettingsPage, "settings"],
  [/^\/tenants$/, tenantsPage, "tenants"],
  [/^\/me$/, mePage, "me"],
  [/^\/me\/tokens$/, tokensPage, "tokens"],
  [/^\/me\/connections$/, connectionsPage, "connections"],
  [/^\/me\/sign-ins$/, signInsPage, "sign-ins"],
  [/^\/admin\/users$/, usersPage, "users"],
  [/^\/admin\/users\/(?<id>\d+)$/, userPage, "users"],
  [/^\/admin\/policy$/, policyPage, "policy"],
  [/^\/admin\/identity$/, identityPage, "platform-identity"],
];

/** @param {string} hash */
function go(hash) {
  if (location.hash === hash) render();
  else location.hash = hash;
}

async function start() {
  mount(document.body, h("div", { id: "toasts", class: "toasts", role: "status", "aria-live": "polite" }), h("div", { id: "root" }));
  whenSignedOut(() => {
    session.me = null;
    render();
  });
  window.addEventListener("hashchange", render);
  try {
    const me = await call("get", "/api/v1/me");
    setCsrf(me.csrf_token || "");
    session.me = me.user;
    await loadTenants();
  } catch {
    session.me = null;
  }
  render();
}

async function loadTenants() {
  session.tenants = await all("/api/v1/tenants", {});
}

/** The tenant last used, if it is still one of the caller's. */
function preferredTenant() {
  const saved = localStorage.getItem("mcpgate.tenant");
  if (saved && session.tenants.some((t) => t.slug === saved)) return saved;
  return session.tenants[0]?.slug || "";
}

async function render() {
  const root = /** @type {HTMLElement} */ (document.getElementById("root"));
  const path = location.hash.replace(/^#/, "") || "/";
  const [route, queryText] = path.split("?");
  if (!session.me) {
    document.title = "Sign in · mcpgate";
    mount(root, await signInPage({
      signedIn: async (user, csrf) => {
        session.me = user;
        setCsrf(csrf);
        await loadTenants();
        render();
      },
    }));
    return;
  }
  if (route === "/" || route === "") {
    const tenant = preferredTenant();
    if (!tenant) return go(session.me.is_platform_admin ? "#/welcome" : "#/me");
    return go(`#/t/${tenant}/servers`);
  }
  const match = routes.map(([re, page, nav]) => ({ m: re.exec(route), page, nav })).find((r) => r.m);
  const params = /** @type {Record<string, string>} */ ({ ...(match?.m?.groups || {}) });
  for (const k of Object.keys(params)) params[k] = params[k] === undefined ? undefined : decodeURIComponent(params[k]);
  const tenant = params.tenant || preferredTenant();
  if (params.tenant) localStorage.setItem("mcpgate.tenant", params.tenant);
  /** @type {Context} */
  const ctx = {
    me: session.me,
    tenants: session.tenants,
    tenant,
    params,
    query: new URLSearchParams(queryText || ""),
    go,
    reload: async () => {
      await loadTenants();
      render();
    },
  };
  mount(root, shell(ctx, match?.nav || ""));
  const target = main();
  if (!match) {
    mount(target, h("h1", null, "Not found"), h("p", null, "There is no console page at this address. ", h("a", { href: "#/" }, "Go to the start.")));
    return;
  }
  try {
    const content = await match.page(ctx);
    mount(target, content);
  } catch (e) {
    mount(target, h("h1", null, "This page could not be shown"), problem(e));
  }
  const heading = target.querySelector("h1");
  document.title = `${heading?.textContent || "Console"} · mcpgate`;
  // Focus moves to the new page's heading, so keyboard and screen-reader users start there.
  if (heading instanceof HTMLElement && document.activeElement?.closest("nav, #main") ) heading.focus();
}

/**
 * @param {Context} ctx
 * @param {string} active
 */
function shell(ctx, active) {
  const t = ctx.tenant;
  const current = ctx.tenants.find((x) => x.slug === t);
  const admin = ctx.me.is_platform_admin || current?.role === "admin";
  /** @param {string} key @param {string} href @param {string} label */
  const link = (key, href, label) =>
    h("li", null, h("a", { href, "aria-current": key === active ? "page" : undefined }, label));
  const switcher = select(
    "tenant",
    ctx.tenants.map((x) => [x.slug, x.display_name]),
    t,
    { "aria-label": "Tenant", onchange: (/** @type {Event} */ e) => go(`#/t/${/** @type {HTMLSelectElement} */ (e.target).value}/servers`) },
  );
  return h(
    "div",
    { class: "layout" },
    h("a", { class: "skip", href: "#main", onclick: (/** @type {Event} */ e) => { e.preventDefault(); main().querySelector("h1")?.focus(); } }, "Skip to content"),
    h(
      "header",
      { class: "topbar" },
      h("a", { class: "brand", href: "#/" }, "mcpgate"),
      ctx.tenants.length > 0 ? h("div", { class: "switcher" }, switcher) : null,
      h(
        "div",
        { class: "account" },
        h("a", { href: "#/me", class: "who" }, ctx.me.display_name),
        h("button", { type: "button", class: "link", onclick: signOut }, "Sign out"),
      ),
    ),
    h(
      "nav",
      { class: "sidebar", "aria-label": "Console" },
      t && h("h2", null, current?.display_name || t),
      t && h(
        "ul",
        null,
        link("servers", `#/t/${t}/servers`, "Servers"),
        link("people", `#/t/${t}/people`, "Members & teams"),
        admin && link("accounts", `#/t/${t}/accounts`, "Virtual accounts"),
        admin && link("identity", `#/t/${t}/identity`, "Identity providers"),
        admin && link("audit", `#/t/${t}/audit`, "Audit log"),
        admin && link("settings", `#/t/${t}/settings`, "Tenant settings"),
      ),
      h("h2", null, "You"),
      h(
        "ul",
        null,
        link("me", "#/me", "Profile & password"),
        link("tokens", "#/me/tokens", "Access tokens"),
        link("connections", "#/me/connections", "Connections"),
        link("sign-ins", "#/me/sign-ins", "IDE sign-ins"),
        link("tenants", "#/tenants", "Tenants"),
      ),
      ctx.me.is_platform_admin && [
        h("h2", null, "Platform"),
        h(
          "ul",
          null,
          link("users", "#/admin/users", "Users"),
          link("platform-identity", "#/admin/identity", "Identity providers"),
          link("policy", "#/admin/policy", "Policy snapshots"),
        ),
      ],
    ),
    h("main", { id: "main" }, h("p", { class: "loading" }, "Loading…")),
  );
}

async function signOut() {
  try {
    await call("post", "/api/v1/auth/logout");
  } finally {
    session.me = null;
    session.tenants = [];
    location.hash = "#/";
    render();
  }
}

start();
