// The person in the browser, without a browser: follows an authorization URL of mcpgate,
// fills in its sign-in form and approves on its consent page (the same forms a browser posts),
// and returns the URL the gateway finally sends the browser to (the client's redirect URI).
// Used by the TypeScript SDK test client and the conformance harness; the real-browser test is
// tests/browser/sign-in.mjs.
export async function signInAndApprove(url, { email, password }) {
  const gateway = new URL(url).origin;
  const jar = new Map();
  let current = url;
  const hidden = (page, name) => {
    const m = page.match(new RegExp(`name="${name}" value="([^"]*)"`));
    if (!m) throw new Error(`no ${name} on the page`);
    return m[1].replaceAll("&quot;", '"').replaceAll("&#39;", "'").replaceAll("&lt;", "<").replaceAll("&gt;", ">").replaceAll("&amp;", "&");
  };
  const send = async (target, body) => {
    const res = await fetch(target, {
      method: body ? "POST" : "GET",
      redirect: "manual",
      headers: { cookie: [...jar].map(([k, v]) => `${k}=${v}`).join("; "), ...(body ? { "content-type": "application/x-www-form-urlencoded" } : {}) },
      body: body ? new URLSearchParams(body).toString() : undefined,
    });
    for (const c of res.headers.getSetCookie()) {
      const [pair] = c.split(";");
      const at = pair.indexOf("=");
      jar.set(pair.slice(0, at), pair.slice(at + 1));
    }
    return res;
  };
  for (let i = 0; i < 10; i++) {
    let res = await send(current);
    if (res.status === 200) {
      const page = await res.text();
      if (page.includes('action="/oauth/authorize/sign-in"')) {
        res = await send(`${gateway}/oauth/authorize/sign-in`, {
          email, password, return_to: hidden(page, "return_to"), form_token: hidden(page, "form_token"),
        });
      } else if (page.includes('action="/oauth/authorize/decision"')) {
        res = await send(`${gateway}/oauth/authorize/decision`, {
          csrf_token: hidden(page, "csrf_token"), request: hidden(page, "request"), decision: "approve",
        });
      } else {
        throw new Error(`unexpected page at ${current}: ${page.slice(0, 400)}`);
      }
    }
    if (res.status < 300 || res.status >= 400) throw new Error(`unexpected ${res.status} at ${current}`);
    const location = new URL(res.headers.get("location"), gateway).toString();
    if (!location.startsWith(gateway)) return location;
    current = location;
  }
  throw new Error("the authorization did not end");
}
