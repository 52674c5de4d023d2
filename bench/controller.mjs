// How many stats batches one rollout controller absorbs per second, in local workerd.
//
// Isolates send the controller one batch per flush interval each (STATS_FLUSH_SECONDS, 1 s by
// default; src/recorder.rs), whatever their traffic, so the controller's capacity is counted in batches, and its limit is the number of
// busy isolates rather than requests/s. This posts realistic batches (one minute, both
// environments, latency histograms with dozens of buckets, as an isolate serving ~100 req/s
// sends) straight to the Durable Object, at a fixed concurrency, for a bounded count, and
// reports batches/s, the workerd CPU per batch, and whether the totals came out exact.
//
// Then the same count again, spread over the controllers of `--routes` routes (10) at once, as
// isolates serving several routes post to each route's controller: one route's load splits
// from another's, and the total batches/s it reaches is what one deployment takes.
//
//   node bench/controller.mjs [--batches 3000] [--concurrency 16] [--requests-per-batch 100] [--routes 10]
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { startRouter } from "../tests/harness.mjs";
import { cpuTicks } from "./proc.mjs";
import { rng, envStats } from "./batches.mjs";

const arg = (name, dflt) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : dflt;
};
const BATCHES = arg("batches", 3000);
const CONCURRENCY = arg("concurrency", 16);
const PER_BATCH = arg("requests-per-batch", 100);
const ROUTES = arg("routes", 10);
const CAP_MS = 120_000; // stop issuing after this, whatever the count

function batch(i, rand) {
  const minute = Math.floor(Date.now() / 60000);
  const green = Math.round(PER_BATCH * 0.3);
  return JSON.stringify({
    id: `bench-${i}-${Date.now()}`,
    entries: [
      { minute, env: "blue", stats: envStats(PER_BATCH - green, rand) },
      { minute, env: "green", stats: envStats(green, rand) },
    ],
  });
}

function workerdPid(before) {
  const pids = fs.readdirSync("/proc").filter((d) => /^\d+$/.test(d) && !before.has(d));
  return pids.find((p) => {
    try {
      return fs.readFileSync(`/proc/${p}/cmdline`, "utf8").includes("workerd");
    } catch {
      return false;
    }
  });
}

const before = new Set(fs.readdirSync("/proc"));
const dir = fs.mkdtempSync(path.join(os.tmpdir(), "bluegreen-ctl-bench-"));
const router = await startRouter({ ADMIN_TOKEN: "bench", METRICS_TOKEN: "bench", ROUTE_LIMIT: "60" }, { persistTo: dir });
/** Requests `route`'s controller counted so far. */
const countedNow = async (route) => {
  const path = route === "default" ? "status" : `routes/${route}/status`;
  const s = (await router.admin("GET", path)).body;
  return s.stats.rollout.blue.requests + s.stats.rollout.green.requests;
};

/**
 * Posts `bodies` at CONCURRENCY, the i-th to `stubs[i % stubs.length]`, within CAP_MS.
 * Returns { sent, failed, secs, cpu (workerd seconds) }.
 */
async function run(pid, stubs, bodies) {
  const post = async (i) => {
    const { stub, route } = stubs[i % stubs.length];
    const res = await stub.fetch("https://controller/internal/stats", {
      method: "POST",
      body: bodies[i],
      headers: { "x-bluegreen-route": route },
    });
    const text = await res.text();
    if (res.status !== 200) throw new Error(`${res.status} ${text}`);
  };
  const cpu0 = pid ? cpuTicks(pid) : NaN;
  const t0 = performance.now();
  let next = 0;
  let failed = 0;
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (next < bodies.length && performance.now() - t0 < CAP_MS) {
        const i = next++;
        await post(i).catch(() => failed++);
      }
    }),
  );
  const secs = (performance.now() - t0) / 1000;
  return { sent: next, failed, secs, cpu: pid ? (cpuTicks(pid) - cpu0) / 100 : NaN };
}

function report(label, r, counted) {
  const want = r.sent * PER_BATCH;
  console.log(`controller ${label}: ${(r.sent / r.secs).toFixed(0)} batches/s (${r.sent} in ${r.secs.toFixed(1)} s), ${r.failed} failed`);
  console.log(`controller ${label}: workerd CPU ${((1000 * r.cpu) / r.sent).toFixed(3)} ms per batch (incl. Miniflare's proxy from Node)`);
  console.log(`controller ${label}: requests counted ${counted} of ${want}: ${counted === want ? "exact" : "MISMATCH"}`);
  if (r.failed || counted !== want) process.exitCode = 1;
}

try {
  const pid = workerdPid(before);
  const ns = await router.mf.getDurableObjectNamespace("ROLLOUT");
  const stubOf = (route) => ({ route, stub: ns.get(ns.idFromName(route === "default" ? "global" : `route:${route}`)) });
  const rand = rng(42);
  const bodies = Array.from({ length: BATCHES }, (_, i) => batch(i, rand));
  const bytes = bodies.reduce((s, b) => s + b.length, 0) / bodies.length;
  console.log(`controller: ${BATCHES} batches of ${PER_BATCH} requests (${Math.round(bytes)} bytes each) at concurrency ${CONCURRENCY}`);

  // One route: every batch to the default route's controller.
  const one = [stubOf("default")];
  await run(pid, one, Array.from({ length: 20 }, (_, i) => batch(-1 - i, rand))); // warm-up
  const counted0 = await countedNow("default");
  const single = await run(pid, one, bodies);
  report("1 route", single, (await countedNow("default")) - counted0);

  // Several routes at once: the same batches (new ids) spread over their controllers.
  const names = Array.from({ length: ROUTES }, (_, i) => `bench-route-${i}`);
  for (const name of names) {
    const res = await router.admin("PUT", `routes/${name}`, { blue_model: "bench-blue" });
    if (res.status !== 201) throw new Error(`creating ${name}: ${res.status} ${res.text}`);
  }
  const many = names.map(stubOf);
  await run(pid, many, Array.from({ length: 20 * ROUTES }, (_, i) => batch(-100 - i, rand))); // warm-up
  const countedBefore = await Promise.all(names.map(countedNow));
  const spread = await run(pid, many, bodies.map((b) => b.replace('"id":"bench-', '"id":"routes-')));
  const after = await Promise.all(names.map(countedNow));
  const each = after.map((n, i) => n - countedBefore[i]);
  report(`${ROUTES} routes`, spread, each.reduce((a, b) => a + b, 0));
  // Each route's controller counted exactly its own share.
  const share = (i) => (Math.floor(spread.sent / ROUTES) + (i < spread.sent % ROUTES ? 1 : 0)) * PER_BATCH;
  const uneven = each.filter((n, i) => n !== share(i)).length;
  console.log(`controller ${ROUTES} routes: each route counted its own share: ${uneven === 0 ? "exact" : `${uneven} routes MISMATCH`}`);
  if (uneven) process.exitCode = 1;

  // A scrape of 50 routes, each with a series of data: its size, and the time the Worker takes
  // to ask every controller (six at a time) and merge their texts.
  const more = Array.from({ length: 50 - ROUTES }, (_, i) => `bench-route-${ROUTES + i}`);
  for (const name of more) {
    const res = await router.admin("PUT", `routes/${name}`, { blue_model: "bench-blue" });
    if (res.status !== 201) throw new Error(`creating ${name}: ${res.status} ${res.text}`);
  }
  await run(pid, more.map(stubOf), more.map((_, i) => batch(-1000 - i, rand)));
  const times = [];
  let bytes50 = 0;
  for (let i = 0; i < 21; i++) {
    const t = performance.now();
    const res = await fetch(`${router.url}/metrics`, { headers: { authorization: "Bearer bench" } });
    const text = await res.text();
    if (res.status !== 200) throw new Error(`scrape: ${res.status}`);
    if (i > 0) times.push(performance.now() - t); // the first opens every controller
    bytes50 = text.length;
  }
  times.sort((a, b) => a - b);
  console.log(
    `controller: a scrape of 51 routes (50 with data): ${bytes50} bytes, ` +
      `${times[Math.floor(times.length / 2)].toFixed(1)} ms median, ${times.at(-1).toFixed(1)} ms max over ${times.length}`,
  );
} finally {
  await router.close();
  fs.rmSync(dir, { recursive: true, force: true });
}
