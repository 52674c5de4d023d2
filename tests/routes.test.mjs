// Routes end to end: every model an app uses, each with its own judged rollout, in one
// deployment. The built worker in local workerd, real HTTP, the upstream simulator, ticks
// driven through the scheduled handler.
import { test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { execFileSync } from "node:child_process";
import { startStack, startRouter, startReceiver, chat, pool, sleep, eventually, ROOT } from "./harness.mjs";

const TOKEN = "routes-admin-token";
const METRICS = "routes-metrics-token";
const VARS = {
  ADMIN_TOKEN: TOKEN,
  METRICS_TOKEN: METRICS,
  BLUE_MODEL: "blue-m",
  GREEN_MODEL: "unused-m",
  ROUTING_CACHE_SECONDS: "0",
};

const ask = (url, model, extra = {}) => chat(url, { model, messages: [{ role: "user", content: "hi" }], ...extra });

/** Sum of every sample of `name` whose labels contain all of `parts`. */
function total(text, name, ...parts) {
  return text
    .split("\n")
    .filter((l) => l.startsWith(`${name}{`) && parts.every((p) => l.includes(p)))
    .reduce((sum, l) => sum + Number(l.slice(l.lastIndexOf(" ") + 1)), 0);
}

async function scrape(url) {
  const res = await fetch(`${url}/metrics`, { headers: { authorization: `Bearer ${METRICS}` } });
  assert.equal(res.status, 200);
  return res.text();
}

test("a route is a name clients send as model: created through the admin API, listed by /v1/models, named in the answer", async (t) => {
  const stack = await startStack(VARS);
  t.after(() => stack.close());
  const r = stack.router;
  // Before any route: as before routes, every model goes to the default route.
  let res = await ask(r.url, "gpt-4.1");
  assert.equal(res.status, 200);
  assert.equal(res.headers.get("x-bluegreen-route"), "default");
  assert.equal(res.headers.get("x-bluegreen-model"), "blue-m");

  const created = await r.admin("PUT", "routes/gpt-4.1", { blue_model: "deepseek-v3" });
  assert.equal(created.status, 201, created.text);
  assert.equal(created.body.route, "gpt-4.1");
  assert.equal(created.body.phase, "idle");
  assert.equal(created.body.blue_model, "deepseek-v3");
  assert.equal(created.body.last_event.kind, "route_defined");
  assert.equal(created.body.last_event.route, "gpt-4.1");
  const again = await r.admin("PUT", "routes/openai/gpt-4.1-mini", { blue_model: "qwen-max", sticky: false });
  assert.equal(again.status, 201, again.text);
  // Its own routing document, under its own key; the default route's key is today's.
  const doc = JSON.parse(await r.kv.get("routing:gpt-4.1"));
  assert.deepEqual([doc.blue_model, doc.green_percent], ["deepseek-v3", 0]);

  res = await ask(r.url, "gpt-4.1");
  assert.equal(res.status, 200, res.text);
  assert.equal(res.headers.get("x-bluegreen-route"), "gpt-4.1");
  assert.equal(res.headers.get("x-bluegreen-model"), "deepseek-v3");
  assert.equal(JSON.parse(stack.sim.requests().at(-1).body).model, "deepseek-v3");
  res = await ask(r.url, "openai/gpt-4.1-mini");
  assert.equal(res.headers.get("x-bluegreen-route"), "openai/gpt-4.1-mini");
  assert.equal(res.headers.get("x-bluegreen-model"), "qwen-max");
  // A model no route is named after still goes to the default route.
  res = await ask(r.url, "gpt-4o");
  assert.equal(res.headers.get("x-bluegreen-route"), "default");

  const models = await (await fetch(`${r.url}/v1/models`)).json();
  assert.deepEqual(models.data.map((m) => m.id), ["default", "gpt-4.1", "openai/gpt-4.1-mini"]);
  assert.ok(models.data.every((m) => m.object === "model" && Number.isInteger(m.created)));
  const one = await (await fetch(`${r.url}/v1/models/openai/gpt-4.1-mini`)).json();
  assert.equal(one.id, "openai/gpt-4.1-mini");
  const missing = await fetch(`${r.url}/v1/models/gpt-5`);
  assert.equal(missing.status, 404);
  assert.equal((await missing.json()).error.code, "model_not_found");

  // The list: every route with its phase, split and verdict.
  const list = await r.admin("GET", "routes");
  assert.equal(list.status, 200, list.text);
  assert.deepEqual(list.body.routes.map((x) => [x.name, x.status.phase, x.status.green_percent]), [
    ["default", "idle", 0],
    ["gpt-4.1", "idle", 0],
    ["openai/gpt-4.1-mini", "idle", 0],
  ]);
  assert.equal(list.body.routes[2].definition.sticky, false);

  // Every rollout verb per route; today's paths act on the default route.
  const start = await r.admin("POST", "routes/openai/gpt-4.1-mini/rollouts", { green_model: "qwen-plus", steps: [{ green_percent: 40, hold_seconds: 60 }] });
  assert.equal(start.status, 201, start.text);
  assert.equal(start.body.route, "openai/gpt-4.1-mini");
  assert.equal((await r.status()).phase, "idle", "the default route is untouched");
  const split = await r.admin("PUT", "routes/openai/gpt-4.1-mini/split", { green_percent: 10 });
  assert.equal(split.status, 200, split.text);
  assert.equal(split.body.phase, "paused");
  const events = await r.admin("GET", "routes/openai/gpt-4.1-mini/events?limit=2");
  assert.deepEqual(events.body.events.map((e) => [e.kind, e.route]), [["split_set", "openai/gpt-4.1-mini"], ["started", "openai/gpt-4.1-mini"]]);
  assert.equal((await r.events()).events.length, 0, "the default route's log is its own");
  // No deleting a route while its rollout runs, nor changing its blue.
  const refused = await r.admin("DELETE", "routes/openai/gpt-4.1-mini");
  assert.equal(refused.status, 409, refused.text);
  const reblue = await r.admin("PUT", "routes/openai/gpt-4.1-mini", { blue_model: "other" });
  assert.equal(reblue.status, 409, reblue.text);
  assert.equal((await r.admin("POST", "routes/openai/gpt-4.1-mini/rollback")).status, 200);
  const deleted = await r.admin("DELETE", "routes/openai/gpt-4.1-mini");
  assert.equal(deleted.status, 200, deleted.text);
  assert.equal(await r.kv.get("routing:openai/gpt-4.1-mini"), null);
  assert.equal((await r.admin("GET", "routes/openai/gpt-4.1-mini/status")).status, 404);
  res = await ask(r.url, "openai/gpt-4.1-mini");
  assert.equal(res.headers.get("x-bluegreen-route"), "default", "a deleted route's name goes to the default route");
  // A route created again starts afresh.
  const reborn = await r.admin("PUT", "routes/openai/gpt-4.1-mini", { blue_model: "qwen-max" });
  assert.equal(reborn.status, 201, reborn.text);
  assert.equal(reborn.body.rollout, null);
  assert.ok(reborn.body.routing_version > split.body.routing_version, "above every version its earlier life wrote");

  // Names are checked where they enter.
  // (A name ending in a verb cannot even be addressed: PUT routes/team/status is the verb.)
  assert.equal((await r.admin("PUT", "routes/team/status", { blue_model: "m" })).status, 405);
  for (const [name, param] of [["a%20b", "name"], ["a~b", "name"], ["x", "blue_model"]]) {
    const bad = await r.admin("PUT", `routes/${name}`, name === "x" ? {} : { blue_model: "m" });
    assert.equal(bad.status, 400, `${name}: ${bad.text}`);
    assert.equal(bad.body.error.param, param, bad.text);
  }
  const unknownField = await r.admin("PUT", "routes/x", { blue_model: "m", green_percent: 5 });
  assert.equal(unknownField.status, 400);
  assert.equal((await r.admin("GET", "routes/nope")).status, 404);
});

test("without a default route for unknown names, a model nobody routed gets OpenAI's 404 model_not_found", async (t) => {
  const stack = await startStack({ ...VARS, UNKNOWN_MODELS: "reject", ROUTE_LIMIT: "3" });
  t.after(() => stack.close());
  const r = stack.router;
  let res = await ask(r.url, "gpt-4.1");
  assert.equal(res.status, 404, res.text);
  assert.equal(res.body.error.code, "model_not_found");
  assert.equal(res.body.error.type, "invalid_request_error");
  assert.equal(res.body.error.param, "model");
  assert.equal(stack.sim.requests().length, 0, "nothing reached the upstream");
  // Named explicitly, the default route serves.
  res = await ask(r.url, "default");
  assert.equal(res.status, 200);
  assert.equal((await r.admin("PUT", "routes/a", { blue_model: "m" })).status, 201);
  assert.equal((await r.admin("PUT", "routes/b", { blue_model: "m" })).status, 201);
  const full = await r.admin("PUT", "routes/c", { blue_model: "m" });
  assert.equal(full.status, 409, full.text);
  assert.match(full.body.error.message, /ROUTE_LIMIT/);
  assert.equal((await r.admin("GET", "routes/c")).status, 404, "the refused route left no controller behind");
  // Deleting the default route: even `default` is then unknown.
  assert.equal((await r.admin("DELETE", "routes/default")).status, 200);
  res = await ask(r.url, "default");
  assert.equal(res.status, 404);
  assert.equal((await r.admin("GET", "status")).status, 404);
  assert.equal((await r.admin("PUT", "routes/c", { blue_model: "m" })).status, 201, "the default's place is free");
  const models = await (await fetch(`${r.url}/v1/models`)).json();
  assert.deepEqual(models.data.map((m) => m.id), ["a", "b", "c"]);
});

test("routes are isolated: one rolls back, one advances, one is untouched, and 3000 requests count each in its own route", async (t) => {
  const feedbackToken = "routes-feedback-token";
  const receiver = await startReceiver();
  const stack = await startStack({
    ...VARS,
    FEEDBACK_SECRET: "routes-test-secret-of-at-least-32-bytes",
    FEEDBACK_TOKEN: feedbackToken,
    ALERT_WEBHOOK_URL: receiver.url,
  });
  t.after(async () => {
    await stack.close();
    await receiver.close();
  });
  const r = stack.router;
  await stack.sim.setRules({ "fast-green": { status: 503 } });
  for (const [name, blue] of [["fast", "fast-blue"], ["chat", "chat-blue"], ["embed", "embed-blue"]]) {
    assert.equal((await r.admin("PUT", `routes/${name}`, { blue_model: blue })).status, 201);
  }
  const health = { method: "threshold", min_requests: 10, failure_limit: 1 };
  for (const [name, green] of [["fast", "fast-green"], ["chat", "chat-green"]]) {
    const started = await r.admin("POST", `routes/${name}/rollouts`, {
      green_model: green,
      steps: [{ green_percent: 50, hold_seconds: 1 }, { green_percent: 80, hold_seconds: 600 }],
      health,
    });
    assert.equal(started.status, 201, started.text);
  }
  const names = ["fast", "chat", "embed"];
  const results = await pool(3000, 16, (i) => ask(r.url, names[i % 3]));
  assert.ok(results.every((x) => x.status === 200), "every client was served (fast's green by blue)");
  const byRoute = Object.fromEntries(names.map((n) => [n, results.filter((x) => x.headers.get("x-bluegreen-route") === n).length]));
  assert.deepEqual(byRoute, { fast: 1000, chat: 1000, embed: 1000 });
  // Each route's controller counted exactly its own thousand.
  const counted = async () => {
    const text = await scrape(r.url);
    return Object.fromEntries(names.map((n) => [n, total(text, "bluegreen_requests_total", `route="${n}"`)]));
  };
  assert.ok(await eventually(async () => JSON.stringify(await counted()) === JSON.stringify({ fast: 1000, chat: 1000, embed: 1000 }), 15_000), JSON.stringify(await counted()));
  const text = await scrape(r.url);
  assert.equal(total(text, "bluegreen_requests_total", 'route="default"'), 0);
  assert.equal(total(text, "bluegreen_requests_total", 'route="embed"', 'model="embed-blue"'), 1000);
  assert.equal(total(text, "bluegreen_requests_total", 'route="chat"', 'environment="green"', 'class="ok"'), total(text, "bluegreen_requests_total", 'route="chat"', 'environment="green"'));
  assert.ok(total(text, "bluegreen_fallbacks_total", 'route="fast"') > 0);
  assert.equal(total(text, "bluegreen_fallbacks_total", 'route="chat"'), 0);
  assert.equal(text.match(/^# TYPE bluegreen_requests_total /gm).length, 1, "one family, every route's samples");
  assert.equal(total(text, "bluegreen_route_scrape_ok"), 4);

  // A score counts for the route that answered, and no other route takes its id.
  const embedId = results.find((x) => x.headers.get("x-bluegreen-route") === "embed").headers.get("x-bluegreen-request-id");
  assert.match(embedId, /^bg3\.b[0-9a-f]+\.[0-9a-f]+\.[0-9a-f]{16}\.embed\.[0-9a-f]{16}$/);
  const score = (id) =>
    fetch(`${r.url}/v1/feedback`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${feedbackToken}` },
      body: JSON.stringify({ request_id: id, score: -1 }),
    });
  assert.equal((await score(embedId.replace(".embed.", ".chat."))).status, 404, "moved to another route, the id is no id");
  assert.equal((await score(embedId)).status, 200);
  const scored = await scrape(r.url);
  assert.equal(total(scored, "bluegreen_feedback_total", 'route="embed"', 'score="negative"'), 1);
  for (const n of ["fast", "chat", "default"]) assert.equal(total(scored, "bluegreen_feedback_total", `route="${n}"`), 0, n);

  await sleep(1100);
  await r.tick();
  const status = async (n) => (await r.admin("GET", `routes/${n}/status`)).body;
  const [fast, chatRoute, embed] = [await status("fast"), await status("chat"), await status("embed")];
  assert.equal(fast.phase, "rolled_back");
  assert.equal(fast.green_percent, 0);
  assert.equal(chatRoute.phase, "progressing");
  assert.equal(chatRoute.green_percent, 80, JSON.stringify(chatRoute.verdict));
  assert.equal(embed.phase, "idle");
  assert.equal(embed.blue_model, "embed-blue");
  assert.equal(embed.green_percent, 0);
  assert.equal((await r.status()).phase, "idle");
  // The cron said one line per route.
  for (const n of ["default", "fast", "chat", "embed"]) {
    assert.ok(r.logs.some((l) => l.message.startsWith(`cron * * * * *: route ${n}: tick `)), n);
  }
  const rolled = (await r.admin("GET", "routes/fast/events?limit=1")).body.events[0];
  assert.deepEqual([rolled.kind, rolled.route], ["rolled_back", "fast"]);
  // Its alert names the route, in the text a chat channel shows and in the event.
  const alerted = () => receiver.received.find((x) => x.body?.event?.kind === "rolled_back");
  assert.ok(await eventually(() => alerted() !== undefined, 8000), JSON.stringify(receiver.received));
  assert.match(alerted().body.text, /^bluegreen-router, route fast: Rolled back automatically /);
  assert.equal(alerted().body.event.route, "fast");
  assert.deepEqual(receiver.received.map((x) => x.body.event.route), ["fast"], "no other route alerted");
  const docs = await Promise.all(["routing:fast", "routing:chat", "routing:embed"].map(async (k) => JSON.parse(await r.kv.get(k)).green_percent));
  assert.deepEqual(docs, [0, 80, 0]);

  // Pause and resume act on their route alone.
  const phases = async () => Object.fromEntries(await Promise.all(["default", ...names].map(async (n) => [n, (await status(n)).phase])));
  const paused = await r.admin("POST", "routes/chat/pause");
  assert.equal(paused.status, 200, paused.text);
  assert.deepEqual([paused.body.route, paused.body.phase, paused.body.green_percent], ["chat", "paused", 80]);
  assert.deepEqual(await phases(), { default: "idle", fast: "rolled_back", chat: "paused", embed: "idle" });
  assert.equal((await r.admin("POST", "routes/fast/resume")).status, 409, "a rolled-back rollout does not resume");
  const resumed = await r.admin("POST", "routes/chat/resume");
  assert.equal(resumed.status, 200, resumed.text);
  assert.deepEqual([resumed.body.route, resumed.body.phase, resumed.body.green_percent], ["chat", "progressing", 80]);
  assert.deepEqual(await phases(), { default: "idle", fast: "rolled_back", chat: "progressing", embed: "idle" });
  const chatKinds = (await r.admin("GET", "routes/chat/events?limit=2")).body.events.map((e) => [e.kind, e.route]);
  assert.deepEqual(chatKinds, [["resumed", "chat"], ["paused", "chat"]]);
  for (const n of ["fast", "embed"]) {
    const kinds = (await r.admin("GET", `routes/${n}/events`)).body.events.map((e) => e.kind);
    assert.ok(!kinds.includes("paused") && !kinds.includes("resumed"), `${n}: ${kinds}`);
  }
  assert.deepEqual(await Promise.all(["routing:fast", "routing:chat", "routing:embed"].map(async (k) => JSON.parse(await r.kv.get(k)).green_percent)), [0, 80, 0]);
});

test("an upgrade loses nothing: the state the release before routes stored is the default route's", async (t) => {
  const fixture = path.join(ROOT, "tests/fixtures/before-routes");
  const expected = JSON.parse(fs.readFileSync(path.join(fixture, "expected.json"), "utf8"));
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "bluegreen-upgrade-"));
  fs.cpSync(path.join(fixture, "do"), path.join(dir, "do"), { recursive: true });
  fs.cpSync(path.join(fixture, "kv"), path.join(dir, "kv"), { recursive: true });
  const stack = await startStack({ ...expected.vars, METRICS_TOKEN: METRICS }, {}, { persistTo: dir });
  t.after(async () => {
    await stack.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  const r = stack.router;
  const before = expected.status;
  const now = await r.status();
  assert.equal(now.route, "default");
  for (const field of ["phase", "blue_model", "green_model", "green_percent", "routing_version", "rollout", "step", "verdict", "split_check"]) {
    assert.deepEqual(now[field], before[field], field);
  }
  // Classes added since that release read as 0 from what it stored; nothing else changed.
  const since = { not_an_answer: 0 };
  const grown = structuredClone(before.stats.rollout);
  for (const env of ["blue", "green"]) {
    for (const by of ["errors_by_class", "fallbacks_by_class"]) grown[env][by] = { ...grown[env][by], ...since };
    if (grown[env].defects_by_class) grown[env].defects_by_class = { ...grown[env].defects_by_class, dimension_mismatch: 0 };
  }
  assert.deepEqual(now.stats.rollout, grown, "the rollout's stats");
  const events = (await r.events(100)).events;
  assert.deepEqual(events.map((e) => [e.seq, e.kind, e.message]), expected.events.map((e) => [e.seq, e.kind, e.message]));
  assert.deepEqual(JSON.parse(await r.kv.get("routing")), expected.routing, "the routing document, untouched");
  // The routes: the default alone, on today's instance, document and paths.
  const list = await r.admin("GET", "routes");
  assert.deepEqual(list.body.routes.map((x) => [x.name, x.status.phase, x.status.green_percent]), [["default", "paused", 25]]);
  const res = await ask(r.url, "anything", {});
  assert.equal(res.status, 200);
  assert.equal(res.headers.get("x-bluegreen-route"), "default");
  assert.match(res.headers.get("x-bluegreen-request-id"), /^bg2\./, "the default route's ids are the ones issued before routes");
  const resumed = await r.admin("POST", "resume");
  assert.equal(resumed.status, 200, resumed.text);
  assert.equal(resumed.body.green_percent, 50);
  await r.tick();
  assert.ok(r.logs.some((l) => l.message.startsWith("cron * * * * *: route default: tick ")));
  // The lifetime counters went on from the 120 requests counted before the upgrade.
  const counted = async () => total(await scrape(r.url), "bluegreen_requests_total", 'route="default"');
  assert.ok(await eventually(async () => (await counted()) === 121, 8000), `counted ${await counted()}`);
});

test("teams steer only their own routes: a route token acts on the routes it lists and gets a 403 elsewhere", async (t) => {
  const team = "team-summarise-token-0123";
  const stack = await startStack({ ...VARS, ROUTE_ADMIN_TOKENS: JSON.stringify({ [team]: ["summarise"] }) });
  t.after(() => stack.close());
  const r = stack.router;
  const as = (token) => (method, route, body) => r.admin(method, route, body, token);
  const admin = as(TOKEN);
  const summariseTeam = as(team);
  for (const name of ["summarise", "chat"]) assert.equal((await admin("PUT", `routes/${name}`, { blue_model: `${name}-blue` })).status, 201);
  const steps = [{ green_percent: 20, hold_seconds: 600 }];
  assert.equal((await admin("POST", "routes/chat/rollouts", { green_model: "chat-green", steps })).status, 201);
  const started = await summariseTeam("POST", "routes/summarise/rollouts", { green_model: "summarise-green", steps });
  assert.equal(started.status, 201, started.text);
  assert.equal((await summariseTeam("POST", "routes/summarise/rollback")).status, 200);
  // Another route, the default route's paths, its definition: 403, and nothing changed.
  for (const [method, route, body] of [
    ["POST", "routes/chat/rollback"],
    ["GET", "routes/chat/status"],
    ["PUT", "routes/chat", { blue_model: "x" }],
    ["DELETE", "routes/chat"],
    ["GET", "status"],
    ["PUT", "routes/new-route", { blue_model: "x" }],
  ]) {
    const res = await summariseTeam(method, route, body);
    assert.equal(res.status, 403, `${method} ${route}: ${res.text}`);
    assert.equal(res.body.error.code, "route_forbidden");
  }
  assert.equal((await admin("GET", "routes/chat/status")).body.phase, "progressing");
  // Its list is its own routes; the admin token's is every route.
  const own = await summariseTeam("GET", "routes");
  assert.deepEqual(own.body.routes.map((x) => x.name), ["summarise"]);
  assert.deepEqual((await admin("GET", "routes")).body.routes.map((x) => x.name), ["chat", "default", "summarise"]);
  // A token that is none of them.
  assert.equal((await as("team-summarise-token-012")("GET", "routes")).status, 401);
  assert.equal((await admin("POST", "routes/summarise/rollouts", { green_model: "g2", steps })).status, 201, "ADMIN_TOKEN acts on every route");
});

test("a route whose controller cannot read its state leaves every other route working", async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "bluegreen-routes-"));
  const first = await startStack(VARS, {}, { persistTo: dir });
  let second;
  t.after(async () => {
    await second?.close();
    await first.sim.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  for (const name of ["broken", "fine"]) {
    assert.equal((await first.router.admin("PUT", `routes/${name}`, { blue_model: `${name}-blue` })).status, 201);
    const start = await first.router.admin("POST", `routes/${name}/rollouts`, {
      green_model: `${name}-green`,
      steps: [{ green_percent: 30, hold_seconds: 1 }, { green_percent: 60, hold_seconds: 600 }],
      health: { method: "threshold", min_requests: 5 },
    });
    assert.equal(start.status, 201, start.text);
  }
  const ns = await first.router.mf.getDurableObjectNamespace("ROLLOUT");
  const brokenFile = `${ns.idFromName("route:broken").toString()}.sqlite`;
  await first.router.close();

  // Damage `broken`'s stored state: a phase this version does not know.
  const files = [];
  const walk = (d) => fs.readdirSync(d, { withFileTypes: true }).forEach((e) => (e.isDirectory() ? walk(path.join(d, e.name)) : files.push(path.join(d, e.name))));
  walk(path.join(dir, "do"));
  const db = files.find((f) => path.basename(f) === brokenFile);
  assert.ok(db, `broken's database among ${files.map((f) => path.basename(f))}`);
  const script = "import sqlite3, sys\nc = sqlite3.connect(sys.argv[1])\n" +
    "n = c.execute(\"UPDATE meta SET v = '{\\\"phase\\\": \\\"exploded\\\"}' WHERE k = 'state'\").rowcount\nc.commit()\nsys.exit(0 if n == 1 else 3)\n";
  execFileSync("python3", ["-c", script, db]);

  second = await startRouter({ ...VARS, UPSTREAM_BASE_URL: `${first.sim.url}/v1` }, { persistTo: dir });
  const r = second;
  // Both routes serve: the request path reads routing documents, not controllers.
  // 100 requests each, so green's 30% share passes min_requests (5) in all but ~1e-9 of runs.
  const results = await pool(200, 8, (i) => ask(r.url, i % 2 ? "broken" : "fine"));
  assert.ok(results.every((x) => x.status === 200));
  // The tick judges what the controller holds: wait until `fine`'s stats batches have landed.
  const fineCounted = async () => total(await scrape(r.url), "bluegreen_requests_total", 'route="fine"');
  assert.ok(await eventually(async () => (await fineCounted()) === 100, 10_000), `fine counted ${await fineCounted()}`);
  await sleep(1100);
  await r.tick();
  const list = (await r.admin("GET", "routes")).body.routes;
  const by = Object.fromEntries(list.map((x) => [x.name, x.status]));
  assert.match(by.broken.storage_problem, /unknown variant `exploded`/);
  assert.equal(by.broken.green_percent, 30, "held, not changed");
  assert.equal(by.fine.storage_problem, null);
  assert.equal(by.fine.green_percent, 60, "the other route's rollout went on");
  assert.ok(r.logs.some((l) => l.message.startsWith("cron * * * * *: route fine: tick ")));
  const text = await scrape(r.url);
  assert.equal(total(text, "bluegreen_storage_problem", 'route="broken"'), 1);
  assert.equal(total(text, "bluegreen_storage_problem", 'route="fine"'), 0);
  assert.equal(total(text, "bluegreen_route_scrape_ok"), 3);
  // Its own recovery touches nothing else.
  assert.equal((await r.admin("POST", "routes/broken/recover")).status, 200);
  assert.equal((await r.admin("GET", "routes/fine/status")).body.green_percent, 60);
});

test("a stalled controller is its own route's problem: the cron ticks every other route without waiting for it, and the list and a scrape answer within their bounds", async (t) => {
  const stack = await startStack(VARS, {}, { faults: true });
  t.after(() => stack.close());
  const r = stack.router;
  // More routes than the fan-out (6 calls at a time), the stalled one listed first: without
  // a time limit on each call, every route after it would wait for it.
  const others = Array.from({ length: 7 }, (_, i) => `route-${i}`);
  for (const name of ["a-stalled", ...others]) assert.equal((await r.admin("PUT", `routes/${name}`, { blue_model: `${name}-blue` })).status, 201);
  const ns = await r.mf.getDurableObjectNamespace("ROLLOUT");
  const stall = await ns.get(ns.idFromName("route:a-stalled")).fetch("https://controller/__faults/controller?slow=120000", { method: "POST" });
  assert.equal(stall.status, 204);

  const t0 = Date.now();
  await r.tick();
  const tickMs = Date.now() - t0;
  // The cron waited for the stalled controller as long as a tick may take (10 s), not 2 minutes.
  assert.ok(tickMs >= 9_500 && tickMs < 20_000, `the cron took ${tickMs} ms`);
  assert.ok(r.logs.some((l) => l.message === "cron * * * * *: route a-stalled: tick failed: no answer in 10 s"), JSON.stringify(r.logs.filter((l) => l.message.includes("a-stalled"))));
  for (const n of ["default", ...others]) assert.ok(r.logs.some((l) => l.message.startsWith(`cron * * * * *: route ${n}: tick `)), n);

  // A scrape leaves the stalled route out after 4 s; every other route ticked at once, not
  // after the stalled one's 10 s.
  const t1 = Date.now();
  const text = await scrape(r.url);
  const scrapeMs = Date.now() - t1;
  assert.ok(scrapeMs < 8_000, `the scrape took ${scrapeMs} ms`);
  assert.equal(total(text, "bluegreen_route_scrape_ok", 'route="a-stalled"'), 0);
  for (const n of ["default", ...others]) {
    assert.equal(total(text, "bluegreen_route_scrape_ok", `route="${n}"`), 1, n);
    const tickedAfter = total(text, "bluegreen_last_tick_timestamp_seconds", `route="${n}"`) * 1000 - t0;
    assert.ok(tickedAfter >= 0 && tickedAfter < 5_000, `${n} ticked ${tickedAfter} ms after the cron began`);
  }

  // The list names the stalled route's problem, and every other route's status.
  const t2 = Date.now();
  const list = await r.admin("GET", "routes");
  const listMs = Date.now() - t2;
  assert.equal(list.status, 200, list.text);
  assert.ok(listMs < 8_000, `the list took ${listMs} ms`);
  const by = Object.fromEntries(list.body.routes.map((x) => [x.name, x]));
  assert.equal(by["a-stalled"].problem, "no answer in 4 s");
  for (const n of ["default", ...others]) assert.equal(by[n].status.phase, "idle", n);
});

test("creation and deletion keep the registry and the controllers in step: one change a name at a time, a DELETE made again finishes", async (t) => {
  const stack = await startStack(VARS);
  t.after(() => stack.close());
  const r = stack.router;
  // A DELETE interrupted after the controller (here: its controller deleted behind the
  // registry's back) is finished by making it again.
  assert.equal((await r.admin("PUT", "routes/half", { blue_model: "m" })).status, 201);
  const ns = await r.mf.getDurableObjectNamespace("ROLLOUT");
  const gone = await ns.get(ns.idFromName("route:half")).fetch("https://controller/internal/route", {
    method: "DELETE",
    headers: { "x-bluegreen-route": "half" },
  });
  assert.equal(gone.status, 200);
  assert.deepEqual((await r.admin("GET", "routes")).body.routes.map((x) => [x.name, x.problem !== undefined]), [["default", false], ["half", true]]);
  assert.equal((await r.admin("DELETE", "routes/half")).status, 200, "finished");
  assert.deepEqual((await r.admin("GET", "routes")).body.routes.map((x) => x.name), ["default"]);
  assert.equal((await r.admin("DELETE", "routes/half")).status, 404, "nothing left to delete");

  // Concurrent PUTs and DELETEs of one name: some are told to wait (409), and whatever lands
  // last, the list and the controller agree.
  for (let round = 0; round < 5; round++) {
    const calls = await Promise.all(
      Array.from({ length: 6 }, (_, i) =>
        i % 2 ? r.admin("DELETE", "routes/racy") : r.admin("PUT", "routes/racy", { blue_model: `m-${round}-${i}` }),
      ),
    );
    for (const c of calls) assert.ok([200, 201, 404, 409].includes(c.status), `${c.status} ${c.text}`);
    const listed = (await r.admin("GET", "routes")).body.routes.find((x) => x.name === "racy");
    const status = await r.admin("GET", "routes/racy/status");
    assert.equal(listed !== undefined, status.status === 200, `round ${round}: listed ${!!listed}, controller ${status.status}`);
    if (listed) assert.equal(listed.status.blue_model, listed.definition.blue_model);
  }
});
