// Feedback from the app (POST /v1/feedback), end to end: the built worker in local workerd,
// real HTTP, the upstream simulator. The request id of a chat completion says who answered;
// the router reads it, never the client, and counts each answer once. Only a credential the
// deployment trusts may score, only answers the app received as answers (2xx) carry an id
// that can be scored, and scores are bounded per credential, per isolate and at the
// controller.
import { test } from "node:test";
import assert from "node:assert/strict";
import crypto from "node:crypto";
import { startStack, chat, pool, eventually } from "./harness.mjs";

const TOKEN = "test-admin-token";
const FEEDBACK_TOKEN = "test-feedback-token-7d1e";
const SCRAPE = "test-metrics-token";
const VARS = {
  ADMIN_TOKEN: TOKEN,
  METRICS_TOKEN: SCRAPE,
  FEEDBACK_SECRET: "test-feedback-secret-3f9a1c-0123456789",
  FEEDBACK_TOKEN,
  BLUE_MODEL: "blue-m",
  GREEN_MODEL: "unused-m",
  ROUTING_CACHE_SECONDS: "0",
};
const AS_APP = { authorization: `Bearer ${FEEDBACK_TOKEN}` };
const ID = /^bg2\.[bgBG][0-9a-f]+\.[0-9a-f]+\.[0-9a-f]{16}\.[0-9a-f]{16}$/;

async function score(router, body, headers = AS_APP) {
  const res = await fetch(`${router.url}/v1/feedback`, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: typeof body === "string" ? body : JSON.stringify(body),
  });
  return { status: res.status, headers: res.headers, body: await res.json() };
}

/** Sends chat completions until each environment has answered at least twice; returns the ids
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

/** The value of one sample of /metrics, 0 when absent. */
async function metric(router, series) {
  const res = await fetch(`${router.url}/metrics`, { headers: { authorization: `Bearer ${SCRAPE}` } });
  const text = await res.text();
  const line = text.split("\n").find((l) => l.startsWith(series + " "));
  return line ? Number(line.slice(series.length + 1)) : 0;
}

const fb = (p) => [p.feedback_scored, p.feedback_negative];

test("a score counts once for the environment that answered, read from the id, never from the client", async (t) => {
  const stack = await startStack(VARS);
  t.after(() => stack.close());
  const r = stack.router;
  const start = await r.admin("POST", "rollouts", { green_model: "green-m", steps: [{ green_percent: 50, hold_seconds: 600 }] });
  assert.equal(start.status, 201, start.text);
  const ids = await idsByEnvironment(r);
  assert.ok(ids.green.length >= 2 && ids.blue.length >= 2, JSON.stringify(ids));
  for (const id of [...ids.green, ...ids.blue]) assert.match(id, ID);

  const down = await score(r, { request_id: ids.green[0], score: -1 });
  assert.equal(down.status, 200, JSON.stringify(down.body));
  assert.deepEqual(down.body, { request_id: ids.green[0], environment: "green", negative: true, counted: true, judged: true });
  assert.equal((await score(r, { request_id: ids.green[1], score: 1 })).status, 200);
  assert.equal((await score(r, { request_id: ids.blue[0], score: 0 })).status, 200);

  const s = await r.status();
  assert.deepEqual(fb(s.stats.rollout.green), [2, 1]);
  assert.deepEqual(fb(s.stats.rollout.blue), [1, 0]);
  assert.equal(s.stats.rollout.green.negative_rate, 0.5);
  assert.deepEqual(fb(s.stats.step.green), [2, 1], "the step of the split it was routed under");

  // The same answer again: refused, and not counted twice.
  const again = await score(r, { request_id: ids.green[0], score: -1 });
  assert.equal(again.status, 409);
  assert.equal(again.body.error.code, "duplicate_feedback");
  // Claiming the answer was blue's breaks the seal.
  const claimed = ids.green[1].replace(/^bg2\.g/, "bg2.b");
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
  assert.equal(await metric(r, 'bluegreen_feedback_total{route="default",environment="green",model="green-m",score="negative"}'), 1);
  assert.equal(await metric(r, 'bluegreen_feedback_total{route="default",environment="green",model="green-m",score="not_negative"}'), 1);
});

test("a forced request's score is counted apart; without a secret, or with a short one, feedback is off with a clear 503", async (t) => {
  const stack = await startStack(VARS);
  t.after(() => stack.close());
  const r = stack.router;
  const forced = await chat(r.url, undefined, { "x-bluegreen-environment": "green" });
  assert.equal(forced.status, 200, forced.text);
  const id = forced.headers.get("x-bluegreen-request-id");
  assert.match(id, /^bg2\.G/);
  assert.equal((await score(r, { request_id: id, score: -1 })).status, 200);
  const s = await r.status();
  assert.equal(s.stats.forced.green.feedback_negative, 1);
  assert.equal(s.stats.rollout.green.feedback_scored, 0);
  const minute = (await r.admin("GET", "history?minutes=2")).body.minutes.at(-1);
  assert.equal(minute.green.feedback_scored, 0, "a forced score stays out of the history too");

  // An admin token alone does not turn feedback on: the key comes from FEEDBACK_SECRET only.
  const open = await startStack({ BLUE_MODEL: "blue-m", ADMIN_TOKEN: TOKEN, FEEDBACK_TOKEN });
  t.after(() => open.close());
  const plain = await chat(open.router.url);
  assert.match(plain.headers.get("x-bluegreen-request-id"), /^[0-9a-f]{32}$/);
  const off = await score(open.router, { request_id: plain.headers.get("x-bluegreen-request-id"), score: 1 });
  assert.equal(off.status, 503);
  assert.equal(off.body.error.code, "feedback_disabled");
  assert.match(off.body.error.message, /FEEDBACK_SECRET/);

  // 31 bytes: feedback off with the rule (in the answer and the log), the rest of the router on.
  const shortSecret = "0123456789abcdef0123456789abcde";
  const weak = await startStack({ ...VARS, FEEDBACK_SECRET: shortSecret });
  t.after(() => weak.close());
  const served = await chat(weak.router.url);
  assert.equal(served.status, 200, served.text);
  assert.match(served.headers.get("x-bluegreen-request-id"), /^[0-9a-f]{32}$/, "no sealed id");
  const refused = await score(weak.router, { request_id: served.headers.get("x-bluegreen-request-id"), score: -1 });
  assert.equal(refused.status, 503);
  assert.equal(refused.body.error.code, "feedback_disabled");
  assert.match(refused.body.error.message, /FEEDBACK_SECRET is shorter than 32 bytes/);
  const logged = weak.router.logs.map((l) => l.message).join("\n");
  assert.match(logged, /FEEDBACK_SECRET is shorter than 32 bytes/);
  assert.ok(!logged.includes(shortSecret) && !refused.body.error.message.includes(shortSecret));
});

test("only a credential the deployment trusts may score: a router key or FEEDBACK_TOKEN, never a request id alone", async (t) => {
  // Router keys: a router key or FEEDBACK_TOKEN; the upstream key or anything else is refused.
  const keyed = await startStack({ ...VARS, ROUTER_API_KEYS: "rk-1", HOLYSHEEP_API_KEY: "sk-up" });
  t.after(() => keyed.close());
  const r = keyed.router;
  const ids = [];
  for (let i = 0; i < 3; i++) {
    const answered = await chat(r.url, undefined, { authorization: "Bearer rk-1" });
    assert.equal(answered.status, 200, answered.text);
    ids.push(answered.headers.get("x-bluegreen-request-id"));
  }
  const body = (id) => ({ request_id: id, score: -1 });
  for (const headers of [{}, { authorization: "Bearer wrong" }, { authorization: "Bearer sk-up" }, { authorization: "rk-1" }]) {
    const got = await score(r, body(ids[0]), headers);
    assert.equal(got.status, 401, JSON.stringify(headers));
    assert.equal(got.body.error.code, "invalid_api_key");
  }
  assert.equal((await score(r, body(ids[0]), { authorization: "Bearer rk-1" })).status, 200);
  assert.equal((await score(r, body(ids[1]), AS_APP)).status, 200);

  // Pass-through mode without FEEDBACK_TOKEN: nothing the deployment trusts, so a 503 that says
  // how to turn it on; any bearer token (the client's own upstream key) is not one.
  const bare = await startStack({ ...VARS, FEEDBACK_TOKEN: "" });
  t.after(() => bare.close());
  const answered = await chat(bare.router.url, undefined, { authorization: "Bearer sk-clients-own" });
  assert.match(answered.headers.get("x-bluegreen-request-id"), ID);
  for (const headers of [{}, { authorization: "Bearer sk-clients-own" }]) {
    const got = await score(bare.router, body(answered.headers.get("x-bluegreen-request-id")), headers);
    assert.equal(got.status, 503, JSON.stringify(got.body));
    assert.equal(got.body.error.code, "feedback_credential_unset");
    assert.match(got.body.error.message, /wrangler secret put FEEDBACK_TOKEN/);
  }
});

// The security review's attack: requests the upstream refuses mint ids, and anyone scores them
// negative until the verdict rolls a healthy green back. Now refused requests carry no sealed
// id, and no credential scores anything.
for (const mode of ["pass-through", "router keys"]) {
  test(`keyless or refused requests then negative scores move no verdict (${mode})`, async (t) => {
    const keys = mode === "router keys" ? { ROUTER_API_KEYS: "rk-app", HOLYSHEEP_API_KEY: "sk-up" } : {};
    const stack = await startStack({ ...VARS, ...keys });
    t.after(() => stack.close());
    const r = stack.router;
    const start = await r.admin("POST", "rollouts", {
      green_model: "green-m",
      steps: [{ green_percent: 50, hold_seconds: 3600 }, { green_percent: 90, hold_seconds: 3600 }],
    });
    assert.equal(start.status, 201, start.text);
    // Pass-through: the upstream refuses keyless requests (401). Router keys: a key holder sends
    // requests the upstream refuses (400), and the router itself answers a few with a 504.
    await stack.sim.setRules({ "*": { status: mode === "router keys" ? 400 : 401 } });
    const headers = mode === "router keys" ? { authorization: "Bearer rk-app" } : {};
    const answers = await pool(150, 8, (i) =>
      chat(r.url, { messages: [{ role: "user", content: "hi" }] }, { ...headers, "x-bluegreen-sticky-key": `attacker-${i}` }),
    );
    const statuses = new Set(answers.map((a) => a.status));
    assert.deepEqual([...statuses], [mode === "router keys" ? 400 : 401]);
    const ids = answers.map((a) => a.headers.get("x-bluegreen-request-id"));
    for (const id of ids) assert.match(id, /^[0-9a-f]{32}$/, "a refused request carries no sealed id");
    // Scored with every credential the attacker might try, and with the app's own: nothing counts.
    const credentials = [{}, { authorization: "Bearer anything" }, headers, AS_APP];
    let counted = 0;
    for (const id of ids.slice(0, 40)) {
      for (const h of credentials) {
        const got = await score(r, { request_id: id, score: -1 }, h);
        assert.notEqual(got.status, 200, JSON.stringify(got.body));
        if (got.status === 200) counted++;
      }
    }
    assert.equal(counted, 0);
    await r.tick();
    const s = await r.status();
    assert.equal(s.phase, "progressing", JSON.stringify(s.verdict));
    assert.equal(s.stats.rollout.green.feedback_scored, 0);
    assert.equal(s.stats.rollout.blue.feedback_scored, 0);
    assert.equal((await r.events()).events.filter((e) => e.kind === "rolled_back").length, 0);
  });
}

test("a flood of replays of one id is answered in the isolate; each credential's scores per minute are bounded", async (t) => {
  const stack = await startStack({ ...VARS, FEEDBACK_MAX_PER_MINUTE: "5" });
  t.after(() => stack.close());
  const r = stack.router;
  const ids = [];
  for (let i = 0; i < 12; i++) ids.push((await chat(r.url)).headers.get("x-bluegreen-request-id"));
  assert.equal((await score(r, { request_id: ids[0], score: -1 })).status, 200);
  // 300 replays, 16 at a time: every one a 409 from the isolate, which counts it as a replay.
  const replays = await pool(300, 16, () => score(r, { request_id: ids[0], score: -1 }));
  assert.deepEqual([...new Set(replays.map((x) => x.status))], [409]);
  assert.equal(replays[0].body.error.code, "duplicate_feedback");
  const replayed = 'bluegreen_feedback_refused_total{route="default",environment="blue",model="blue-m",reason="replay"}';
  assert.equal(await eventually(async () => (await metric(r, replayed)) === 300, 8000), true, "replays counted by the isolate");
  // The bucket: 5 a minute, one taken above; four more go on, the rest get a 429 to retry.
  const results = [];
  for (const id of ids.slice(1)) results.push(await score(r, { request_id: id, score: 1 }));
  assert.deepEqual(results.map((x) => x.status), [200, 200, 200, 200, 429, 429, 429, 429, 429, 429, 429]);
  const limited = results.at(-1);
  assert.equal(limited.body.error.code, "rate_limit_exceeded");
  assert.equal(limited.body.error.type, "rate_limit_error");
  assert.equal(limited.headers.get("retry-after"), "12", "a token every 60 / 5 s");
  const rateLimited = 'bluegreen_feedback_refused_total{route="default",environment="blue",model="blue-m",reason="rate_limited"}';
  assert.equal(await eventually(async () => (await metric(r, rateLimited)) === 7, 8000), true);
  const s = await r.status();
  assert.deepEqual(fb(s.stats.rollout.blue), [5, 1], "only what was sent on is counted");
});

test("a flood of scores leaves the controller's tick and admin API their time", async (t) => {
  const stack = await startStack(VARS);
  t.after(() => stack.close());
  const r = stack.router;
  const start = await r.admin("POST", "rollouts", { green_model: "green-m", steps: [{ green_percent: 50, hold_seconds: 3600 }] });
  assert.equal(start.status, 201, start.text);
  const version = (await r.status()).routing_version;
  // Scores as isolates hand them over (verified, each a new id), straight to the controller.
  const ns = await r.mf.getDurableObjectNamespace("ROLLOUT");
  const controller = ns.get(ns.idFromName("global"));
  const at_ms = Math.floor(Date.now() / 1000) * 1000;
  const post = (i) =>
    controller
      .fetch("https://controller/internal/feedback", {
        method: "POST",
        body: JSON.stringify({ request_id: `flood-${i}-${crypto.randomBytes(4).toString("hex")}`, environment: i % 2 ? "green" : "blue", version, at_ms, negative: true }),
      })
      .then(async (res) => (await res.text(), res.status));
  // A quiet baseline of the two calls, then the same during 2000 scores 64 at a time.
  const timed = async (fn) => {
    const t0 = performance.now();
    await fn();
    return performance.now() - t0;
  };
  let floodSeconds;
  const quiet = { tick: await timed(() => r.tick()), admin: await timed(() => r.status()) };
  const floodStart = performance.now();
  const flood = pool(2000, 64, post).then((statuses) => ((floodSeconds = (performance.now() - floodStart) / 1000), statuses));
  await new Promise((res) => setTimeout(res, 200));
  const during = { tick: await timed(() => r.tick()), admin: await timed(() => r.status()) };
  const statuses = await flood;
  const took = statuses.filter((s) => s === 200).length;
  const refused = statuses.filter((s) => s === 429).length;
  console.log(
    `flood of 2000 scores over ${floodSeconds.toFixed(1)} s: ${took} taken, ${refused} refused (429); tick ${quiet.tick.toFixed(0)} ms quiet, ` +
      `${during.tick.toFixed(0)} ms during; admin status ${quiet.admin.toFixed(0)} ms quiet, ${during.admin.toFixed(0)} ms during`,
  );
  assert.equal(took + refused, 2000);
  // 100 at once, then 100 a second for as long as the flood lasts (a few seconds; longer on a
  // busy machine, so the bound follows the measured duration).
  assert.ok(took >= 100 && took <= 100 + 100 * Math.ceil(floodSeconds + 1), `${took} taken in ${floodSeconds.toFixed(1)} s`);
  // Generous bounds (the quiet figures are tens of ms): what the intake bound buys is that
  // the flood's queue is short, not a precise latency.
  assert.ok(during.tick < 3000, `tick took ${during.tick} ms during the flood`);
  assert.ok(during.admin < 3000, `admin status took ${during.admin} ms during the flood`);
  const s = await r.status();
  assert.equal(s.stats.rollout.green.feedback_scored + s.stats.rollout.blue.feedback_scored, took);
});

test("ids of one deployment do not score at another sharing its secret", async (t) => {
  const staging = await startStack({ ...VARS, DEPLOYMENT_NAME: "staging" });
  t.after(() => staging.close());
  const production = await startStack({ ...VARS, DEPLOYMENT_NAME: "production" });
  t.after(() => production.close());
  const id = (await chat(staging.router.url)).headers.get("x-bluegreen-request-id");
  assert.match(id, ID);
  const replayed = await score(production.router, { request_id: id, score: -1 });
  assert.equal(replayed.status, 404, JSON.stringify(replayed.body));
  assert.equal(replayed.body.error.code, "unknown_request_id");
  assert.equal((await score(staging.router, { request_id: id, score: -1 })).status, 200);
});
