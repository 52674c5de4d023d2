// Answer defects end to end: the built worker in local workerd, real HTTP, the upstream
// simulator answering 200s the app cannot use. The router classifies each answer off the
// response path, from the teed body or the stream's events, and judges green on them.
import { test } from "node:test";
import assert from "node:assert/strict";
import { startStack, chat, pool, waitForCount, CHAT } from "./harness.mjs";

const TOKEN = "test-admin-token";
const VARS = { ADMIN_TOKEN: TOKEN, BLUE_MODEL: "blue-m", GREEN_MODEL: "unused-m", ROUTING_CACHE_SECONDS: "0" };
const JSON_MODE = { ...CHAT, response_format: { type: "json_object" } };
const TOOLS = {
  ...CHAT,
  tools: [{ type: "function", function: { name: "get_weather", parameters: { type: "object" } } }],
};

test("each defect class is counted, streamed or not, and a usable answer is not", async (t) => {
  const stack = await startStack(VARS);
  t.after(() => stack.close());
  const r = stack.router;
  const blue = { "x-bluegreen-environment": "blue" };
  // (answer, body): every class the simulator can produce, and two good answers.
  const cases = [
    ["fenced", JSON_MODE, "invalid_json"],
    ["truncated", JSON_MODE, "truncated"],
    ["filtered", CHAT, "content_filter"],
    ["empty", CHAT, "empty"],
    ["refusal", CHAT, "refusal"],
    ["", JSON_MODE, null],
    ["", CHAT, null],
  ];
  let sent = 0;
  for (const stream of [false, true]) {
    for (const [answer, body, _] of cases) {
      const res = await chat(r.url, { ...body, stream }, { ...blue, "x-sim-answer": answer });
      assert.equal(res.status, 200, res.text);
      sent++;
    }
  }
  // A tool was offered and the model answered in text instead: a usable answer.
  assert.equal((await chat(r.url, TOOLS, blue)).status, 200);
  sent++;
  const s = await waitForForced(r, sent);
  const byClass = s.stats.forced.blue.defects_by_class;
  assert.deepEqual(byClass, {
    content_filter: 2,
    refusal: 2,
    truncated: 2,
    empty: 2,
    invalid_tool_call: 0,
    invalid_json: 2,
    dimension_mismatch: 0,
  });
  assert.equal(s.stats.forced.blue.defects, 10);
  assert.equal(s.stats.forced.blue.errors, 0, "a defect is not an HTTP error");
});

async function waitForForced(router, n) {
  for (let i = 0; i < 80; i++) {
    const s = await router.status();
    if (s.stats.forced.blue.requests >= n) return s;
    await new Promise((res) => setTimeout(res, 100));
  }
  return router.status();
}

test("a green whose JSON-mode answers come back fenced is rolled back, with reasons that name invalid_json", async (t) => {
  const stack = await startStack(VARS);
  t.after(() => stack.close());
  const r = stack.router;
  await stack.sim.setRules({ "green-m": { answer: "fenced" } });
  const start = await r.admin("POST", "rollouts", {
    green_model: "green-m",
    steps: [{ green_percent: 30, hold_seconds: 600 }],
    health: { min_requests: 20 },
  });
  assert.equal(start.status, 201, start.text);
  const results = await pool(200, 8, (i) => chat(r.url, { ...JSON_MODE, stream: i % 2 === 1 }));
  assert.ok(results.every((x) => x.status === 200), "every answer is a 200: only its content is wrong");
  const before = await waitForCount(r, 200);
  assert.ok(before.stats.rollout.green.defects_by_class.invalid_json > 20, JSON.stringify(before.stats.rollout.green));
  assert.equal(before.stats.rollout.blue.defects, 0);
  assert.equal(before.stats.rollout.green.errors, 0);

  await r.tick();
  const s = await r.status();
  assert.equal(s.phase, "rolled_back", JSON.stringify(s.verdict));
  const reasons = s.verdict.reasons.join(" | ");
  assert.match(reasons, /^green answer defects: seen on green only \(\d+ of \d+ vs 0 of \d+\)/);
  assert.match(reasons, /invalid_json \d+/);
  const [event] = (await r.events(1)).events;
  assert.equal(event.kind, "rolled_back");
  assert.match(event.message, /green answer defects/);
  assert.match(event.message, /invalid_json/);
});
