// The dashboard in a real browser: Debian's chromium driven by Playwright (playwright-core),
// against the built worker in local workerd. Saves a screenshot under test-output/.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { chromium } from "playwright-core";
import { ROOT, startStack, traffic, waitForCount, postRouted, sleep } from "./harness.mjs";

const TOKEN = "dashboard-admin-token";
// The flags this machine needs: no sandbox as root, no GPU, and nothing that phones home
// (the network is closed, and Chromium retries such connections many at a time).
const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];
const OUT = path.join(ROOT, "test-output");

let stack;
let browser;
let userDataDir;
before(async () => {
  stack = await startStack({ ADMIN_TOKEN: TOKEN, BLUE_MODEL: "blue-m", ROUTING_CACHE_SECONDS: "0" });
  fs.mkdirSync(OUT, { recursive: true });
  userDataDir = fs.mkdtempSync(path.join(OUT, "chromium-profile-"));
  browser = await chromium.launchPersistentContext(userDataDir, {
    executablePath: process.env.CHROMIUM_PATH ?? "/usr/bin/chromium",
    args: CHROMIUM_ARGS,
    headless: true,
    viewport: { width: 1280, height: 1400 },
  });
});
after(async () => {
  await browser?.close();
  await stack?.close();
  if (userDataDir) fs.rmSync(userDataDir, { recursive: true, force: true });
});

/** A new page on the dashboard of `router` (the shared stack's unless given), signed in. */
async function signedIn(router = stack.router) {
  const page = await browser.newPage();
  await page.goto(`${router.url}/dashboard`);
  await page.fill("#token", TOKEN);
  await page.click("#login button[type=submit]");
  await page.waitForSelector("#app:not([hidden])");
  return page;
}

test("the page holds no secret and shows only a token prompt until a valid token is given", async () => {
  const res = await fetch(`${stack.router.url}/dashboard`);
  assert.equal(res.status, 200);
  assert.match(res.headers.get("content-type"), /^text\/html/);
  assert.match(res.headers.get("content-security-policy"), /default-src 'none'/);
  const html = await res.text();
  assert.ok(!html.includes(TOKEN));
  assert.ok(!/<script[^>]+src=|<link[^>]+href=|https?:\/\//.test(html), "no external resources");

  const page = await browser.newPage();
  await page.goto(`${stack.router.url}/dashboard`);
  assert.ok(await page.isVisible("#login"));
  assert.ok(await page.isHidden("#app"));
  await page.fill("#token", "wrong-token");
  await page.click("#login button[type=submit]");
  await page.waitForFunction(() => document.getElementById("login-error").textContent.length > 0);
  assert.match(await page.textContent("#login-error"), /invalid admin token/i);
  assert.ok(await page.isHidden("#app"));
  assert.equal(await page.evaluate(() => sessionStorage.length), 0, "a refused token is not kept");
  await page.close();
});

test("with the token it shows the rollout as /admin/status does, and rolling back changes the phase", async () => {
  const r = stack.router;
  const start = await r.admin("POST", "rollouts", {
    green_model: "green-m",
    steps: [{ green_percent: 30, hold_seconds: 600 }, { green_percent: 60, hold_seconds: 600 }],
    health: { min_requests: 5 },
  });
  assert.equal(start.status, 201, start.text);
  await traffic(r, 60);
  await waitForCount(r, 60);
  await r.tick();

  const page = await signedIn();
  // The token is kept in this tab's sessionStorage only.
  assert.equal(await page.evaluate(() => sessionStorage.getItem("bluegreen-admin-token")), TOKEN);
  assert.equal(await page.evaluate(() => localStorage.length), 0);

  const status = await r.status();
  assert.equal((await page.textContent("#phase")).trim(), "progressing");
  assert.equal(await page.textContent("#green-model"), `green: green-m (${status.green_percent}%)`);
  assert.equal(await page.textContent("#blue-model"), "blue: blue-m");
  const cell = (metric, env) => page.textContent(`#stats tr[data-metric="${metric}"] td.${env}`);
  for (const env of ["blue", "green"]) {
    const st = status.stats.rollout[env];
    assert.equal(await cell("requests", env), String(st.requests));
    assert.equal(await cell("errors", env), String(st.errors));
    assert.equal(await cell("fallbacks", env), String(st.fallbacks));
    assert.equal(await cell("p95 latency", env), st.p95_ms == null ? "—" : `${st.p95_ms} ms`);
    assert.equal(await cell("completion tokens", env), st.completion_tokens.toLocaleString("en-US"));
    assert.equal(await cell("answer defects", env), `${st.defects} (${(100 * st.defect_rate).toFixed(2)}%)`);
    assert.equal(await cell("negative feedback", env), `${st.feedback_negative} of ${st.feedback_scored} scored`);
    assert.equal(await cell("completion tokens per request", env), st.completion_tokens_per_request.toFixed(1));
  }
  assert.equal(
    Number(await cell("requests", "blue")) + Number(await cell("requests", "green")),
    60,
    "every request is on the page",
  );
  assert.equal(await page.textContent("#verdict"), status.verdict.status);
  assert.equal(await page.locator("#reasons li").count(), status.verdict.reasons.length);
  assert.match(await page.textContent("#step"), /^Step 1 of 2 at 30% green/);
  assert.ok((await page.locator("#events [data-kind=started]").count()) >= 1);
  // The charts are drawn: a line per environment.
  assert.equal(await page.locator("#chart-requests path").count(), 2);

  fs.mkdirSync(OUT, { recursive: true });
  await page.screenshot({ path: path.join(OUT, "dashboard.png"), fullPage: true });
  // On a phone: one column, nothing wider than the screen.
  await page.setViewportSize({ width: 390, height: 844 });
  await page.waitForFunction(() => document.getElementById("chart-requests").getAttribute("viewBox").split(" ")[2] < 390);
  assert.ok(await page.evaluate(() => document.documentElement.scrollWidth <= 390), "no sideways scrolling on a phone");
  await page.screenshot({ path: path.join(OUT, "dashboard-phone.png"), fullPage: true });
  await page.setViewportSize({ width: 1280, height: 1400 });

  // A refused action shows the API's message: resume while progressing is a 409.
  page.once("dialog", (d) => d.accept());
  await page.click("button[data-action=resume]");
  await page.waitForFunction(() => document.getElementById("action-error").textContent.length > 0);
  assert.match(await page.textContent("#action-error"), /Cannot resume: the rollout is progressing/);

  // Roll back, confirming the dialog; the page shows the new phase.
  let asked = "";
  page.once("dialog", (d) => {
    asked = d.message();
    d.accept();
  });
  await page.click("button[data-action=rollback]");
  await page.waitForFunction(() => document.getElementById("phase").textContent.trim() === "rolled back");
  assert.match(asked, /Roll back/);
  assert.equal((await r.status()).phase, "rolled_back");
  assert.equal(await page.textContent("#green-model"), "green: green-m (0%)");
  await page.screenshot({ path: path.join(OUT, "dashboard-rolled-back.png"), fullPage: true });
  await page.close();
});

test("a rollout held for a split mismatch says so on the page", async (t) => {
  // A stack of its own: it does not depend on how the rollout of the test above ended.
  const own = await startStack({ ADMIN_TOKEN: TOKEN, BLUE_MODEL: "blue-m", ROUTING_CACHE_SECONDS: "0" });
  t.after(() => own.close());
  const r = own.router;
  const start = await r.admin("POST", "rollouts", {
    green_model: "green-m",
    steps: [{ green_percent: 10, hold_seconds: 1 }, { green_percent: 50, hold_seconds: 600 }],
    health: { min_requests: 50 },
  });
  assert.equal(start.status, 201, start.text);
  await sleep(1100);
  // Green routed 5% at a 10% step: the first tick holds (the split check's own test says why).
  await postRouted(r, start.body.routing_version, 300, 5700);
  await r.tick();
  const status = await r.status();
  assert.equal(status.split_check.held, true, JSON.stringify(status.split_check));

  const page = await signedIn(r);
  const step = await page.textContent("#step");
  assert.match(step, /^Step 1 of 2 at 10% green/);
  assert.ok(step.includes(`held since `) && step.endsWith(`: ${status.split_check.reason}`), step);
  assert.match(step, /green got 5\.0% of 6000 requests routed at random/);
  assert.ok((await page.locator("#events [data-kind=split_mismatch]").count()) >= 1);
  await page.close();
});
