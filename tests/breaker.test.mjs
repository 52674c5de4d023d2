// The green breaker (outlier ejection, issue 11 part 3), end to end: a failing green is
// ejected and later green requests go to blue without reaching it, still counted as green
// errors; a hung green's attempts are given up to blue long before the router's own timeout;
// after the cool-down one probe goes to green and a healthy answer closes the breaker; forced
// green requests are never shed. Each test starts its own router, so that it starts with a
// fresh isolate and a closed breaker. Cool-downs and hang floors are the smallest settings
// allow (1 s); bounds on time are generous.
import { test } from "node:test";
import assert from "node:assert/strict";
import { startStack, setRouting, eventually, chat, sleep, CHAT } from "./harness.mjs";

const TOKEN = "breaker-admin-token";
const FAILURES = 3;
const LONG_MS = 60_000; // the router's own limits: far longer than any test waits
const STREAM = { stream: true, messages: [{ role: "user", content: "one two three" }] };
const FORCE_BLUE = { "x-bluegreen-environment": "blue" };
const FORCE_GREEN = { "x-bluegreen-environment": "green" };

/** A stack at 100% green with the breaker's settings small enough for a test. */
async function startGreen(vars = {}) {
  const stack = await startStack({
    ROUTING_CACHE_SECONDS: "0",
    ADMIN_TOKEN: TOKEN,
    FIRST_BYTE_TIMEOUT_MS: String(LONG_MS),
    COMPLETION_TIMEOUT_MS: String(LONG_MS),
    GREEN_EJECTION_FAILURES: String(FAILURES),
    GREEN_EJECTION_BASE_MS: "1000",
    GREEN_HANG_FLOOR_MS: "1000",
    ...vars,
  });
  await setRouting(stack.router, { blue_model: "blue-m", green_model: "green-m", green_percent: 100 });
  return stack;
}

const greenSeen = (stack) =>
  stack.sim.requests().filter((r) => r.path === "/v1/chat/completions" && JSON.parse(r.body).model === "green-m").length;

async function breakerState(stack) {
  const res = await fetch(`${stack.router.url}/healthz`);
  return (await res.json()).green_breaker;
}

/** Green's rollout stats once the controller has counted every request the router recorded. */
async function greenStats(stack) {
  const s = await eventually(async () => {
    const stats = (await stack.router.status()).stats;
    const counted = ["rollout", "forced"].reduce((n, k) => n + stats[k].blue.requests + stats[k].green.requests, 0);
    return counted === stack.router.outcomes().length ? stats : null;
  }, 8000);
  assert.ok(s, "the controller's counts did not settle");
  const g = s.rollout.green;
  const errors = Object.fromEntries(Object.entries(g.errors_by_class).filter(([, v]) => v));
  return { requests: g.requests, fallbacks: g.fallbacks, errors, forced: s.forced.green.requests };
}

const fallbackOf = (r) => r.headers.get("x-bluegreen-fallback");

test("a green answering 503 is ejected after N failures; later requests go to blue without reaching it, counted as green's ejected errors", async () => {
  const stack = await startGreen({ GREEN_EJECTION_BASE_MS: "30000" });
  try {
    await stack.sim.setRules({ "green-m": { status: 503 } });
    for (let i = 0; i < FAILURES; i++) {
      const r = await chat(stack.router.url, i % 2 ? STREAM : CHAT);
      assert.equal(r.status, 200, r.text);
      assert.equal(fallbackOf(r), "status-503");
    }
    assert.equal(greenSeen(stack), FAILURES);
    const ejected = await breakerState(stack);
    assert.equal(ejected.state, "ejected");
    assert.deepEqual(ejected.cause, { kind: "failures", attempts: FAILURES });

    for (let i = 0; i < 5; i++) {
      const r = await chat(stack.router.url, i % 2 ? STREAM : CHAT);
      assert.equal(r.status, 200, r.text);
      assert.equal(r.headers.get("x-bluegreen-environment"), "blue");
      assert.equal(fallbackOf(r), "green-ejected");
    }
    assert.equal(greenSeen(stack), FAILURES, "a shed request reached green");
    const outcomes = stack.router.outcomes();
    assert.equal(outcomes.filter((o) => o.fallback === "green-ejected" && o.environment === "blue").length, 5);
    assert.ok(stack.router.logs.some((l) => l.message.startsWith("green_breaker ") && l.message.includes('"ejected"')));

    // Green still looks as broken as it is: 8 green requests, 8 errors.
    assert.deepEqual(await greenStats(stack), {
      requests: FAILURES + 5,
      fallbacks: FAILURES + 5,
      errors: { server_error: FAILURES, ejected: 5 },
      forced: 0,
    });
    assert.equal((await breakerState(stack)).counts.shed, 5);
  } finally {
    await stack.close();
  }
});

for (const [mode, body, rule] of [
  // Not streamed: no response headers at all.
  ["non-streamed", CHAT, { delay_ms: 600_000 }],
  // Streamed: headers, then silence before the first event.
  ["streamed", STREAM, { think_ms: 600_000 }],
]) {
  test(`a hung green's ${mode} attempt is given up to blue long before the router's timeout`, async () => {
    const stack = await startGreen();
    try {
      // Blue's answer times: the reference green's hang deadline is measured against.
      for (let i = 0; i < 3; i++) assert.equal((await chat(stack.router.url, body, FORCE_BLUE)).status, 200);
      await stack.sim.setRules({ "green-m": rule });
      const t0 = Date.now();
      const rs = await Promise.all([0, 1, 2].map(() => chat(stack.router.url, body)));
      const took = Date.now() - t0;
      for (const r of rs) {
        assert.equal(r.status, 200, r.text);
        assert.equal(r.headers.get("x-bluegreen-environment"), "blue");
        assert.equal(fallbackOf(r), "green-abandoned");
      }
      // The hang floor is 1 s (three attempts past it eject green); the timeout is 60 s.
      assert.ok(took < 15_000, `took ${took} ms`);
      // The abandoned attempts were cancelled upstream.
      const closed = await eventually(
        () => stack.sim.requests().filter((r) => JSON.parse(r.body).model === "green-m" && r.closed_at).length === 3,
        5000,
      );
      assert.ok(closed, "green's hung requests were not cancelled");
      const state = await breakerState(stack);
      assert.equal(state.state, "ejected");
      assert.equal(state.cause.kind, "hung");
      assert.equal(state.counts.abandoned, 3);
      // Given up on: a timeout, as without the breaker, only sooner.
      assert.deepEqual(await greenStats(stack), { requests: 3, fallbacks: 3, errors: { timeout: 3 }, forced: 0 });
    } finally {
      await stack.close();
    }
  });
}

test("after the cool-down one probe goes to green while the rest is shed, and a healthy answer closes the breaker", async () => {
  const stack = await startGreen();
  try {
    await stack.sim.setRules({ "green-m": { status: 503 } });
    for (let i = 0; i < FAILURES; i++) assert.equal(fallbackOf(await chat(stack.router.url)), "status-503");
    assert.equal((await breakerState(stack)).state, "ejected");
    // Green recovers, a little slow, so that the probe is in flight while others arrive.
    await stack.sim.setRules({ "green-m": { delay_ms: 400 } });
    await sleep(1300); // the first cool-down is 1 s
    const probe = chat(stack.router.url);
    await sleep(100);
    const others = await Promise.all([0, 1, 2].map(() => chat(stack.router.url)));
    for (const r of others) assert.equal(fallbackOf(r), "green-ejected");
    const p = await probe;
    assert.equal(p.status, 200, p.text);
    assert.equal(p.headers.get("x-bluegreen-environment"), "green");
    assert.equal(fallbackOf(p), null);
    assert.equal(greenSeen(stack), FAILURES + 1, "only the probe reached green");
    const state = await breakerState(stack);
    assert.equal(state.state, "closed");
    assert.equal(state.counts.probes, 1);
    assert.ok(stack.router.logs.some((l) => l.message.startsWith("green_breaker ") && l.message.includes('"closed"')));
    // Closed: green serves again.
    const r = await chat(stack.router.url, STREAM);
    assert.equal(r.headers.get("x-bluegreen-environment"), "green");
    assert.equal(greenSeen(stack), FAILURES + 2);
  } finally {
    await stack.close();
  }
});

test("forced green requests are never shed, and never move the breaker", async () => {
  const stack = await startGreen({ GREEN_EJECTION_BASE_MS: "30000" });
  try {
    await stack.sim.setRules({ "green-m": { status: 503 } });
    // Forced failures do not eject green: the breaker never sees forced requests.
    for (let i = 0; i < FAILURES + 2; i++) {
      const r = await chat(stack.router.url, CHAT, FORCE_GREEN);
      assert.equal(r.status, 503);
    }
    assert.equal((await breakerState(stack)).state, "closed");
    for (let i = 0; i < FAILURES; i++) await chat(stack.router.url);
    assert.equal((await breakerState(stack)).state, "ejected");
    const seen = greenSeen(stack);
    for (const body of [CHAT, STREAM]) {
      const r = await chat(stack.router.url, body, FORCE_GREEN);
      assert.equal(r.status, 503);
      assert.equal(r.headers.get("x-bluegreen-environment"), "green");
      assert.equal(fallbackOf(r), null);
    }
    assert.equal(greenSeen(stack), seen + 2);
    assert.equal((await breakerState(stack)).counts.shed, 0);
  } finally {
    await stack.close();
  }
});

test("with GREEN_EJECTION=off green is always tried, and /healthz shows no breaker", async () => {
  const stack = await startGreen({ GREEN_EJECTION: "off" });
  try {
    await stack.sim.setRules({ "green-m": { status: 503 } });
    for (let i = 0; i < FAILURES + 3; i++) assert.equal(fallbackOf(await chat(stack.router.url)), "status-503");
    assert.equal(greenSeen(stack), FAILURES + 3);
    assert.equal(await breakerState(stack), null);
  } finally {
    await stack.close();
  }
});
