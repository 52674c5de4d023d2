// The split check end to end: the built worker in local workerd, stats batches posted to the
// controller's internal route as isolates post them (so that the routed share is exactly what
// the test says), ticks through the scheduled handler, the alert webhook on a local receiver.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import crypto from "node:crypto";
import { startStack, startReceiver, eventually, sleep } from "./harness.mjs";

const TOKEN = "test-admin-token";
const VARS = { ADMIN_TOKEN: TOKEN, BLUE_MODEL: "blue-m", GREEN_MODEL: "unused-m", ROUTING_CACHE_SECONDS: "0" };

let receiver;
before(async () => {
  receiver = await startReceiver();
});
after(() => receiver?.close());

/** Posts one isolate batch: `green` and `blue` requests routed under routing `version`. */
async function postRouted(router, version, green, blue) {
  const ns = await router.mf.getDurableObjectNamespace("ROLLOUT");
  const controller = ns.get(ns.idFromName("global"));
  const minute = Math.floor(Date.now() / 60_000);
  const batch = {
    id: crypto.randomBytes(16).toString("hex"),
    entries: [
      { minute, env: "green", version, stats: { requests: green } },
      { minute, env: "blue", version, stats: { requests: blue } },
    ],
  };
  const res = await controller.fetch("https://controller/internal/stats", { method: "POST", body: JSON.stringify(batch) });
  assert.equal(res.status, 200, await res.text());
}

test("green routed half the step's share holds the rollout with an event and an alert; the right share ends the hold", async (t) => {
  const stack = await startStack({ ...VARS, ALERT_WEBHOOK_URL: receiver.url });
  const r = stack.router;
  t.after(() => stack.close());
  const start = await r.admin("POST", "rollouts", {
    green_model: "green-m",
    // A one-second hold: without the check the first passing tick would advance.
    steps: [{ green_percent: 10, hold_seconds: 1 }, { green_percent: 50, hold_seconds: 600 }],
    health: { min_requests: 50 },
  });
  assert.equal(start.status, 201, start.text);
  const version = start.body.routing_version;
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
  assert.match(s.split_check.reason, /green got 5\.0% of 6000 requests routed under the step's 10% split \(300 green, 5700 blue\); the band is 7\.4%–13\.5%/);
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

  // Still off on the next tick: held, and no second event.
  await postRouted(r, version, 300, 5700);
  await r.tick();
  s = await r.status();
  assert.equal(s.step.number, 1);
  assert.equal((await r.events()).events[0].kind, "split_mismatch");
  assert.equal((await r.events()).events.filter((e) => e.kind === "split_mismatch").length, 1);

  // At 10%: the hold ends and the step advances on the same tick.
  await postRouted(r, version, 600, 5400);
  await r.tick();
  s = await r.status();
  assert.equal(s.split_check.held, false, JSON.stringify(s.split_check));
  assert.equal(s.step.number, 2);
  assert.equal(s.green_percent, 50);
  events = (await r.events()).events;
  assert.deepEqual(events.slice(0, 2).map((e) => e.kind), ["step_advanced", "split_matched"]);
  assert.match(events[1].message, /^Split matches again: green got 10\.0% of 6000 requests/);
  const cleared = await eventually(() => receiver.received.find((x) => x.body?.event?.kind === "split_matched"), 8000);
  assert.ok(cleared, "the end of the hold is alerted too");
});

test("with split_tolerance 0 the check is off: the same share advances the step", async (t) => {
  const stack = await startStack(VARS);
  const r = stack.router;
  t.after(() => stack.close());
  const start = await r.admin("POST", "rollouts", {
    green_model: "green-m",
    steps: [{ green_percent: 10, hold_seconds: 1 }, { green_percent: 50, hold_seconds: 600 }],
    health: { min_requests: 50, split_tolerance: 0 },
  });
  assert.equal(start.status, 201, start.text);
  assert.equal((await r.status()).split_check.on, false);
  await sleep(1100);
  await postRouted(r, start.body.routing_version, 300, 5700);
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
