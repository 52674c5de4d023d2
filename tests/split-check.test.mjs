// The split check end to end: the built worker in local workerd, stats batches posted to the
// controller's internal route as isolates post them (so that the routed share is exactly what
// the test says), ticks through the scheduled handler, the alert webhook on a local receiver.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startStack, startReceiver, eventually, sleep, postRouted } from "./harness.mjs";

const TOKEN = "test-admin-token";
const VARS = { ADMIN_TOKEN: TOKEN, BLUE_MODEL: "blue-m", GREEN_MODEL: "unused-m", ROUTING_CACHE_SECONDS: "0" };

let receiver;
before(async () => {
  receiver = await startReceiver();
});
after(() => receiver?.close());

/**
 * Starts a stack with `vars` and a rollout of a 10% step held one second (without the check
 * the first passing tick would advance), then 50%, with `health`; the router and the
 * rollout's routing version.
 */
async function startRollout(t, vars, health) {
  const stack = await startStack(vars);
  t.after(() => stack.close());
  const r = stack.router;
  const start = await r.admin("POST", "rollouts", {
    green_model: "green-m",
    steps: [{ green_percent: 10, hold_seconds: 1 }, { green_percent: 50, hold_seconds: 600 }],
    health: { min_requests: 50, ...health },
  });
  assert.equal(start.status, 201, start.text);
  return { r, version: start.body.routing_version };
}

test("green routed half the step's share holds the rollout with an event and an alert; evidence of the right share ends the hold", async (t) => {
  const { r, version } = await startRollout(t, { ...VARS, ALERT_WEBHOOK_URL: receiver.url }, {});
  let s = await r.status();
  assert.deepEqual(
    [s.split_check.on, s.split_check.held, s.rollout.health.split_tolerance],
    [true, false, 0.4],
  );
  await sleep(1100);

  // 6000 requests of which 300 green: 5% at a 10% step. One tick's evidence is far past
  // 2000:1 (1.7e11:1), so the first tick holds.
  await postRouted(r, version, 300, 5700);
  await r.tick();
  s = await r.status();
  assert.equal(s.phase, "progressing");
  assert.equal(s.step.number, 1, "held: the step does not advance");
  assert.equal(s.verdict.status, "pass", "green itself is judged healthy");
  assert.equal(s.split_check.held, true, JSON.stringify(s.split_check));
  assert.match(s.split_check.reason, /green got 5\.0% of 6000 requests routed at random under the step's 10% split \(300 green, 5700 blue\); the band is 7\.4%–13\.5%/);
  assert.ok(s.split_check.held_since);
  let events = (await r.events()).events;
  assert.equal(events[0].kind, "split_mismatch");
  assert.equal(events[0].by, "controller");
  assert.equal(events[0].alert, true);
  assert.equal(events[0].step, 1);
  assert.match(events[0].message, /^Split mismatch: /);
  const alert = await eventually(() => receiver.received.find((x) => x.body?.event?.kind === "split_mismatch"), 8000);
  assert.ok(alert, `no alert: ${JSON.stringify(receiver.received.map((x) => x.body?.text))}`);
  assert.match(alert.body.text, /Split mismatch: green got 5\.0%/);

  // Still off on the next tick: held, and no second event (the evidence, clearing's too,
  // restarts).
  await postRouted(r, version, 300, 5700);
  await r.tick();
  s = await r.status();
  assert.equal(s.step.number, 1);
  assert.equal((await r.events()).events[0].kind, "split_mismatch");
  assert.equal((await r.events()).events.filter((e) => e.kind === "split_mismatch").length, 1);

  // At 10%, 600 requests a tick. One tick is not enough: the clearing evidence, 600·KL(10% ‖
  // 7.35%) = 2.8 above the bottom and 600·KL(10% ‖ 13.46%) = 3.3 below the top in logs, is
  // short of 100:1 (4.6) on both sides, though the observed share is the split's.
  await postRouted(r, version, 60, 540);
  await r.tick();
  s = await r.status();
  assert.equal(s.split_check.held, true, JSON.stringify(s.split_check));
  assert.equal(s.step.number, 1);
  assert.equal(s.split_check.clear_at, 100);
  assert.ok(s.split_check.evidence_inside.every((x) => x > 10 && x < 100), JSON.stringify(s.split_check));
  // The second (5.6 and 6.6): the hold ends and the step advances on the same tick.
  await postRouted(r, version, 60, 540);
  await r.tick();
  s = await r.status();
  assert.equal(s.split_check.held, false, JSON.stringify(s.split_check));
  assert.equal(s.step.number, 2);
  assert.equal(s.green_percent, 50);
  events = (await r.events()).events;
  assert.deepEqual(events.slice(0, 2).map((e) => e.kind), ["step_advanced", "split_matched"]);
  assert.match(events[1].message, /^Split matches again: green got 10\.0% of 1200 requests/);
  const cleared = await eventually(() => receiver.received.find((x) => x.body?.event?.kind === "split_matched"), 8000);
  assert.ok(cleared, "the end of the hold is alerted too");
});

test("with split_tolerance 0 the check is off: the same share advances the step", async (t) => {
  const { r, version } = await startRollout(t, VARS, { split_tolerance: 0 });
  assert.equal((await r.status()).split_check.on, false);
  await sleep(1100);
  await postRouted(r, version, 300, 5700);
  await r.tick();
  const s = await r.status();
  assert.equal(s.step.number, 2);
  assert.ok(!(await r.events()).events.some((e) => e.kind === "split_mismatch"));
  for (const split_tolerance of [-1, 11, "0.4"]) {
    const bad = await r.admin("POST", "rollouts", { green_model: "other-m", health: { split_tolerance } });
    assert.equal(bad.status, 400, bad.text);
    assert.equal(bad.body.error.param, "health.split_tolerance");
  }
});

test("requests with a sticky key are not checked: a share off the split among them alone does not hold", async (t) => {
  const { r, version } = await startRollout(t, VARS, {});
  await sleep(1100);
  // 300 green of 6000 in all (5%), but of the 600 routed at random 60 are green (10%): the
  // 5400 with a sticky key, 240 of them green (4.4%), are a few users' volumes, not checked.
  await postRouted(r, version, 300, 5700, [60, 540]);
  await r.tick();
  const s = await r.status();
  assert.equal(s.step.number, 2, JSON.stringify(s.split_check));
  assert.ok(!(await r.events()).events.some((e) => e.kind === "split_mismatch"));
});
