// The dashboard in a real browser: Debian's chromium driven by Playwright (playwright-core),
// against the built worker in local workerd. Saves a screenshot under test-output/.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { chromium } from "playwright-core";
import { ROOT, startStack, traffic, waitForCount, postRouted, sleep, chat, pool, eventually, CHAT } from "./harness.mjs";

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

/**
 * A new page on the dashboard of `router` (the shared stack's unless given), at `hash`
 * (`#route=<name>`; none: the page's own choice), signed in.
 */
async function signedIn(router = stack.router, hash = "") {
  const page = await browser.newPage();
  await page.goto(`${router.url}/dashboard${hash}`);
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

/** Sends `n` chat completions with `model` = route `name`; checks each went to that route. */
async function routeTraffic(router, name, n, concurrency = 8) {
  const answers = await pool(n, concurrency, () => chat(router.url, { ...CHAT, model: name }));
  for (const a of answers) {
    assert.equal(a.status, 200, a.text);
    assert.equal(a.headers.get("x-bluegreen-route"), name);
  }
}

/** Route `name`'s status through the admin API. */
async function routeStatus(router, name) {
  const res = await router.admin("GET", `routes/${name}/status`);
  assert.equal(res.status, 200, res.text);
  return res.body;
}

/** Waits until route `name` has counted `n` requests in its rollout scope; returns its status. */
async function routeCount(router, name, n) {
  const total = (s) => s.stats.rollout.blue.requests + s.stats.rollout.green.requests;
  const s = await eventually(async () => {
    const st = await routeStatus(router, name);
    return total(st) >= n && st;
  }, 8000);
  assert.equal(total(s), n, JSON.stringify(s.stats.rollout));
  return s;
}

/** The selector of route `name`'s row in the routes list. */
const row = (name) => `#routes tr[data-route="${name}"]`;

test("the routes list shows every route's phase and split, and an action on an opened route reaches that route only", async () => {
  const r = stack.router;
  assert.equal((await r.admin("PUT", "routes/alpha", { blue_model: "alpha-blue" })).status, 201);
  assert.equal((await r.admin("PUT", "routes/team/beta", { blue_model: "beta-blue" })).status, 201);
  const started = await r.admin("POST", "routes/team/beta/rollouts", {
    green_model: "beta-green",
    steps: [{ green_percent: 40, hold_seconds: 600 }],
    health: { min_requests: 1000 },
  });
  assert.equal(started.status, 201, started.text);
  await routeTraffic(r, "alpha", 20);
  await routeTraffic(r, "team/beta", 30);
  await routeCount(r, "alpha", 20);
  const beta = await routeCount(r, "team/beta", 30);
  assert.ok(beta.stats.rollout.green.requests > 0, "green served some of team/beta's requests");

  // Without a #route= the default route is opened, and the list shows every route as the API does.
  const page = await signedIn();
  assert.equal(await page.textContent("#route-name"), "default");
  const list = (await r.admin("GET", "routes")).body.routes;
  assert.deepEqual(list.map((x) => x.name), ["alpha", "default", "team/beta"]);
  assert.deepEqual(
    await page.$$eval("#routes tr", (rows) => rows.map((tr) => tr.dataset.route)),
    ["alpha", "default", "team/beta"],
  );
  assert.match(await page.getAttribute(row("default"), "class"), /sel/);
  const cells = (name) => page.$$eval(`${row(name)} td`, (tds) => tds.map((td) => td.textContent));
  for (const x of list) {
    const [name, phase, split, verdict, last] = await cells(x.name);
    assert.equal(name, x.name);
    assert.equal(phase, x.status.phase.replaceAll("_", " "));
    assert.equal(split, `${x.status.green_percent}% green`);
    assert.equal(verdict, x.status.verdict ? x.status.verdict.status : "—");
    const e = x.status.last_event;
    assert.ok(e ? last.includes(e.message) : last === "—", `${x.name}: ${last}`);
  }
  assert.deepEqual((await cells("alpha")).slice(1, 3), ["idle", "0% green"]);
  assert.deepEqual((await cells("team/beta")).slice(1, 3), ["progressing", "40% green"]);
  assert.match((await cells("team/beta"))[4], /^started /);
  await page.screenshot({ path: path.join(OUT, "dashboard-routes.png"), fullPage: true });
  // The list fits a phone too.
  await page.setViewportSize({ width: 390, height: 844 });
  await page.waitForFunction(() => document.getElementById("chart-requests").getAttribute("viewBox").split(" ")[2] < 390);
  assert.ok(await page.evaluate(() => document.documentElement.scrollWidth <= 390), "no sideways scrolling on a phone");
  await page.setViewportSize({ width: 1280, height: 1400 });

  // Open team/beta by clicking its row: its status, stats, events, and a shareable URL.
  await page.click(`${row("team/beta")} td.split`);
  await page.waitForFunction(() => document.getElementById("route-name").textContent === "team/beta");
  assert.equal(new URL(page.url()).hash, "#route=team/beta");
  await page.waitForFunction(() => document.getElementById("blue-model").textContent === "blue: beta-blue");
  assert.equal((await page.textContent("#phase")).trim(), "progressing");
  assert.equal(await page.textContent("#green-model"), "green: beta-green (40%)");
  const cell = (metric, env) => page.textContent(`#stats tr[data-metric="${metric}"] td.${env}`);
  assert.equal(await cell("requests", "blue"), String(beta.stats.rollout.blue.requests));
  assert.equal(await cell("requests", "green"), String(beta.stats.rollout.green.requests));
  assert.ok((await page.locator("#events [data-kind=started]").count()) >= 1);

  // Roll it back from the page: team/beta rolls back; alpha and default do not move.
  const untouched = async () => Promise.all(["alpha", "default"].map(async (n) => {
    const s = await routeStatus(r, n);
    return [n, s.phase, s.green_percent, s.routing_version, JSON.stringify(s.last_event)];
  }));
  const before = await untouched();
  let asked = "";
  page.once("dialog", (d) => {
    asked = d.message();
    d.accept();
  });
  await page.click("button[data-action=rollback]");
  await page.waitForFunction(() => document.getElementById("phase").textContent.trim() === "rolled back");
  assert.match(asked, /^Route team\/beta: Roll back/);
  const after = await routeStatus(r, "team/beta");
  assert.equal(after.phase, "rolled_back");
  assert.equal(after.green_percent, 0);
  assert.equal(after.last_event.kind, "rolled_back");
  assert.deepEqual(await untouched(), before, "the other routes are as they were");
  // The list says so at the next refresh.
  await page.waitForFunction(
    (sel) => document.querySelector(sel + " span.phase")?.textContent === "rolled back",
    row("team/beta"),
  );
  assert.equal((await cells("alpha"))[1], "idle");
  await page.close();
});

test("a #route= link opens that route, a name with a slash included; a name no route has says so", async () => {
  const r = stack.router;
  const page = await signedIn(r, "#route=team/beta");
  assert.equal(await page.textContent("#route-name"), "team/beta");
  assert.equal(await page.textContent("#blue-model"), "blue: beta-blue");
  assert.match(await page.getAttribute(row("team/beta"), "class"), /sel/);
  // Another route through the address, as a pasted link would.
  await page.evaluate(() => { location.hash = "route=alpha"; });
  await page.waitForFunction(() => document.getElementById("blue-model").textContent === "blue: alpha-blue");
  assert.equal((await page.textContent("#phase")).trim(), "idle");
  assert.equal(await page.textContent("#step"), "No rollout yet.");
  assert.equal(await page.textContent("#route-problem"), "");
  await page.evaluate(() => { location.hash = "route=gone/away"; });
  await page.waitForFunction(() => document.getElementById("route-problem").textContent === "No route named gone/away.");
  assert.ok(await page.isHidden("#view"));
  assert.ok(await page.isHidden("button[data-action=rollback]"), "no action can reach a route that is not there");
  await page.close();
});

test("route and model names go into the page as text, never as markup", async () => {
  const r = stack.router;
  const name = "x@team/a+b:c_d.e-f";
  const model = `<img src=x onerror="window.pwned=1">`;
  const put = await r.admin("PUT", `routes/${name}`, { blue_model: model });
  assert.equal(put.status, 201, put.text);
  const page = await signedIn(r, `#route=${name}`);
  await page.waitForFunction(() => document.getElementById("route-name").textContent !== "");
  assert.equal(await page.textContent("#route-name"), name);
  assert.equal(await page.textContent("#blue-model"), `blue: ${model}`);
  assert.equal(await page.locator("img").count(), 0);
  assert.equal(await page.evaluate(() => window.pwned), undefined);
  assert.equal(await page.textContent(`${row(name)} td.name`), name);
  await page.close();
});

test("a route whose controller did not answer shows its problem, in the list and when opened", async () => {
  const page = await browser.newPage();
  // The list as GET /admin/routes gives it when alpha's controller fails.
  const problem = "the controller answered 500: storage is on fire";
  await page.route("**/admin/routes", async (route) => {
    const res = await route.fetch();
    const body = await res.json();
    for (const x of body.routes) {
      if (x.name === "alpha") {
        delete x.status;
        x.problem = problem;
      }
    }
    await route.fulfill({ response: res, json: body });
  });
  await page.goto(`${stack.router.url}/dashboard#route=alpha`);
  await page.fill("#token", TOKEN);
  await page.click("#login button[type=submit]");
  await page.waitForSelector("#app:not([hidden])");
  assert.equal(await page.textContent(`${row("alpha")} td.error`), problem);
  assert.equal(await page.textContent("#route-problem"), `alpha: its controller did not answer: ${problem}`);
  assert.ok(await page.isHidden("#view"));
  // The other routes are listed as ever.
  const beta = await routeStatus(stack.router, "team/beta");
  assert.equal(await page.textContent(`${row("team/beta")} span.phase`), beta.phase.replaceAll("_", " "));
  await page.close();
});

test("requests routed under the split before a rollout are shown beside its numbers, and the chart reconciles", async (t) => {
  // Isolates keep a route's routing document for ROUTING_CACHE_SECONDS: requests sent right
  // after a rollout starts still go by the split before it, as in the report (40 requests at
  // once, the whole-rollout table at 0 and 0).
  const own = await startStack({ ADMIN_TOKEN: TOKEN, BLUE_MODEL: "blue-m", ROUTING_CACHE_SECONDS: "600" });
  t.after(() => own.close());
  const r = own.router;
  const name = "team/cached";
  assert.equal((await r.admin("PUT", `routes/${name}`, { blue_model: "cached-blue" })).status, 201);
  // The isolate reads the route and its split (0% green) now, and keeps them.
  await routeTraffic(r, name, 5);
  await routeCount(r, name, 5);
  const started = await r.admin("POST", `routes/${name}/rollouts`, {
    green_model: "cached-green",
    steps: [{ green_percent: 50, hold_seconds: 600 }],
    health: { min_requests: 1000 },
  });
  assert.equal(started.status, 201, started.text);
  await routeTraffic(r, name, 40, 40);
  const s = await eventually(async () => {
    const st = await routeStatus(r, name);
    return st.stats.earlier_requests >= 40 && st;
  }, 8000);
  assert.equal(s.stats.earlier_requests, 40);
  assert.equal(s.stats.rollout.blue.requests + s.stats.rollout.green.requests, 0);

  const page = await signedIn(r, `#route=${name}`);
  await page.waitForFunction(() => document.getElementById("earlier").textContent !== "");
  assert.equal(
    await page.textContent("#earlier"),
    "40 requests routed under the split before this rollout: in the chart, not judged, not in this table",
  );
  const cell = (env) => page.textContent(`#stats tr[data-metric="requests"] td.${env}`);
  assert.deepEqual([await cell("blue"), await cell("green")], ["0", "0"]);
  // The chart counts every request routed in the hour: the 5 before the rollout, the 40 routed
  // under the split before it, and the rollout's own (none).
  const history = (await r.admin("GET", `routes/${name}/history?minutes=60`)).body;
  const charted = (env) => history.minutes.reduce((n, m) => n + m[env].requests, 0);
  assert.equal(charted("blue") + charted("green"), 5 + 40);
  assert.equal(await page.textContent("#chart-total"), `This hour: blue ${charted("blue")}, green ${charted("green")}.`);
  await page.screenshot({ path: path.join(OUT, "dashboard-earlier.png"), fullPage: true });
  await page.close();
});

test("the grader's figures and the last pairs green lost show to the signed-in operator, as text", async (t) => {
  const own = await startStack({ ADMIN_TOKEN: TOKEN, BLUE_MODEL: "blue-m", ROUTING_CACHE_SECONDS: "0" });
  t.after(() => own.close());
  const r = own.router;
  await own.sim.setRules({ "judge-m": { grader: { worse_wins: 0, ties: 0 } } });
  const start = await r.admin("POST", "rollouts", {
    green_model: "green-worse",
    steps: [{ green_percent: 50, hold_seconds: 600 }],
    health: { judge: { model: "judge-m", sample_percent: 100, max_per_minute: 600 } },
  });
  assert.equal(start.status, 201, start.text);
  // A prompt with markup: the page must show it as text.
  const answers = await pool(40, 8, (i) =>
    chat(r.url, { messages: [{ role: "user", content: `<img src=x onerror=alert(1)> question ${i}` }] }),
  );
  assert.ok(answers.every((a) => a.status === 200));
  const s = await eventually(async () => {
    const st = await r.status();
    return st.judge.judged > 0 && st.judge.judged === st.stats.rollout.green.requests && st;
  }, 15000);
  assert.ok(s, "every green answer judged");
  const page = await signedIn(r);
  await page.waitForSelector("#judge-section:not([hidden])");
  const figures = await page.textContent("#judge-figures");
  assert.ok(figures.startsWith(`${s.judge.judged} pairs judged: green won 0, lost ${s.judge.losses}`), figures);
  assert.match(await page.textContent("#judge-evidence"), /no evidence yet/);
  const losses = page.locator("#judge-losses .loss");
  assert.equal(await losses.count(), 5);
  const first = await losses.first().textContent();
  assert.match(first, /Prompt: user: <img src=x onerror=alert\(1\)> question \d+/);
  assert.match(first, /Green: Hello from green-worse/);
  assert.equal(await page.locator("#judge-losses img").count(), 0, "no markup from a prompt");
  await page.screenshot({ path: path.join(OUT, "dashboard-grader.png"), fullPage: true });
  await page.close();
});
