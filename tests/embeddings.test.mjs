// Embeddings under a judged rollout that never splits users: an embeddings route (kind
// `embeddings`) is served by blue; green gets shadow copies, judged on errors, latency and
// vector lengths; a client that forces green (the re-index job) gets green's vectors; the
// operator promotes. Driven by the official `openai` Node SDK unchanged (it asks for base64
// vectors by default) and by raw fetch where the bytes matter.
import { test, before, after, beforeEach } from "node:test";
import assert from "node:assert/strict";
import OpenAI from "openai";
import { startStack, eventually, pool } from "./harness.mjs";

const TOKEN = "embeddings-admin-token";
let stack;
let r;
let client;
before(async () => {
  stack = await startStack({
    ADMIN_TOKEN: TOKEN,
    ROUTING_CACHE_SECONDS: "0",
    SHADOW_MAX_PER_MINUTE: "10000",
    BLUE_MODEL: "chat-blue",
  });
  r = stack.router;
  client = new OpenAI({ baseURL: `${r.url}/v1`, apiKey: "sk-unused-by-the-simulator", maxRetries: 0 });
});
after(() => stack?.close());
beforeEach(() => stack.sim.reset());

/** Creates (or defines anew) the embeddings route `name`, served by `blue`. */
async function embeddingsRoute(name, blue) {
  const made = await r.admin("PUT", `routes/${name}`, { blue_model: blue, kind: "embeddings" });
  assert.ok([200, 201].includes(made.status), made.text);
  return made.body;
}

/** POSTs /v1/embeddings with raw fetch; returns { status, headers, body, text }. */
async function embed(body, headers = {}) {
  const res = await fetch(`${r.url}/v1/embeddings`, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: typeof body === "string" ? body : JSON.stringify(body),
  });
  const text = await res.text();
  let parsed;
  try {
    parsed = JSON.parse(text);
  } catch {
    parsed = undefined;
  }
  return { status: res.status, headers: res.headers, body: parsed, text };
}

test("the SDK's embeddings.create reaches blue through an embeddings route, in both encodings", async () => {
  await embeddingsRoute("text-embedding-3-small", "embed-small-v1");
  const sdk = await client.embeddings.create({ model: "text-embedding-3-small", input: ["one", "two"] }).withResponse();
  assert.equal(sdk.response.headers.get("x-bluegreen-environment"), "blue");
  assert.equal(sdk.response.headers.get("x-bluegreen-route"), "text-embedding-3-small");
  assert.equal(sdk.data.data.length, 2);
  assert.equal(sdk.data.data[0].embedding.length, 1536, "base64 decoded by the SDK");
  const sent = stack.sim.requests().at(-1);
  assert.equal(JSON.parse(sent.body).model, "embed-small-v1");
  assert.equal(JSON.parse(sent.body).encoding_format, "base64", "the SDK's default reaches the upstream");

  const floats = await embed({ model: "text-embedding-3-small", input: "one", encoding_format: "float" });
  assert.equal(floats.status, 200, floats.text);
  assert.equal(floats.body.data[0].embedding.length, 1536);
  // The same vector either way: the float32s the SDK decoded are the floats sent as JSON.
  const decoded = sdk.data.data[0].embedding;
  floats.body.data[0].embedding.forEach((x, i) => assert.ok(Math.abs(x - decoded[i]) < 1e-6, `element ${i}`));

  const outcome = await eventually(() => r.outcomes().find((o) => o.api === "embeddings"), 3000);
  assert.ok(outcome, "an outcome record for the embeddings call");
  assert.equal(outcome.route, "text-embedding-3-small");
  assert.equal(outcome.environment, "blue");
  assert.equal(outcome.class, "ok");
  assert.equal(outcome.usage?.prompt_tokens ?? outcome.prompt_tokens, 2);
});

test("an embeddings call for a model no embeddings route names goes as the pass-through did, unread", async () => {
  await embeddingsRoute("vectors", "embed-v1");
  for (const model of ["text-embedding-ada-002", "default"]) {
    const body = `{"input":"x",  "model":"${model}"}`;
    const res = await embed(body);
    assert.equal(res.status, 200, res.text);
    assert.equal(res.headers.get("x-bluegreen-environment"), "blue");
    assert.equal(res.headers.get("x-bluegreen-route"), null, "no route served it");
    assert.equal(stack.sim.requests().at(-1).body, body, "sent byte for byte");
  }
  // The router's headers are the router's business only on calls it routes.
  const steered = await embed({ model: "text-embedding-ada-002", input: "x" }, { "x-bluegreen-environment": "bogus" });
  assert.equal(steered.status, 200, steered.text);
  // Not JSON at all: the upstream's own answer comes back.
  const broken = await embed("{not json");
  assert.equal(broken.status, 400);
  assert.match(broken.body.error.message, /simulator: body is not JSON/);
  // A chat call naming an embeddings route is refused.
  const chat = await fetch(`${r.url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ model: "vectors", messages: [{ role: "user", content: "hi" }] }),
  });
  assert.equal(chat.status, 400);
  const err = (await chat.json()).error;
  assert.equal(err.code, "model_not_supported");
  assert.match(err.message, /serves embeddings: call POST \/v1\/embeddings/);
});

test("a live split and a live step are refused on an embeddings route; its kind cannot change", async () => {
  await embeddingsRoute("frozen", "embed-v1");
  const split = await r.admin("PUT", "routes/frozen/split", { green_percent: 10 });
  assert.equal(split.status, 400, split.text);
  assert.equal(split.body.error.param, "green_percent");
  assert.match(split.body.error.message, /embeddings route: vectors of two models do not compare/);
  const live = await r.admin("POST", "routes/frozen/rollouts", {
    green_model: "embed-v2",
    steps: [{ green_percent: 10, hold_seconds: 60 }],
  });
  assert.equal(live.status, 400, live.text);
  assert.match(live.body.error.message, /shadow steps/);
  const kind = await r.admin("PUT", "routes/frozen", { blue_model: "embed-v1" });
  assert.equal(kind.status, 409, kind.text);
  assert.match(kind.body.error.message, /kind cannot change/);
  const listed = (await r.admin("GET", "routes")).body.routes.find((x) => x.name === "frozen");
  assert.equal(listed.kind, "embeddings");
  const dflt = await r.admin("PUT", "routes/default", { blue_model: "m", kind: "embeddings" });
  assert.equal(dflt.status, 400, dflt.text);
});

test("a shadow rollout copies embeddings to green, holds on its last step until promoted, and a forced client gets green's vectors", async () => {
  await embeddingsRoute("index", "embed-v1");
  const started = await r.admin("POST", "routes/index/rollouts", { green_model: "embed-v2", health: { min_requests: 20 } });
  assert.equal(started.status, 201, started.text);
  assert.equal(started.body.green_percent, 0);
  assert.equal(started.body.shadow_percent, 10, "the default ladder: one shadow step of 10%");
  // Every user is served by blue.
  const n = 300;
  const served = await pool(n, 8, (i) => embed({ model: "index", input: [`text ${i}`] }));
  for (const s of served) {
    assert.equal(s.status, 200, s.text);
    assert.equal(s.headers.get("x-bluegreen-environment"), "blue");
    assert.equal(s.headers.get("x-bluegreen-model"), "embed-v1");
  }
  const copies = () => stack.sim.requests().filter((q) => q.path === "/v1/embeddings" && JSON.parse(q.body).model === "embed-v2");
  const seen = await eventually(() => copies().length >= 10 && copies().length, 5000);
  assert.ok(seen >= 10 && seen <= 60, `about 10% of ${n} copied: ${seen}`);

  // The re-index job forces green and gets green's vectors.
  const forced = await embed({ model: "index", input: "text 1", encoding_format: "float" }, { "x-bluegreen-environment": "green" });
  assert.equal(forced.status, 200, forced.text);
  assert.equal(forced.headers.get("x-bluegreen-environment"), "green");
  assert.equal(forced.headers.get("x-bluegreen-model"), "embed-v2");

  const status = await eventually(async () => {
    const s = (await r.admin("GET", "routes/index/status")).body;
    return s.stats.shadow.step.pairs >= seen && s;
  }, 8000);
  assert.ok(status, "the copies were paired and counted");
  assert.equal(status.stats.shadow.step.green.errors, 0);

  // The step holds its hour; the operator promotes when green's index is built.
  const again = await r.admin("POST", "routes/index/rollouts", { green_model: "embed-v3" });
  assert.equal(again.status, 409, "one rollout at a time");
  await r.tick();
  assert.equal((await r.admin("GET", "routes/index/status")).body.phase, "progressing");
  const promoted = await r.admin("POST", "routes/index/promote");
  assert.equal(promoted.status, 200, promoted.text);
  assert.equal(promoted.body.phase, "completed");
  assert.equal(promoted.body.blue_model, "embed-v2");
  const after = await embed({ model: "index", input: "x" });
  assert.equal(after.headers.get("x-bluegreen-model"), "embed-v2");
});

test("a green whose vectors do not keep one length is rolled back from its shadow step", async () => {
  await embeddingsRoute("wobbly", "embed-v1");
  await stack.sim.setRules({ "embed-bad": { answer: "mixed-dims" } });
  const started = await r.admin("POST", "routes/wobbly/rollouts", {
    green_model: "embed-bad",
    steps: [{ shadow_percent: 100, hold_seconds: 600 }],
    health: { min_requests: 20 },
  });
  assert.equal(started.status, 201, started.text);
  const n = 80;
  const served = await pool(n, 8, (i) => embed({ model: "wobbly", input: [`a ${i}`, `b ${i}`] }));
  served.forEach((s) => assert.equal(s.status, 200, s.text));
  const status = await eventually(async () => {
    const s = (await r.admin("GET", "routes/wobbly/status")).body;
    return s.stats.shadow.step.pairs >= n && s;
  }, 8000);
  assert.ok(status, "every copy paired");
  assert.equal(status.stats.shadow.step.green.defects_by_class.dimension_mismatch, n, JSON.stringify(status.stats.shadow.step.green));
  await r.tick();
  const after = (await r.admin("GET", "routes/wobbly/status")).body;
  assert.equal(after.phase, "rolled_back", JSON.stringify(after.verdict));
  assert.match(after.verdict.reasons.join(" | "), /green answer defects: seen on green only \(80 of 80 vs 0 of 80\)/);
});

test("a passed last shadow step holds until the operator promotes", async () => {
  await embeddingsRoute("ready", "embed-v1");
  const started = await r.admin("POST", "routes/ready/rollouts", {
    green_model: "embed-v2",
    steps: [{ shadow_percent: 100, hold_seconds: 0 }],
    health: { min_requests: 20 },
  });
  assert.equal(started.status, 201, started.text);
  const n = 400;
  await pool(n, 8, (i) => embed({ model: "ready", input: [`t ${i}`] }));
  const counted = await eventually(async () => {
    const s = (await r.admin("GET", "routes/ready/status")).body;
    return s.stats.shadow.step.pairs >= n && s;
  }, 8000);
  assert.ok(counted, "every copy paired");
  await r.tick();
  const after = (await r.admin("GET", "routes/ready/status")).body;
  assert.equal(after.verdict?.status, "pass", JSON.stringify(after.verdict));
  assert.equal(after.phase, "progressing", "no completion without the operator");
  assert.equal(after.blue_model, "embed-v1");
});

test("a green whose answers change vector length from one to the next is rolled back, naming the lengths", async () => {
  await embeddingsRoute("drifting", "embed-v1");
  await stack.sim.setRules({ "embed-drift": { answer: "length-wobble" } });
  const started = await r.admin("POST", "routes/drifting/rollouts", {
    green_model: "embed-drift",
    steps: [{ shadow_percent: 100, hold_seconds: 600 }],
    health: { min_requests: 20 },
  });
  assert.equal(started.status, 201, started.text);
  const n = 40;
  await pool(n, 4, (i) => embed({ model: "drifting", input: `x ${i}` }));
  const status = await eventually(async () => {
    const s = (await r.admin("GET", "routes/drifting/status")).body;
    return s.stats.shadow.step.pairs >= n && s;
  }, 8000);
  assert.ok(status, "every copy paired");
  const green = status.stats.shadow.step.green;
  assert.equal(green.defects, 0, "each answer is fine on its own");
  assert.deepEqual(green.vector_lengths, { min: 256, max: 257 });
  assert.deepEqual(status.stats.shadow.step.blue.vector_lengths, { min: 256, max: 256 });
  await r.tick();
  const after = (await r.admin("GET", "routes/drifting/status")).body;
  assert.equal(after.phase, "rolled_back", JSON.stringify(after.verdict));
  assert.equal(after.verdict.reasons[0], "green's vectors came in lengths from 256 to 257: an index holds one length");
});
