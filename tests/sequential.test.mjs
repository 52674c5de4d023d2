// The default, sequential verdict end to end: the built worker in local workerd, the
// simulator failing a share of requests, ticks through the scheduled handler.
import { test } from "node:test";
import assert from "node:assert/strict";
import { startStack, sleep, traffic, waitForCount } from "./harness.mjs";

const VARS = { ADMIN_TOKEN: "t", BLUE_MODEL: "blue-m", ROUTING_CACHE_SECONDS: "0" };

test("a green failing 30% of its requests is rolled back by the sequential verdict, with its evidence", async (t) => {
  const stack = await startStack(VARS);
  const r = stack.router;
  t.after(() => stack.close());
  await stack.sim.setRules({ "green-m": { fail_rate: 0.3, fail_status: 500 } });
  const start = await r.admin("POST", "rollouts", {
    green_model: "green-m",
    steps: [{ green_percent: 50, hold_seconds: 3600 }],
    health: { min_requests: 10 },
  });
  assert.equal(start.status, 201, start.text);
  assert.equal(start.body.rollout.health.method, "sequential");
  let sent = 0;
  let s;
  for (let tick = 1; tick <= 3; tick++) {
    sent += (await traffic(r, 80)).sent;
    await waitForCount(r, sent);
    await r.tick();
    s = await r.status();
    if (s.phase === "rolled_back") break;
  }
  assert.equal(s.phase, "rolled_back", JSON.stringify(s.verdict));
  assert.equal(s.green_percent, 0);
  assert.equal(JSON.parse(await r.kv.get("routing")).green_percent, 0);
  const ev = (await r.events()).events[0];
  assert.equal(ev.kind, "rolled_back");
  const evidence = ev.verdict.evidence;
  assert.ok(evidence, JSON.stringify(ev.verdict));
  assert.equal(evidence.finding, "unhealthy");
  assert.ok(
    evidence.errors.evidence >= evidence.errors.rollback_at || evidence.guard_evidence >= evidence.guard_rollback_at,
    JSON.stringify(evidence),
  );
  assert.ok(evidence.errors.green_events > 0);
  assert.match(ev.verdict.reasons[0], /^green errors( are [\d.]+× blue.s|: seen on green only) .*evidence \d[\d.]*:1, rollback at 33:1$/);
  // The status carries the same evidence (the event's went through SQLite as JSON, so its
  // floats may differ in the last digit).
  const near = (a, b) => Math.abs(a - b) <= 1e-9 * Math.max(1, Math.abs(b));
  assert.equal(s.verdict.evidence.finding, evidence.finding);
  assert.deepEqual(s.verdict.evidence.errors.green_events, evidence.errors.green_events);
  assert.ok(near(s.verdict.evidence.errors.evidence, evidence.errors.evidence));
  assert.ok(near(s.verdict.evidence.guard_evidence, evidence.guard_evidence));
});

test("a green and a blue both failing 2% of their requests complete a rollout", async (t) => {
  const stack = await startStack(VARS);
  const r = stack.router;
  t.after(() => stack.close());
  // Exactly every 50th request to each model fails: 2% on both sides.
  await stack.sim.setRules({ "*": { fail_every: 50, fail_status: 500 } });
  const start = await r.admin("POST", "rollouts", {
    green_model: "green-m",
    steps: [{ green_percent: 30, hold_seconds: 1 }, { green_percent: 60, hold_seconds: 1 }],
    health: { min_requests: 20 },
  });
  assert.equal(start.status, 201, start.text);
  let sent = 0;
  for (const percent of [30, 60]) {
    sent += (await traffic(r, 200)).sent;
    const s = await waitForCount(r, sent);
    assert.equal(s.green_percent, percent);
    await sleep(1100);
    await r.tick();
    const after = await r.status();
    assert.notEqual(after.phase, "rolled_back", JSON.stringify(after.verdict));
    assert.equal(after.verdict.status, "pass", JSON.stringify(after.verdict));
  }
  const done = await r.status();
  assert.equal(done.phase, "completed");
  assert.equal(done.blue_model, "green-m");
  const { blue, green } = done.stats.rollout;
  // Both sides really failed about 2% (green's failures fell back to blue).
  assert.ok(green.errors > 0 && blue.errors > 0, JSON.stringify({ blue, green }));
  const ev = (await r.events()).events[0];
  assert.equal(ev.kind, "completed");
  assert.ok(ev.verdict.evidence.errors.evidence < ev.verdict.evidence.errors.rollback_at);
});
