// Drives the host's dashboard in headless Chromium like an operator would:
// sign in (a wrong token first), read the policies, recent decisions and chart,
// run a dry run, and check the emulator saw no discount update.
//
// Then a new JavaScript build dropped into the policy directory shows as loading.
//
// Env: HOST_URL, STRIPE_URL, ADMIN_TOKEN, DRY_SESSION_ID (an open session of
// 120.00 to dry-run), POLICY_DIR (the host's), NEW_BUILD (path of a JavaScript
// policy without `.wasm`/`.toml`), CHROMIUM, SCREENSHOT (optional PNG path).
// Prints `browser: N passed, M failed`.
import { chromium } from "playwright-core";
import { createHash } from "node:crypto";
import { mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const env = (k) => {
  const v = process.env[k];
  if (!v) throw new Error(`${k} is not set`);
  return v;
};
const HOST = env("HOST_URL");
const STRIPE = env("STRIPE_URL");
const TOKEN = env("ADMIN_TOKEN");
const DRY_SESSION = env("DRY_SESSION_ID");
const POLICY_DIR = env("POLICY_DIR");
const NEW_BUILD = env("NEW_BUILD");

let passed = 0;
let failed = 0;
function check(name, ok, detail = "") {
  if (ok) {
    passed++;
    console.log(`ok   ${name}`);
  } else {
    failed++;
    console.log(`FAIL ${name} ${detail}`);
  }
}

// Writes `bytes` to `name` in the policy directory the way deploy tools do: a hidden
// temporary file renamed into place.
function deploy(name, bytes) {
  const tmp = join(POLICY_DIR, `.${name}.tmp`);
  writeFileSync(tmp, bytes);
  renameSync(tmp, join(POLICY_DIR, name));
}

// The component with a custom section that makes it a build no cache has seen.
function newBuild(component) {
  const name = Buffer.from("policy-build");
  const payload = Buffer.concat([Buffer.from([name.length]), name, Buffer.from(`browser-${Date.now()}`)]);
  return Buffer.concat([component, Buffer.from([0, payload.length]), payload]);
}

async function updatesOf(session) {
  const log = await (await fetch(`${STRIPE}/_emulator/requests`)).json();
  return log.filter((r) => r.method === "POST" && r.path === `/v1/checkout/sessions/${session}`).length;
}

const profile = mkdtempSync(join(tmpdir(), "dashboard-chromium-"));
// A fresh profile directory (Chromium's --user-data-dir) for every run.
const browser = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
  ],
});
try {
  const page = browser.pages()[0] || (await browser.newPage());
  const external = [];
  page.on("request", (r) => {
    if (!r.url().startsWith(HOST) && !r.url().startsWith("data:")) external.push(r.url());
  });
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));

  const response = await page.goto(`${HOST}/dashboard`);
  check("page loads", response && response.status() === 200, String(response && response.status()));
  await page.waitForSelector("#status");
  check("signed out at first", (await page.textContent("#status")).includes("signed out"));
  check("no data without a token", (await page.locator("#policies tbody tr").count()) === 0);

  await page.fill("#token", "wrong-token");
  await page.click("#login-button");
  await page.waitForFunction(() => document.getElementById("status").textContent.includes("refused"), null, { timeout: 10000 })
    .then(() => check("a wrong token is refused", true))
    .catch(() => check("a wrong token is refused", false, "status stayed " + "unchanged"));
  check("still no data with a wrong token", (await page.locator("#policies tbody tr").count()) === 0);

  await page.fill("#token", TOKEN);
  await page.click("#login-button");
  await page.waitForSelector('#policies tbody tr[data-policy="cart-threshold"]', { timeout: 10000 });
  const row = page.locator('#policies tbody tr[data-policy="cart-threshold"] td');
  check("policy listed with its version", /^[0-9a-f]{12}$/.test((await row.nth(1).textContent()).trim()),
    await row.nth(1).textContent());
  check("policy routes shown", (await row.nth(2).textContent()).includes("/apply-cart-discount"));
  check("token kept in sessionStorage", (await page.evaluate(() => sessionStorage.length)) === 1);

  await page.waitForSelector('#decisions tbody tr[data-outcome="applied"]', { timeout: 10000 })
    .then(() => check("recent decision shown", true))
    .catch(() => check("recent decision shown", false));
  const chart = await page.$eval("#chart", (svg) => ({
    decisions: Number(svg.dataset.decisions),
    errors: Number(svg.dataset.errors),
    bars: svg.querySelectorAll("rect.bar").length,
  }));
  check("chart counts decisions and errors", chart.decisions >= 1 && chart.errors >= 1 && chart.bars >= 1, JSON.stringify(chart));

  const updatesBefore = await updatesOf(DRY_SESSION);
  await page.selectOption("#dr-policy", "cart-threshold");
  await page.fill("#dr-session", DRY_SESSION);
  await page.click("#dr-run");
  await page.waitForFunction(() => document.getElementById("dr-summary").dataset.decision !== undefined, null, { timeout: 10000 });
  const summary = await page.$eval("#dr-summary", (e) => ({ text: e.textContent, ...e.dataset }));
  check("dry run shows the decision", summary.decision === "apply", JSON.stringify(summary));
  check("dry run shows the guard verdict", summary.guard === "passed", JSON.stringify(summary));
  check("dry run shows the totals", summary.discount === "1200" && summary.text.includes("total 10800"), JSON.stringify(summary));
  const raw = JSON.parse(await page.textContent("#dr-result"));
  check("dry run shows logs and cost", raw.logs.length > 0 && raw.cost.fuel_used > 0);
  check("dry run made no Stripe update", (await updatesOf(DRY_SESSION)) === updatesBefore);

  // A new JavaScript policy compiles for seconds; its row says so until it serves.
  const build = newBuild(readFileSync(`${NEW_BUILD}.wasm`));
  const version = createHash("sha256").update(build).digest("hex").slice(0, 12);
  deploy("js-time-limited.toml", readFileSync(`${NEW_BUILD}.toml`));
  deploy("js-time-limited.wasm", build);
  await page
    .waitForFunction(
      (v) => document.querySelector('#policies tr[data-policy="js-time-limited"] .loading')?.textContent === `loading ${v}`,
      version,
      { timeout: 20000 },
    )
    .then(() => check("a policy being loaded shows as loading", true))
    .catch(async () =>
      check("a policy being loaded shows as loading", false, await page.textContent("#policies")),
    );

  if (process.env.SCREENSHOT) await page.screenshot({ path: process.env.SCREENSHOT, fullPage: true });
  check("no script errors", errors.length === 0, errors.join("; "));
  check("no request left the host", external.length === 0, external.join(" "));
} catch (e) {
  check("browser run", false, String(e && e.stack || e));
} finally {
  await browser.close();
  rmSync(profile, { recursive: true, force: true });
}
console.log(`browser: ${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
