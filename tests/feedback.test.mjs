// Feedback from the app (POST /v1/feedback), end to end: the built worker in local workerd,
// real HTTP, the upstream simulator. The request id of a chat completion says who answered;
// the router reads it, never the client, and counts each answer once.
import { test } from "node:test";
import assert from "node:assert/strict";
import { startStack, chat } from "./harness.mjs";

const TOKEN = "test-admin-token";
const VARS = {
  ADMIN_TOKEN: TOKEN,
  FEEDBACK_SECRET: "test-feedback-secret-3f9a1c",
  BLUE_MODEL: "blue-m",
  GREEN_MODEL: "unused-m",
  ROUTING_CACHE_SECONDS: "0",
};

async function score(router, body, headers = {}) {
  const res = await fetch(`${router.url}/v1/feedback`, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: typeof body === "string" ? body : JSON.stringify(body),
  });
  return { status: res.status, body: await res.json() };
}

/** Sends chat completions until each environment has answered at least once; returns the ids
 * by the environment that answered. */
async function idsByEnvironment(router, headers = {}) {
  const ids = { blue: [], green: [] };
  for (let i = 0; i < 60 && (ids.blue.length < 2 || ids.green.length < 2); i++) {
    const r = await chat(router.url, undefined, headers);
    assert.equal(r.status, 200, r.text);
    ids[r.headers.get("x-bluegreen-environment")].push(r.headers.get("x-bluegreen-request-id"));
  }
  return ids;
}

test("a score counts once for the environment that answered, read from the id, never from the client", async (t) => {
  const stack = await startStack(VARS);
  t.after(() => stack.close());
  const r = stack.router;
  const start = await r.admin("POST", "rollouts", { green_model: "green-m", steps: [{ green_percent: 50, hold_seconds: 600 }] });
  assert.equal(start.status, 201, start.text);
  const ids = await idsByEnvironment(r);
  assert.ok(ids.green.length >= 2 && ids.blue.length >= 2, JSON.stringify(ids));
  for (const id of [...ids.green, ...ids.blue]) assert.match(id, /^bg1\.[bg][0-9a-f]+\.[0-9a-f]+\.[0-9a-f]{16}\.[0-9a-f]{16}$/);

  const down = await score(r, { request_id: ids.green[0], score: -1 });
  assert.equal(down.status, 200, JSON.stringify(down.body));
  assert.deepEqual(down.body, { request_id: ids.green[0], environment: "green", negative: true, counted: true, judged: true });
  assert.equal((await score(r, { request_id: ids.green[1], score: 1 })).status, 200);
  assert.equal((await score(r, { request_id: ids.blue[0], score: 0 })).status, 200);

  const s = await r.status();
  const fb = (p) => [p.feedback_scored, p.feedback_negative];
  assert.deepEqual(fb(s.stats.rollout.green), [2, 1]);
  assert.deepEqual(fb(s.stats.rollout.blue), [1, 0]);
  assert.equal(s.stats.rollout.green.negative_rate, 0.5);
  assert.deepEqual(fb(s.stats.step.green), [2, 1], "the step of the split it was routed under");

  // The same answer again: refused, and not counted twice.
  const again = await score(r, { request_id: ids.green[0], score: -1 });
  assert.equal(again.status, 409);
  assert.equal(again.body.error.code, "duplicate_feedback");
  // Claiming the answer was blue's breaks the seal.
  const claimed = ids.green[1].replace(/^bg1\.g/, "bg1.b");
  const forged = await score(r, { request_id: claimed, score: -1 });
  assert.equal(forged.status, 404, JSON.stringify(forged.body));
  assert.equal(forged.body.error.code, "unknown_request_id");
  assert.equal(forged.body.error.param, "request_id");
  // Not an id of ours at all; a bad score; a body that is not JSON.
  const cases = [
    [{ request_id: "0123456789abcdef0123456789abcdef", score: -1 }, 400, "invalid_request_id"],
    [{ request_id: ids.blue[1], score: -2 }, 400, "invalid_value"],
    [{ request_id: ids.blue[1] }, 400, "invalid_type"],
    ["{not json", 400, "invalid_json"],
  ];
  for (const [body, status, code] of cases) {
    const got = await score(r, body);
    assert.equal(got.status, status, JSON.stringify(body));
    assert.equal(got.body.error.code, code, JSON.stringify(got.body));
  }
  const after = await r.status();
  assert.deepEqual(fb(after.stats.rollout.green), [2, 1], "no refused score counted");
  assert.deepEqual(fb(after.stats.rollout.blue), [1, 0]);
  const minute = (await r.admin("GET", "history?minutes=2")).body.minutes.at(-1);
  assert.equal(minute.green.feedback_negative, 1, JSON.stringify(minute.green));
});

test("a forced request's score is counted apart; without a secret feedback is off with a clear 503", async (t) => {
  const stack = await startStack(VARS);
  t.after(() => stack.close());
  const r = stack.router;
  const forced = await chat(r.url, undefined, { "x-bluegreen-environment": "green" });
  assert.equal(forced.status, 200, forced.text);
  const id = forced.headers.get("x-bluegreen-request-id");
  assert.match(id, /^bg1\.G/);
  assert.equal((await score(r, { request_id: id, score: -1 })).status, 200);
  const s = await r.status();
  assert.equal(s.stats.forced.green.feedback_negative, 1);
  assert.equal(s.stats.rollout.green.feedback_scored, 0);
  const minute = (await r.admin("GET", "history?minutes=2")).body.minutes.at(-1);
  assert.equal(minute.green.feedback_scored, 0, "a forced score stays out of the history too");

  // An admin token alone does not turn feedback on: the key comes from FEEDBACK_SECRET only.
  const open = await startStack({ BLUE_MODEL: "blue-m", ADMIN_TOKEN: TOKEN });
  t.after(() => open.close());
  const plain = await chat(open.router.url);
  assert.match(plain.headers.get("x-bluegreen-request-id"), /^[0-9a-f]{32}$/);
  const off = await score(open.router, { request_id: plain.headers.get("x-bluegreen-request-id"), score: 1 });
  assert.equal(off.status, 503);
  assert.equal(off.body.error.code, "feedback_disabled");
  assert.match(off.body.error.message, /FEEDBACK_SECRET/);
});

test("feedback takes the chat route's client auth", async (t) => {
  const stack = await startStack({ ...VARS, ROUTER_API_KEYS: "rk-1", HOLYSHEEP_API_KEY: "sk-up" });
  t.after(() => stack.close());
  const r = stack.router;
  const answered = await chat(r.url, undefined, { authorization: "Bearer rk-1" });
  assert.equal(answered.status, 200, answered.text);
  const body = { request_id: answered.headers.get("x-bluegreen-request-id"), score: -1 };
  assert.equal((await score(r, body)).status, 401);
  assert.equal((await score(r, body, { authorization: "Bearer wrong" })).status, 401);
  assert.equal((await score(r, body, { authorization: "Bearer rk-1" })).status, 200);
});
