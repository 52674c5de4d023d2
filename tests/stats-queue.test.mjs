// Stats through Cloudflare Queues, end to end in local workerd (Miniflare's queue broker):
// with a STATS_QUEUE binding an isolate sends each batch as one message, and the same Worker's
// consumer merges a delivery per route and posts one batch per route to its controller. Every
// request counts once, whatever the queue delivers twice.
import { test } from "node:test";
import assert from "node:assert/strict";
import { startStack, pool, chat, eventually, CHAT } from "./harness.mjs";

const TOKEN = "queue-admin-token";
const SCRAPE = "queue-metrics-token";
const VARS = { ADMIN_TOKEN: TOKEN, METRICS_TOKEN: SCRAPE, ROUTING_CACHE_SECONDS: "0", BLUE_MODEL: "blue-m", GREEN_MODEL: "green-m" };

/** The router's /metrics text. */
async function scrape(r) {
  const res = await fetch(`${r.url}/metrics`, { headers: { authorization: `Bearer ${SCRAPE}` } });
  assert.equal(res.status, 200);
  return res.text();
}

/** The default route's rollout-wide request count (blue + green), and its forced ones. */
async function counted(r) {
  const s = await r.status();
  const routed = s.stats.rollout.blue.requests + s.stats.rollout.green.requests;
  return { s, routed };
}

/** Waits until the controller counted `n` requests (null when it does not within `ms`). */
function countedReaches(r, n, ms = 10_000) {
  return eventually(async () => {
    const c = await counted(r);
    return c.routed >= n ? c : null;
  }, ms);
}

test("with a queue bound, every request counts once through it and the status says so", async (t) => {
  const stack = await startStack(VARS, {}, { queue: true });
  t.after(() => stack.close());
  const r = stack.router;
  const before = await r.status();
  assert.equal(before.stats_transport, "queue");
  assert.equal(before.stats_queue_lag_ms, null);
  assert.equal(before.stats_queue_intake_at, null);
  const n = 120;
  const results = await pool(n, 8, () => chat(r.url, CHAT));
  results.forEach((res) => assert.equal(res.status, 200));
  const c = await countedReaches(r, n);
  assert.ok(c, "every request counted through the queue");
  assert.equal(c.routed, n, "each once");
  assert.equal(typeof c.s.stats_queue_lag_ms, "number");
  assert.ok(c.s.stats_queue_lag_ms >= 0 && c.s.stats_queue_lag_ms < 60_000, String(c.s.stats_queue_lag_ms));
  assert.ok(Math.abs(Date.parse(c.s.stats_queue_intake_at) - Date.now()) < 60_000, c.s.stats_queue_intake_at);
  const text = await scrape(r);
  assert.match(text, /^bluegreen_stats_transport\{route="default",transport="queue"\} 1$/m);
  assert.match(text, /^bluegreen_stats_transport\{route="default",transport="direct"\} 0$/m);
  assert.match(text, /^bluegreen_stats_queue_lag_seconds\{route="default"\} \d+(\.\d+)?$/m);
  assert.match(text, /^bluegreen_stats_queue_last_intake_timestamp_seconds\{route="default"\} \d+(\.\d+)?$/m);
  // Nothing was posted straight to the controller: the isolate logged no delivery failure.
  assert.ok(!r.logs.some((l) => /not delivered|posting instead/.test(l.message)), JSON.stringify(r.logs.filter((l) => l.level !== "log").slice(0, 3)));
});

test("without a queue, stats go straight to the controller, as before", async (t) => {
  const stack = await startStack(VARS);
  t.after(() => stack.close());
  const r = stack.router;
  assert.equal((await r.status()).stats_transport, "direct");
  await pool(30, 6, () => chat(r.url, CHAT));
  const c = await countedReaches(r, 30);
  assert.ok(c && c.routed === 30);
  assert.equal(c.s.stats_queue_lag_ms, null);
  const text = await scrape(r);
  assert.match(text, /^bluegreen_stats_transport\{route="default",transport="direct"\} 1$/m);
  assert.doesNotMatch(text, /^bluegreen_stats_queue_lag_seconds\{/m);
});

test("the same message delivered twice counts once, alone or merged with others", async (t) => {
  const stack = await startStack(VARS, {}, { queue: true });
  t.after(() => stack.close());
  const r = stack.router;
  const queue = await r.mf.getQueueProducer("STATS_QUEUE");
  const minute = Math.floor(Date.now() / 60_000);
  const status = await r.status();
  const version = status.routing_version;
  const message = (id, requests) =>
    JSON.stringify({
      route: "default",
      sent_ms: Date.now(),
      batch: {
        id,
        entries: [{ minute, env: "blue", version, stats: { requests } }],
      },
    });
  // One message, then the same again alone: 5 once.
  await queue.send(message("dup-1", 5), { contentType: "text" });
  assert.ok(await countedReaches(r, 5), "the first delivery counted");
  await queue.send(message("dup-1", 5), { contentType: "text" });
  // Then the same again in one delivery with a new one: the new one counts, the old one not.
  await queue.sendBatch([
    { body: message("dup-1", 5), contentType: "text" },
    { body: message("new-1", 3), contentType: "text" },
  ]);
  const c = await countedReaches(r, 8);
  assert.ok(c, "the new message counted");
  await new Promise((res) => setTimeout(res, 1500));
  assert.equal((await counted(r)).routed, 8, "5 + 3, the duplicate never");
  // An unreadable message is dropped with a log line, not retried for ever.
  await queue.send("{not json", { contentType: "text" });
  assert.ok(await eventually(() => r.logs.some((l) => /stats queue: message .* dropped, unreadable/.test(l.message)), 5000));
});

/** Sets a fault of tests/faults.worker.mjs: `path` on the Worker, or on the default route's controller. */
async function fault(r, where, query) {
  if (where === "consumer") {
    const res = await fetch(`${r.url}/__faults/consumer${query ? `?${query}` : ""}`, { method: "POST" });
    assert.equal(res.status, 200);
    return res.json();
  }
  const ns = await r.mf.getDurableObjectNamespace("ROLLOUT");
  const res = await ns.get(ns.idFromName("global")).fetch(`https://controller/__faults/controller?${query}`, { method: "POST" });
  assert.equal(res.status, 204);
}

/** What this isolate still holds (GET /healthz). */
async function undelivered(r) {
  const res = await fetch(`${r.url}/healthz`);
  assert.equal(res.status, 200);
  return (await res.json()).stats_undelivered_requests;
}

test("a consumer that throws on a delivery is retried, and every request counts once", async (t) => {
  const stack = await startStack(VARS, {}, { queue: true, faults: true });
  t.after(() => stack.close());
  const r = stack.router;
  assert.deepEqual(await fault(r, "consumer", "throws=2"), { throws_left: 2 });
  const n = 40;
  (await pool(n, 8, () => chat(r.url, CHAT))).forEach((res) => assert.equal(res.status, 200));
  const c = await countedReaches(r, n, 20_000);
  assert.ok(c, "every request counted after the failed deliveries");
  assert.deepEqual(await fault(r, "consumer"), { throws_left: 0 }, "both failures happened");
  await new Promise((res) => setTimeout(res, 1500));
  assert.equal((await counted(r)).routed, n, "each once");
});

test("a controller that refuses stats for a while is caught up once it recovers; the isolate meanwhile holds nothing an eviction could lose", async (t) => {
  // Retries as wrangler.toml's consumer has them (100), so a slow machine never dead-letters.
  const stack = await startStack(VARS, {}, { queue: { maxRetries: 100 }, faults: true });
  t.after(() => stack.close());
  const r = stack.router;
  await fault(r, "controller", "refuse=stats");
  const n = 40;
  (await pool(n, 8, () => chat(r.url, CHAT))).forEach((res) => assert.equal(res.status, 200));
  // The consumer's posts are refused and its messages retried…
  assert.ok(
    await eventually(() => r.logs.some((l) => /stats queue: \d+ messages of route default retried: the controller answered 503/.test(l.message)), 10_000),
    "the refused delivery was retried",
  );
  // …while the isolate handed every batch to the queue: evicting it now would lose nothing.
  assert.ok(await eventually(async () => (await undelivered(r)) === 0, 5000), "the isolate still holds stats");
  assert.equal((await counted(r)).routed, 0, "nothing counted while the controller refuses");
  await new Promise((res) => setTimeout(res, 2000));
  await fault(r, "controller", "refuse=none");
  const c = await countedReaches(r, n, 20_000);
  assert.ok(c, "caught up after the controller recovered");
  await new Promise((res) => setTimeout(res, 1500));
  assert.equal((await counted(r)).routed, n, "each once");
});

test("without a queue, an isolate holds what the controller refused until it takes it", async (t) => {
  const stack = await startStack(VARS, {}, { faults: true });
  t.after(() => stack.close());
  const r = stack.router;
  await fault(r, "controller", "refuse=stats");
  const n = 20;
  (await pool(n, 4, () => chat(r.url, CHAT))).forEach((res) => assert.equal(res.status, 200));
  // Posted, refused through the post's retries (about 4 s against an instant 503, up to 16 s
  // with timeouts) and kept: an eviction now would lose these 20 (the queue's case above: 0).
  assert.ok(await eventually(() => r.logs.some((l) => /not delivered, kept for the next flush: .*the controller answered 503/.test(l.message)), 30_000));
  assert.equal(await undelivered(r), n);
  await fault(r, "controller", "refuse=none");
  // The next request's flush carries them.
  assert.equal((await chat(r.url, CHAT)).status, 200);
  const c = await countedReaches(r, n + 1, 10_000);
  assert.ok(c && c.routed === n + 1, "all counted once the controller took them");
  assert.ok(await eventually(async () => (await undelivered(r)) === 0, 5000));
});

test("STATS_FLUSH_SECONDS: an isolate gathers a route's stats that long before it sends them", async (t) => {
  const stack = await startStack({ ...VARS, STATS_FLUSH_SECONDS: "10" });
  t.after(() => stack.close());
  const r = stack.router;
  const n = 10;
  const t0 = Date.now(); // the first request claims the flush: it seals 10 s after this at the earliest
  (await pool(n, 5, () => chat(r.url, CHAT))).forEach((res) => assert.equal(res.status, 200));
  await new Promise((res) => setTimeout(res, 1500));
  const routed = (await counted(r)).routed;
  const held = await undelivered(r);
  assert.ok(Date.now() - t0 < 9000, "the checks ran within the interval");
  assert.equal(routed, 0, "nothing sent 1.5 s after the requests, within a 10 s interval");
  assert.equal(held, n, "held by the isolate meanwhile");
  const c = await countedReaches(r, n, 20_000);
  assert.ok(c && c.routed === n, "sent, as one batch, once the interval ran out");
});
