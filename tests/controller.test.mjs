// The rollout controller end to end: the built worker in local workerd, real HTTP, the
// upstream simulator, ticks driven through the scheduled handler, second-scale steps.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { execFileSync } from "node:child_process";
import {
  startStack,
  startRouter,
  startReceiver,
  chat,
  pool,
  sleep,
  eventually,
  waitForCount,
  countedRequests,
  traffic,
} from "./harness.mjs";

const TOKEN = "test-admin-token";
const VARS = { ADMIN_TOKEN: TOKEN, BLUE_MODEL: "blue-m", GREEN_MODEL: "unused-m", ROUTING_CACHE_SECONDS: "0" };

let receiver;
before(async () => {
  receiver = await startReceiver({ failFirst: 1 });
});
after(() => receiver?.close());

/** A stack whose KV and Durable Object live in a temporary directory, so that the router can be
 * stopped (`stop`) and started again on the same storage (`restart`, which returns the new
 * router); everything is closed and removed after the test. */
async function persistedStack(t) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "bluegreen-persist-"));
  const first = await startStack(VARS, {}, { persistTo: dir });
  let firstOpen = true;
  let second;
  t.after(async () => {
    if (firstOpen) await first.router.close();
    await second?.close();
    await first.sim.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  return {
    dir,
    first,
    stop: async () => {
      await first.router.close();
      firstOpen = false;
    },
    restart: async () => {
      second = await startRouter({ ...VARS, UPSTREAM_BASE_URL: `${first.sim.url}/v1` }, { persistTo: dir });
      return second;
    },
  };
}

const routingDoc = async (router) => JSON.parse(await router.kv.get("routing"));
const kinds = async (router) => (await router.events(100)).events.map((e) => e.kind);

test("a healthy green walks the steps on cron ticks, completes and becomes blue", async (t) => {
  const stack = await startStack(VARS);
  const r = stack.router;
  t.after(() => stack.close());
  const start = await r.admin("POST", "rollouts", {
    green_model: "green-m",
    steps: [{ green_percent: 30, hold_seconds: 1 }, { green_percent: 60, hold_seconds: 1 }],
    health: { min_requests: 10 },
  });
  assert.equal(start.status, 201, start.text);
  assert.equal(start.body.phase, "progressing");
  assert.equal(start.body.green_percent, 30);
  assert.deepEqual((await routingDoc(r)).green_percent, 30);

  let sent = 0;
  for (const percent of [30, 60]) {
    sent += 80;
    assert.equal((await traffic(r, 80)).ok, 80);
    const s = await waitForCount(r, sent);
    assert.equal(s.green_percent, percent);
    assert.ok(s.stats.step.green.requests >= 10, JSON.stringify(s.stats.step));
    await sleep(1100); // the step's hold time
    await r.tick();
  }
  const done = await r.status();
  assert.equal(done.phase, "completed");
  assert.equal(done.blue_model, "green-m");
  assert.equal(done.green_percent, 0);
  assert.equal(done.verdict.status, "pass");
  const doc = await routingDoc(r);
  assert.equal(doc.blue_model, "green-m");
  assert.equal(doc.green_percent, 0);
  assert.deepEqual(await kinds(r), ["completed", "step_advanced", "started"]);

  // Traffic now goes to the new blue.
  stack.sim.reset();
  await traffic(r, 10);
  const models = stack.sim.requests().map((q) => JSON.parse(q.body).model);
  assert.deepEqual([...new Set(models)], ["green-m"]);
});

test("threshold method: a green failing a share of requests with 5xx is rolled back within failure_limit ticks, with an event and a webhook", async (t) => {
  const stack = await startStack({ ...VARS, ALERT_WEBHOOK_URL: receiver.url });
  const r = stack.router;
  t.after(() => stack.close());
  await stack.sim.setRules({ "green-m": { fail_rate: 0.3, fail_status: 503 } });
  const start = await r.admin("POST", "rollouts", {
    green_model: "green-m",
    steps: [{ green_percent: 50, hold_seconds: 3600 }],
    // The threshold gates: windows of at least 10 requests, two failing ones roll back.
    health: { method: "threshold", min_requests: 10, failure_limit: 2 },
  });
  assert.equal(start.status, 201, start.text);

  // Window 1: green fails ~30% (its requests fall back to blue, so clients see 200s).
  assert.equal((await traffic(r, 80)).ok, 80);
  await waitForCount(r, 80);
  // A duplicated tick: the second finds an empty window and counts nothing.
  await Promise.all([r.tick(), r.tick()]);
  let s = await r.status();
  assert.equal(s.phase, "progressing");
  assert.equal(s.verdict.consecutive_failures, 1, JSON.stringify(s.verdict));
  assert.ok(s.stats.rollout.green.fallbacks > 0);
  assert.equal(s.stats.rollout.green.fallbacks, s.stats.rollout.green.errors);

  // Window 2: still failing: rolled back on this second tick.
  assert.equal((await traffic(r, 80)).ok, 80);
  await waitForCount(r, 160);
  await r.tick();
  s = await r.status();
  assert.equal(s.phase, "rolled_back");
  assert.equal(s.green_percent, 0);
  assert.equal(s.blue_model, "blue-m");
  assert.equal((await routingDoc(r)).green_percent, 0);
  const events = (await r.events()).events;
  assert.equal(events[0].kind, "rolled_back");
  assert.equal(events[0].by, "controller");
  assert.equal(events[0].verdict.status, "fail");
  assert.match(events[0].verdict.reasons[0], /green error rate/);
  assert.equal(events[1].kind, "check_failed");

  // The webhook: the first attempt answered 500, the retry got through.
  const got = await eventually(() => receiver.received.filter((x) => x.status === 200).length >= 1, 8000);
  assert.ok(got, `webhook not delivered: ${JSON.stringify(receiver.received)}`);
  const delivered = receiver.received.find((x) => x.status === 200);
  assert.equal(receiver.received[0].status, 500);
  assert.equal(delivered.contentType, "application/json");
  assert.match(delivered.body.text, /^bluegreen-router, route default: Rolled back automatically /, "as docs/rollouts.md shows it");
  assert.equal(delivered.body.event.kind, "rolled_back");
  assert.equal(delivered.body.event.green_percent, 0);
});

test("counting is exact after a burst of concurrent requests: none lost, none counted twice", async (t) => {
  const stack = await startStack(VARS);
  const r = stack.router;
  t.after(() => stack.close());
  // Blue answers 500 to some requests, so errors are counted too; streams and plain calls.
  await stack.sim.setRules({ "blue-m": { fail_rate: 0.1, fail_status: 500 } });
  assert.equal(
    (await r.admin("POST", "rollouts", { green_model: "green-m", steps: [{ green_percent: 50, hold_seconds: 3600 }] })).status,
    201,
  );
  const N = 600;
  const results = await pool(N, 32, (i) =>
    chat(r.url, { messages: [{ role: "user", content: `hi ${i}` }], stream: i % 3 === 0 }),
  );
  assert.equal(results.length, N);
  const s = await waitForCount(r, N, 10000);
  const { blue, green } = s.stats.rollout;
  assert.equal(blue.requests + green.requests, N);
  // Compare with the outcome records the worker logged, one per request.
  const outcomes = r.outcomes();
  assert.equal(outcomes.length, N);
  const failed = outcomes.filter((o) => o.environment === "blue" && !o.fallback && o.status >= 500).length;
  assert.equal(blue.errors, failed);
  assert.equal(blue.errors, results.filter((x) => x.status === 500).length);
  // Another flush interval later the totals have not moved: nothing was counted twice.
  await sleep(2500);
  assert.equal(await countedRequests(r), N);
});

test("the rollout survives a restart of workerd on the same persisted storage", async (t) => {
  const { first, stop, restart } = await persistedStack(t);
  const r = first.router;
  assert.equal(
    (await r.admin("POST", "rollouts", { green_model: "green-m", steps: [{ green_percent: 20, hold_seconds: 600 }, { green_percent: 40, hold_seconds: 600 }] })).status,
    201,
  );
  assert.equal((await traffic(r, 40)).ok, 40);
  await waitForCount(r, 40);
  assert.equal((await r.admin("PUT", "split", { green_percent: 5 })).status, 200);
  const before = await r.status();
  await stop();

  const second = await restart();
  const after = await second.status();
  assert.equal(after.phase, "paused");
  assert.equal(after.green_percent, 5);
  assert.equal(after.rollout.id, before.rollout.id);
  assert.deepEqual(after.stats.rollout, before.stats.rollout);
  assert.deepEqual(await kinds(second), ["split_set", "started"]);
  assert.equal((await routingDoc(second)).green_percent, 5);
  // And it carries on: resume restores the step's split.
  const resumed = await second.admin("POST", "resume");
  assert.equal(resumed.status, 200, resumed.text);
  assert.equal(resumed.body.green_percent, 20);
});

/** Rewrites a stored controller document in the Durable Object's SQLite file under `dir`
 * (workerd stopped), with Python's sqlite3 module: what a damaged document or one written by
 * another version looks like to the controller. */
function rewriteStoredDocument(dir, key, value) {
  const files = [];
  const walk = (d) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.name.endsWith(".sqlite") && e.name !== "metadata.sqlite") files.push(p);
    }
  };
  walk(path.join(dir, "do"));
  assert.equal(files.length, 1, `one Durable Object database: ${files}`);
  const script = "import sqlite3, sys\n" +
    "c = sqlite3.connect(sys.argv[1])\n" +
    "n = c.execute('UPDATE meta SET v = ? WHERE k = ?', (sys.argv[3], sys.argv[2])).rowcount\n" +
    "c.commit()\n" +
    "sys.exit(0 if n == 1 else 3)\n";
  execFileSync("python3", ["-c", script, files[0], key, value]);
}

test("an unreadable stored state never takes the controller down: it holds, says so, and recovers to a safe split", async (t) => {
  const { dir, first, stop, restart } = await persistedStack(t);
  const r = first.router;
  const start = await r.admin("POST", "rollouts", {
    green_model: "green-m",
    steps: [{ green_percent: 40, hold_seconds: 600 }],
  });
  assert.equal(start.status, 201, start.text);
  assert.equal((await traffic(r, 30)).ok, 30);
  await waitForCount(r, 30);
  const before = await r.status();
  await stop();
  // A state whose phase this version does not know (a damaged or foreign document).
  const damaged = JSON.stringify({ phase: "exploded", blue_model: "blue-m", version: 41 });
  rewriteStoredDocument(dir, "state", damaged);

  const second = await restart();
  // The request path is unaffected: it serves by the routing document in KV.
  assert.equal((await chat(second.url)).status, 200);
  const held = await second.status();
  assert.match(held.storage_problem, /stored rollout state unreadable: unknown variant `exploded`/);
  assert.equal(held.green_percent, 40, "the split in force is shown, not changed");
  assert.deepEqual(held.stats.rollout, before.stats.rollout, "the stats survived the restart");
  const unreadable = (await second.events(5)).events[0];
  assert.equal(unreadable.kind, "state_unreadable");
  assert.match(unreadable.message, /POST \/admin\/recover/);
  // Every change but the recovery is refused, ticks hold, stats still count.
  for (const [method, route, body] of [["POST", "pause"], ["POST", "rollback"], ["PUT", "split", { green_percent: 5 }],
    ["POST", "rollouts", { green_model: "other" }]]) {
    const res = await second.admin(method, route, body);
    assert.equal(res.status, 409, `${route}: ${res.text}`);
    assert.match(res.body.error.message, /POST \/admin\/recover/);
  }
  await second.tick();
  assert.equal((await traffic(second, 10)).ok, 10);
  await waitForCount(second, 41);
  assert.equal((await routingDoc(second)).green_percent, 40, "nothing was written while holding");

  const beforeRecovery = await second.status();
  assert.equal(beforeRecovery.stats.rollout.blue.requests + beforeRecovery.stats.rollout.green.requests, 41);
  const recovered = await second.admin("POST", "recover");
  assert.equal(recovered.status, 200, recovered.text);
  assert.equal(recovered.body.phase, "idle");
  assert.equal(recovered.body.green_percent, 0);
  assert.equal(recovered.body.blue_model, "blue-m");
  assert.equal(recovered.body.storage_problem, null);
  assert.ok(recovered.body.routing_version > 41, "above every version seen");
  assert.deepEqual(recovered.body.stats.rollout, beforeRecovery.stats.rollout, "the stats are kept");
  const doc = await routingDoc(second);
  assert.equal(doc.green_percent, 0);
  assert.equal(doc.blue_model, "blue-m");
  assert.deepEqual((await kinds(second)).slice(0, 2), ["recovered", "state_unreadable"]);
  assert.equal((await second.admin("POST", "recover")).status, 409, "nothing left to recover");
  // And it works as ever: a new rollout starts.
  const again = await second.admin("POST", "rollouts", { green_model: "green-m", steps: [{ green_percent: 10, hold_seconds: 60 }] });
  assert.equal(again.status, 201, again.text);
});

test("a stats batch that arrives twice (a retry after a lost answer) counts once", async (t) => {
  const stack = await startStack(VARS);
  t.after(() => stack.close());
  const r = stack.router;
  // The isolates' own path to the controller: the Durable Object's internal route.
  const ns = await r.mf.getDurableObjectNamespace("ROLLOUT");
  const controller = ns.get(ns.idFromName("global"));
  const batch = {
    id: "0123456789abcdef0123456789abcdef",
    entries: [
      { minute: Math.floor(Date.now() / 60_000), env: "green", stats: { requests: 7, errors: { server_error: 2 } } },
      { minute: Math.floor(Date.now() / 60_000), env: "blue", stats: { requests: 5 } },
    ],
  };
  const post = async () => {
    const res = await controller.fetch("https://controller/internal/stats", { method: "POST", body: JSON.stringify(batch) });
    return { status: res.status, body: await res.json() };
  };
  assert.deepEqual(await post(), { status: 200, body: { accepted: 12 } });
  assert.deepEqual(await post(), { status: 200, body: { duplicate: true } });
  const s = await r.status();
  assert.equal(s.stats.rollout.green.requests, 7);
  assert.equal(s.stats.rollout.green.errors, 2);
  assert.equal(s.stats.rollout.blue.requests, 5);
  const minute = (await r.admin("GET", "history?minutes=2")).body.minutes.at(-1);
  assert.equal(minute.green.requests, 7, "the minute counted it once too");
});

test("requests forced to green are counted apart: 200 that all fail do not roll back a healthy rollout", async (t) => {
  const stack = await startStack(VARS);
  t.after(() => stack.close());
  const r = stack.router;
  const start = await r.admin("POST", "rollouts", {
    green_model: "green-m",
    steps: [{ green_percent: 50, hold_seconds: 600 }],
    health: { min_requests: 5 },
  });
  assert.equal(start.status, 201, start.text);
  // One client forces green and every one of its requests fails (the simulator fails a request
  // that carries x-sim-status); a forced request is never moved to blue, so it gets the 500.
  const forced = await pool(200, 16, () =>
    chat(r.url, undefined, { "x-bluegreen-environment": "green", "x-sim-status": "500" }));
  assert.ok(forced.every((res) => res.status === 500), "every forced request failed");
  assert.equal((await traffic(r, 60)).ok, 60, "everyone else is served");
  const s = await eventually(async () => {
    const st = await r.status();
    return st.stats.forced.green.requests === 200 && countedOf(st) === 60 ? st : null;
  }, 8000);
  assert.ok(s, "all 260 requests were counted");
  assert.equal(s.stats.forced.green.errors, 200);
  assert.equal(s.stats.rollout.green.errors, 0, "none of them is green's in the verdict");
  await r.tick();
  const after = await r.status();
  assert.equal(after.phase, "progressing");
  assert.notEqual(after.verdict.status, "fail");
  assert.equal(after.verdict.evidence.errors.green_events, 0);
});

test("requests count in the step of the split they were routed under, not the one in force when they arrive", async (t) => {
  // Isolates keep the routing document for ROUTING_CACHE_SECONDS: after a step changes, they
  // route by the old split for a while. Those requests are the old step's.
  const stack = await startStack({ ...VARS, ROUTING_CACHE_SECONDS: "600" });
  t.after(() => stack.close());
  const r = stack.router;
  const start = await r.admin("POST", "rollouts", {
    green_model: "green-m",
    steps: [{ green_percent: 30, hold_seconds: 1 }, { green_percent: 60, hold_seconds: 600 }],
    health: { min_requests: 10 },
  });
  assert.equal(start.status, 201, start.text);
  assert.equal((await traffic(r, 80)).ok, 80);
  let s = await waitForCount(r, 80);
  assert.equal(s.stats.step.blue.requests + s.stats.step.green.requests, 80);
  await sleep(1100);
  await r.tick();
  s = await r.status();
  assert.equal(s.step.number, 2, JSON.stringify(s.step));
  assert.ok(s.routing_version > start.body.routing_version);
  assert.equal((await routingDoc(r)).green_percent, 60);

  // The isolate still holds step 1's document (30%): these requests are step 1's.
  assert.equal((await traffic(r, 40)).ok, 40);
  s = await waitForCount(r, 120);
  const total = (p) => p.blue.requests + p.green.requests;
  assert.equal(total(s.stats.rollout), 120);
  assert.equal(total(s.stats.step), 0, JSON.stringify(s.stats.step));
  assert.equal(total(s.stats.window), 0);
  // Judged as step 1's evidence: step 2 has seen none of its own traffic yet.
  await r.tick();
  s = await r.status();
  assert.equal(s.phase, "progressing");
  assert.equal(s.step.number, 2);
  assert.equal(total(s.stats.step), 0);
  assert.match(s.verdict.reasons[0], /too few requests this step/);
});

test("with ENVIRONMENT_OVERRIDE=off a client cannot choose the environment", async (t) => {
  const stack = await startStack({ ...VARS, ENVIRONMENT_OVERRIDE: "off" });
  t.after(() => stack.close());
  const res = await chat(stack.router.url, undefined, { "x-bluegreen-environment": "green" });
  assert.equal(res.status, 403, res.text);
  assert.equal(res.body.error.code, "environment_override_disabled");
  assert.equal((await chat(stack.router.url)).status, 200, "requests without the header are served");
});

const countedOf = (s) => s.stats.rollout.blue.requests + s.stats.rollout.green.requests;

test("the controller owns the routing document: one deleted or edited by hand is rewritten within a tick", async (t) => {
  const stack = await startStack({ ...VARS, ALERT_WEBHOOK_URL: receiver.url });
  t.after(() => stack.close());
  const r = stack.router;
  const start = await r.admin("POST", "rollouts", { green_model: "green-m", steps: [{ green_percent: 20, hold_seconds: 600 }] });
  assert.equal(start.status, 201, start.text);
  assert.equal(start.body.routing_synced, true);
  const version = start.body.routing_version;
  // Deleted by hand: the request path would fall back to the vars.
  await r.kv.delete("routing");
  await r.tick();
  let doc = await routingDoc(r);
  assert.equal(doc.green_percent, 20);
  assert.equal(doc.version, version);
  let s = await r.status();
  assert.equal(s.routing_synced, true);
  let latest = (await r.events(1)).events[0];
  assert.equal(latest.kind, "routing_repaired");
  assert.match(latest.message, /was missing; rewritten with the controller's split: 20% green/);
  // Edited by hand: all traffic to green.
  await r.kv.put("routing", JSON.stringify({ ...doc, green_percent: 100 }));
  await r.tick();
  doc = await routingDoc(r);
  assert.equal(doc.green_percent, 20);
  latest = (await r.events(1)).events[0];
  assert.match(latest.message, /held another split \(100% green/);
  // The alert says the split is back in KV.
  const alert = await eventually(() =>
    receiver.received.find((x) => x.status === 200 && x.body.event.kind === "routing_repaired" && /100% green/.test(x.body.text)), 8000);
  assert.ok(alert, JSON.stringify(receiver.received.map((x) => x.body?.text)));
  assert.deepEqual(alert.body.routing, { written: true, version });
  assert.match(alert.body.text, /Split written to KV \(version \d+\)\./);
  // A tick that finds it in order changes nothing and records nothing.
  await r.tick();
  assert.equal((await r.events(1)).events[0].seq, latest.seq);
  assert.equal((await r.status()).routing_synced, true);
});

test("a green failing every request at volume is rolled back in one tick, and the controller still loads after a restart", async (t) => {
  const { first, stop, restart } = await persistedStack(t);
  const r = first.router;
  // A typo'd model: the provider answers 404 to every request. With the default (sequential)
  // policy the guard's evidence passes f64::MAX within the tick; it is kept as a log.
  await fetch(`${first.sim.url}/__sim/rules`, { method: "PUT", body: JSON.stringify({ "green-m": { status: 404 } }) });
  const start = await r.admin("POST", "rollouts", { green_model: "green-m", steps: [{ green_percent: 50, hold_seconds: 600 }] });
  assert.equal(start.status, 201, start.text);
  // 600 requests in one tick, about 300 of them green: every green one falls back to blue, and
  // ~300 failures drive the guard's likelihood ratio past f64::MAX (e^709), which the first
  // release stored as null and could not load again.
  const results = await pool(600, 16, () => chat(r.url));
  assert.ok(results.every((res) => res.status === 200), "every user was served (by blue)");
  await waitForCount(r, 600, 15_000);
  await r.tick();
  const rolled = await r.status();
  assert.equal(rolled.phase, "rolled_back");
  assert.match(rolled.verdict.reasons.join(" "), />1e300:1/);
  assert.ok(Number.isFinite(rolled.verdict.evidence.guard_log_evidence));
  const event = (await r.events(1)).events[0];
  assert.equal(event.kind, "rolled_back");
  await stop();

  const second = await restart();
  const after = await second.status();
  assert.equal(after.phase, "rolled_back");
  assert.equal(after.storage_problem, null);
  assert.deepEqual(after.verdict, rolled.verdict, "the verdict reloads exactly");
  assert.deepEqual((await second.events(1)).events[0], event, "the rollback is still in the event log");
});

test("an isolate that cannot read KV asks the controller for its split rather than serving the vars", async (t) => {
  const stack = await startStack(VARS, {}, { withoutKv: true });
  t.after(() => stack.close());
  const r = stack.router;
  // Before any rollout the controller has no split of its own: the vars serve (all blue).
  assert.equal((await chat(r.url)).headers.get("x-bluegreen-environment"), "blue");
  // A rollout whose split cannot reach KV (every write fails, after its retries).
  const start = await r.admin("POST", "rollouts", { green_model: "green-m", steps: [{ green_percent: 99.99, hold_seconds: 600 }] });
  assert.equal(start.status, 201, start.text);
  assert.equal(start.body.routing_synced, false);
  // The isolate still knows only the vars, so its next failed read asks the controller.
  const res = await chat(r.url, undefined, { "x-bluegreen-sticky-key": "user-1" });
  assert.equal(res.status, 200, res.text);
  assert.equal(res.headers.get("x-bluegreen-environment"), "green");
  assert.equal(res.headers.get("x-bluegreen-model"), "green-m");
  const health = await (await fetch(`${r.url}/healthz`)).json();
  assert.equal(health.routing_source, "controller");
  assert.equal(health.status, "degraded");
  assert.match(health.routing_problem, /ROUTER_KV binding is missing/);
});
