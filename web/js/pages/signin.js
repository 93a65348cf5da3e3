// Sign-in: password, and the identity providers the gateway offers (SSO), including the one an
// email's domain is sent to.

import { call, ApiError } from "../api.js";
import { h, mount, field, input, form, problem } from "../ui.js";

/** @typedef {import('../../types/client').Schemas} Schemas */

/**
 * @param {{ signedIn: (user: Schemas['UserView'], csrf: string) => Promise<void> }} options
 */
export async function signInPage({ signedIn }) {
  const providers = h("div", { class: "sso-list" });
  const showProviders = async (/** @type {string} */ email) => {
    try {
      const list = await call("get", "/api/v1/auth/providers", { query: { email: email || undefined, return_to: "/" } });
      mount(
        providers,
        list.items.length > 0 && h("p", { class: "or" }, "or"),
        list.items.map((p) => h("a", { class: "button sso", href: p.start_url }, `Sign in with ${p.display_name}`)),
      );
    } catch {
      mount(providers);
    }
  };
  showProviders("");
  const email = input("email", { type: "email", autocomplete: "username", required: true, autofocus: true });
  email.addEventListener("change", () => showProviders(email.value));
  const password = input("password", { type: "password", autocomplete: "current-password", required: true });
  const signIn = form({ class: "stack", "aria-label": "Sign in" }, [
    field("Email", email),
    field("Password", password),
    h("button", { type: "submit", class: "primary wide" }, "Sign in"),
  ], async () => {
    try {
      const answer = await call("post", "/api/v1/auth/login", { body: { email: email.value, password: password.value } });
      await signedIn(answer.user, answer.csrf_token);
    } catch (e) {
      // An organisation that requires SSO for this email: offer its button straight away.
      if (e instanceof ApiError && e.code === "sso_required") await showProviders(email.value);
      throw e;
    }
  });
  const failure = new URLSearchParams(location.search).get("error");
  return h(
    "main",
    { class: "auth-card", id: "main" },
    h("p", { class: "brand" }, "mcpgate"),
    h("h1", null, "Sign in to the console"),
    failure && problem(new Error(failure)),
    signIn,
    providers,
  );
}
