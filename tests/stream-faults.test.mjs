// Failure shapes of real OpenAI-compatible providers, end to end: a stream judged by its first
// event (an in-band error, a stream that ends, breaks or stays silent before it), a stream
// failing after it began (an error event, silence past the idle limit), and a slow non-streamed
// answer judged by its own limit. Each test checks what the client sees and what the stats in
// /admin/status count.
import { test, before, after, beforeEach } from "node:test";
import assert from "node:assert/strict";
import { startStack, setRouting, eventually, chat, CHAT } from "./harness.mjs";

const FIRST_BYTE_MS = 1000;
const COMPLETION_MS = 2500;
const IDLE_MS = 600;
let stack;
let url;
before(async () => {
  stack = await startStack({
    ROUTING_CACHE_SECONDS: "0",
    FIRST_BYTE_TIMEOUT_MS: String(FIRST_BYTE_MS),
    COMPLETION_TIMEOUT_MS: String(COMPLETION_MS),
    STREAM_IDLE_TIMEOUT_MS: String(IDLE_MS),
    ADMIN_TOKEN: "faults-admin-token",
    // Tests here fail green many times in a row on purpose: the breaker would eject it.
    GREEN_EJECTION: "off",
  });
  url = stack.router.url;
  // Every unforced request tries green first.
  await setRouting(stack.router, { blue_model: "blue-m", green_model: "green-m", green_percent: 100 });
});
after(() => stack?.close());
beforeEach(() => stack.sim.reset());

const STREAM = { stream: true, messages: [{ role: "user", content: "one two three four five six" }] };
const FORCE_BLUE = { "x-bluegreen-environment": "blue" };

/** Streams a completion; returns the response, its text, its events and when each arrived. */
async function stream(headers = {}) {
  const t0 = Date.now();
  const res = await fetch(`${url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: JSON.stringify(STREAM),
  });
  let text = "";
  const arrivals = [];
  const decoder = new TextDecoder();
  for await (const chunk of res.body) {
    const piece = decoder.decode(chunk, { stream: true });
    text += piece;
    arrivals.push({ ms: Date.now() - t0, at: text.length });
  }
  const events = text.split("\n\n").filter((e) => e.trim());
  /** When the byte at `index` of the text arrived. */
  const arrivedAt = (index) => arrivals.find((a) => a.at > index).ms;
  return { res, text, events, arrivedAt, ms: Date.now() - t0 };
}

const outcomeOf = (res) => {
  const id = res.headers.get("x-bluegreen-request-id");
  return eventually(() => stack.router.outcomes().find((o) => o.request_id === id), 3000);
};

const counted = (s) =>
  ["rollout", "forced"].reduce((n, scope) => n + s[scope].blue.requests + s[scope].green.requests, 0);

/** The stats once the controller has counted `n` more requests than in `before`. */
async function statsAfter(before, n) {
  const s = await eventually(async () => {
    const now = (await stack.router.status()).stats;
    return counted(now) >= counted(before) + n ? now : null;
  }, 8000);
  assert.ok(s, `the controller did not count ${n} more requests`);
  return s;
}

/** The stats once the controller has counted every request the router has recorded so far
 * (a batch reaches it about a second after its requests). */
async function statsNow() {
  const s = await eventually(async () => {
    const now = (await stack.router.status()).stats;
    return counted(now) === stack.router.outcomes().length ? now : null;
  }, 8000);
  assert.ok(s, "the controller's counts did not settle");
  return s;
}

/** The text of a stream's content deltas. */
const content = (events) =>
  events
    .filter((e) => e.startsWith("data: {"))
    .map((e) => JSON.parse(e.slice("data: ".length)).choices?.[0]?.delta?.content ?? "")
    .join("");

/** What changed for one environment in one scope: requests, fallbacks and each error class
 * that moved. */
function change(after, before, scope, env) {
  const a = after[scope][env];
  const b = before[scope][env];
  const out = { requests: a.requests - b.requests, fallbacks: a.fallbacks - b.fallbacks };
  for (const [k, v] of Object.entries(a.errors_by_class)) {
    const d = v - (b.errors_by_class[k] ?? 0);
    if (d) out[k] = d;
  }
  assert.equal(a.errors - b.errors, Object.values(out).slice(2).reduce((x, y) => x + y, 0), "errors is the sum of the classes");
  return out;
}

const greenRequests = () =>
  stack.sim.requests().filter((r) => r.path === "/v1/chat/completions" && JSON.parse(r.body).model === "green-m");

// OpenAI-style providers open with a role chunk that carries nothing of the answer: an error
// after it (error-after-1), or a [DONE] with nothing before it, is still a failure to fall back
// from, never a 200 the client gets.
const BEFORE_THE_ANSWER = ["error-first", "error-after-1", "end-before-first", "break-before-first", "done-first", "done-after-role"];

test("a green stream that fails before any part of the answer falls back to blue, counted as green's stream_error", async () => {
  const before = await statsNow();
  for (const fault of BEFORE_THE_ANSWER) {
    await stack.sim.setRules({ "green-m": { fault } });
    const { res, events, text } = await stream();
    assert.equal(res.status, 200, fault);
    assert.equal(res.headers.get("x-bluegreen-environment"), "blue", fault);
    assert.equal(res.headers.get("x-bluegreen-fallback"), "stream-error", fault);
    assert.equal(events.at(-1), "data: [DONE]", fault);
    assert.ok(!text.includes("green-m") && !text.includes("keep-alive"), `${fault}: green bytes reached the client`);
    const o = await outcomeOf(res);
    assert.equal(o.fallback, "stream-error");
    assert.equal(o.environment, "blue");
  }
  const n = BEFORE_THE_ANSWER.length;
  const s = await statsAfter(before, n);
  assert.deepEqual(change(s, before, "rollout", "green"), { requests: n, fallbacks: n, stream_error: n });
  assert.deepEqual(change(s, before, "rollout", "blue"), { requests: 0, fallbacks: 0 });
});

test("a green answer that is not a chat completion (a proxy's HTML page, an error object sent with a 200) falls back to blue, counted as green's not_an_answer", async () => {
  const before = await statsNow();
  const cases = [
    ["html", false],
    ["error-object", false],
    ["html", true],
  ];
  for (const [answer, streamed] of cases) {
    await stack.sim.setRules({ "green-m": { answer } });
    const r = await chat(url, streamed ? STREAM : { messages: STREAM.messages });
    assert.equal(r.status, 200, `${answer}: ${r.text}`);
    assert.equal(r.headers.get("x-bluegreen-environment"), "blue", answer);
    assert.equal(r.headers.get("x-bluegreen-fallback"), "not-an-answer", answer);
    assert.ok(r.text.includes('"model":"blue-m"') && !r.text.includes("DOCTYPE"), r.text.slice(0, 200));
    const o = await outcomeOf(r);
    assert.equal(o.fallback, "not-an-answer");
    if (!streamed) assert.equal(o.usage?.completion_tokens, 11, "blue's answer was read for its usage");
  }
  const s = await statsAfter(before, cases.length);
  assert.deepEqual(change(s, before, "rollout", "green"), { requests: 3, fallbacks: 3, not_an_answer: 3 });
  // Blue's own such answer is a clean 502, never the page.
  const r = await chat(url, { messages: STREAM.messages }, { ...FORCE_BLUE, "x-sim-answer": "html" });
  assert.equal(r.status, 502, r.text);
  assert.equal(r.body.error.code, "upstream_invalid_answer");
  assert.match(r.body.error.message, /blue-m .* not JSON \(begins `<!DOCTYPE html>/);
  assert.equal((await outcomeOf(r)).class, "not_an_answer");
  const after = await statsAfter(s, 1);
  assert.deepEqual(change(after, s, "forced", "blue"), { requests: 1, fallbacks: 0, not_an_answer: 1 });
});

test("a green stream silent before its first event falls back at the first-byte limit, counted as green's timeout", async () => {
  const before = await statsNow();
  // Headers at once, then nothing: the limit covers the headers and the first event together.
  await stack.sim.setRules({ "green-m": { think_ms: 10_000 } });
  const { res, events, ms } = await stream();
  assert.equal(res.status, 200);
  assert.equal(res.headers.get("x-bluegreen-fallback"), "timeout");
  assert.equal(res.headers.get("x-bluegreen-environment"), "blue");
  assert.equal(events.at(-1), "data: [DONE]");
  assert.ok(ms >= FIRST_BYTE_MS, `answered after ${ms} ms, before the limit`);
  const s = await statsAfter(before, 1);
  assert.deepEqual(change(s, before, "rollout", "green"), { requests: 1, fallbacks: 1, timeout: 1 });
  // The router let go of green's stream.
  assert.ok(await eventually(() => greenRequests()[0]?.closed_at, 3000), "green's connection is still open");
});

test("a green that thinks past the first-byte limit while sending keep-alives is served, not timed out", async () => {
  const before = await statsNow();
  await stack.sim.setRules({ "green-m": { think_ms: FIRST_BYTE_MS + 800, keepalive_ms: 200 } });
  const { res, events, text } = await stream();
  assert.equal(res.status, 200);
  assert.equal(res.headers.get("x-bluegreen-environment"), "green");
  assert.equal(res.headers.get("x-bluegreen-fallback"), null);
  assert.ok(text.startsWith(": keep-alive\n\n"), text.slice(0, 100));
  assert.equal(events.at(-1), "data: [DONE]");
  assert.equal(content(events), "Hello from green-m. You said: one two three four five six");
  const o = await outcomeOf(res);
  assert.equal(o.class, "ok");
  assert.equal(o.interrupted, false);
  const s = await statsAfter(before, 1);
  assert.deepEqual(change(s, before, "rollout", "green"), { requests: 1, fallbacks: 0 });
});

test("blue's stream failing before its first event reaches the client as a 502 in OpenAI's shape", async () => {
  const before = await statsNow();
  for (const [fault, says] of [
    ["error-first", "began with an error event: simulated in-band error from blue-m"],
    ["end-before-first", "ended before any part of the answer"],
    ["done-after-role", "ended before any part of the answer"],
  ]) {
    const r = await chat(url, STREAM, { ...FORCE_BLUE, "x-sim-fault": fault });
    assert.equal(r.status, 502, r.text);
    assert.match(r.headers.get("content-type"), /^application\/json/);
    assert.equal(r.headers.get("x-bluegreen-environment"), "blue");
    assert.equal(r.body.error.code, "upstream_stream_error");
    assert.equal(r.body.error.type, "server_error");
    assert.equal(r.body.error.message, `The upstream's stream for model blue-m ${says}.`);
    const o = await outcomeOf(r);
    assert.equal(o.status, 502);
    assert.equal(o.class, "stream_error");
  }
  // Both fail the same way: green falls back, and blue's failure is the answer.
  await stack.sim.setRules({ "*": { fault: "error-first" } });
  const r = await chat(url, STREAM);
  assert.equal(r.status, 502);
  assert.equal(r.body.error.code, "upstream_stream_error");
  assert.equal(r.headers.get("x-bluegreen-fallback"), "stream-error");
  const s = await statsAfter(before, 4);
  assert.deepEqual(change(s, before, "forced", "blue"), { requests: 3, fallbacks: 0, stream_error: 3 });
  // A request counts once, against green, whose failure made blue try.
  assert.deepEqual(change(s, before, "rollout", "green"), { requests: 1, fallbacks: 1, stream_error: 1 });
});

test("an error event after the stream began is relayed as it is and counted as interrupted", async () => {
  const before = await statsNow();
  await stack.sim.setRules({ "green-m": { fault: "error-after-3" } });
  const { res, events } = await stream();
  assert.equal(res.status, 200);
  assert.equal(res.headers.get("x-bluegreen-environment"), "green");
  assert.equal(res.headers.get("x-bluegreen-fallback"), null);
  assert.equal(events.length, 4, events.join("\n\n"));
  for (const e of events.slice(0, 3)) assert.ok(JSON.parse(e.slice("data: ".length)).choices, e);
  // Exactly the upstream's event, not the router's.
  assert.equal(
    events[3],
    'data: {"error":{"message":"simulated in-band error from green-m","type":"server_error","param":null,"code":"sim_stream_error"}}',
  );
  const o = await outcomeOf(res);
  assert.equal(o.interrupted, true);
  assert.equal(o.class, "ok");
  const s = await statsAfter(before, 1);
  assert.deepEqual(change(s, before, "rollout", "green"), { requests: 1, fallbacks: 0, interrupted: 1 });
});

test("a stream silent after it began is ended by the router at the idle limit and counted as interrupted", async () => {
  const before = await statsNow();
  await stack.sim.setRules({ "green-m": { fault: "stall-after-2" } });
  const { res, events, text, arrivedAt } = await stream();
  // The stream ended (the loop above returned) with two events and the router's error event.
  assert.equal(res.status, 200);
  assert.equal(res.headers.get("x-bluegreen-environment"), "green");
  assert.equal(events.length, 3, text);
  const [kind, data] = events[2].split("\n");
  assert.equal(kind, "event: error");
  const err = JSON.parse(data.slice("data: ".length));
  assert.equal(err.error.code, "upstream_stream_interrupted");
  assert.match(err.error.message, new RegExp(`no data for ${IDLE_MS} ms`));
  // Not cut before the limit: the error came at least IDLE_MS after the second event.
  const lastEvent = arrivedAt(text.indexOf(events[1]));
  const cut = arrivedAt(text.indexOf("event: error"));
  assert.ok(cut - lastEvent >= IDLE_MS - 50, `cut ${cut - lastEvent} ms after the last event`);
  const o = await outcomeOf(res);
  assert.equal(o.interrupted, true);
  // The log line names the request and its route.
  const id = res.headers.get("x-bluegreen-request-id");
  const said = `request ${id} (route default): stream silent for ${IDLE_MS} ms; cut`;
  assert.ok(stack.router.logs.some((l) => l.message === said), said);
  const s = await statsAfter(before, 1);
  assert.deepEqual(change(s, before, "rollout", "green"), { requests: 1, fallbacks: 0, interrupted: 1 });
  // The router cancelled the upstream stream: the simulator saw its connection close.
  assert.ok(await eventually(() => greenRequests()[0]?.closed_at, 3000), "green's connection is still open");
});

test("a non-streamed green slower than the first-byte limit is served and judged by its latency, not timed out", async () => {
  const before = await statsNow();
  const delay = FIRST_BYTE_MS + 500;
  await stack.sim.setRules({ "green-m": { delay_ms: delay } });
  const r = await chat(url, CHAT);
  assert.equal(r.status, 200, r.text);
  assert.equal(r.headers.get("x-bluegreen-environment"), "green");
  assert.equal(r.headers.get("x-bluegreen-fallback"), null);
  assert.equal(r.body.model, "green-m");
  const o = await outcomeOf(r);
  assert.equal(o.class, "ok");
  assert.ok(o.total_ms >= delay, `total ${o.total_ms} ms`);
  const s = await statsAfter(before, 1);
  assert.deepEqual(change(s, before, "rollout", "green"), { requests: 1, fallbacks: 0 });
  assert.ok(s.rollout.green.p99_ms >= delay, `green's p99 ${s.rollout.green.p99_ms} ms`);
});

test("a non-streamed answer past COMPLETION_TIMEOUT_MS falls back as green's timeout", async () => {
  const before = await statsNow();
  await stack.sim.setRules({ "green-m": { delay_ms: COMPLETION_MS + 3000 } });
  const t0 = Date.now();
  const r = await chat(url, CHAT);
  assert.equal(r.status, 200, r.text);
  assert.equal(r.headers.get("x-bluegreen-environment"), "blue");
  assert.equal(r.headers.get("x-bluegreen-fallback"), "timeout");
  assert.ok(Date.now() - t0 >= COMPLETION_MS, "fell back before the limit");
  const s = await statsAfter(before, 1);
  assert.deepEqual(change(s, before, "rollout", "green"), { requests: 1, fallbacks: 1, timeout: 1 });
});
