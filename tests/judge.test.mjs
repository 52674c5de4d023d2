// The grader end to end (issue 24): the built worker in local workerd, the simulator playing
// both the models and the grader (recognised by its request's response format, whatever model
// the policy names), ticks through the scheduled handler.
import { test } from "node:test";
import assert from "node:assert/strict";
import { chat, eventually, pool, sleep, startReceiver, startStack, waitForCount } from "./harness.mjs";

const VARS = { ADMIN_TOKEN: "t", METRICS_TOKEN: "m", BLUE_MODEL: "blue-m", ROUTING_CACHE_SECONDS: "0" };

/** Sends `n` chat completions with prompts of their own (the simulator's grader draws by the
 * pair's text), 8 at a time; returns how many were answered 200. */
async function prompts(router, n, from = 0) {
  const results = await pool(n, 8, (i) =>
    chat(router.url, { messages: [{ role: "user", content: `Question number ${from + i}: what is ${from + i} plus ${i}?` }] }),
  );
  return results.filter((r) => r.status === 200).length;
}

/** The simulator's requests that were the grader's. */
async function graderCalls(sim) {
  return (await sim.requests()).filter((r) => {
    try {
      return JSON.parse(r.body).response_format?.json_schema?.name === "pairwise_verdict";
    } catch {
      return false;
    }
  });
}

/** The simulator's chat requests for `model` that were not the grader's. */
async function callsFor(sim, model) {
  return (await sim.requests()).filter((r) => {
    try {
      const b = JSON.parse(r.body);
      return b.model === model && !b.response_format;
    } catch {
      return false;
    }
  });
}

/** Waits until the status shows `n` pairs sent to the grader (judged or failed). */
async function waitForPairs(router, n, ms = 15000) {
  await eventually(async () => {
    const j = (await router.status()).judge;
    return j && j.judged + j.failed + j.inconsistent >= n;
  }, ms, 150);
  return (await router.status()).judge;
}

const judge = (extra = {}) => ({ model: "judge-m", sample_percent: 100, max_per_minute: 600, ...extra });

test("a green worse only in quality is rolled back by the cron, with a reason naming the grader", async (t) => {
  const hook = await startReceiver();
  const stack = await startStack({ ...VARS, ALERT_WEBHOOK_URL: hook.url });
  const r = stack.router;
  t.after(async () => {
    await stack.close();
    await hook.close();
  });
  // The grader prefers the worse model's answer in 10% of decisive verdicts; 20% ties.
  await stack.sim.setRules({ "judge-m": { grader: { worse_wins: 0.1, ties: 0.2 } } });
  const start = await r.admin("POST", "rollouts", {
    green_model: "green-worse",
    steps: [{ green_percent: 50, hold_seconds: 3600 }],
    health: { min_requests: 10, judge: judge() },
  });
  assert.equal(start.status, 201, start.text);
  assert.equal(start.body.rollout.health.judge.model, "judge-m");
  assert.equal(JSON.parse(await r.kv.get("routing")).judge.model, "judge-m");
  let sent = 0;
  let s;
  for (let tick = 1; tick <= 4; tick++) {
    sent += await prompts(r, 60, sent);
    s = await waitForCount(r, sent);
    await waitForPairs(r, s.stats.rollout.green.requests);
    await r.tick();
    s = await r.status();
    if (s.phase === "rolled_back") break;
  }
  assert.equal(s.phase, "rolled_back", JSON.stringify(s.verdict));
  // Nothing else was wrong with green.
  assert.equal(s.stats.rollout.green.errors, 0);
  assert.equal(s.stats.rollout.green.defects, 0);
  const ev = (await r.events()).events[0];
  assert.equal(ev.kind, "rolled_back");
  assert.match(ev.message, /^Rolled back automatically on step 1: the grader preferred blue's answer in \d+% of \d+ decisive pairs/);
  assert.match(ev.message, /the grader's reasons for green's last losses: "Answer [AB] is more accurate and complete\."/);
  // The alert says it too.
  const alert = await eventually(() => hook.received.find((a) => /Rolled back automatically/.test(a.body.text)), 5000);
  assert.match(alert.body.text, /^bluegreen-router, route default: Rolled back automatically on step 1: the grader preferred blue's answer/);
  const j = ev.verdict.evidence.judge;
  assert.ok(j.evidence >= j.rollback_at, JSON.stringify(j));
  // Every green answer was judged against a reference copy to blue, never served.
  const st = s.judge;
  assert.equal(st.judged + st.failed + st.inconsistent, s.stats.rollout.green.requests, JSON.stringify(st));
  assert.ok(st.losses > st.wins * 3, JSON.stringify(st));
  const grader = await graderCalls(stack.sim);
  assert.equal(grader.length, st.judged + st.failed);
  const blueCalls = (await callsFor(stack.sim, "blue-m")).length;
  assert.equal(blueCalls, s.stats.rollout.blue.requests + st.judged + st.failed, "blue's answers plus one reference copy per pair");
  // The grader's tokens are its own, never green's or blue's.
  assert.ok(st.grader_prompt_tokens > 0);
  assert.equal(st.last_losses.length, 5);
  assert.match(st.last_losses[0].green_answer, /^Hello from green-worse/);
  assert.match(st.last_losses[0].blue_answer, /^Hello from blue-m/);
  assert.match(st.last_losses[0].prompt, /^user: Question number/);
  const metrics = await (await fetch(`${r.url}/metrics`, { headers: { authorization: "Bearer m" } })).text();
  assert.match(metrics, /bluegreen_judged_pairs_total\{route="default",environment="green",model="green-worse",result="loss"\} \d+/);
  assert.match(metrics, /bluegreen_verdict_log_evidence\{route="default",test="judge"\} /);
});

test("a green as good as blue in the grader's eyes completes its rollout", async (t) => {
  const stack = await startStack(VARS);
  const r = stack.router;
  t.after(() => stack.close());
  const start = await r.admin("POST", "rollouts", {
    green_model: "green-m",
    steps: [{ green_percent: 30, hold_seconds: 1 }, { green_percent: 60, hold_seconds: 1 }],
    health: { min_requests: 10, judge: judge({ both_orders: true }) },
  });
  assert.equal(start.status, 201, start.text);
  let sent = 0;
  for (const percent of [30, 60]) {
    sent += await prompts(r, 60, sent);
    const s = await waitForCount(r, sent);
    assert.equal(s.green_percent, percent);
    await waitForPairs(r, s.stats.rollout.green.requests);
    await sleep(1100);
    await r.tick();
    const after = await r.status();
    assert.notEqual(after.phase, "rolled_back", JSON.stringify(after.verdict));
  }
  const done = await r.status();
  assert.equal(done.phase, "completed");
  const j = done.judge;
  assert.ok(j.judged > 0, JSON.stringify(j));
  // Both orders: two grader calls a pair.
  assert.equal((await graderCalls(stack.sim)).length, 2 * (j.judged + j.inconsistent + j.failed));
  // The routing document loses the grader once the rollout ended.
  assert.equal(JSON.parse(await r.kv.get("routing")).judge, undefined);
});

test("the sample share and the per-minute budget are honoured at the simulator", async (t) => {
  const stack = await startStack(VARS);
  const r = stack.router;
  t.after(() => stack.close());
  const start = await r.admin("POST", "rollouts", {
    green_model: "green-m",
    steps: [{ green_percent: 99.99, hold_seconds: 3600 }],
    health: { judge: judge({ sample_percent: 30 }) },
  });
  assert.equal(start.status, 201, start.text);
  await prompts(r, 300);
  const s = await waitForCount(r, 300);
  await sleep(1500);
  const calls = (await graderCalls(stack.sim)).length;
  const green = s.stats.rollout.green.requests;
  assert.ok(green >= 295, `${green}`);
  // About 300 draws at 30%: 90 expected, 3 standard deviations are ±24.
  assert.ok(calls >= 0.3 * green - 24 && calls <= 0.3 * green + 24, `${calls} grader calls for ${green} green answers at 30%`);
  assert.equal((await callsFor(stack.sim, "blue-m")).length, s.stats.rollout.blue.requests + calls, "one reference copy a pair");

  // At most 5 a minute: a minute's worth at once, then the refill.
  await stack.sim.reset();
  await r.admin("POST", "rollback");
  const again = await r.admin("POST", "rollouts", {
    green_model: "green-m",
    steps: [{ green_percent: 99.99, hold_seconds: 3600 }],
    health: { judge: judge({ max_per_minute: 5 }) },
  });
  assert.equal(again.status, 201, again.text);
  const began = Date.now();
  await prompts(r, 40, 1000);
  await sleep(1500);
  const minutes = (Date.now() - began) / 60000;
  const budgeted = (await graderCalls(stack.sim)).length;
  assert.ok(budgeted >= 5 && budgeted <= 5 + Math.ceil(5 * minutes), `${budgeted} grader calls with a budget of 5 a minute`);
  const logs = r.logs.filter((l) => l.message.includes("the grader's budget of 5 a minute is spent"));
  const green2 = (await waitForCount(r, 40)).stats.rollout.green.requests;
  assert.equal(logs.length, green2 - budgeted);
});

test("a grader that fails counts judge_failed and judges nothing; a shadow step's pairs are judged too", async (t) => {
  // Every blue request copied: no copy capped by the isolate's bound.
  const stack = await startStack({ ...VARS, SHADOW_MAX_PER_MINUTE: "6000" });
  const r = stack.router;
  t.after(() => stack.close());
  await stack.sim.setRules({ "judge-m": { grader: { fail_rate: 1 } }, "green-worse": {} });
  const start = await r.admin("POST", "rollouts", {
    green_model: "green-worse",
    steps: [
      { green_percent: 0, shadow_percent: 100, hold_seconds: 3600 },
      { green_percent: 50, hold_seconds: 3600 },
    ],
    health: { min_requests: 10, judge: judge() },
  });
  assert.equal(start.status, 201, start.text);
  await prompts(r, 30);
  await waitForCount(r, 30);
  const j = await waitForPairs(r, 30);
  assert.equal(j.failed, 30, JSON.stringify(j));
  assert.equal(j.judged, 0);
  assert.equal((await callsFor(stack.sim, "green-worse")).length, 30, "the shadow copies");
  assert.equal((await callsFor(stack.sim, "blue-m")).length, 30, "blue served; no reference copies on a shadow step");
  await r.tick();
  const s = await r.status();
  assert.equal(s.phase, "progressing", JSON.stringify(s.verdict));
  assert.ok(r.logs.some((l) => /judge_failed: the grader's verdict is not the JSON asked for/.test(l.message)));
  // The grader recovers: the shadow pairs are judged, and the worse green is rolled back.
  await stack.sim.setRules({ "judge-m": { grader: { worse_wins: 0.05, ties: 0.1 } } });
  let sent = 30;
  for (let tick = 1; tick <= 4 && s.phase !== "rolled_back"; tick++) {
    sent += await prompts(r, 50, sent);
    await waitForCount(r, sent);
    await waitForPairs(r, sent);
    await r.tick();
    Object.assign(s, await r.status());
  }
  assert.equal(s.phase, "rolled_back", JSON.stringify(s.judge));
  assert.equal(s.stats.rollout.green.requests, 0, "no user was served by green");
});
