// How many stats batches one rollout controller absorbs per second, in local workerd.
//
// Isolates send the controller one batch per second each (src/recorder.rs), whatever their
// traffic, so the controller's capacity is counted in batches, and its limit is the number of
// busy isolates rather than requests/s. This posts realistic batches (one minute, both
// environments, latency histograms with dozens of buckets, as an isolate serving ~100 req/s
// sends) straight to the Durable Object, at a fixed concurrency, for a bounded count, and
// reports batches/s, the workerd CPU per batch, and whether the totals came out exact.
//
//   node bench/controller.mjs [--batches 3000] [--concurrency 16] [--requests-per-batch 100]
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { startRouter } from "../tests/harness.mjs";
import { cpuTicks } from "./proc.mjs";

const arg = (name, dflt) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : dflt;
};
const BATCHES = arg("batches", 3000);
const CONCURRENCY = arg("concurrency", 16);
const PER_BATCH = arg("requests-per-batch", 100);
const CAP_MS = 120_000; // stop issuing after this, whatever the count

/** A deterministic xorshift RNG, so every run posts the same batches. */
function rng(seed) {
  let x = BigInt(seed) || 1n;
  return () => {
    x ^= (x << 13n) & 0xffffffffffffffffn;
    x ^= x >> 7n;
    x ^= (x << 17n) & 0xffffffffffffffffn;
    return Number(x % 1000000n) / 1e6;
  };
}

/** The stored histogram form for `n` latencies spread over ~300–3000 ms (log-linear buckets). */
function histogram(n, rand) {
  const counts = new Map();
  let sum = 0;
  for (let i = 0; i < n; i++) {
    const ms = Math.round(300 * 10 ** rand());
    sum += ms;
    const exp = Math.floor(Math.log2(ms));
    const shift = exp - 5;
    const bucket = 32 + shift * 32 + ((ms >> shift) - 32);
    counts.set(bucket, (counts.get(bucket) ?? 0) + 1);
  }
  return { n, sum, b: [...counts.entries()].sort((a, b) => a[0] - b[0]) };
}

function envStats(n, rand) {
  return {
    requests: n,
    errors: { server_error: Math.round(n * 0.01), rate_limited: 0, timeout: 0, connection: 0, upstream_other: 0, interrupted: 0 },
    client_errors: 0,
    fallbacks: 0,
    prompt_tokens: n * 200,
    completion_tokens: n * 400,
    cost_usd: n * 0.0005,
    first_byte: histogram(n, rand),
    total: histogram(n, rand),
  };
}

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
const router = await startRouter({ ADMIN_TOKEN: "bench" }, { persistTo: dir });
const countedNow = async () => {
  const s = (await router.admin("GET", "status")).body;
  return s.stats.rollout.blue.requests + s.stats.rollout.green.requests;
};
try {
  const pid = workerdPid(before);
  const ns = await router.mf.getDurableObjectNamespace("ROLLOUT");
  const stub = ns.get(ns.idFromName("global"));
  const rand = rng(42);
  const bodies = Array.from({ length: BATCHES }, (_, i) => batch(i, rand));
  const post = async (body) => {
    const res = await stub.fetch("https://controller/internal/stats", { method: "POST", body });
    const text = await res.text();
    if (res.status !== 200) throw new Error(`${res.status} ${text}`);
  };
  for (let i = 0; i < 20; i++) await post(batch(-1 - i, rand)); // warm-up
  const counted0 = await countedNow();

  const cpu0 = pid ? cpuTicks(pid) : NaN;
  const t0 = performance.now();
  let next = 0;
  let failed = 0;
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (next < BATCHES && performance.now() - t0 < CAP_MS) {
        const body = bodies[next++];
        await post(body).catch(() => failed++);
      }
    }),
  );
  const secs = (performance.now() - t0) / 1000;
  const cpu = pid ? (cpuTicks(pid) - cpu0) / 100 : NaN;
  const sent = next;

  const counted = (await countedNow()) - counted0;
  const bytes = bodies.slice(0, sent).reduce((s, b) => s + b.length, 0) / sent;
  console.log(`controller: ${sent} batches of ${PER_BATCH} requests (${Math.round(bytes)} bytes each) at concurrency ${CONCURRENCY}`);
  console.log(`controller: ${(sent / secs).toFixed(0)} batches/s (${secs.toFixed(1)} s), ${failed} failed`);
  console.log(`controller: workerd CPU ${(1000 * cpu / sent).toFixed(3)} ms per batch (incl. Miniflare's proxy from Node)`);
  console.log(`controller: requests counted ${counted} of ${sent * PER_BATCH}: ${counted === sent * PER_BATCH ? "exact" : "MISMATCH"}`);
  if (failed || counted !== sent * PER_BATCH) process.exitCode = 1;
} finally {
  await router.close();
  fs.rmSync(dir, { recursive: true, force: true });
}
