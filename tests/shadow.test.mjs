// The shadow step end to end: the built worker in local workerd, real HTTP, the upstream
// simulator as both models. On a shadow step no user is served by green: a share of blue's
// requests is copied to green from waitUntil, its answer read and discarded, and the copies,
// paired with blue's answers, are what the controller judges.
import { test } from "node:test";
import assert from "node:assert/strict";
import { startStack, chat, pool, eventually, CHAT } from "./harness.mjs";

const TOKEN = "test-admin-token";
const SCRAPE = "test-scrape-token";
// The cost bound far above these tests' traffic, but in the last one.
const VARS = {
  ADMIN_TOKEN: TOKEN,
  METRICS_TOKEN: SCRAPE,
  BLUE_MODEL: "blue-m",
  GREEN_MODEL: "unused-m",
  ROUTING_CACHE_SECONDS: "0",
  SHADOW_MAX_PER_MINUTE: "10000",
};

/** Starts a rollout whose first step copies `share`% of blue's requests to green-m. */
async function startShadow(router, share) {
  const res = await router.admin("POST", "rollouts", {
    green_model: "green-m",
    steps: [
      { shadow_percent: share, hold_seconds: 600 },
      { green_percent: 10, hold_seconds: 600 },
    ],
    health: { min_requests: 20 },
  });
  assert.equal(res.status, 201, res.text);
  return res.body;
}

/** Sends `n` chat completions, every other one streamed; checks each came from blue, whole. */
async function trafficFromBlue(router, n) {
  const results = await pool(n, 8, (i) => chat(router.url, { ...CHAT, stream: i % 2 === 1 }));
  for (const r of results) {
    assert.equal(r.status, 200, r.text);
    assert.equal(r.headers.get("x-bluegreen-environment"), "blue");
    assert.equal(r.headers.get("x-bluegreen-model"), "blue-m");
    assert.equal(r.headers.get("x-bluegreen-fallback"), null);
  }
  return results;
}

/** The samples of `family` in the router's /metrics text, as [line, value]. */
async function samples(router, family) {
  const res = await fetch(`${router.url}/metrics`, { headers: { authorization: `Bearer ${SCRAPE}` } });
  assert.equal(res.status, 200);
  return (await res.text())
    .split("\n")
    .filter((l) => l.startsWith(`${family}{`) || l.startsWith(`${family} `))
    .map((l) => [l, Number(l.slice(l.lastIndexOf(" ") + 1))]);
}

/** The sum of `family`'s samples whose line matches `match`. */
async function total(router, family, match = /./) {
  return (await samples(router, family)).filter(([l]) => match.test(l)).reduce((a, [, v]) => a + v, 0);
}

/** The green-m requests the simulator has received: the copies. */
function copiesSeen(sim) {
  return sim.requests().filter((r) => r.path.endsWith("/chat/completions") && JSON.parse(r.body).model === "green-m");
}

test("a shadow step counts green's outcomes while every client answer comes from blue", async (t) => {
  const stack = await startStack(VARS);
  t.after(() => stack.close());
  const r = stack.router;
  const started = await startShadow(r, 50);
  assert.equal(started.green_percent, 0);
  assert.equal(started.shadow_percent, 50);
  assert.equal(started.step.shadow_percent, 50);
  const doc = JSON.parse(await r.kv.get("routing"));
  assert.equal(doc.green_percent, 0);
  assert.equal(doc.shadow_percent, 50);

  const n = 200;
  await trafficFromBlue(r, n);
  // Binomial(200, 1/2): 100 ± 3 sd (21) copies.
  const copies = copiesSeen(stack.sim).length;
  assert.ok(copies >= 79 && copies <= 121, `${copies} copies of ${n}`);
  const s = await eventually(async () => {
    const s = await r.status();
    return s.stats.shadow.step.pairs >= copies && s.stats.rollout.blue.requests >= n && s;
  }, 10_000);
  assert.ok(s, "every copy paired and counted");
  const shadow = s.stats.shadow.step;
  assert.equal(shadow.pairs, copies);
  assert.equal(shadow.green.requests, copies);
  assert.equal(shadow.blue.requests, copies, "each copy paired with blue's answer to it");
  assert.equal(shadow.green.errors, 0);
  assert.equal(shadow.green.p50_ms > 0, true);
  assert.equal(shadow.unfinished + shadow.capped, 0);
  // No user was served by green: the live counts have no green request at all.
  assert.equal(s.stats.rollout.green.requests, 0);
  assert.equal(s.stats.rollout.blue.requests, n);
  // The metrics count the copies apart, under green's model; routed requests are blue's only.
  assert.equal(await total(r, "bluegreen_shadow_requests_total", /model="green-m"/), copies);
  assert.equal(await total(r, "bluegreen_shadow_requests_total", /class="ok"/), copies);
  assert.equal(await total(r, "bluegreen_requests_total", /environment="green"/), 0);
  assert.equal(await total(r, "bluegreen_requests_total", /environment="blue"/), n);
  assert.equal(await total(r, "bluegreen_shadow_capped_total"), 0);

  // A healthy green's tick passes on the pairs (min_requests counts them).
  await r.tick();
  const after = await r.status();
  assert.equal(after.verdict.status, "pass", JSON.stringify(after.verdict));
  assert.ok(after.verdict.reasons.some((x) => x.startsWith(`shadow pairs this tick: ${copies}; green failed alone in 0`)));
});

test("a green that fails in shadow gives no client error, and a tick rolls it back with reasons", async (t) => {
  const stack = await startStack(VARS);
  t.after(() => stack.close());
  const r = stack.router;
  await stack.sim.setRules({ "green-m": { fail_rate: 0.5, fail_status: 503 } });
  await startShadow(r, 100);
  const n = 100;
  await trafficFromBlue(r, n);
  const s = await eventually(async () => {
    const s = await r.status();
    return s.stats.shadow.step.pairs >= n && s;
  }, 10_000);
  assert.ok(s, "every copy paired and counted");
  const shadow = s.stats.shadow.step;
  assert.ok(shadow.green_only_errors > 20, JSON.stringify(shadow));
  assert.equal(shadow.green.errors, shadow.green_only_errors, "blue failed none");
  assert.equal(shadow.green.errors_by_class.server_error, shadow.green.errors);
  assert.equal(s.stats.rollout.green.requests, 0);

  await r.tick();
  const after = await r.status();
  assert.equal(after.phase, "rolled_back", JSON.stringify(after.verdict));
  assert.equal(after.shadow_percent, 0);
  assert.equal(JSON.parse(await r.kv.get("routing")).shadow_percent, undefined, "the copies stop");
  const reasons = after.verdict.reasons.join(" | ");
  assert.match(reasons, /green errors: seen on green only \(\d+ of \d+ vs 0 of \d+\)/);
  assert.match(reasons, /shadow pairs this tick: 100; green failed alone in \d+, blue alone in 0/);
  const [event] = (await r.events(1)).events;
  assert.equal(event.kind, "rolled_back");
  assert.match(event.message, /shadow pairs this tick/);
});

test("a copy goes without the headers that name the client's request", async (t) => {
  const stack = await startStack(VARS);
  t.after(() => stack.close());
  const r = stack.router;
  await startShadow(r, 100);
  const res = await chat(r.url, CHAT, { "idempotency-key": "k-1", "x-client-request-id": "c-1", "x-app": "a" });
  assert.equal(res.status, 200, res.text);
  assert.ok(await eventually(async () => copiesSeen(stack.sim).length === 1, 5_000), "copied");
  const [copy] = copiesSeen(stack.sim);
  const blue = stack.sim.requests().find((q) => q.path.endsWith("/chat/completions") && JSON.parse(q.body).model === "blue-m");
  assert.equal(blue.headers["idempotency-key"], "k-1");
  assert.equal(blue.headers["x-client-request-id"], "c-1");
  assert.equal(copy.headers["idempotency-key"], undefined);
  assert.equal(copy.headers["x-client-request-id"], undefined);
  assert.equal(copy.headers["x-app"], "a", "other headers go with the copy");
});

test("SHADOW_MAX_PER_MINUTE caps the copies an isolate starts for each route, and counts the others", async (t) => {
  const stack = await startStack({ ...VARS, SHADOW_MAX_PER_MINUTE: "5" });
  t.after(() => stack.close());
  const r = stack.router;
  // Two routes on a shadow step at once: the default route (blue-m, green-m) and summarise.
  await startShadow(r, 100);
  assert.equal((await r.admin("PUT", "routes/summarise", { blue_model: "sum-blue" })).status, 201);
  const started = await r.admin("POST", "routes/summarise/rollouts", {
    green_model: "sum-green",
    steps: [{ shadow_percent: 100, hold_seconds: 600 }, { green_percent: 10, hold_seconds: 600 }],
    health: { min_requests: 20 },
  });
  assert.equal(started.status, 201, started.text);
  const n = 30;
  const results = await pool(2 * n, 8, (i) => chat(r.url, { ...CHAT, ...(i % 2 ? { model: "summarise" } : {}), stream: i % 4 >= 2 }));
  for (const [i, res] of results.entries()) {
    assert.equal(res.status, 200, res.text);
    assert.equal(res.headers.get("x-bluegreen-route"), i % 2 ? "summarise" : "default");
    assert.equal(res.headers.get("x-bluegreen-environment"), "blue");
  }
  // One isolate, whose bucket for each route holds a minute's worth (5) and refills one every
  // 12 s: 5 copies a route, 6 if the requests took more than 12 s. One bucket shared by the
  // routes would have made 5 or 6 copies in all.
  const copiesOf = (model) => stack.sim.requests().filter((q) => q.path.endsWith("/chat/completions") && JSON.parse(q.body).model === model).length;
  const copies = { default: copiesOf("green-m"), summarise: copiesOf("sum-green") };
  for (const [route, c] of Object.entries(copies)) assert.ok(c >= 5 && c <= 6, `${route}: ${c} copies`);
  const statusOf = async (route) => (route === "default" ? r.status() : (await r.admin("GET", `routes/${route}/status`)).body);
  for (const route of ["default", "summarise"]) {
    const s = await eventually(async () => {
      const s = await statusOf(route);
      const sh = s.stats.shadow.step;
      return sh.pairs + sh.capped >= n && s;
    }, 10_000);
    assert.ok(s, `${route}: every request counted as copied or capped`);
    assert.equal(s.stats.shadow.step.pairs, copies[route], route);
    assert.equal(s.stats.shadow.step.capped, n - copies[route], route);
    const label = new RegExp(`route="${route}"`);
    assert.equal(await total(r, "bluegreen_shadow_capped_total", label), n - copies[route], route);
    assert.equal(await total(r, "bluegreen_shadow_requests_total", label), copies[route], route);
  }
});

test("a copy still running 25 s after blue's answer is given up and judged as far as it got", async (t) => {
  const stack = await startStack(VARS);
  t.after(() => stack.close());
  const r = stack.router;
  await startShadow(r, 100);
  // First a green that sends no headers for a minute (past the runtime's 30 s of background
  // time): its copy is a timeout where blue answered.
  await stack.sim.setRules({ "green-m": { delay_ms: 60_000 } });
  const started = Date.now();
  await trafficFromBlue(r, 1);
  assert.ok(await eventually(async () => copiesSeen(stack.sim).length === 1, 5_000), "the first copy sent");
  // Then one whose stream begins at once and then goes silent (within the idle limit): slow,
  // not an error.
  await stack.sim.setRules({ "green-m": { fault: "stall-after-2" } });
  const res = await chat(r.url, { ...CHAT, stream: true });
  assert.equal(res.status, 200, res.text);
  assert.equal(res.headers.get("x-bluegreen-environment"), "blue");
  const s = await eventually(async () => {
    const s = await r.status();
    return s.stats.shadow.step.unfinished >= 2 && s;
  }, 45_000, 500);
  assert.ok(s, `both copies given up: ${JSON.stringify((await r.status()).stats.shadow.step)}`);
  const waited = Date.now() - started;
  assert.ok(waited >= 25_000 && waited < 40_000, `given up after ${waited} ms`);
  const shadow = s.stats.shadow.step;
  assert.equal(shadow.pairs, 2, "a given-up copy is a pair");
  assert.equal(shadow.green_only_errors, 1, "the copy without headers failed where blue answered");
  assert.equal(shadow.green.errors_by_class.timeout, 1);
  assert.equal(shadow.answered, 0, "neither was an answer read whole");
  // About 25 s each, as the histogram's bins report it (within a few percent).
  assert.ok(shadow.green.p50_ms >= 20_000, `green's time so far counts: ${shadow.green.p50_ms} ms`);
  assert.equal(copiesSeen(stack.sim).length, 2);
  // Each given-up copy's log line names its request and route.
  const given = r.logs.filter((l) => / \(route default\): shadow copy unfinished 25000 ms after blue's answer/.test(l.message));
  assert.equal(given.length, 2, JSON.stringify(r.logs.filter((l) => l.message.includes("unfinished"))));
  assert.ok(given.some((l) => l.message.startsWith(`request ${res.headers.get("x-bluegreen-request-id")} (route default): `)));
  assert.equal(await total(r, "bluegreen_shadow_requests_total", /class="timeout"/), 1);
  // Both of the step's copies were given up: it may not advance, and the tick says why.
  await r.tick();
  const after = await r.status();
  assert.ok(
    after.verdict.reasons.some((x) => x.startsWith("shadow step held: 2 of its 2 copies were given up")),
    JSON.stringify(after.verdict),
  );
});
