// The admin API's contract: the token, every invalid body (400 naming the field, nothing
// changed), actions out of phase (409), routes and methods, and the read-only views.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startStack, startRouter, adminCall } from "./harness.mjs";

const TOKEN = "s3cret-admin";
let stack;
let r;
before(async () => {
  stack = await startStack({ ADMIN_TOKEN: TOKEN, BLUE_MODEL: "blue-m", ROUTING_CACHE_SECONDS: "0" });
  r = stack.router;
});
after(() => stack?.close());

const ROUTES = [
  ["GET", "status"],
  ["POST", "rollouts"],
  ["POST", "promote"],
  ["POST", "rollback"],
  ["POST", "pause"],
  ["POST", "resume"],
  ["PUT", "split"],
  ["GET", "events"],
  ["GET", "history"],
];

function assertError(res, status, code) {
  assert.equal(res.status, status, res.text);
  assert.ok(res.body?.error, res.text);
  assert.equal(res.body.error.code, code, res.text);
  assert.equal(typeof res.body.error.message, "string");
}

test("without ADMIN_TOKEN every admin route answers 503 saying how to set it", async (t) => {
  const bare = await startRouter({ BLUE_MODEL: "blue-m" });
  t.after(() => bare.close());
  for (const [method, route] of ROUTES) {
    const res = await adminCall(bare.url, method, route, method === "GET" ? undefined : {}, "anything");
    assertError(res, 503, "admin_disabled");
    assert.match(res.body.error.message, /ADMIN_TOKEN/);
    assert.match(res.body.error.message, /wrangler secret put/);
  }
});

test("a missing or wrong token gets 401 on every route", async () => {
  for (const [method, route] of ROUTES) {
    for (const token of [null, "wrong", `${TOKEN}x`, TOKEN.slice(0, -1), ""]) {
      const res = await adminCall(r.url, method, route, method === "GET" ? undefined : {}, token);
      assertError(res, 401, "invalid_admin_token");
    }
  }
  // Scheme other than Bearer.
  const res = await fetch(`${r.url}/admin/status`, { headers: { authorization: `Basic ${TOKEN}` } });
  assert.equal(res.status, 401);
});

test("unknown admin routes are 404 and wrong methods 405", async () => {
  for (const [method, route, body, status, code] of [
    ["GET", "nope", undefined, 404, "not_found"],
    ["GET", "rollouts", undefined, 405, "method_not_allowed"],
    ["POST", "status", {}, 405, "method_not_allowed"],
    ["POST", "split", { green_percent: 1 }, 405, "method_not_allowed"],
  ]) {
    assertError(await r.admin(method, route, body), status, code);
  }
  // The controller's internal routes are not reachable from outside.
  const res = await fetch(`${r.url}/internal/stats`, { method: "POST", body: "{}" });
  assert.equal(res.status, 404);
});

const INVALID_ROLLOUTS = [
  ["{not json", "body"],
  [[1, 2], "body"],
  [{}, "green_model"],
  [{ green_model: "" }, "green_model"],
  [{ green_model: 7 }, "green_model"],
  [{ green_model: "blue-m" }, "green_model"],
  [{ green_model: "g", colour: "green" }, "colour"],
  [{ green_model: "g", steps: [] }, "steps"],
  [{ green_model: "g", steps: "10,30" }, "steps"],
  [{ green_model: "g", steps: [5] }, "steps[0]"],
  [{ green_model: "g", steps: [{ green_percent: 0, hold_seconds: 5 }] }, "steps[0].green_percent"],
  [{ green_model: "g", steps: [{ green_percent: 100, hold_seconds: 5 }] }, "steps[0].green_percent"],
  [{ green_model: "g", steps: [{ green_percent: "10", hold_seconds: 5 }] }, "steps[0].green_percent"],
  [{ green_model: "g", steps: [{ green_percent: 10 }] }, "steps[0].hold_seconds"],
  [{ green_model: "g", steps: [{ green_percent: 10, hold_seconds: -1 }] }, "steps[0].hold_seconds"],
  [{ green_model: "g", steps: [{ green_percent: 10, hold_seconds: 1.5 }] }, "steps[0].hold_seconds"],
  [{ green_model: "g", steps: [{ green_percent: 10, hold_seconds: 1, wait: 2 }] }, "steps[0].wait"],
  [{ green_model: "g", steps: [{ green_percent: 30, hold_seconds: 1 }, { green_percent: 30, hold_seconds: 1 }] }, "steps[1].green_percent"],
  [{ green_model: "g", health: [] }, "health"],
  [{ green_model: "g", health: { min_requests: 0 } }, "health.min_requests"],
  [{ green_model: "g", health: { max_error_rate: 1.5 } }, "health.max_error_rate"],
  [{ green_model: "g", health: { max_error_rate_delta: -0.1 } }, "health.max_error_rate_delta"],
  [{ green_model: "g", health: { max_p95_latency_ms: 0 } }, "health.max_p95_latency_ms"],
  [{ green_model: "g", health: { max_p95_latency_ratio: 0.5 } }, "health.max_p95_latency_ratio"],
  [{ green_model: "g", health: { latency_margin_ms: "100" } }, "health.latency_margin_ms"],
  [{ green_model: "g", health: { failure_limit: 0 } }, "health.failure_limit"],
  [{ green_model: "g", health: { failure_limt: 3 } }, "health.failure_limt"],
  [{ green_model: "g", health: { method: "bayesian" } }, "health.method"],
  [{ green_model: "g", health: { alpha: 0 } }, "health.alpha"],
  [{ green_model: "g", health: { tolerance_ratio: 0.9 } }, "health.tolerance_ratio"],
  [{ green_model: "g", health: { advance_early: 1 } }, "health.advance_early"],
];

test("every invalid rollout body gets a 400 naming the field, and changes nothing", async () => {
  const before = await r.status();
  const eventsBefore = (await r.events()).events.length;
  for (const [body, field] of INVALID_ROLLOUTS) {
    const res = await r.admin("POST", "rollouts", body);
    assert.equal(res.status, 400, `${JSON.stringify(body)}: ${res.text}`);
    assert.equal(res.body.error.param, field, `${JSON.stringify(body)}: ${res.text}`);
    assert.ok(res.body.error.message.includes(`\`${field}\``), res.body.error.message);
  }
  const after = await r.status();
  assert.equal(after.phase, before.phase);
  assert.equal(after.green_percent, before.green_percent);
  assert.equal((await r.events()).events.length, eventsBefore);
  assert.equal(await r.kv.get("routing"), null, "KV was not written");
});

test("invalid splits and query parameters get 400 naming the field", async () => {
  for (const [body, field] of [
    [{}, "green_percent"],
    [{ green_percent: 101 }, "green_percent"],
    [{ green_percent: -1 }, "green_percent"],
    [{ green_percent: "50" }, "green_percent"],
    [{ green_percent: 50, sticky: false }, "sticky"],
  ]) {
    const res = await r.admin("PUT", "split", body);
    assert.equal(res.status, 400, res.text);
    assert.equal(res.body.error.param, field);
  }
  for (const [route, field] of [
    ["events?limit=0", "limit"],
    ["events?limit=abc", "limit"],
    ["events?limit=1001", "limit"],
    ["history?minutes=0", "minutes"],
    ["history?minutes=1441", "minutes"],
  ]) {
    const res = await r.admin("GET", route);
    assert.equal(res.status, 400, res.text);
    assert.equal(res.body.error.param, field);
  }
});

test("actions that do not apply in the phase get 409, and a full operator session works", async () => {
  // Idle: nothing to promote, roll back, pause, resume or split.
  for (const [method, route, body] of [
    ["POST", "promote"],
    ["POST", "rollback"],
    ["POST", "pause"],
    ["POST", "resume"],
    ["PUT", "split", { green_percent: 10 }],
  ]) {
    assertError(await r.admin(method, route, body), 409, "conflict");
  }
  const start = await r.admin("POST", "rollouts", {
    green_model: "green-m",
    steps: [{ green_percent: 10, hold_seconds: 600 }, { green_percent: 40, hold_seconds: 600 }],
  });
  assert.equal(start.status, 201, start.text);
  assert.equal(start.body.step.number, 1);
  assert.equal(start.body.step.of, 2);
  assert.ok(start.body.step.remaining_seconds > 590);
  assert.deepEqual(start.body.rollout.health, {
    method: "sequential",
    alpha: 0.03,
    tolerance_ratio: 1.2,
    advance_early: false,
    min_requests: 50,
    max_error_rate: 0.05,
    max_error_rate_delta: 0.02,
    max_p95_latency_ms: null,
    max_p95_latency_ratio: 1.5,
    latency_margin_ms: 100,
    failure_limit: 2,
    split_tolerance: 0.4,
  });
  // One at a time.
  assertError(await r.admin("POST", "rollouts", { green_model: "other-m" }), 409, "conflict");
  assertError(await r.admin("POST", "resume"), 409, "conflict");

  // A manual split pauses; KV follows; a second pause is refused; resume restores the step.
  const split = await r.admin("PUT", "split", { green_percent: 25 });
  assert.equal(split.status, 200, split.text);
  assert.equal(split.body.phase, "paused");
  assert.equal(JSON.parse(await r.kv.get("routing")).green_percent, 25);
  assertError(await r.admin("POST", "pause"), 409, "conflict");
  const resumed = await r.admin("POST", "resume");
  assert.equal(resumed.body.phase, "progressing");
  assert.equal(resumed.body.green_percent, 10);
  assert.equal((await r.admin("POST", "pause")).body.phase, "paused");

  // Promote from paused: green is the new blue; afterwards promote and rollback are 409.
  const promoted = await r.admin("POST", "promote");
  assert.equal(promoted.status, 200, promoted.text);
  assert.equal(promoted.body.phase, "completed");
  assert.equal(promoted.body.blue_model, "green-m");
  assertError(await r.admin("POST", "rollback"), 409, "conflict");
  assertError(await r.admin("POST", "promote"), 409, "conflict");
  const doc = JSON.parse(await r.kv.get("routing"));
  assert.equal(doc.blue_model, "green-m");
  assert.equal(doc.green_percent, 0);

  // The next rollout starts from the new blue, and an operator can roll it back.
  const next = await r.admin("POST", "rollouts", { green_model: "newer-m" });
  assert.equal(next.status, 201, next.text);
  assert.equal(next.body.rollout.blue_model, "green-m");
  assert.equal(next.body.rollout.id, 2);
  assert.deepEqual(next.body.rollout.steps.map((s) => [s.green_percent, s.hold_seconds]), [
    [10, 1800],
    [30, 3600],
    [50, 7200],
    [70, 14400],
  ]);
  const back = await r.admin("POST", "rollback");
  assert.equal(back.body.phase, "rolled_back");
  assert.equal(back.body.green_percent, 0);

  // The event log, newest first, and limited.
  const events = (await r.events(3)).events;
  assert.deepEqual(events.map((e) => e.kind), ["rolled_back", "started", "completed"]);
  assert.ok(events[0].seq > events[1].seq);
  assert.equal(events[0].by, "operator");
  const all = (await r.events()).events.map((e) => e.kind);
  assert.deepEqual(all, ["rolled_back", "started", "completed", "paused", "resumed", "split_set", "started"]);

  // History: a gap-free per-minute series with the split changes marked.
  const h = (await r.admin("GET", "history?minutes=5")).body;
  assert.equal(h.minutes.length, 5);
  for (const m of h.minutes) {
    for (const env of ["blue", "green"]) {
      assert.deepEqual(Object.keys(m[env]).sort(), ["defects", "error_rate", "errors", "feedback_negative", "feedback_scored", "p95_ms", "requests"]);
    }
  }
  assert.deepEqual(h.splits.map((s) => s.kind), ["started", "split_set", "resumed", "completed", "started", "rolled_back"]);
  assert.deepEqual(h.splits.map((s) => s.green_percent), [10, 25, 10, 0, 10, 0]);
});
