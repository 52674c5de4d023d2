// Fallback from green to blue, and blue's failures reaching the client.
import { test, before, after, beforeEach } from "node:test";
import assert from "node:assert/strict";
import net from "node:net";
import { startStack, startRouter, chat, setRouting, eventually, CHAT } from "./harness.mjs";

// These requests are not streamed: COMPLETION_TIMEOUT_MS bounds them.
const TIMEOUT_MS = 1000;
let stack;
let url;
before(async () => {
  // The green breaker off: these tests fail green many times in a row to check each
  // failure's own fallback, which the breaker would turn into `green-ejected`
  // (tests/breaker.test.mjs covers it).
  stack = await startStack({ COMPLETION_TIMEOUT_MS: String(TIMEOUT_MS), ROUTING_CACHE_SECONDS: "0", GREEN_EJECTION: "off" });
  url = stack.router.url;
  // Every unforced request tries green first.
  await setRouting(stack.router, { blue_model: "blue-m", green_model: "green-m", green_percent: 100 });
});
after(() => stack?.close());
beforeEach(() => stack.sim.reset());

const models = () =>
  stack.sim.requests().filter((r) => r.path === "/v1/chat/completions").map((r) => JSON.parse(r.body).model);

async function outcomeOf(requestId) {
  return eventually(() => stack.router.outcomes().find((o) => o.request_id === requestId), 3000);
}

for (const [rule, reason] of [
  [{ status: 500 }, "status-500"],
  [{ status: 503 }, "status-503"],
  [{ status: 429 }, "status-429"],
  [{ status: 404 }, "status-404"],
  [{ stall_ms: 3000 }, "timeout"],
  [{ drop: "before-headers" }, "connect"],
]) {
  test(`green ${reason} falls back to blue once, and says so`, async () => {
    await stack.sim.setRules({ "green-m": rule });
    const t0 = Date.now();
    const r = await chat(url);
    const took = Date.now() - t0;
    assert.equal(r.status, 200, r.text);
    assert.equal(r.headers.get("x-bluegreen-environment"), "blue");
    assert.equal(r.headers.get("x-bluegreen-model"), "blue-m");
    assert.equal(r.headers.get("x-bluegreen-fallback"), reason);
    assert.equal(r.body.model, "blue-m");
    assert.deepEqual(models(), ["green-m", "blue-m"]);
    if (reason === "timeout") assert.ok(took >= TIMEOUT_MS && took < TIMEOUT_MS + 1500, `took ${took} ms`);
    const o = await outcomeOf(r.headers.get("x-bluegreen-request-id"));
    assert.equal(o.environment, "blue");
    assert.equal(o.fallback, reason);
    assert.equal(o.status, 200);
    assert.deepEqual(o.usage, { prompt_tokens: 2, completion_tokens: 7 });
  });
}

test("client errors from green are returned as they are, without fallback", async () => {
  for (const status of [400, 401, 403, 413, 422]) {
    stack.sim.reset();
    await stack.sim.setRules({ "green-m": { status } });
    const r = await chat(url);
    assert.equal(r.status, status);
    assert.equal(r.headers.get("x-bluegreen-environment"), "green");
    assert.equal(r.headers.get("x-bluegreen-fallback"), null);
    assert.equal(r.body.error.code, `sim_${status}`);
    assert.deepEqual(models(), ["green-m"]);
  }
});

test("a green forced by header is answered as it is, never moved to blue", async () => {
  await stack.sim.setRules({ "green-m": { status: 503 } });
  const r = await chat(url, CHAT, { "x-bluegreen-environment": "green" });
  assert.equal(r.status, 503);
  assert.equal(r.headers.get("x-bluegreen-environment"), "green");
  assert.deepEqual(models(), ["green-m"]);
});

test("when blue fails after a fallback, blue's answer reaches the client", async () => {
  await stack.sim.setRules({ "green-m": { status: 503 }, "blue-m": { status: 502 } });
  const r = await chat(url);
  assert.equal(r.status, 502);
  assert.equal(r.body.error.code, "sim_502");
  assert.equal(r.headers.get("x-bluegreen-environment"), "blue");
  assert.equal(r.headers.get("x-bluegreen-fallback"), "status-503");
  assert.deepEqual(models(), ["green-m", "blue-m"]);
});

test("blue failures reach the client: upstream status and body, 504 on a stall, 502 on a dropped connection", async () => {
  const headers = { "x-bluegreen-environment": "blue" };
  await stack.sim.setRules({ "blue-m": { status: 503 } });
  let r = await chat(url, CHAT, headers);
  assert.equal(r.status, 503);
  assert.equal(r.body.error.message, "simulated 503 from blue-m");

  await stack.sim.setRules({ "blue-m": { stall_ms: 3000 } });
  r = await chat(url, CHAT, headers);
  assert.equal(r.status, 504);
  assert.equal(r.body.error.code, "upstream_timeout");
  assert.equal(r.body.error.type, "server_error");
  assert.equal(r.headers.get("x-bluegreen-environment"), "blue");
  const timedOut = await outcomeOf(r.headers.get("x-bluegreen-request-id"));
  assert.equal(timedOut.status, 504);
  assert.equal(timedOut.class, "timeout");
  assert.equal(timedOut.basis, "forced");

  await stack.sim.setRules({ "blue-m": { drop: "before-headers" } });
  r = await chat(url, CHAT, headers);
  assert.equal(r.status, 502);
  assert.equal(r.body.error.code, "upstream_unreachable");
  const dropped = await outcomeOf(r.headers.get("x-bluegreen-request-id"));
  assert.equal(dropped.status, 502);
  assert.equal(dropped.class, "connect");

  // Both fail with no response at all: green times out, blue drops.
  await stack.sim.setRules({ "green-m": { stall_ms: 3000 }, "blue-m": { drop: "before-headers" } });
  r = await chat(url);
  assert.equal(r.status, 502);
  assert.equal(r.headers.get("x-bluegreen-fallback"), "timeout");
});

test("a refused connection: green falls back; with nothing listening at all, a 502 in OpenAI's shape", async (t) => {
  // A port that was just free: nothing listens there.
  const port = await new Promise((resolve) => {
    const s = net.createServer().listen(0, "127.0.0.1", () => {
      const p = s.address().port;
      s.close(() => resolve(p));
    });
  });
  const router = await startRouter({ UPSTREAM_BASE_URL: `http://127.0.0.1:${port}/v1`, GREEN_PERCENT: "100" });
  t.after(() => router.close());
  const r = await chat(router.url);
  assert.equal(r.status, 502);
  assert.equal(r.body.error.code, "upstream_unreachable");
  assert.equal(r.headers.get("x-bluegreen-environment"), "blue");
  assert.equal(r.headers.get("x-bluegreen-fallback"), "connect");
  const models = await fetch(`${router.url}/v1/models`);
  assert.equal(models.status, 502);
  assert.equal((await models.json()).error.code, "upstream_unreachable");
});
