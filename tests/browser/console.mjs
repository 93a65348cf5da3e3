// The admin console in a real browser (Debian's chromium + playwright-core), on a gateway that
// has just started for the first time.
//   Journey 1, a new admin: sign in with the printed password → first run (own password, first
//   tenant) → register a remote server → probe → a per-user server → a virtual server with two
//   tools → a developer account, member and collaborator → a PAT, revealed once and copied →
//   How To Use: the copied Claude Code configuration, run by the TypeScript SDK client through
//   the proxy → Try a tool → the audit log shows it all, filtered and exported.
//   Journey 2, a developer: signs in, adds their own key on the per-user server, calls it from
//   Try a tool.
// Every page is checked with axe-core (no serious or critical violation) and photographed; the
// CSP is enforced, and any violation of it (or any script error) fails the run.
// Usage: node console.mjs <gateway base> <gateway stdout log> <upstream MCP URL> <screenshot dir>
import fs from "node:fs";
import path from "node:path";
import { execFileSync } from "node:child_process";
import { chromium } from "playwright-core";
import { accessible } from "./axe.mjs";

const [base, gatewayLog, upstreamUrl, shots] = process.argv.slice(2);
fs.mkdirSync(shots, { recursive: true });
const peers = path.resolve(path.dirname(new URL(import.meta.url).pathname), "../peers");
const check = (ok, what) => {
  if (!ok) throw new Error(what);
  console.log(`ok - ${what}`);
};

// The first start printed the generated admin password on stdout (and nowhere else).
const printed = fs.readFileSync(gatewayLog, "utf8");
const email = /email:\s+(\S+)/.exec(printed)?.[1];
const generated = /password:\s+(\S+)/.exec(printed)?.[1];
check(email && generated, `the first start printed the admin's email (${email}) and a generated password`);

const browser = await chromium.launch({ executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium", args: ["--no-sandbox"] });
const problems = [];
const audited = new Set();

/** A browser context for one person, with clipboard access and error capture. */
async function person(label) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 860 }, acceptDownloads: true });
  await context.grantPermissions(["clipboard-read", "clipboard-write"], { origin: base });
  const page = await context.newPage();
  page.on("console", (m) => {
    if (m.type() === "error" && !/status of 4\d\d/.test(m.text())) problems.push(`${label}: console error: ${m.text()}`);
  });
  page.on("pageerror", (e) => problems.push(`${label}: script error: ${e.message}`));
  return { context, page };
}

/** axe-core on the page as it is now, then a screenshot named after it. */
async function inspect(page, name) {
  await page.waitForLoadState("networkidle");
  check(await accessible(page), `${name}: axe finds no serious or critical accessibility violation`);
  await page.screenshot({ path: path.join(shots, `console-${name}.png`), fullPage: true });
  audited.add(name);
}

const clipboard = (page) => page.evaluate(() => navigator.clipboard.readText());
const heading = (page, text) => page.getByRole("heading", { level: 1, name: text }).waitFor();

try {
  // ---- Journey 1: a new admin -------------------------------------------------------------
  const { page } = await person("admin");
  await page.goto(`${base}/`);
  await heading(page, "Sign in to the console");
  await inspect(page, "sign-in");
  await page.getByLabel("Email").fill(email);
  await page.getByLabel("Password").fill("not-the-password");
  await page.getByRole("button", { name: "Sign in", exact: true }).click();
  await page.getByRole("alert").waitFor();
  check((await page.getByRole("alert").innerText()).includes("Request id"), "a wrong password shows the problem's detail and its request id");
  await page.getByLabel("Password").fill(generated);
  await page.getByRole("button", { name: "Sign in", exact: true }).click();

  await heading(page, "Welcome to mcpgate");
  await inspect(page, "first-run");
  const newPassword = "console-admin-password-1";
  await page.getByLabel("Current (printed) password").fill(generated);
  await page.getByLabel("New password").fill(newPassword);
  await page.getByRole("button", { name: "Change password" }).click();
  await page.getByText("Password changed").waitFor();
  check(true, "first run: the generated password is replaced");
  await page.getByLabel("Display name").fill("Acme Corp");
  check((await page.getByLabel("Slug").inputValue()) === "acme-corp", "the tenant's slug is proposed from its name");
  await page.getByLabel("Slug").fill("acme");
  await page.getByRole("button", { name: "Create tenant" }).click();
  await heading(page, "Servers");
  await page.getByText("No servers yet").waitFor();
  await inspect(page, "servers-empty");
  check(true, "first run: tenant acme created; the empty server list says what to do next");

  // A remote server, probed with progress and a readable result.
  await page.getByRole("link", { name: "Register a remote server" }).first().click();
  await heading(page, "Register a remote server");
  await page.getByLabel("Display name").fill("Everything");
  await page.getByLabel("Upstream URL").fill(upstreamUrl);
  await inspect(page, "server-new");
  await page.getByRole("button", { name: "Register server" }).click();
  await heading(page, "Everything");
  await page.getByText(/Reachable:/).waitFor({ timeout: 30000 });
  const probeText = await page.locator(".success").innerText();
  check(/Protocol \S+, \d+ tools/.test(probeText), `the probe reports protocol and tools: ${probeText.replace(/\s+/g, " ").slice(0, 80)}`);
  await inspect(page, "server-probed");

  // A server whose upstream takes each person's own key.
  await page.goto(`${base}/#/t/acme/servers/new?kind=remote`);
  await heading(page, "Register a remote server");
  await page.getByLabel("Display name").fill("Keyed");
  await page.getByLabel("Upstream URL").fill(upstreamUrl);
  await page.getByLabel("Type").selectOption("header");
  await page.getByLabel("Who holds the credential").selectOption("per_user");
  await page.getByRole("button", { name: "Add Headers" }).click();
  await page.getByLabel("Headers: name").fill("x-api-key");
  await page.getByLabel("Headers: value").fill("{{API_KEY}}");
  await page.getByRole("button", { name: "Register server" }).click();
  await heading(page, "Keyed");
  await page.getByText(/Reachable:|did not answer/).first().waitFor({ timeout: 30000 });
  check((await page.getByText("header · per user").count()) > 0, "a per-user header server shows its auth mode");

  // A virtual server with two of Everything's tools.
  await page.goto(`${base}/#/t/acme/servers/new?kind=virtual`);
  await heading(page, "Compose a virtual server");
  await page.getByLabel("Display name").fill("Bundle");
  await page.getByLabel("Everything (everything)").check();
  const toolBoxes = page.locator('fieldset.member:has-text("(everything)") .tool-list input[type="checkbox"]');
  const toolCount = await toolBoxes.count();
  check(toolCount > 2, `the tool picker lists Everything's ${toolCount} probed tools`);
  for (let i = 0; i < toolCount; i++) await toolBoxes.nth(i).uncheck();
  await page.getByLabel("echo", { exact: true }).check();
  await page.getByLabel("get-sum", { exact: true }).check();
  await inspect(page, "virtual-new");
  await page.getByRole("button", { name: "Create virtual server" }).click();
  await heading(page, "Bundle");
  check((await page.getByText("echo, get-sum").count()) === 1, "the virtual server exposes exactly echo and get-sum");
  // Its own description for one tool, set on its Settings tab.
  await page.getByRole("tab", { name: "Settings" }).click();
  await page.getByLabel("Description of echo").fill("Says it back, through the gateway");
  await page.getByRole("button", { name: "Save changes" }).click();
  await page.getByText("Saved").waitFor();

  // A developer: an account, a member of acme, a collaborator on Keyed.
  await page.getByRole("link", { name: "Users" }).click();
  await heading(page, "Users");
  await page.getByLabel("Email").fill("dev@example.com");
  await page.getByLabel("Display name").fill("Dev Eloper");
  await page.getByLabel("Password", { exact: true }).fill("developer-password-1");
  await page.getByRole("button", { name: "Create user" }).click();
  await page.getByText("dev@example.com").waitFor();
  await inspect(page, "users");
  await page.getByRole("link", { name: "Members & teams" }).click();
  await heading(page, "Members & teams");
  await page.getByLabel("Email").fill("dev@example.com");
  await page.getByRole("button", { name: "Add member" }).click();
  await page.getByText("Dev Eloper").waitFor();
  await inspect(page, "members");
  await page.goto(`${base}/#/t/acme/servers/keyed/collaborators`);
  await page.getByLabel("Who").fill("user:dev@example.com");
  await page.getByRole("button", { name: "Add collaborator" }).click();
  await page.getByText("Dev Eloper").waitFor();
  await inspect(page, "collaborators");
  check(true, "dev@example.com is a member of acme and a user of Keyed");

  // A personal access token: revealed once, copied.
  await page.getByRole("link", { name: "Access tokens" }).click();
  await heading(page, "Access tokens");
  await page.getByLabel("Name").fill("laptop");
  await page.getByRole("button", { name: "Create token" }).click();
  await page.getByText("shown this once").waitFor();
  const shown = await page.locator(".reveal code").innerText();
  await page.getByRole("button", { name: /^Copy token/ }).click();
  const pat = await clipboard(page);
  check(pat.startsWith("mgw_pat_") && pat === shown, "the new PAT is revealed and copied to the clipboard");
  await inspect(page, "tokens");
  await page.reload();
  await heading(page, "Access tokens");
  check((await page.getByText(pat).count()) === 0 && (await page.getByText("laptop").count()) > 0, "after a reload the token is listed but never shown again");

  // How To Use: the Claude Code configuration, copied and used by the TypeScript SDK client.
  await page.goto(`${base}/#/t/acme/servers/bundle/how-to-use`);
  await page.getByRole("tab", { name: "Claude Code" }).waitFor();
  await inspect(page, "how-to-use");
  await page.getByRole("tab", { name: "Cursor" }).click();
  const cursorLink = await page.getByRole("link", { name: "Add to Cursor" }).first().getAttribute("href");
  const cursorConfig = JSON.parse(Buffer.from(new URL(cursorLink).searchParams.get("config"), "base64").toString());
  check(cursorLink.startsWith("cursor://anysphere.cursor-deeplink/mcp/install?name=acme-bundle&") && cursorConfig.url === `${base}/acme/mcp/bundle/server`, "the Cursor install link carries the server's URL");
  await page.getByRole("tab", { name: "VS Code" }).click();
  const vscodeLink = await page.getByRole("link", { name: "Add to VS Code" }).first().getAttribute("href");
  const vscodeConfig = JSON.parse(decodeURIComponent(vscodeLink.slice("vscode:mcp/install?".length)));
  check(vscodeConfig.name === "acme-bundle" && vscodeConfig.url === `${base}/acme/mcp/bundle/server`, "the VS Code install link carries name and URL");
  await page.getByRole("tab", { name: "Claude Code" }).click();
  await page.getByRole("button", { name: "Copy configuration" }).nth(1).click();
  const command = await clipboard(page);
  check(command.startsWith("claude mcp add --transport http acme-bundle "), `copied: ${command.slice(0, 60)}…`);
  const [, url] = /--transport http \S+ (\S+)/.exec(command);
  const header = /--header "([^"]+)"/.exec(command)[1].replace("<YOUR_MCPGATE_TOKEN>", pat);
  const report = JSON.parse(execFileSync("node", [path.join(peers, "config-client.mjs"), url, header, "echo", JSON.stringify({ message: "from the IDE" })], { encoding: "utf8" }));
  check(JSON.stringify(report.tools) === JSON.stringify(["echo", "get-sum"]), `the TypeScript SDK client, configured as copied, lists ${report.tools.join(", ")}`);
  check(report.text.includes("from the IDE"), `…and calls echo through the proxy: ${report.text}`);

  // Try a tool, as the admin.
  await page.getByRole("tab", { name: "Try a tool" }).click();
  await page.getByRole("button", { name: "get-sum" }).click();
  check((await page.getByText("Says it back, through the gateway").count()) === 1, "Try a tool lists echo with the virtual server's own description");
  await page.getByLabel(/^a/).fill("2");
  await page.getByLabel(/^b/).fill("40");
  await page.getByRole("button", { name: "Call get-sum" }).click();
  await page.locator(".decision").waitFor();
  const outcome = await page.locator(".result").innerText();
  check(outcome.includes("allowed") && outcome.includes("42"), "Try a tool: get-sum(2, 40) is allowed and answers 42");
  await inspect(page, "try-a-tool");

  // The audit log has it all; filters narrow it; the export is JSON.
  await page.getByRole("link", { name: "Audit log" }).click();
  await heading(page, "Audit log");
  await page.locator("table").waitFor();
  const auditText = await page.locator("table").innerText();
  for (const action of ["tenant.create", "server.create", "server.probe", "collaborator.put", "member.add", "server.try_token", "mcp.request"]) {
    check(auditText.includes(action), `the audit log shows ${action}`);
  }
  await inspect(page, "audit");
  await page.getByLabel("Server").fill("bundle");
  await page.getByLabel("Outcome").selectOption("allowed");
  await page.getByRole("button", { name: "Apply filters" }).click();
  await page.locator(".paged .loading").waitFor({ state: "detached" });
  const rows = await page.locator("tbody tr").allInnerTexts();
  check(rows.length > 0 && rows.every((r) => r.includes("server:bundle") && r.includes("allowed")), `filtered to bundle's allowed calls: ${rows.length} events`);
  const [download] = await Promise.all([page.waitForEvent("download"), page.getByRole("button", { name: "Export JSON" }).click()]);
  const exported = JSON.parse(fs.readFileSync(await download.path(), "utf8"));
  check(Array.isArray(exported) && exported.length === rows.length && exported.every((e) => e.target === "server:bundle"), `the export holds the same ${exported.length} events as JSON`);

  // The remaining pages render and pass axe.
  for (const [hash, title, name] of [
    ["#/t/acme/servers", "Servers", "servers"],
    ["#/t/acme/servers/everything/settings", "Everything", "server-settings"],
    ["#/t/acme/people/teams", "Members & teams", "teams"],
    ["#/t/acme/people/invitations", "Members & teams", "invitations"],
    ["#/t/acme/accounts", "Virtual accounts", "virtual-accounts"],
    ["#/t/acme/identity", "Identity providers", "identity-providers"],
    ["#/t/acme/settings", "Tenant settings", "tenant-settings"],
    ["#/tenants", "Tenants", "tenants"],
    ["#/me", "Administrator", "profile"],
    ["#/me/connections", "Connections", "connections"],
    ["#/me/sign-ins", "IDE sign-ins", "sign-ins"],
    ["#/admin/policy", "Policy snapshots", "policy"],
    ["#/admin/users/2", "Dev Eloper", "user-access"],
  ]) {
    await page.goto(`${base}/${hash}`);
    await heading(page, title);
    await inspect(page, name);
  }
  // The server-rendered error pages share the look and pass axe too.
  await page.goto(`${base}/connect/acme/no-such-server`);
  await page.getByRole("heading", { level: 1 }).waitFor();
  check((await page.locator('link[href="/console/app.css"]').count()) === 1, "an error page uses the console's stylesheet");
  await inspect(page, "error-page");
  await page.goto(`${base}/invitations/accept?token=not-a-real-invitation`);
  await page.getByRole("heading", { level: 1 }).waitFor();
  await inspect(page, "invitation-error-page");
  // Dark mode and a half-screen laptop window.
  await page.emulateMedia({ colorScheme: "dark" });
  await page.setViewportSize({ width: 720, height: 860 });
  await page.goto(`${base}/#/t/acme/servers`);
  await heading(page, "Servers");
  await inspect(page, "servers-dark-narrow");
  await page.emulateMedia({ colorScheme: "light" });

  // ---- Journey 2: a developer adds their own key and calls from Try a tool ---------------
  const dev = (await person("developer")).page;
  await dev.goto(`${base}/`);
  await dev.getByLabel("Email").fill("dev@example.com");
  await dev.getByLabel("Password").fill("developer-password-1");
  await dev.getByRole("button", { name: "Sign in", exact: true }).click();
  await heading(dev, "Servers");
  await dev.locator("tbody tr").first().waitFor();
  check((await dev.locator("tbody tr").count()) === 1, "the developer sees only the server shared with them");
  await dev.getByRole("link", { name: /Keyed/ }).click();
  await heading(dev, "Keyed");
  await dev.getByRole("tab", { name: "Try a tool" }).click();
  await dev.locator(".decision, .problem").first().waitFor({ timeout: 15000 });
  check((await dev.locator(".decision").innerText()).includes("denied"), "before adding a key, Try a tool shows the gateway's refusal");
  await dev.getByRole("tab", { name: "How To Use" }).click();
  await dev.getByRole("link", { name: "Add your key for keyed" }).click();
  await dev.getByLabel("API_KEY").fill("dev-secret-key");
  await dev.getByRole("button", { name: "Save" }).click();
  await dev.getByText("Saved").waitFor();
  await inspect(dev, "own-credentials");
  check((await dev.getByText("dev-secret-key").count()) === 0, "the key is stored, not shown back");
  await dev.getByRole("tab", { name: "Try a tool" }).click();
  await dev.getByRole("button", { name: "echo" }).click();
  await dev.getByLabel(/^message/).fill("hello from the console");
  await dev.getByRole("button", { name: "Call echo" }).click();
  await dev.locator(".decision").waitFor();
  const devResult = await dev.locator(".result").innerText();
  check(devResult.includes("allowed") && devResult.includes("hello from the console"), "with their key, the developer's echo call is allowed and answered");
  await inspect(dev, "developer-try");

  check(problems.length === 0, `no CSP violation or script error in ${audited.size} pages${problems.length ? `:\n  ${problems.join("\n  ")}` : ""}`);
} finally {
  await browser.close();
}
