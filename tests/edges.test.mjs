// The request path's edges (issue 11, parts 4–6): which paths the pass-through forwards, paths
// refused before any routing, model names checked where they enter, and the headers that never
// cross the proxy (cookies, and those a Connection header names).
//
// Requests go out through node:http, whose request line carries the path exactly as written:
// `fetch` would parse it with `new URL()` first, which removes `%2e%2e` segments and turns
// backslashes into slashes before anything is sent.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import { startStack, chat, setRouting, eventually, CHAT } from "./harness.mjs";

/** One request with the path as written; returns { status, headers, body (parsed), text }. */
function raw(base, method, path, { headers = {}, body } = {}) {
  const u = new URL(base);
  return new Promise((resolve, reject) => {
    const req = http.request({ host: u.hostname, port: u.port, method, path, headers, agent: false }, (res) => {
      const chunks = [];
      res.on("data", (c) => chunks.push(c));
      res.on("end", () => {
        const text = Buffer.concat(chunks).toString("utf8");
        let json;
        try {
          json = JSON.parse(text);
        } catch {
          json = undefined;
        }
        resolve({ status: res.statusCode, headers: res.headers, body: json, text });
      });
      res.on("error", reject);
    });
    req.on("error", reject);
    req.end(body);
  });
}

/** Asserts a router refusal: the status, OpenAI's error shape, the code and a request id. */
function assertRefused(r, status, code, what) {
  assert.equal(r.status, status, `${what}: ${r.text}`);
  assert.equal(r.body?.error?.code, code, `${what}: ${r.text}`);
  assert.equal(r.body.error.type, status >= 500 ? "server_error" : "invalid_request_error", what);
  assert.ok("param" in r.body.error && r.body.error.message.length > 10, what);
  assert.match(r.headers["x-bluegreen-request-id"] ?? "", /^[0-9a-f]{32}$/, what);
}

const JSON_HEADERS = { "content-type": "application/json" };

let stack;
before(async () => {
  stack = await startStack({ ADMIN_TOKEN: "adm" }, {}, { direct: true });
});
after(() => stack?.close());

test("paths with empty segments or encoded separators are refused with a 400, before any routing, and never reach the upstream", async () => {
  const { url, directUrl } = stack.router;
  const cases = [
    ["POST", "/v1//chat/completions"],
    ["POST", "/v1/chat//completions"],
    ["POST", "//v1/chat/completions"],
    ["GET", "/v1//models"],
    ["GET", "/v1/models//"],
    ["GET", "/v1/models%2Fx"],
    ["GET", "/v1/models%2fx"],
    ["GET", "/v1/models%5Cx"],
    ["GET", "/v1/models%5cx"],
    ["GET", "/v1/files%2F..%2Fmodels"],
    ["POST", "/v1/chat%2Fcompletions"],
    ["GET", "/admin//status"],
  ];
  for (const base of [url, directUrl]) {
    stack.sim.reset();
    for (const [method, path] of cases) {
      const r = await raw(base, method, path, { headers: JSON_HEADERS, body: method === "POST" ? JSON.stringify(CHAT) : undefined });
      assertRefused(r, 400, "invalid_path", `${method} ${path}`);
    }
    assert.deepEqual(stack.sim.requests(), [], "a refused path reached the upstream");
  }
});

test("dot segments, plain or encoded, and backslashes are refused with a 400 where the runtime passes them on", async () => {
  // workerd's own socket passes `%2e` segments and backslashes on as they came (it resolves
  // plain `.` and `..` itself, as does every URL parser in front of a Worker).
  stack.sim.reset();
  const cases = [
    ["GET", "/v1/%2e%2e/files"],
    ["GET", "/v1/%2E%2E/files"],
    ["GET", "/v1/.%2e/v1/files"],
    ["GET", "/v1/models/%2e/x"],
    ["GET", "/v1/x/%2e%2e/models"],
    ["POST", "/v1/chat/completions/%2e"],
    ["POST", "/v1/x/%2e%2e/chat/completions"],
    ["GET", "/v1/models\\x"],
    ["GET", "/v1\\models"],
    ["POST", "/admin/%2e%2e/internal/tick"],
  ];
  for (const [method, path] of cases) {
    const r = await raw(stack.router.directUrl, method, path, { headers: JSON_HEADERS, body: method === "POST" ? JSON.stringify(CHAT) : undefined });
    assertRefused(r, 400, "invalid_path", `${method} ${path}`);
  }
  // Through Miniflare's entry Worker (like Cloudflare's URL normalization in front of a
  // deployed Worker) the same dot segments arrive resolved: `/files` is no route of ours.
  const resolved = await raw(stack.router.url, "GET", "/v1/%2e%2e/files");
  assertRefused(resolved, 404, "not_found", "resolved /files");
  assert.deepEqual(stack.sim.requests(), [], "a refused path reached the upstream");
});

test("the default pass-through forwards embeddings, legacy completions and moderations, and nothing else", async () => {
  const { url } = stack.router;
  stack.sim.reset();
  const forwarded = [
    ["POST", "/v1/embeddings", 200], // no embeddings route: passed through, unread
    ["POST", "/v1/completions", 200], // the simulator's legacy text completion
    ["POST", "/v1/moderations", 404],
  ];
  for (const [method, path, status] of forwarded) {
    const body = method === "POST" ? '{"input":"x","model":"m"}' : undefined;
    const r = await raw(url, method, path, { headers: JSON_HEADERS, body });
    assert.equal(r.status, status, `${method} ${path}: ${r.text}`);
    assert.equal(r.headers["x-bluegreen-environment"], "blue", `${method} ${path}`);
    const seen = stack.sim.requests().at(-1);
    assert.deepEqual([seen?.method, seen?.path], [method, path], `${method} ${path} did not reach the upstream as sent`);
    if (body) assert.equal(seen.body, body);
  }
  // The models are the routes, answered by the router (the upstream is asked only whether it
  // takes the client's key).
  for (const path of ["/v1/models?limit=5", "/v1/models/"]) {
    const r = await raw(url, "GET", path, { headers: JSON_HEADERS });
    assert.equal(r.status, 200, `${path}: ${r.text}`);
    assert.deepEqual(r.body.data.map((m) => m.id), ["default"], path);
  }
  assert.equal((await raw(url, "GET", "/v1/models/default")).body.id, "default");
  assertRefused(await raw(url, "GET", "/v1/models/deepseek-v3"), 404, "model_not_found", "a model that is no route");
  assertRefused(await raw(url, "GET", "/v1/models/a/b"), 404, "model_not_found", "a/b");
  assertRefused(await raw(url, "POST", "/v1/models", { headers: JSON_HEADERS, body: "{}" }), 405, "method_not_allowed", "POST /v1/models");
  assertRefused(await raw(url, "DELETE", "/v1/models/ft-model"), 405, "method_not_allowed", "DELETE /v1/models/ft-model");

  stack.sim.reset();
  const refused = [
    ["GET", "/v1/files"],
    ["POST", "/v1/files"],
    ["DELETE", "/v1/files/file-abc"],
    ["GET", "/v1/files/file-abc/content"],
    ["GET", "/v1/batches"],
    ["POST", "/v1/batches"],
    ["POST", "/v1/assistants"],
    ["POST", "/v1/fine_tuning/jobs"],
    ["POST", "/v1/audio/transcriptions"],
    ["POST", "/v1/images/generations"],
    ["GET", "/v1/embeddings"],
    ["GET", "/v1/Models"],
    ["GET", "/v1"],
    ["GET", "/v1/"],
  ];
  for (const [method, path] of refused) {
    const r = await raw(url, method, path, { headers: JSON_HEADERS, body: method === "POST" ? "{}" : undefined });
    assertRefused(r, 404, "not_found", `${method} ${path}`);
    assert.match(r.body.error.message, /PASS_THROUGH/, `${method} ${path}`);
    assert.doesNotMatch(r.body.error.message, /\s{2}/, "one space between words");
  }
  assert.deepEqual(stack.sim.requests(), [], "a path off the allowlist reached the upstream");
});

test("with the router's own upstream key, the allowlist holds as it does without one", async (t) => {
  const s = await startStack({ HOLYSHEEP_API_KEY: "sk-holysheep", ROUTER_API_KEYS: "rk-one" });
  t.after(() => s.close());
  for (const auth of [{ authorization: "Bearer rk-one" }, {}]) {
    for (const [method, path] of [["GET", "/v1/files"], ["DELETE", "/v1/files/file-abc"], ["POST", "/v1/assistants"], ["GET", "/v1/batches"]]) {
      const r = await raw(s.router.url, method, path, { headers: { ...JSON_HEADERS, ...auth }, body: method === "POST" ? "{}" : undefined });
      assertRefused(r, 404, "not_found", `${method} ${path} ${JSON.stringify(auth)}`);
    }
    const r = await raw(s.router.url, "POST", "/v1//chat/completions", { headers: { ...JSON_HEADERS, ...auth }, body: JSON.stringify(CHAT) });
    assertRefused(r, 400, "invalid_path", `/v1//chat/completions ${JSON.stringify(auth)}`);
  }
  assert.deepEqual(s.sim.requests(), [], "a refused request spent the router's key upstream");
  // On the allowlist: a router key is needed, and the HolySheep key goes upstream.
  const body = '{"model":"deepseek-v3","prompt":"x"}';
  assertRefused(await raw(s.router.url, "POST", "/v1/completions", { headers: JSON_HEADERS, body }), 401, "invalid_api_key", "no key");
  assert.equal(s.sim.requests().length, 0);
  const ok = await raw(s.router.url, "POST", "/v1/completions", { headers: { ...JSON_HEADERS, authorization: "Bearer rk-one" }, body });
  assert.equal(ok.status, 200, ok.text);
  assert.equal(s.sim.requests().at(-1).headers.authorization, "Bearer sk-holysheep");
  // The routes are listed to a router key only, without asking the upstream.
  assertRefused(await raw(s.router.url, "GET", "/v1/models"), 401, "invalid_api_key", "no key");
  const models = await raw(s.router.url, "GET", "/v1/models/default", { headers: { authorization: "Bearer rk-one" } });
  assert.equal(models.status, 200, models.text);
  assert.equal(s.sim.requests().length, 1);
});

test("a pass-through call whose headers come with its whole answer is not cut at FIRST_BYTE_TIMEOUT_MS", async (t) => {
  // A non-streamed legacy completion sends its headers once the answer is done: the router,
  // which does not read the body, waits COMPLETION_TIMEOUT_MS for them, not the first-event
  // limit of streams.
  const slow = await startStack({ FIRST_BYTE_TIMEOUT_MS: "300", COMPLETION_TIMEOUT_MS: "1500" });
  t.after(() => slow.close());
  const body = '{"model":"deepseek-v3","prompt":"x"}';
  const started = Date.now();
  const ok = await raw(slow.router.url, "POST", "/v1/completions", { headers: { ...JSON_HEADERS, "x-sim-delay-ms": "800" }, body });
  assert.equal(ok.status, 200, ok.text);
  assert.equal(ok.body.object, "text_completion");
  assert.ok(Date.now() - started >= 800, "the answer came after the simulated delay");
  // Past COMPLETION_TIMEOUT_MS the client gets the router's 504.
  const late = await raw(slow.router.url, "POST", "/v1/completions", { headers: { ...JSON_HEADERS, "x-sim-delay-ms": "4000" }, body });
  assertRefused(late, 504, "upstream_timeout", "a legacy completion past COMPLETION_TIMEOUT_MS");
});

test("PASS_THROUGH replaces the allowlist; none turns the pass-through off; a bad entry is a named configuration error", async (t) => {
  const custom = await startStack({ PASS_THROUGH: "GET /v1/models, POST /v1/audio/{kind}\n  GET /v1/files/{id}/content" });
  t.after(() => custom.close());
  const { url } = custom.router;
  // An entry for GET /v1/models, written before routes, is no error: the routes answer, and
  // the log says so once.
  const models = await raw(url, "GET", "/v1/models");
  assert.deepEqual(models.body.data.map((m) => m.id), ["default"]);
  const said = custom.router.logs.filter((l) => /PASS_THROUGH lists GET \/v1\/models, which the router now answers/.test(l.message));
  assert.equal(said.length, 1, JSON.stringify(custom.router.logs.map((l) => l.message)));
  custom.sim.reset();
  for (const [method, path] of [["POST", "/v1/audio/transcriptions"], ["POST", "/v1/audio/speech"], ["GET", "/v1/files/file-1/content"]]) {
    const r = await raw(url, method, path, { body: method === "POST" ? "audio" : undefined });
    assert.doesNotMatch(r.text, /PASS_THROUGH/, `${method} ${path}: refused by the router`);
    assert.equal(custom.sim.requests().at(-1)?.path, path, `${method} ${path} was not forwarded`);
  }
  custom.sim.reset();
  for (const [method, path] of [["POST", "/v1/embeddings"], ["GET", "/v1/files/file-1"], ["POST", "/v1/audio/a/b"]]) {
    assertRefused(await raw(url, method, path, { body: method === "POST" ? "{}" : undefined }), 404, "not_found", `${method} ${path}`);
  }
  assert.deepEqual(custom.sim.requests(), []);
  assert.equal((await chat(url)).status, 200, "the chat route is not the pass-through's");

  const off = await startStack({ PASS_THROUGH: "none" });
  t.after(() => off.close());
  assertRefused(await raw(off.router.url, "POST", "/v1/embeddings", { body: "{}" }), 404, "not_found", "POST /v1/embeddings with none");
  assert.deepEqual(off.sim.requests(), []);
  assert.equal((await chat(off.router.url)).status, 200);

  for (const bad of ["GET /v1/files, FETCH /v1/models", "GET /v1/a/../files", "POST /v1/chat/completions"]) {
    const s = await startStack({ PASS_THROUGH: bad });
    try {
      const calls = [await raw(s.router.url, "POST", "/v1/chat/completions", { headers: JSON_HEADERS, body: JSON.stringify(CHAT) }), await raw(s.router.url, "GET", "/v1/models")];
      for (const r of calls) {
        assertRefused(r, 500, "router_misconfigured", bad);
        assert.match(r.body.error.message, /PASS_THROUGH/, bad);
      }
      assert.deepEqual(s.sim.requests(), []);
    } finally {
      await s.close();
    }
  }
});

test("a model name that is not a valid header value is refused where it enters: the admin API, the vars, the routing document", async (t) => {
  const { router } = stack;
  const before = await router.status();
  for (const green_model of ["gem\u0007ini", "mod\u00e8le", "a\tb", "line\nbreak", "x".repeat(257), "\u0000"]) {
    const r = await router.admin("POST", "rollouts", { green_model, steps: [{ green_percent: 10, hold_seconds: 60 }] });
    assert.equal(r.status, 400, `${JSON.stringify(green_model)}: ${r.text}`);
    assert.equal(r.body.error.code, "invalid_value");
    assert.equal(r.body.error.param, "green_model");
  }
  const after = await router.status();
  assert.equal(after.phase, before.phase);
  assert.equal(after.green_model, before.green_model);
  assert.equal((await router.events()).events.filter((e) => e.kind === "started").length, 0);
  // A long name of every visible character and inner spaces is fine.
  const ok = await router.admin("POST", "rollouts", { green_model: "org/Model name:v2.5_(\"x\")~!" + "y".repeat(200), steps: [{ green_percent: 10, hold_seconds: 60 }] });
  assert.equal(ok.status, 201, ok.text);
  assert.equal((await router.admin("POST", "rollback")).status, 200);

  // Vars: a named configuration error on every request; nothing reaches the upstream.
  for (const [name, value] of [["GREEN_MODEL", "bad\u0001name"], ["BLUE_MODEL", "mod\u00e8le"]]) {
    const s = await startStack({ [name]: value });
    try {
      const r = await chat(s.router.url);
      assert.equal(r.status, 500, r.text);
      assert.equal(r.body.error.code, "router_misconfigured");
      assert.match(r.body.error.message, new RegExp(name));
      assert.deepEqual(s.sim.requests(), []);
    } finally {
      await s.close();
    }
  }

  // The routing document: one with a bad model is invalid, so the split in force keeps
  // serving (here the vars: all blue) and /healthz says why; never a 500 after the upstream
  // answered.
  const s = await startStack({ ROUTING_CACHE_SECONDS: "0" });
  t.after(() => s.close());
  await setRouting(s.router, { blue_model: "deepseek-v3", green_model: "green\u0007", green_percent: 100, version: 3 });
  const h = await eventually(async () => {
    const body = await (await fetch(`${s.router.url}/healthz`)).json();
    return body.status === "degraded" ? body : null;
  });
  assert.ok(h, "the document with a bad model was not reported");
  assert.match(h.routing_problem, /green_model/);
  for (const stream of [false, true]) {
    const r = await chat(s.router.url, { ...CHAT, stream });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.headers.get("x-bluegreen-environment"), "blue");
    assert.equal(r.headers.get("x-bluegreen-model"), "deepseek-v3");
  }
  assert.ok(s.sim.requests().length >= 2);
  assert.ok(s.sim.requests().every((q) => !q.body.includes("green\\u0007")), "the bad model went upstream");
});

test("cookies and headers named in Connection do not cross the proxy, either way", async () => {
  const { url } = stack.router;
  const rules = {
    "*": {
      headers: {
        "set-cookie": "upstream_session=abc; Path=/; HttpOnly",
        connection: "keep-alive, x-sim-hop",
        "x-sim-hop": "upstream-only",
        "x-sim-kept": "yes",
      },
    },
  };
  try {
    const clientHeaders = {
      ...JSON_HEADERS,
      cookie: "router_session=secret; other=1",
      connection: "keep-alive, X-Client-Hop",
      "x-client-hop": "client-only",
      "x-client-kept": "yes",
    };
    const calls = [
      ["POST", "/v1/chat/completions", JSON.stringify(CHAT)],
      ["POST", "/v1/chat/completions", JSON.stringify({ ...CHAT, stream: true })],
      ["POST", "/v1/completions", JSON.stringify({ model: "deepseek-v3", prompt: "hi" })],
    ];
    for (const [method, path, body] of calls) {
      stack.sim.reset();
      await stack.sim.setRules(rules);
      const r = await raw(url, method, path, { headers: clientHeaders, body });
      const what = `${method} ${path} ${body ?? ""}`;
      assert.equal(r.status, 200, `${what}: ${r.text}`);
      const seen = stack.sim.requests().at(-1);
      assert.equal(seen.headers["x-client-kept"], "yes", what);
      assert.equal(seen.headers.cookie, undefined, `${what}: the client's cookie went upstream`);
      assert.equal(seen.headers["x-client-hop"], undefined, `${what}: a header named in Connection went upstream`);
      assert.equal(r.headers["x-sim-kept"], "yes", what);
      assert.equal(r.headers["set-cookie"], undefined, `${what}: the upstream's set-cookie came back`);
      assert.equal(r.headers["x-sim-hop"], undefined, `${what}: a header named in Connection came back`);
    }
  } finally {
    stack.sim.reset();
  }
});
