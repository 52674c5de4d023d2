// The Responses API (POST /v1/responses) under the same judged path as chat, driven by the
// official `openai` Node SDK unchanged where a client would use it, and by raw fetch where the
// bytes matter: the split, fallback before commit (a late response.failed, both error shapes,
// an incomplete response with no output, a body that is no answer), a failure after commit,
// usage, defects, and what the controller counts.
import { test, before, after, beforeEach } from "node:test";
import assert from "node:assert/strict";
import OpenAI from "openai";
import { startStack, setRouting, eventually } from "./harness.mjs";

let stack;
let url;
let client;
before(async () => {
  stack = await startStack({
    ROUTING_CACHE_SECONDS: "0",
    FIRST_BYTE_TIMEOUT_MS: "1500",
    COMPLETION_TIMEOUT_MS: "2500",
    STREAM_IDLE_TIMEOUT_MS: "800",
    ADMIN_TOKEN: "responses-admin-token",
    // Green fails many times in a row on purpose here: the breaker would eject it.
    GREEN_EJECTION: "off",
  });
  url = stack.router.url;
  client = new OpenAI({ baseURL: `${url}/v1`, apiKey: "sk-unused-by-the-simulator", maxRetries: 0 });
  await setRouting(stack.router, { blue_model: "blue-m", green_model: "green-m", green_percent: 100 });
});
after(() => stack?.close());
beforeEach(() => stack.sim.reset());

const FORCE_BLUE = { "x-bluegreen-environment": "blue" };

/** POSTs /v1/responses with raw fetch; returns { res, text, events: [{ type, data }] }. */
async function post(body, headers = {}) {
  const res = await fetch(`${url}/v1/responses`, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: JSON.stringify({ model: "anything", input: "one two three", ...body }),
  });
  const text = await res.text();
  const events = text
    .split("\n\n")
    .filter((e) => e.includes("data: "))
    .map((e) => {
      const data = e.split("\n").find((l) => l.startsWith("data: ")).slice("data: ".length);
      return { type: e.match(/^event: (.*)$/m)?.[1], data: JSON.parse(data) };
    });
  return { res, text, events };
}

const outcomeOf = (id) => eventually(() => stack.router.outcomes().find((o) => o.request_id === id), 3000);

/** The controller's rollout stats for one environment once it counted `n` requests in all. */
async function countedStats(n) {
  const s = await eventually(async () => {
    const st = (await stack.router.status()).stats.rollout;
    return st.blue.requests + st.green.requests >= n ? st : null;
  }, 8000);
  assert.ok(s, `the controller did not count ${n} requests`);
  return s;
}

test("the openai SDK's responses.create, streamed and not, goes through the router unchanged and is counted", async () => {
  const { data, response } = await client.responses.create({ model: "gpt-4.1", input: "hello router" }).withResponse();
  assert.equal(response.headers.get("x-bluegreen-environment"), "green");
  assert.equal(response.headers.get("x-bluegreen-route"), "default");
  assert.equal(data.output_text, "Hello from green-m. Turn 1. You said: hello router");
  assert.equal(data.status, "completed");
  const o = await outcomeOf(response.headers.get("x-bluegreen-request-id"));
  assert.equal(o.api, "responses");
  assert.equal(o.class, "ok");
  assert.deepEqual(o.usage, { prompt_tokens: 2, completion_tokens: 9 });

  // The SDK's stream helper reads every event the router relays.
  const stream = client.responses.stream({ model: "gpt-4.1", input: "stream me" });
  const types = [];
  for await (const event of stream) types.push(event.type);
  const final = await stream.finalResponse();
  assert.equal(final.output_text, "Hello from green-m. Turn 1. You said: stream me");
  assert.deepEqual(types.slice(0, 4), ["response.created", "response.in_progress", "response.output_item.added", "response.content_part.added"]);
  assert.equal(types.at(-1), "response.completed");
  const stats = await countedStats(2);
  assert.equal(stats.green.requests, 2);
  assert.equal(stats.green.completion_tokens, 18);
});

test("the lifecycle events are replayed to the client unchanged, with their sequence numbers", async () => {
  const { res, events } = await post({ stream: true });
  assert.equal(res.status, 200);
  assert.equal(res.headers.get("content-type"), "text/event-stream");
  assert.deepEqual(events.map((e) => e.data.sequence_number), events.map((_, i) => i));
  assert.deepEqual(events.map((e) => e.type), events.map((e) => e.data.type), "each event's name is its type");
  assert.equal(events[0].data.response.status, "in_progress");
  assert.equal(events.at(-1).data.response.usage.output_tokens, 10);
});

test("a green Responses stream that fails before any part of the answer falls back to blue, counted as stream_error", async () => {
  const faults = ["error-first", "error-nested-first", "failed-after-created", "incomplete-empty"];
  const before = (await stack.router.status()).stats.rollout;
  for (const fault of faults) {
    await stack.sim.setRules({ "green-m": { fault } });
    const { res, events, text } = await post({ stream: true });
    assert.equal(res.status, 200, fault);
    assert.equal(res.headers.get("x-bluegreen-environment"), "blue", fault);
    assert.equal(res.headers.get("x-bluegreen-fallback"), "stream-error", fault);
    assert.ok(!text.includes("green-m"), `${fault}: green's events reached the client`);
    assert.equal(events.at(-1).type, "response.completed", fault);
    assert.equal(events[0].data.sequence_number, 0, fault);
  }
  const after = await countedStats(before.blue.requests + before.green.requests + faults.length);
  assert.equal(after.green.errors_by_class.stream_error - before.green.errors_by_class.stream_error, faults.length);
  assert.equal(after.green.fallbacks - before.green.fallbacks, faults.length);
});

test("a non-streamed green response that failed, or a body that is no response, falls back to blue as not_an_answer", async () => {
  for (const answer of ["failed", "html", "error-object"]) {
    await stack.sim.setRules({ "green-m": { answer } });
    const { res, text } = await post({});
    assert.equal(res.status, 200, `${answer}: ${text}`);
    assert.equal(res.headers.get("x-bluegreen-fallback"), "not-an-answer", answer);
    const body = JSON.parse(text);
    assert.equal(body.status, "completed");
    assert.equal(body.model, "blue-m");
    const o = await outcomeOf(res.headers.get("x-bluegreen-request-id"));
    assert.equal(o.fallback, "not-an-answer");
  }
});

test("blue's Responses failure is a clean 502; a failure after the answer began is relayed and counted as interrupted", async () => {
  const late = await post({ stream: true }, { ...FORCE_BLUE, "x-sim-fault": "failed-after-created" });
  assert.equal(late.res.status, 502);
  const err = JSON.parse(late.text).error;
  assert.equal(err.code, "upstream_stream_error");
  assert.match(err.message, /simulated late failure from blue-m/);
  const flat = await post({ stream: true }, { ...FORCE_BLUE, "x-sim-fault": "error-first" });
  assert.equal(flat.res.status, 502);
  assert.match(JSON.parse(flat.text).error.message, /began with an error event: simulated in-band error from blue-m/);

  // Created, in progress, item, part and two deltas: committed; then an error event.
  await stack.sim.setRules({ "green-m": { fault: "error-after-6" } });
  const cut = await post({ stream: true });
  assert.equal(cut.res.status, 200);
  assert.equal(cut.res.headers.get("x-bluegreen-environment"), "green");
  assert.equal(cut.events.at(-1).type, "error");
  assert.deepEqual(cut.events.map((e) => e.data.sequence_number), cut.events.map((_, i) => i));
  const o = await outcomeOf(cut.res.headers.get("x-bluegreen-request-id"));
  assert.equal(o.interrupted, true);
});

test("Responses answers are judged for defects, streamed and not", async () => {
  const cases = [
    [{ answer: "truncated" }, {}, "truncated"],
    [{ answer: "refusal" }, {}, "refusal"],
    [{ answer: "empty" }, {}, "empty"],
    [{ answer: "fenced" }, { text: { format: { type: "json_object" } } }, "invalid_json"],
    [{}, { text: { format: { type: "json_object" } } }, undefined],
  ];
  for (const [rule, body, defect] of cases) {
    await stack.sim.setRules({ "green-m": rule });
    for (const stream of [false, true]) {
      const { res } = await post({ ...body, stream });
      assert.equal(res.status, 200);
      assert.equal(res.headers.get("x-bluegreen-environment"), "green");
      const o = await outcomeOf(res.headers.get("x-bluegreen-request-id"));
      assert.equal(o.defect, defect, `${JSON.stringify(rule)} stream=${stream}`);
    }
  }
});

test("a response's id names the environment that made it: retrieve, input items and delete reach it with the upstream's own id", async () => {
  const made = await client.responses.create({ model: "gpt-4.1", input: "keep this" });
  assert.match(made.id, /^resp_bgg_resp_sim/);
  const got = await client.responses.retrieve(made.id);
  assert.equal(got.id, made.id, "the id the client knows comes back");
  assert.equal(got.output_text, made.output_text);
  const items = await client.responses.inputItems.list(made.id);
  assert.equal(items.data[0].content[0].text, "keep this");
  const upstreamId = made.id.slice("resp_bgg_".length);
  const asked = stack.sim.requests().filter((r) => r.method === "GET").map((r) => r.path);
  assert.ok(asked.includes(`/v1/responses/${upstreamId}`), asked.join(", "));
  // The streamed answer's events carry the same kind of id, in every event that names it.
  const { events } = await post({ stream: true });
  const ids = new Set(events.filter((e) => e.data.response).map((e) => e.data.response.id));
  assert.equal(ids.size, 1);
  assert.match([...ids][0], /^resp_bgg_resp_sim/);
  const deleted = await client.responses.delete(made.id);
  assert.deepEqual(deleted, { id: made.id, object: "response", deleted: true });
  await assert.rejects(client.responses.retrieve(made.id), (e) => e.status === 404);
  // An id the router did not issue is not a stored response of its own: 404 unless listed.
  const foreign = await fetch(`${url}/v1/responses/resp_not_ours`);
  assert.equal(foreign.status, 404);
  assert.equal((await foreign.json()).error.code, "not_found");
});

test("a follow-up goes to the environment that made the response it continues, whatever the split, counted apart from the split", async () => {
  const first = await client.responses.create({ model: "gpt-4.1", input: "start" });
  assert.match(first.id, /^resp_bgg_/);
  // Green is no longer in the split (as after a rollback): the conversation stays with green.
  await setRouting(stack.router, { blue_model: "blue-m", green_model: "green-m", green_percent: 0 });
  try {
    const { data, response } = await client.responses
      .create({ model: "gpt-4.1", input: "go on", previous_response_id: first.id })
      .withResponse();
    assert.equal(response.headers.get("x-bluegreen-environment"), "green");
    assert.equal(data.output_text, "Hello from green-m. Turn 2. You said: go on");
    assert.match(data.id, /^resp_bgg_/);
    const sent = JSON.parse(stack.sim.requests().at(-1).body);
    assert.equal(sent.previous_response_id, first.id.slice("resp_bgg_".length), "the upstream gets its own id");
    const o = await outcomeOf(response.headers.get("x-bluegreen-request-id"));
    assert.equal(o.basis, "conversation");
    // A new conversation follows the split.
    const fresh = await client.responses.create({ model: "gpt-4.1", input: "new" }).withResponse();
    assert.equal(fresh.response.headers.get("x-bluegreen-environment"), "blue");
  } finally {
    await setRouting(stack.router, { blue_model: "blue-m", green_model: "green-m", green_percent: 100 });
  }
});
