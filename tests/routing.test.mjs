// The split: defaults, the KV document, sticky users, forced environments, body rewriting.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startStack, chat, setRouting, pool, eventually, CHAT } from "./harness.mjs";

let stack;
let url;
before(async () => {
  stack = await startStack({ ROUTING_CACHE_SECONDS: "1" });
  url = stack.router.url;
});
after(() => stack?.close());

let version = 0;
const doc = (green_percent, extra = {}) => ({
  blue_model: "model-blue",
  green_model: "model-green",
  green_percent,
  sticky: true,
  version: ++version,
  updated_at: "2026-11-26T10:00:00Z",
  ...extra,
});

/** Sets the document and waits until the router's /healthz shows it in force. */
async function apply(d) {
  await setRouting(stack.router, d);
  const ok = await eventually(async () => {
    const h = await (await fetch(`${url}/healthz`)).json();
    return h.routing.version === d.version && h.routing.green_percent === d.green_percent;
  }, 5000);
  assert.ok(ok, "document not applied within 5 s");
}

test("without a KV document the vars' defaults apply: all blue", async () => {
  const h = await (await fetch(`${url}/healthz`)).json();
  assert.equal(h.status, "ok");
  assert.equal(h.routing_source, "defaults");
  assert.equal(h.routing.blue_model, "deepseek-v3");
  assert.equal(h.routing.green_model, "gemini-2.5-flash");
  assert.equal(h.routing.green_percent, 0);
  const r = await chat(url);
  assert.equal(r.status, 200);
  assert.equal(r.headers.get("x-bluegreen-environment"), "blue");
  assert.equal(r.headers.get("x-bluegreen-model"), "deepseek-v3");
  assert.match(r.headers.get("x-bluegreen-request-id"), /^[0-9a-f]{32}$/);
  assert.equal(r.body.model, "deepseek-v3");
  assert.match(r.body.choices[0].message.content, /Hello from deepseek-v3/);
});

test("2000 requests at 30% green land within the binomial 99.9% bound", async () => {
  await apply(doc(30, { sticky: false }));
  const envs = await pool(2000, 16, async () => {
    const r = await chat(url);
    assert.equal(r.status, 200);
    return r.headers.get("x-bluegreen-environment");
  });
  const green = envs.filter((e) => e === "green").length;
  // n = 2000, p = 0.3: mean 600, sd = sqrt(2000 * 0.3 * 0.7) = 20.49; the two-sided 99.9%
  // interval is 600 ± 3.29 sd = 600 ± 67.4 -> [533, 667].
  assert.ok(green >= 533 && green <= 667, `green = ${green} of 2000`);
  assert.equal(envs.filter((e) => e === "blue").length, 2000 - green);
});

test("a sticky key keeps its environment at a fixed percentage, and raising it only moves users to green", async () => {
  await apply(doc(30));
  const users = Array.from({ length: 150 }, (_, i) => `user-${i}`);
  const first = {};
  // Three rounds at 30%: the header key and the body's `user` field each pin the user.
  for (let round = 0; round < 3; round++) {
    await pool(users.length, 8, async (i) => {
      const u = users[i];
      const viaHeader = await chat(url, CHAT, { "x-bluegreen-sticky-key": u });
      const viaUser = await chat(url, { ...CHAT, user: u });
      const e1 = viaHeader.headers.get("x-bluegreen-environment");
      const e2 = viaUser.headers.get("x-bluegreen-environment");
      assert.equal(e1, e2, `${u}: header and user field disagree`);
      first[u] ??= e1;
      assert.equal(e1, first[u], `${u} changed environment at a fixed 30%`);
    });
  }
  const greenAt30 = users.filter((u) => first[u] === "green").length;
  // 150 users at 30%: mean 45, sd 5.6; anything in 10..80 means the key really picked.
  assert.ok(greenAt30 > 10 && greenAt30 < 80, `green users at 30% = ${greenAt30}`);

  await apply(doc(60));
  let moved = 0;
  await pool(users.length, 8, async (i) => {
    const u = users[i];
    const e = (await chat(url, CHAT, { "x-bluegreen-sticky-key": u })).headers.get("x-bluegreen-environment");
    if (first[u] === "green") assert.equal(e, "green", `${u} moved green -> blue when raising 30 -> 60%`);
    if (first[u] === "blue" && e === "green") moved++;
  });
  assert.ok(moved > 0, "raising to 60% moved nobody to green");
});

test("x-bluegreen-environment forces the environment", async () => {
  await apply(doc(0));
  for (const env of ["green", "blue", "GREEN"]) {
    const r = await chat(url, CHAT, { "x-bluegreen-environment": env });
    assert.equal(r.status, 200);
    assert.equal(r.headers.get("x-bluegreen-environment"), env.toLowerCase());
    assert.equal(r.headers.get("x-bluegreen-model"), `model-${env.toLowerCase()}`);
  }
  const bad = await chat(url, CHAT, { "x-bluegreen-environment": "purple" });
  assert.equal(bad.status, 400);
  assert.equal(bad.body.error.type, "invalid_request_error");
  assert.equal(bad.body.error.param, "x-bluegreen-environment");
});

test("the body reaches the upstream untouched except for the model", async () => {
  await apply(doc(0));
  stack.sim.reset();
  const raw =
    '{"model":"whatever-the-client-said","messages":[{"role":"user","content":"caf\\u00e9"}],' +
    '"temperature":0.70000000000000001,"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object"}}}],' +
    '"response_format":{"type":"json_object"},"stream_options":{"include_usage":true},"x_vendor":{"a":[1,2.50,null]}}';
  const r = await chat(url, raw);
  assert.equal(r.status, 200);
  const seen = stack.sim.requests().at(-1);
  assert.equal(seen.path, "/v1/chat/completions");
  assert.equal(seen.body, raw.replace('"whatever-the-client-said"', '"model-blue"'));
  assert.equal(seen.headers["x-bluegreen-environment"], undefined);
});

test("a KV change takes effect within the cache time (1 s here)", async () => {
  await apply(doc(0));
  assert.equal((await chat(url)).headers.get("x-bluegreen-environment"), "blue");
  await setRouting(stack.router, doc(100));
  const t0 = Date.now();
  let firstGreen;
  while (Date.now() - t0 < 5000) {
    if ((await chat(url)).headers.get("x-bluegreen-environment") === "green") {
      firstGreen = Date.now() - t0;
      break;
    }
  }
  // Cache time 1 s; allow scheduling slack on a loaded 2-core machine.
  assert.ok(firstGreen !== undefined && firstGreen <= 2500, `took ${firstGreen} ms`);
  // After the switch, every request is green.
  const envs = await pool(50, 8, async () => (await chat(url)).headers.get("x-bluegreen-environment"));
  assert.deepEqual(new Set(envs), new Set(["green"]));
});

test("an invalid KV document is ignored: the last good one keeps serving and /healthz says why", async () => {
  const good = doc(100);
  await apply(good);
  await setRouting(stack.router, '{"blue_model":"x","green_model":"y","green_percent":250}');
  const h = await eventually(async () => {
    const h = await (await fetch(`${url}/healthz`)).json();
    return h.status === "degraded" ? h : null;
  }, 5000);
  assert.ok(h, "healthz never reported the bad document");
  assert.match(h.routing_problem, /green_percent.*between 0 and 100/);
  assert.equal(h.routing.version, good.version);
  const r = await chat(url);
  assert.equal(r.status, 200);
  assert.equal(r.headers.get("x-bluegreen-model"), "model-green");
  // Logged once, not once per refresh.
  await new Promise((r) => setTimeout(r, 2500));
  const logged = stack.router.logs.filter((l) => l.message.includes("green_percent` must be between 0 and 100"));
  assert.equal(logged.length, 1, JSON.stringify(logged));

  await setRouting(stack.router, "not json at all");
  const h2 = await eventually(async () => {
    const h = await (await fetch(`${url}/healthz`)).json();
    return /not a valid routing document/.test(h.routing_problem ?? "") ? h : null;
  }, 5000);
  assert.ok(h2);
  assert.equal(h2.routing.version, good.version);

  // Deleting the key returns to the defaults, and the problem clears.
  await stack.router.kv.delete("routing");
  const h3 = await eventually(async () => {
    const h = await (await fetch(`${url}/healthz`)).json();
    return h.routing_source === "defaults" ? h : null;
  }, 5000);
  assert.ok(h3);
  assert.equal(h3.status, "ok");
  assert.equal(h3.routing_problem, null);
});

test("a cold isolate hit by a burst serves every request by the KV document", async (t) => {
  const s = await startStack();
  t.after(() => s.close());
  await setRouting(s.router, { blue_model: "b", green_model: "g", green_percent: 100, version: 9 });
  const results = await Promise.all(Array.from({ length: 24 }, () => chat(s.router.url)));
  for (const r of results) {
    assert.equal(r.status, 200, r.text);
    assert.equal(r.headers.get("x-bluegreen-model"), "g");
  }
});

test("/healthz shows no secrets", async (t) => {
  const s = await startStack({ HOLYSHEEP_API_KEY: "sk-secret-upstream", ROUTER_API_KEYS: "rk-secret-1" });
  t.after(() => s.close());
  const text = await (await fetch(`${s.router.url}/healthz`)).text();
  assert.ok(!text.includes("sk-secret-upstream") && !text.includes("rk-secret-1"), text);
  assert.equal(JSON.parse(text).auth, "router_keys");
});
