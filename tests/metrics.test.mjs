// GET /metrics end to end: the built worker in local workerd, the upstream simulator, and a real
// Prometheus (Debian's package: `scripts/setup.sh --prometheus`) scraping it every second on
// 127.0.0.1, queried through its own HTTP API; `promtool check metrics` on a scrape body.
import { test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { spawn, spawnSync } from "node:child_process";
import { startStack, chat, traffic, waitForCount, eventually, sleep } from "./harness.mjs";
import { rng, envStats } from "../bench/batches.mjs";

const ADMIN = "metrics-admin-token";
const SCRAPE = "metrics-scrape-token";
const VARS = {
  ADMIN_TOKEN: ADMIN,
  METRICS_TOKEN: SCRAPE,
  BLUE_MODEL: "blue-m",
  GREEN_MODEL: "unused-m",
  ROUTING_CACHE_SECONDS: "0",
  MODEL_PRICES: JSON.stringify({ "blue-m": { input: 1, output: 2 }, "green-m": { input: 3, output: 4 } }),
};

/** GET /metrics with `token` (none when null). */
async function scrape(url, token = SCRAPE) {
  const headers = token == null ? {} : { authorization: `Bearer ${token}` };
  const res = await fetch(`${url}/metrics`, { headers });
  return { status: res.status, headers: res.headers, text: await res.text() };
}

/** The value of the one sample line starting with `series ` in an exposition text. */
function sample(text, series) {
  const lines = text.split("\n").filter((l) => l.startsWith(`${series} `));
  assert.equal(lines.length, 1, `one sample ${series}`);
  return Number(lines[0].slice(series.length + 1));
}

/** Sum of every sample of `name` (without suffix) whose labels contain `match`. */
function total(text, name, match = "") {
  return text
    .split("\n")
    .filter((l) => l.startsWith(`${name}{`) && l.includes(match))
    .reduce((sum, l) => sum + Number(l.slice(l.lastIndexOf(" ") + 1)), 0);
}

test("without METRICS_TOKEN the endpoint answers 503 saying how to set it", async (t) => {
  const stack = await startStack({ ADMIN_TOKEN: ADMIN });
  t.after(() => stack.close());
  const res = await scrape(stack.router.url);
  assert.equal(res.status, 503);
  const body = JSON.parse(res.text);
  assert.equal(body.error.code, "metrics_disabled");
  assert.match(body.error.message, /wrangler secret put METRICS_TOKEN/);
  // The admin token does not open it either.
  assert.equal((await scrape(stack.router.url, ADMIN)).status, 503);
});

test("a missing or wrong token is refused with a 401; promtool passes a scrape of a controller with data", async (t) => {
  const stack = await startStack(VARS, { delayMs: 5 });
  t.after(() => stack.close());
  const url = stack.router.url;
  for (const token of [null, "wrong", ADMIN, `${SCRAPE}x`]) {
    const res = await scrape(url, token);
    assert.equal(res.status, 401, `token ${token}`);
    const body = JSON.parse(res.text);
    assert.equal(body.error.code, "invalid_metrics_token");
    assert.equal(body.error.type, "invalid_request_error");
    assert.match(res.headers.get("x-bluegreen-request-id"), /^[0-9a-f]{32}$/);
  }
  assert.equal((await fetch(`${url}/metrics`, { method: "POST", headers: { authorization: `Bearer ${SCRAPE}` } })).status, 405);

  // Before any traffic or rollout: phase idle and no per-series counter yet.
  const empty = await scrape(url);
  assert.equal(empty.status, 200);
  assert.equal(empty.headers.get("content-type"), "text/plain; version=0.0.4; charset=utf-8");
  assert.equal(sample(empty.text, 'bluegreen_phase{route="default",phase="idle"}'), 1);
  assert.equal(sample(empty.text, 'bluegreen_step{route="default"}'), 0);
  assert.ok(!empty.text.includes("bluegreen_requests_total"));

  // Traffic of every kind: plain, streamed, client errors, failures, forced, and a rollout
  // whose green fails every 4th request (fallbacks).
  assert.equal((await traffic(stack.router, 30)).ok, 30);
  await chat(url, { messages: [{ role: "user", content: "hi" }], stream: true });
  await chat(url, undefined, { "x-sim-status": "400" });
  await chat(url, undefined, { "x-sim-status": "429" });
  await chat(url, undefined, { "x-bluegreen-environment": "green" });
  await waitForCount(stack.router, 33);
  const forced = await eventually(async () => (await stack.router.status()).stats.forced.green.requests === 1);
  assert.ok(forced, "the forced request was counted");
  const started = await stack.router.admin("POST", "rollouts", {
    green_model: "green-m",
    steps: [{ green_percent: 50, hold_seconds: 3600 }],
    health: { min_requests: 1000 },
  });
  assert.equal(started.status, 201, started.text);
  await stack.sim.setRules({ "green-m": { fail_every: 4, fail_status: 503 } });
  assert.equal((await traffic(stack.router, 40)).ok, 40);
  const status = await waitForCount(stack.router, 40);
  await stack.router.tick();

  // What a scrape costs here, through Miniflare's proxy, the Worker and the controller (for
  // docs/metrics.md; a figure, not a pass mark).
  const times = [];
  let res;
  for (let i = 0; i < 21; i++) {
    const t0 = performance.now();
    res = await scrape(url);
    times.push(performance.now() - t0);
    assert.equal(res.status, 200);
  }
  times.sort((a, b) => a - b);
  t.diagnostic(`scrape: ${res.text.length} bytes, median ${times[10].toFixed(1)} ms, max ${times[20].toFixed(1)} ms of 21`);
  const promtool = spawnSync("promtool", ["check", "metrics"], { input: res.text, encoding: "utf8" });
  assert.equal(promtool.error, undefined, "promtool runs (scripts/setup.sh --prometheus installs it)");
  assert.equal(promtool.status, 0, `promtool check metrics:\n${promtool.stdout}${promtool.stderr}`);

  // What the counters say against the status: the rollout's requests, plus the 33 before it.
  const rollout = status.stats.rollout;
  const counted = 33 + rollout.blue.requests + rollout.green.requests + status.stats.earlier_requests;
  assert.equal(counted, 73);
  assert.equal(total(res.text, "bluegreen_requests_total"), counted);
  assert.equal(total(res.text, "bluegreen_requests_total", 'environment="green"'), rollout.green.requests);
  assert.ok(rollout.green.fallbacks > 0, "green failed some requests");
  assert.equal(total(res.text, "bluegreen_fallbacks_total"), rollout.green.fallbacks);
  assert.equal(
    total(res.text, "bluegreen_fallbacks_total", 'reason="server_error"'),
    rollout.green.fallbacks_by_class.server_error,
  );
  assert.equal(total(res.text, "bluegreen_requests_total", 'class="client_error"'), 1);
  assert.equal(total(res.text, "bluegreen_requests_total", 'class="rate_limited"'), 1);
  assert.equal(sample(res.text, 'bluegreen_forced_requests_total{route="default",environment="green"}'), 1);
  assert.equal(sample(res.text, 'bluegreen_phase{route="default",phase="progressing"}'), 1);
  assert.equal(sample(res.text, 'bluegreen_step{route="default"}'), 1);
  assert.equal(sample(res.text, 'bluegreen_green_traffic_ratio{route="default"}'), 0.5);
  assert.equal(sample(res.text, 'bluegreen_model_info{route="default",environment="green",model="green-m"}'), 1);
  assert.ok(sample(res.text, 'bluegreen_verdict_log_rollback_level{route="default",test="errors"}') > 0);
  assert.ok(Math.abs(sample(res.text, 'bluegreen_last_tick_timestamp_seconds{route="default"}') - Date.now() / 1000) < 60);
  const tokens = total(res.text, "bluegreen_tokens_total", 'model="green-m",kind="completion"');
  assert.equal(tokens, rollout.green.completion_tokens);
  assert.ok(total(res.text, "bluegreen_cost_usd_total") > 0);
});

/** A TCP port free on 127.0.0.1 now. */
async function freePort() {
  const server = net.createServer();
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  const { port } = server.address();
  await new Promise((r) => server.close(r));
  return port;
}

/**
 * Starts Prometheus on 127.0.0.1, scraping `target` (host:port) every second with the metrics
 * token, on a temporary storage directory; stopped and removed after the test. Returns
 * { query(promql) -> the result vector }.
 */
async function startPrometheus(t, target) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "bluegreen-prometheus-"));
  fs.writeFileSync(path.join(dir, "token"), SCRAPE);
  fs.writeFileSync(
    path.join(dir, "prometheus.yml"),
    [
      "global:",
      "  scrape_interval: 1s",
      "  scrape_timeout: 1s",
      "  evaluation_interval: 1s",
      "scrape_configs:",
      "  - job_name: bluegreen",
      "    metrics_path: /metrics",
      "    authorization:",
      `      credentials_file: ${path.join(dir, "token")}`,
      "    static_configs:",
      `      - targets: ["${target}"]`,
      "",
    ].join("\n"),
  );
  const port = await freePort();
  const output = [];
  const proc = spawn(
    "prometheus",
    [
      `--config.file=${path.join(dir, "prometheus.yml")}`,
      `--storage.tsdb.path=${path.join(dir, "data")}`,
      `--web.listen-address=127.0.0.1:${port}`,
      "--log.level=warn",
    ],
    { stdio: ["ignore", "pipe", "pipe"] },
  );
  let exited = null;
  const gone = new Promise((r) => proc.on("exit", (code, signal) => r((exited = { code, signal }))));
  proc.on("error", (e) => output.push(String(e)));
  proc.stdout.on("data", (d) => output.push(String(d)));
  proc.stderr.on("data", (d) => output.push(String(d)));
  t.after(async () => {
    if (exited === null) {
      proc.kill("SIGTERM");
      const timer = setTimeout(() => proc.kill("SIGKILL"), 5000);
      await gone;
      clearTimeout(timer);
    }
    fs.rmSync(dir, { recursive: true, force: true });
  });
  const api = `http://127.0.0.1:${port}/api/v1`;
  const query = async (promql) => {
    const res = await fetch(`${api}/query?query=${encodeURIComponent(promql)}`);
    const body = await res.json();
    assert.equal(body.status, "success", `${promql}: ${JSON.stringify(body)}`);
    return body.data.result;
  };
  // Ready, and scraping the router successfully (bounded: 30 s).
  for (let i = 0; ; i++) {
    assert.equal(exited, null, `prometheus exited: ${JSON.stringify(exited)}\n${output.join("")}`);
    try {
      const up = await query('up{job="bluegreen"}');
      if (up.length === 1 && up[0].value[1] === "1") break;
    } catch {
      // not listening yet
    }
    assert.ok(i < 150, `prometheus did not scrape the router within 30 s:\n${output.join("")}`);
    await sleep(200);
  }
  return { query };
}

/** Polls `promql` (a one-element vector) until `ok(value)` or 20 s; returns the last value. */
async function settle(prom, promql, ok) {
  let value;
  for (let i = 0; i < 100; i++) {
    const result = await prom.query(promql);
    value = result.length === 1 ? Number(result[0].value[1]) : undefined;
    if (value !== undefined && ok(value)) return value;
    await sleep(200);
  }
  return value;
}

test("Prometheus scrapes it: its request count equals the status's, across a new rollout, and a p95 answers", async (t) => {
  const stack = await startStack(VARS, { delayMs: 30 });
  t.after(() => stack.close());
  const r = stack.router;
  const prom = await startPrometheus(t, new URL(r.url).host);
  const requests = "sum(bluegreen_requests_total)";

  // Before any rollout the lifetime counters and the status's rollout scope (everything since
  // the controller first counted) are the same requests.
  assert.equal((await traffic(r, 50)).ok, 50);
  let s = await waitForCount(r, 50);
  const before = s.stats.rollout.blue.requests + s.stats.rollout.green.requests;
  assert.equal(before, 50);
  assert.equal(await settle(prom, requests, (v) => v === before), before);
  assert.equal(await settle(prom, 'bluegreen_phase{phase="idle"}', (v) => v === 1), 1);

  // A rollout restarts the status's scope; the counters go on from where they were.
  const started = await r.admin("POST", "rollouts", {
    green_model: "green-m",
    steps: [{ green_percent: 50, hold_seconds: 3600 }],
    health: { min_requests: 1000 },
  });
  assert.equal(started.status, 201, started.text);
  assert.equal((await traffic(r, 60)).ok, 60);
  s = await waitForCount(r, 60);
  const rollout = s.stats.rollout.blue.requests + s.stats.rollout.green.requests;
  assert.equal(rollout + s.stats.earlier_requests, 60);
  assert.equal(await settle(prom, requests, (v) => v === before + 60), before + rollout + s.stats.earlier_requests);
  const green = await settle(prom, 'sum(bluegreen_requests_total{environment="green"})', (v) => v === s.stats.rollout.green.requests);
  assert.equal(green, s.stats.rollout.green.requests);
  assert.ok(green > 0);
  assert.equal(await settle(prom, 'bluegreen_phase{phase="progressing"}', (v) => v === 1), 1);

  // docs/metrics.md's p95 per environment: finite, and at least the simulator's 30 ms delay.
  const p95 = await settle(
    prom,
    'histogram_quantile(0.95, sum by (le) (rate(bluegreen_request_duration_seconds_bucket{environment="blue"}[1m])))',
    (v) => Number.isFinite(v),
  );
  assert.ok(Number.isFinite(p95) && p95 >= 0.025 && p95 <= 0.8, `p95 ${p95}`);
  const ttfb = await settle(
    prom,
    "histogram_quantile(0.95, sum by (le) (rate(bluegreen_time_to_first_byte_seconds_bucket[1m])))",
    (v) => Number.isFinite(v),
  );
  assert.ok(Number.isFinite(ttfb) && ttfb > 0, `ttfb p95 ${ttfb}`);
});

test("a scrape of 50 routes with both environments' histograms is one valid text, every route labelled, its size and time bounded", async (t) => {
  const stack = await startStack({ ...VARS, ROUTE_LIMIT: "51" });
  t.after(() => stack.close());
  const r = stack.router;
  const names = Array.from({ length: 50 }, (_, i) => `team-${String(i).padStart(2, "0")}/chat`);
  for (const name of names) {
    const res = await r.admin("PUT", `routes/${name}`, { blue_model: `model-of-${name}` });
    assert.equal(res.status, 201, res.text);
  }
  // Every route serves (and counts) a request through the router, and its controller takes
  // one batch as a busy isolate sends it (bench/batches.mjs: 100 requests, both environments,
  // latency histograms with dozens of buckets), as in `npm run bench:controller`'s scrape.
  for (const name of names) assert.equal((await chat(r.url, { model: name, messages: [{ role: "user", content: "hi" }] })).status, 200);
  const ns = await r.mf.getDurableObjectNamespace("ROLLOUT");
  const rand = rng(7);
  for (const [i, name] of names.entries()) {
    const minute = Math.floor(Date.now() / 60_000);
    const batch = {
      id: `scrape-test-${i}`,
      entries: [
        { minute, env: "blue", stats: envStats(70, rand) },
        { minute, env: "green", stats: envStats(30, rand) },
      ],
    };
    const res = await ns.get(ns.idFromName(`route:${name}`)).fetch("https://controller/internal/stats", {
      method: "POST",
      body: JSON.stringify(batch),
      headers: { "x-bluegreen-route": name },
    });
    assert.equal(res.status, 200, await res.text());
  }
  let res;
  const counted = await eventually(async () => {
    res = await scrape(r.url);
    return total(res.text, "bluegreen_requests_total") === 50 * 101;
  }, 15_000);
  assert.ok(counted, `every route's requests counted: ${total(res.text, "bluegreen_requests_total")}`);
  assert.equal(res.status, 200);
  for (const name of [...names, "default"]) {
    assert.ok(res.text.includes(`bluegreen_route_scrape_ok{route="${name}"} 1\n`), name);
    assert.ok(res.text.includes(`bluegreen_phase{route="${name}",phase="idle"} 1\n`), name);
  }
  for (const name of names) {
    for (const env of ["blue", "green"]) {
      assert.ok(res.text.includes(`bluegreen_request_duration_seconds_bucket{route="${name}",environment="${env}",`), `${name} ${env}`);
    }
  }
  const promtool = spawnSync("promtool", ["check", "metrics"], { input: res.text, encoding: "utf8" });
  assert.equal(promtool.status, 0, `promtool check metrics:\n${promtool.stdout}${promtool.stderr}`);
  // Each route adds its gauges and two series of counters and histograms: measured 859 477 to
  // 859 496 bytes for these 51 routes (about 17 KB a route; the figures' digits vary); the
  // bound (1 MiB) leaves a fifth for longer names.
  const bytes = Buffer.byteLength(res.text);
  // The time the Worker takes to ask every controller (six at a time) and merge their texts:
  // measured 54-60 ms median of 5 here (2 cores, shared); the bound is a correctness guard (a scrape that queued
  // every controller behind one another, or rendered from storage, would break it on a busy
  // machine), not a benchmark: `npm run bench:controller` measures it.
  const times = [];
  for (let i = 0; i < 5; i++) {
    const t0 = performance.now();
    const again = await scrape(r.url);
    times.push(performance.now() - t0);
    assert.equal(again.status, 200);
  }
  times.sort((a, b) => a - b);
  console.log(`# scrape of ${names.length + 1} routes: ${bytes} bytes, ${times[2].toFixed(1)} ms median, ${times[4].toFixed(1)} ms max of 5`);
  assert.ok(bytes < 1024 * 1024, `${bytes} bytes`);
  assert.ok(times[2] < 2000, `median ${times[2].toFixed(0)} ms of ${times.map((x) => x.toFixed(0))}`);
});
