// The API surface: bad input, unknown paths and methods, /v1/* pass-through, and auth modes.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { ROOT, startStack, chat, CHAT } from "./harness.mjs";

let stack;
let url;
before(async () => {
  stack = await startStack();
  url = stack.router.url;
});
after(() => stack?.close());

/** Asserts an OpenAI-shaped error body. */
function assertOpenAIError(r, status, { code, param, type = "invalid_request_error" } = {}) {
  assert.equal(r.status, status, r.text);
  assert.match(r.headers.get("content-type"), /application\/json/);
  assert.equal(typeof r.body?.error?.message, "string", r.text);
  assert.ok(r.body.error.message.length > 10);
  assert.equal(r.body.error.type, type);
  assert.ok("param" in r.body.error && "code" in r.body.error, r.text);
  if (code) assert.equal(r.body.error.code, code);
  if (param !== undefined) assert.equal(r.body.error.param, param);
}

test("every bad input gets a 4xx in OpenAI's error shape and never reaches the upstream", async () => {
  stack.sim.reset();
  const cases = [
    ["{not json", 400, "invalid_json", null],
    ["", 400, "invalid_json", null],
    ['[{"role":"user"}]', 400, "invalid_body", null],
    ['"hello"', 400, "invalid_body", null],
    ["{}", 400, "invalid_type", "messages"],
    ['{"messages":"hi"}', 400, "invalid_type", "messages"],
    ['{"messages":{"role":"user"}}', 400, "invalid_type", "messages"],
    ['{"messages":[],"model":42}', 400, "invalid_type", "model"],
    ['{"messages":[],"model":null}', 400, "invalid_type", "model"],
    ['{"messages":[],"stream":"yes"}', 400, "invalid_type", "stream"],
  ];
  for (const [body, status, code, param] of cases) {
    const r = await chat(url, body);
    assertOpenAIError(r, status, { code, param });
    assert.match(r.headers.get("x-bluegreen-request-id"), /^[0-9a-f]{32}$/);
  }
  const badEnv = await chat(url, CHAT, { "x-bluegreen-environment": "staging" });
  assertOpenAIError(badEnv, 400, { code: "invalid_environment", param: "x-bluegreen-environment" });
  assert.equal(stack.sim.requests().length, 0);
});

test("a body over MAX_BODY_BYTES (default 10 MiB) gets a 413", async () => {
  const big = JSON.stringify({ messages: [{ role: "user", content: "x".repeat(10 * 1024 * 1024) }] });
  const r = await chat(url, big);
  assertOpenAIError(r, 413, { code: "request_too_large" });
  assert.match(r.body.error.message, /10485760 bytes/);
  // A 1 MiB body, well within the default 10 MiB limit, is accepted.
  const ok = JSON.stringify({ messages: [{ role: "user", content: "x".repeat(1024 * 1024) }] });
  assert.equal((await chat(url, ok)).status, 200);
});

test("a body sent without a content-length (chunked) is still capped", async (t) => {
  const s = await startStack({ MAX_BODY_BYTES: "1000" });
  t.after(() => s.close());
  const body = new ReadableStream({
    start(c) {
      for (let i = 0; i < 10; i++) c.enqueue(new TextEncoder().encode(" ".repeat(200)));
      c.enqueue(new TextEncoder().encode(JSON.stringify(CHAT)));
      c.close();
    },
  });
  const res = await fetch(`${s.router.url}/v1/chat/completions`, { method: "POST", body, duplex: "half" });
  assert.equal(res.status, 413);
  assert.equal((await res.json()).error.code, "request_too_large");
});

test("unknown paths get 404 and wrong methods 405, as JSON", async () => {
  for (const path of ["/", "/v2/chat/completions", "/chat/completions", "/administrator"]) {
    const res = await fetch(`${url}${path}`);
    const text = await res.text();
    assertOpenAIError({ status: res.status, headers: res.headers, body: JSON.parse(text), text }, 404, { code: "not_found" });
  }
  for (const [method, path] of [["GET", "/v1/chat/completions"], ["PUT", "/v1/chat/completions"], ["POST", "/healthz"], ["DELETE", "/healthz"]]) {
    const res = await fetch(`${url}${path}`, { method });
    const text = await res.text();
    assertOpenAIError({ status: res.status, headers: res.headers, body: JSON.parse(text), text }, 405, { code: "method_not_allowed" });
  }
});

test("the dashboard comes from the static assets with the Worker's security headers, on the Worker's route: GET and HEAD, a trailing slash, 405 otherwise", async () => {
  const expected = {
    "content-type": "text/html; charset=utf-8",
    "cache-control": "no-store",
    "content-security-policy":
      "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; " +
      "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
  };
  const page = fs.readFileSync(path.join(ROOT, "assets/dashboard.html"), "utf8");
  for (const [method, route] of [["GET", "/dashboard"], ["HEAD", "/dashboard"], ["GET", "/dashboard/"], ["GET", "/dashboard?x=1"]]) {
    const res = await fetch(`${url}${route}`, { method });
    assert.equal(res.status, 200, `${method} ${route}`);
    for (const [name, value] of Object.entries(expected)) assert.equal(res.headers.get(name), value, `${method} ${route}: ${name}`);
    // Only the file's bytes come from the assets, none of their caching headers.
    assert.equal(res.headers.get("etag"), null, `${method} ${route}: etag`);
    assert.equal(await res.text(), method === "HEAD" ? "" : page, `${method} ${route}`);
  }
  // The Worker runs first: the assets answer nothing by their own paths.
  for (const [method, route, status, code] of [
    ["POST", "/dashboard", 405, "method_not_allowed"],
    ["GET", "/dashboard.html", 404, "not_found"],
    ["GET", "/assets/dashboard.html", 404, "not_found"],
  ]) {
    const res = await fetch(`${url}${route}`, { method });
    const text = await res.text();
    assertOpenAIError({ status: res.status, headers: res.headers, body: JSON.parse(text), text }, status, { code });
  }
});

test("GET /v1/models lists the routes to a client whose key the upstream takes; the /v1/* calls PASS_THROUGH lists pass through unchanged", async () => {
  stack.sim.reset();
  const res = await fetch(`${url}/v1/models?limit=5`, { headers: { authorization: "Bearer client-key", "openai-organization": "org-1" } });
  assert.equal(res.status, 200);
  const body = await res.json();
  assert.equal(body.object, "list");
  assert.deepEqual(body.data.map((m) => [m.id, m.object]), [["default", "model"]]);
  // The upstream was asked whether it takes the key, with the client's own headers.
  const seen = stack.sim.requests().at(-1);
  assert.equal(seen.path, "/v1/models");
  assert.equal(seen.headers.authorization, "Bearer client-key");
  assert.equal(seen.headers["openai-organization"], "org-1");

  const post = await fetch(`${url}/v1/embeddings`, { method: "POST", headers: { "content-type": "application/json" }, body: '{"input":"x","model":"m"}' });
  assert.equal(post.status, 200); // no embeddings route: the simulator's own answer, as it is
  assert.equal((await post.json()).model, "m", "the model was not rewritten");
  assert.equal(stack.sim.requests().at(-1).body, '{"input":"x","model":"m"}');
});

test("a trailing slash reaches the same route", async () => {
  const res = await fetch(`${url}/v1/chat/completions/`, { method: "POST", body: JSON.stringify(CHAT) });
  assert.equal(res.status, 200);
  assert.equal(res.headers.get("x-bluegreen-environment"), "blue");
  assert.equal((await fetch(`${url}/healthz/`)).status, 200);
});

test("pass-through bodies stream to the upstream unbuffered, so MAX_BODY_BYTES (for chat bodies) does not cap them", async (t) => {
  const s = await startStack({ MAX_BODY_BYTES: "1000", PASS_THROUGH: "POST /v1/audio/transcriptions" });
  t.after(() => s.close());
  const upload = "a".repeat(50_000);
  const res = await fetch(`${s.router.url}/v1/audio/transcriptions`, { method: "POST", headers: { "content-type": "text/plain" }, body: upload });
  assert.equal(res.status, 404); // the simulator has no such route: its answer comes back
  assert.equal(s.sim.requests().at(-1).body, upload);
  assert.equal((await chat(s.router.url, JSON.stringify({ ...CHAT, pad: "x".repeat(2000) }))).status, 413);
});

test("without HOLYSHEEP_API_KEY the client's own Authorization goes upstream", async () => {
  stack.sim.reset();
  const r = await chat(url, CHAT, { authorization: "Bearer sk-client-own", "openai-organization": "org-own" });
  assert.equal(r.status, 200);
  assert.equal(stack.sim.requests().at(-1).headers.authorization, "Bearer sk-client-own");
  assert.equal(stack.sim.requests().at(-1).headers["openai-organization"], "org-own", "with its own key, its own account");
  const anon = await chat(url, CHAT);
  assert.equal(anon.status, 200);
  assert.equal(stack.sim.requests().at(-1).headers.authorization, undefined);
});

test("with HOLYSHEEP_API_KEY and ROUTER_API_KEYS, clients need a router key and the HolySheep key goes upstream", async (t) => {
  const s = await startStack({ HOLYSHEEP_API_KEY: "sk-holysheep", ROUTER_API_KEYS: "rk-one, rk-two" });
  t.after(() => s.close());
  for (const auth of [undefined, "Bearer wrong", "Bearer rk-on", "rk-one", "Bearer sk-holysheep"]) {
    const r = await chat(s.router.url, CHAT, auth ? { authorization: auth } : {});
    assertOpenAIError(r, 401, { code: "invalid_api_key" });
  }
  const models = await fetch(`${s.router.url}/v1/models`);
  assert.equal(models.status, 401);
  assert.equal(s.sim.requests().length, 0, "an unauthenticated request reached the upstream");
  for (const key of ["rk-one", "rk-two"]) {
    const r = await chat(s.router.url, CHAT, { authorization: `Bearer ${key}` });
    assert.equal(r.status, 200);
    assert.equal(s.sim.requests().at(-1).headers.authorization, "Bearer sk-holysheep");
  }
  // The router's key goes without the client's choice of upstream account or project.
  const steered = await chat(s.router.url, CHAT, {
    authorization: "Bearer rk-one",
    "openai-organization": "org-someone-else",
    "openai-project": "proj_someone_else",
    "openai-beta": "assistants=v2",
  });
  assert.equal(steered.status, 200);
  const sent = s.sim.requests().at(-1).headers;
  assert.equal(sent["openai-organization"], undefined);
  assert.equal(sent["openai-project"], undefined);
  assert.equal(sent["openai-beta"], "assistants=v2", "other OpenAI headers still go");
  const listed = await fetch(`${s.router.url}/v1/models`, { headers: { authorization: "Bearer rk-two" } });
  assert.equal(listed.status, 200);
  assert.equal(s.sim.requests().at(-1).headers.authorization, "Bearer sk-holysheep");
  // No secret ever reaches the worker's logs.
  const logged = s.router.logs.map((l) => l.message).join("\n");
  assert.ok(logged.length > 0);
  for (const secret of ["sk-holysheep", "rk-one", "rk-two"]) assert.ok(!logged.includes(secret), secret);
});

test("a refused request's body is read, so a kept-alive connection serves the client's next request", async (t) => {
  // workerd resets a kept-alive connection whose request body went unread, and the client's
  // next request on it fails (ECONNRESET): 3 of 200 refused POSTs did before the router read
  // small bodies on every refusal.
  const s = await startStack({ HOLYSHEEP_API_KEY: "sk-holysheep", ROUTER_API_KEYS: "rk-one" });
  t.after(() => s.close());
  const refusals = [
    ["/v1/chat/completions", 401],
    ["/v1/no-such-call", 404],
    ["/admin/rollback", 503],
    ["/v1/feedback", 503],
  ];
  let failed = 0;
  for (let i = 0; i < 200; i++) {
    const [path, status] = refusals[i % refusals.length];
    try {
      const res = await fetch(`${s.router.url}${path}`, { method: "POST", body: JSON.stringify({ ...CHAT, i }) });
      const text = await res.text();
      assert.equal(res.status, status, `${path}: ${text}`);
    } catch (e) {
      if (e instanceof assert.AssertionError) throw e;
      failed++;
    }
  }
  assert.equal(failed, 0, "requests that failed on a reused connection");
});

test("HOLYSHEEP_API_KEY without ROUTER_API_KEYS refuses every request: never an open relay", async (t) => {
  const s = await startStack({ HOLYSHEEP_API_KEY: "sk-holysheep" });
  t.after(() => s.close());
  for (const path of ["/v1/chat/completions", "/v1/models", "/healthz"]) {
    const res = await fetch(`${s.router.url}${path}`, {
      method: path.includes("chat") ? "POST" : "GET",
      headers: { authorization: "Bearer anything" },
      body: path.includes("chat") ? JSON.stringify(CHAT) : undefined,
    });
    const text = await res.text();
    assertOpenAIError({ status: res.status, headers: res.headers, body: JSON.parse(text), text }, 500, {
      code: "router_misconfigured",
      type: "server_error",
    });
    assert.match(text, /ROUTER_API_KEYS/);
    assert.ok(!text.includes("sk-holysheep"));
  }
  assert.equal(s.sim.requests().length, 0);
});

test("an invalid setting's error names the variable and its rule, never its value, in the answer and the log", async (t) => {
  const hook = "hooks.slack.com/services/T0000/B0000/XXXXXXXXXXXXXXXXXXXXXXXX";
  const s = await startStack({ ALERT_WEBHOOK_URL: hook });
  t.after(() => s.close());
  const health = await fetch(`${s.router.url}/healthz`);
  const text = await health.text();
  assert.equal(health.status, 500);
  assert.match(text, /ALERT_WEBHOOK_URL/);
  assert.match(text, /must be an http:\/\/ or https:\/\/ URL/);
  assert.ok(!text.includes("XXXXXXXX") && !text.includes("hooks.slack"), text);
  const r = await chat(s.router.url);
  assert.equal(r.status, 500);
  assert.ok(!r.text.includes("XXXXXXXX"), r.text);
  const logged = s.router.logs.map((l) => l.message).join("\n");
  assert.match(logged, /ALERT_WEBHOOK_URL/);
  assert.ok(!logged.includes("XXXXXXXX"), logged);
});

test("an invalid setting is reported by name on every request", async (t) => {
  const s = await startStack({ GREEN_PERCENT: "lots" });
  t.after(() => s.close());
  const r = await chat(s.router.url);
  assertOpenAIError(r, 500, { code: "router_misconfigured", type: "server_error" });
  assert.match(r.body.error.message, /GREEN_PERCENT/);
});
