// Stats straight to the controller against stats through the queue, side by side, in local
// workerd (Miniflare's queue broker and one consumer).
//
// N simulated isolates each send one batch a second (realistic batches as in
// bench/controller.mjs: one minute, both environments, latency histograms of dozens of
// buckets). Direct: each batch is posted to the route's controller, as an isolate does without
// a queue. Queue: each batch goes into the queue as one message, as an isolate with a
// STATS_QUEUE binding sends it (from here in chunks of 100 through the producer binding: how
// messages enter the queue is nothing the controller sees), and the Worker's own consumer
// merges each delivery and posts one batch per route. For each cell it reports:
//   - the calls the controller received per second (direct: the posts; queue: the consumer's
//     posts, from its log line per delivery);
//   - workerd's CPU per second (all of it: locally the consumer runs in the same process);
//   - the delay from a second's start, when its isolates' batches are due, to their count at
//     the controller (p50, p95 over the seconds, read by polling the controller's status every
//     200 ms): a path that cannot send them all within the second adds its backlog;
//   - whether the counts came out exact once everything was delivered.
// A path that cannot keep up locally shows it: the batches it sent per second fall short of N,
// or the delay grows with every second.
//
//   node bench/queue.mjs [--isolates 100,1000,5000] [--seconds 8] [--requests-per-batch 100]
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { startRouter } from "../tests/harness.mjs";
import { cpuTicks, workerdChildren } from "./proc.mjs";
import { rng, envStats } from "./batches.mjs";

const argv = (name, dflt) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : dflt;
};
const ISOLATES = argv("isolates", "100,1000,5000").split(",").map(Number);
const SECONDS = Number(argv("seconds", "8"));
const PER_BATCH = Number(argv("requests-per-batch", "100"));
const CONCURRENCY = 64; // direct posts in flight
const DRAIN_MS = 90_000; // the longest wait for the last counts

/** One isolate's batch: `id` unique, the current minute, 30% green. */
function batchJson(id, version, rand) {
  const minute = Math.floor(Date.now() / 60000);
  const green = Math.round(PER_BATCH * 0.3);
  return JSON.stringify({
    id,
    entries: [
      { minute, env: "blue", version, stats: envStats(PER_BATCH - green, rand) },
      { minute, env: "green", version, stats: envStats(green, rand) },
    ],
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const percentile = (xs, p) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)] : NaN;
};

/** Runs one cell: `n` isolates for SECONDS seconds over `path` ("direct" or "queue"). */
async function cell(n, path_) {
  const before = workerdChildren();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "bluegreen-queue-bench-"));
  const router = await startRouter(
    { ADMIN_TOKEN: "bench", ROUTING_CACHE_SECONDS: "0" },
    { persistTo: dir, queue: path_ === "queue" ? { maxBatchSize: 100, maxBatchTimeout: 1 } : false },
  );
  const pid = [...workerdChildren()].find((p) => !before.has(p));
  try {
    // Polled every 200 ms under load: a poll that loses its connection (workerd closing a
    // kept-alive one just as it is reused) is asked again rather than ending the run.
    const status = async () => {
      for (let attempt = 1; ; attempt++) {
        try {
          return (await router.admin("GET", "status")).body;
        } catch (e) {
          if (attempt >= 5) throw e;
          await sleep(100);
        }
      }
    };
    const version = (await status()).routing_version;
    const counted = async () => {
      const s = (await status()).stats.rollout;
      return s.blue.requests + s.green.requests;
    };
    const ns = await router.mf.getDurableObjectNamespace("ROLLOUT");
    const stub = ns.get(ns.idFromName("global"));
    const producer = path_ === "queue" ? await router.mf.getQueueProducer("STATS_QUEUE") : null;
    const rand = rng(42 + n);
    // Every second's batches are made before the clock starts: making them is not the path's.
    const seconds = Array.from({ length: SECONDS }, (_, s) =>
      Array.from({ length: n }, (_, i) => batchJson(`b-${n}-${s}-${i}`, version, rand)),
    );
    const sent = []; // per second: { at (ms, when its last batch left), total (requests so far) }
    let posts = 0;
    const samples = []; // [ms, counted]
    let polling = true;
    const t0 = performance.now();
    const poller = (async () => {
      while (polling) {
        samples.push([performance.now(), await counted()]);
        await sleep(200);
      }
    })();
    const cpu0 = cpuTicks(pid);
    for (let s = 0; s < SECONDS; s++) {
      const due = t0 + s * 1000;
      if (performance.now() < due) await sleep(due - performance.now());
      const bodies = seconds[s];
      if (producer) {
        for (let i = 0; i < bodies.length; i += 100) {
          const chunk = bodies.slice(i, i + 100).map((b) => ({
            body: `{"route":"default","sent_ms":${Date.now()},"batch":${b}}`,
            contentType: "text",
          }));
          await producer.sendBatch(chunk);
        }
      } else {
        let next = 0;
        await Promise.all(
          Array.from({ length: Math.min(CONCURRENCY, bodies.length) }, async () => {
            while (next < bodies.length) {
              const body = bodies[next++];
              const res = await stub.fetch("https://controller/internal/stats", {
                method: "POST",
                body,
                headers: { "x-bluegreen-route": "default" },
              });
              await res.text();
              if (res.status !== 200) throw new Error(`direct post: ${res.status}`);
              posts++;
            }
          }),
        );
      }
      // A second's batches are due at its start: a path that sends late adds to their delay.
      sent.push({ at: due, total: (s + 1) * n * PER_BATCH });
      samples.push([performance.now(), await counted()]);
    }
    // Sending is on schedule when it ends within the last second.
    const sendSecs = Math.max(SECONDS, (performance.now() - t0) / 1000);
    const want = SECONDS * n * PER_BATCH;
    const drained = performance.now() + DRAIN_MS;
    while ((await counted()) < want && performance.now() < drained) await sleep(200);
    polling = false;
    await poller;
    samples.push([performance.now(), await counted()]);
    samples.sort((a, b) => a[0] - b[0]);
    const total = await counted();
    const secs = (performance.now() - t0) / 1000;
    const cpu = (cpuTicks(pid) - cpu0) / 100;
    if (producer) {
      posts = router.logs
        .map((l) => l.message.match(/^stats queue: delivery of \d+ messages merged into (\d+) posts/))
        .filter(Boolean)
        .reduce((a, m) => a + Number(m[1]), 0);
    }
    const delays = sent.map(({ at, total: need }) => {
      const hit = samples.find(([t, c]) => t >= at && c >= need);
      return hit ? hit[0] - at : NaN;
    });
    return {
      n,
      path: path_,
      batchesPerSec: (SECONDS * n) / sendSecs,
      callsPerSec: posts / secs,
      cpuPerSec: cpu / secs,
      p50: percentile(delays, 50),
      p95: percentile(delays, 95),
      exact: total === want,
      total,
      want,
    };
  } finally {
    await router.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

const fmt = (x, d = 0) => (Number.isFinite(x) ? x.toFixed(d) : "—");
console.log(
  `queue bench: ${SECONDS} s of one batch a second per isolate, ${PER_BATCH} requests a batch; ` +
    `node ${process.version}, ${os.cpus().length} × ${os.cpus()[0]?.model ?? "cpu"}`,
);
const rows = [];
for (const n of ISOLATES) {
  for (const p of ["direct", "queue"]) {
    const r = await cell(n, p);
    rows.push(r);
    console.log(
      `queue bench: ${n} isolates, ${p}: sent ${fmt(r.batchesPerSec)} batches/s; controller ${fmt(r.callsPerSec, 1)} calls/s; ` +
        `CPU ${fmt(r.cpuPerSec, 2)} s/s; delay p50 ${fmt(r.p50)} ms p95 ${fmt(r.p95)} ms; counted ${r.total} of ${r.want}`,
    );
  }
}
console.log("");
console.log("| isolates | path | batches sent/s | controller calls/s | workerd CPU s/s | delay p50 ms | delay p95 ms | exact |");
console.log("|---:|:---|---:|---:|---:|---:|---:|:---|");
for (const r of rows) {
  console.log(
    `| ${r.n} | ${r.path} | ${fmt(r.batchesPerSec)} | ${fmt(r.callsPerSec, 1)} | ${fmt(r.cpuPerSec, 2)} | ${fmt(r.p50)} | ${fmt(r.p95)} | ${r.exact ? "yes" : `no (${r.total} of ${r.want})`} |`,
  );
}
const at = (n, p) => rows.find((r) => r.n === n && r.path === p);
if (at(1000, "direct") && at(1000, "queue")) {
  const d = at(1000, "direct");
  const q = at(1000, "queue");
  // Direct, every isolate's batch is one call: 1000 a second when the controller keeps up,
  // which locally it does not (its measured rate is the lower bound of what it was asked).
  const fewer = Math.max(d.callsPerSec, 1000) / q.callsPerSec;
  console.log("");
  console.log(
    `- 1000 isolates: ${fmt(fewer, 1)}× fewer controller calls through the queue (1000 asked directly, ${fmt(d.callsPerSec, 1)} taken; target ≥ 20×): ${fewer >= 20 ? "PASS" : "MISS"}; ` +
      `counts exact: ${q.exact ? "PASS" : "MISS"}; delay p95 ${fmt(q.p95)} ms (target ≤ 10000): ${q.p95 <= 10_000 ? "PASS" : "MISS"}`,
  );
}
