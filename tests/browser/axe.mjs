// axe-core in the page as it is now: the serious and critical violations, printed, and whether
// there were none. Run through the DevTools protocol (page.evaluate), so the page's CSP, which
// forbids injected scripts, stays enforced.
import fs from "node:fs";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const source = fs.readFileSync(require.resolve("axe-core/axe.min.js"), "utf8");

export async function accessible(page) {
  await page.evaluate(source);
  const result = await page.evaluate(() => globalThis.axe.run(document, { resultTypes: ["violations"] }));
  const serious = result.violations.filter((v) => v.impact === "serious" || v.impact === "critical");
  for (const v of serious) {
    console.log(`  axe ${v.impact}: ${v.id} — ${v.help}: ${v.nodes.map((n) => n.target.join(" ")).slice(0, 3).join("; ")}`);
  }
  return serious.length === 0;
}
