// The console's only way to the gateway: the public /api/v1, with the session cookie and, on
// unsafe methods, the CSRF token, like any other client. Paths, bodies and answers are typed
// from openapi/openapi.json (types/client.d.ts), so a call the document lacks fails `tsc`.

/** @typedef {import('../types/client').Path} Path */
/** @typedef {import('../types/client').HttpMethod} HttpMethod */
/** @typedef {import('../types/client').Schemas} Schemas */
/**
 * @template {Path} P
 * @template {HttpMethod} M
 * @typedef {import('../types/client').Answer<P, M>} Answer
 */
/**
 * @template {Path} P
 * @template {HttpMethod} M
 * @typedef {import('../types/client').Body<P, M>} Body
 */
/**
 * @template {Path} P
 * @template {HttpMethod} M
 * @typedef {import('../types/client').Query<P, M>} Query
 */

/** An answer that is not a success: the problem document's words and the request's id. */
export class ApiError extends Error {
  /**
   * @param {number} status
   * @param {Partial<Schemas['Problem']>} problem
   */
  constructor(status, problem) {
    super(problem.detail || problem.title || `HTTP ${status}`);
    this.status = status;
    this.code = problem.code || "";
    this.requestId = problem.request_id || "";
    /** @type {Schemas['FieldError'][]} */
    this.errors = problem.errors || [];
  }
}

let csrf = "";

/** @param {string} token */
export function setCsrf(token) {
  csrf = token || "";
}

/** Called when the session is gone, so the shell can ask to sign in again. */
let onSignedOut = () => {};
/** @param {() => void} f */
export function whenSignedOut(f) {
  onSignedOut = f;
}

/**
 * Calls one operation of the API.
 * @template {Path} P
 * @template {import('../types/client').MethodOf<P>} M
 * @param {M} method
 * @param {P} path  the document's path, with `{name}` placeholders
 * @param {{ params?: Record<string, string>, query?: Query<P, M>, body?: Body<P, M> }} [options]
 * @returns {Promise<Answer<P, M>>}
 */
export async function call(method, path, options = {}) {
  const url = new URL(expand(path, options.params || {}), location.origin);
  for (const [k, v] of Object.entries(options.query || {})) {
    if (v !== undefined && v !== null && v !== "") url.searchParams.set(k, String(v));
  }
  /** @type {Record<string, string>} */
  const headers = { accept: "application/json" };
  if (method !== "get") headers["x-csrf-token"] = csrf;
  if (options.body !== undefined) headers["content-type"] = "application/json";
  let response;
  try {
    response = await fetch(url, {
      method: method.toUpperCase(),
      headers,
      body: options.body === undefined ? undefined : JSON.stringify(options.body),
      credentials: "same-origin",
    });
  } catch (e) {
    throw new ApiError(0, { detail: `The gateway could not be reached (${e.message}).` });
  }
  if (response.status === 204) return /** @type {any} */ (undefined);
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!response.ok) {
    const problem = data && typeof data === "object" ? data : { detail: text.slice(0, 200) };
    if (!problem.request_id) problem.request_id = response.headers.get("x-request-id") || "";
    const error = new ApiError(response.status, problem);
    if (response.status === 401 && !path.startsWith("/api/v1/auth/")) onSignedOut();
    throw error;
  }
  return data;
}

/**
 * Every item of a paged list, following `next_cursor` (for exports and pickers).
 * @template {Path} P
 * @param {P} path
 * @param {Record<string, string>} params
 * @param {Record<string, string>} [query]
 * @param {number} [max]
 */
export async function all(path, params, query = {}, max = 5000) {
  /** @type {any[]} */
  const items = [];
  let cursor;
  do {
    /** @type {any} */
    const page = await call(/** @type {any} */ ("get"), path, { params, query: /** @type {any} */ ({ ...query, limit: 200, cursor }) });
    items.push(...page.items);
    cursor = page.next_cursor;
  } while (cursor && items.length < max);
  return items;
}

/**
 * @param {string} path
 * @param {Record<string, string>} params
 */
function expand(path, params) {
  return path.replace(/\{(\w+)\}/g, (_, name) => {
    if (!(name in params)) throw new Error(`missing path parameter ${name}`);
    return encodeURIComponent(params[name]);
  });
}
