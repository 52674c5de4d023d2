// Streaming completions: passed through as they arrive, fallback before the first byte, and a
// cut stream ending in an SSE error event.
import { test, before, after, beforeEach } from "node:test";
import assert from "node:assert/strict";
import { startStack, setRouting, eventually } from "./harness.mjs";

let stack;
let url;
before(async () => {
  stack = await startStack({ ROUTING_CACHE_SECONDS: "0", FIRST_BYTE_TIMEOUT_MS: "1000" });
  url = stack.router.url;
  await setRouting(stack.router, { blue_model: "blue-m", green_model: "green-m", green_percent: 0 });
});
after(() => stack?.close());
beforeEach(() => stack.sim.reset());

const STREAM = {
  stream: true,
  stream_options: { include_usage: true },
  messages: [{ role: "user", content: "one two three four five six" }],
};

/** Streams a completion, recording when each piece of the body arrived. */
async function stream(headers = {}, body = STREAM) {
  const t0 = Date.now();
  const res = await fetch(`${url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: JSON.stringify(body),
  });
  const arrivals = [];
  let text = "";
  const decoder = new TextDecoder();
  for await (const chunk of res.body) {
    const piece = decoder.decode(chunk, { stream: true });
    arrivals.push({ ms: Date.now() - t0, piece });
    text += piece;
  }
  const events = text.split("\n\n").filter((e) => e.trim());
  return { res, arrivals, text, events };
}

test("a streamed completion arrives as SSE chunks spread over time, not all at the end", async () => {
  await stack.sim.setRules({ "blue-m": { chunks: 5, chunk_delay_ms: 250 } });
  const { res, arrivals, events } = await stream();
  assert.equal(res.status, 200);
  assert.match(res.headers.get("content-type"), /^text\/event-stream/);
  assert.equal(res.headers.get("x-bluegreen-environment"), "blue");
  assert.equal(res.headers.get("x-bluegreen-model"), "blue-m");
  // Role chunk, 5 content chunks, finish chunk, usage chunk, [DONE].
  assert.equal(events.length, 9, events.join("\n\n"));
  assert.equal(events.at(-1), "data: [DONE]");
  const content = events
    .slice(0, -1)
    .map((e) => JSON.parse(e.slice("data: ".length)))
    .map((c) => c.choices[0]?.delta?.content ?? "")
    .join("");
  assert.equal(content, "Hello from blue-m. You said: one two three four five six");
  // The upstream spaces 5 chunks 250 ms apart (~1250 ms). Buffered, everything would arrive
  // together at the end; relayed, the first content comes >= 750 ms before the last.
  const firstContent = arrivals.find((a) => a.piece.includes('"content":"Hello'));
  const last = arrivals.at(-1);
  assert.ok(firstContent, "no content chunk");
  assert.ok(last.ms - firstContent.ms >= 750, `first content at ${firstContent.ms} ms, last at ${last.ms} ms`);
  assert.ok(arrivals.length >= 5, `only ${arrivals.length} reads`);

  const id = res.headers.get("x-bluegreen-request-id");
  const o = await eventually(() => stack.router.outcomes().find((x) => x.request_id === id), 3000);
  assert.equal(o.stream, true);
  assert.equal(o.interrupted, false);
  assert.deepEqual(o.usage, { prompt_tokens: 6, completion_tokens: 11 });
  assert.ok(o.total_ms >= 1000, `total ${o.total_ms}`);
});

test("a green stream that fails before its first byte falls back to blue", async (t) => {
  await setRouting(stack.router, { blue_model: "blue-m", green_model: "green-m", green_percent: 100 });
  t.after(() => setRouting(stack.router, { blue_model: "blue-m", green_model: "green-m", green_percent: 0 }));
  for (const [rule, reason] of [
    [{ status: 503 }, "status-503"],
    [{ stall_ms: 3000 }, "timeout"],
  ]) {
    await stack.sim.setRules({ "green-m": rule });
    const { res, events } = await stream();
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("x-bluegreen-environment"), "blue");
    assert.equal(res.headers.get("x-bluegreen-fallback"), reason);
    assert.equal(events.at(-1), "data: [DONE]");
    assert.ok(!events.some((e) => e.includes("green-m")), "green bytes reached the client");
  }
});

test("a stream cut after it began ends with an SSE error event, not a silent truncation", async () => {
  await stack.sim.setRules({ "blue-m": { chunks: 4, chunk_delay_ms: 100, drop: "mid-stream" } });
  const { res, events, text } = await stream();
  assert.equal(res.status, 200);
  const last = events.at(-1);
  assert.match(last, /^event: error\ndata: /, text);
  const err = JSON.parse(last.split("\ndata: ")[1]);
  assert.equal(err.error.code, "upstream_stream_interrupted");
  assert.equal(err.error.type, "server_error");
  // Every event before it is whole JSON: the half-sent event was dropped, not forwarded.
  for (const e of events.slice(0, -1)) JSON.parse(e.slice("data: ".length));
  assert.ok(!text.includes("half-an-ev"));
  const id = res.headers.get("x-bluegreen-request-id");
  const o = await eventually(() => stack.router.outcomes().find((x) => x.request_id === id), 3000);
  assert.equal(o.interrupted, true);
});

test("a client that goes away mid-stream still leaves an outcome record", async () => {
  await stack.sim.setRules({ "blue-m": { chunks: 5, chunk_delay_ms: 300 } });
  const controller = new AbortController();
  const res = await fetch(`${url}/v1/chat/completions`, {
    method: "POST",
    body: JSON.stringify(STREAM),
    signal: controller.signal,
  });
  const id = res.headers.get("x-bluegreen-request-id");
  const reader = res.body.getReader();
  await reader.read(); // the first event
  controller.abort();
  const o = await eventually(() => stack.router.outcomes().find((x) => x.request_id === id), 5000);
  assert.ok(o, "no outcome for the abandoned stream");
  assert.equal(o.client_gone, true);
  assert.equal(o.interrupted, false, "the model did nothing wrong");
  assert.equal(o.status, 200);
});

test("an upstream error on a stream request comes back as JSON with its status", async () => {
  await stack.sim.setRules({ "blue-m": { status: 429 } });
  const { res, text } = await stream();
  assert.equal(res.status, 429);
  assert.equal(JSON.parse(text).error.code, "sim_429");
});
