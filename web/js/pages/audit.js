// The tenant's audit log: filters, pages, and a JSON export of what the filters select.

import { call, all } from "../api.js";
import { h, mount, field, input, select, form, header, table, when, paged, badge, download, toast, problem } from "../ui.js";

/** @param {import('../main.js').Context} ctx */
export async function auditPage(ctx) {
  const tenant = ctx.tenant;
  const q = ctx.query;
  const actor = input("actor", { value: q.get("actor") || "", placeholder: "user:ann@example.com" });
  const action = input("action", { value: q.get("action") || "", placeholder: "server.create, mcp.request" });
  const server = input("server", { value: q.get("server") || "", placeholder: "server slug" });
  const outcome = select("outcome", [["", "any"], ["success", "success"], ["allowed", "allowed"], ["denied", "denied"], ["error", "error"], ["failure", "failure"]], q.get("outcome") || "");
  const since = input("since", { type: "datetime-local", value: q.get("since") || "" });
  const until = input("until", { type: "datetime-local", value: q.get("until") || "" });
  const filters = () => ({
    actor: actor.value || undefined,
    action: action.value || undefined,
    server: server.value || undefined,
    outcome: outcome.value || undefined,
    since: since.value ? new Date(since.value).toISOString() : undefined,
    until: until.value ? new Date(until.value).toISOString() : undefined,
  });
  const results = h("div");
  const show = () =>
    mount(results, paged((cursor) => call("get", "/api/v1/tenants/{tenant}/audit-events", { params: { tenant }, query: { ...filters(), cursor } }), (items) =>
      table("Audit events", ["When", "Who", "What", "Target", "Outcome", "Details"], items.map((e) => [
        when(e.at), h("code", null, e.actor), h("code", null, e.action), e.target,
        badge(e.outcome, ["success", "allowed"].includes(e.outcome) ? "ok" : "bad"),
        e.details || e.request_id ? h("details", null, h("summary", null, "Show"), h("pre", { class: "json", tabindex: "0" }, JSON.stringify({ request_id: e.request_id, ...(/** @type {object} */ (e.details) || {}) }, null, 2))) : "",
      ]), "No events match these filters.")));
  show();
  return h(
    "div",
    null,
    header("Audit log", [], "Every change, sign-in and proxied call in this tenant, newest first."),
    form({ class: "filters", "aria-label": "Filter events", role: "search" }, [
      field("Actor", actor), field("Action", action), field("Server", server), field("Outcome", outcome), field("From", since), field("Until", until),
      h("div", { class: "actions" },
        h("button", { type: "submit", class: "primary" }, "Apply filters"),
        h("button", { type: "button", class: "secondary", onclick: async (/** @type {Event} */ e) => {
          const b = /** @type {HTMLButtonElement} */ (e.currentTarget);
          b.disabled = true;
          b.textContent = "Exporting…";
          try {
            const items = await all("/api/v1/tenants/{tenant}/audit-events", { tenant }, /** @type {any} */ (filters()), 20000);
            download(`audit-${tenant}-${new Date().toISOString().slice(0, 19)}.json`, items);
            toast(`Exported ${items.length} events`);
          } catch (err) {
            results.prepend(problem(err));
          } finally {
            b.disabled = false;
            b.textContent = "Export JSON";
          }
        } }, "Export JSON")),
    ], async () => show()),
    results,
  );
}
