// bluegreen-router benchmark: what the router costs over a bare pass-through Worker.
//
// What it measures, in one run, for three targets on 127.0.0.1:
//   direct    the upstream simulator itself (sim/upstream.mjs, fixed 20 ms before headers)
//   baseline  bench/baseline.js, a Worker that only passes requests through to the simulator
//   router    the built router (build/index.js + build/index_bg.wasm), pointed at the simulator
//   router100 the same router with 100 routes configured, its requests naming one of them: the
//             request path must not grow with the number of routes (issue 21). It runs in a
//             workerd process of its own, and processes of the same Worker differ by up to ~12%
//             in CPU per request, so the question is answered by a crossover (see "100 routes
//             against 1" below), not by comparing these two rows
//   responses the router target itself (the same workerd process), sent POST /v1/responses
//             with a request of the chat one's size
//             (`input` holding the same message): the Responses API may cost at most 10% more CPU
//             per request than chat, and holding its lifecycle events at most 1 ms of a
//             stream's first byte (issue 22)
//   queued    the same router with a stats queue bound (STATS_QUEUE, consumed by the same Worker):
//             its isolates send each batch as one queue message instead of posting it, off the
//             response path, so its CPU per request and p50 must stay within the router's noise
//             (issue 23; its CPU includes what of the consumer's work falls within the cell, as
//             the router's includes its posts)
// Both Workers run in local workerd through Miniflare with the same options (one workerd
// process each), so the baseline/router difference is the router's own work. They run from a
// snapshot of build/ (and bench/baseline.js) in a temporary directory, taken when no build is in
// progress, so that a rebuild during the run (wrangler dev rebuilds on change) cannot break it.
//
// Cells, each split into 4 rounds that take the targets in turn (a drift in machine load then
// hits all of them alike), each round on a fresh keep-alive http.Agent (maxSockets =
// concurrency), bounded by a request count and a time cap:
//   c=32   non-streaming POST /v1/chat/completions: req/s, p50/p99 latency (whole response)
//   c=1    the same, one at a time: p50/p99 latency
//   stream `"stream": true` at c=1: time to first body chunk (TTFB) p50/p99; the rest of the
//          stream is read (and must end with `data: [DONE]`) before the next request
// Every target gets a warm-up (non-streaming, c=32) first, and every cell a short warm-up of its
// own to open its sockets. Any non-200 status, network error or timeout counts as an error.
//
// CPU: the workerd child process of each Miniflare instance is found in /proc (parent = this
// process, cmdline containing "workerd"; the instances start one after the other, so the new
// pid belongs to the one just started). utime+stime (clock ticks, all threads) are read before
// and after the c=32 cell; the difference over the number of requests is its CPU per request.
//
// 100 routes against 1, as a crossover: after the cells above (router: 1 route, router100: 100),
// the two processes swap configurations (the router's gets the 100 routes, router100's loses
// them) and the c=32 and c=1 cells run again for the two, in alternating rounds. Each process
// then served both configurations, and each half compares the two configurations side by side
// in the same rounds, so the estimate, the geometric mean of the two halves' ratios (for p50 the
// mean of their differences), cancels both the processes' difference and any drift between the
// halves; the same per round gives its noise. The within-process ratios (drift between the
// halves included) and the processes' own difference are printed too.
//
// Also reported: build/index_bg.wasm raw and gzipped (level 9), in KB of 1024 bytes.
// Output: a Markdown table and the router-vs-baseline targets as PASS/MISS. The exit status is 0
// whatever the figures are; it is 1 only when the benchmark itself fails.
//
// Run: bash scripts/bench.sh   (or node bench/run.mjs once build/ exists)
// BENCH_QUICK=1 divides every request count by 5, for a quick check of the benchmark itself.
import http from "node:http";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import zlib from "node:zlib";
import { fileURLToPath } from "node:url";
import { Miniflare, Log, LogLevel } from "miniflare";
import { startSimulator } from "../sim/upstream.mjs";
import { workerdChildren, cpuTicks, clockTicksPerSecond } from "./proc.mjs";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");

const QUICK = process.env.BENCH_QUICK === "1";
const count = (n) => (QUICK ? Math.ceil(n / 5) : n);

const SIM_DELAY_MS = 20;
const TARGET_WARMUP = count(200); // per target, non-streaming at c=32
const CELLS = [
  { key: "c32", concurrency: 32, requests: count(2000), stream: false, measureCpu: true },
  { key: "c1", concurrency: 1, requests: count(500), stream: false },
  { key: "stream", concurrency: 1, requests: count(300), stream: true },
];
const CELL_WARMUP = (concurrency) => Math.max(20, 2 * concurrency); // opens the cell's sockets
const ROUNDS = 4; // each cell is split into rounds that alternate between the targets
const CELL_CAP_MS = 30_000; // a cell stops issuing requests after this, whatever its count
const REQUEST_TIMEOUT_MS = 10_000; // a request taking longer is destroyed and counted as an error
const RUN_CAP_MS = 600_000; // the whole run is abandoned (exit 1) after this

/** A chat completion's body for `model`, streamed or not. */
const bodyFor = (model, stream) =>
  Buffer.from(JSON.stringify({ model, messages: [{ role: "user", content: "hello" }], ...(stream ? { stream: true } : {}) }));
const BODY = bodyFor("x", false);
const STREAM_BODY = bodyFor("x", true);
/** Routes configured on `router100`, and the one its requests name. */
const ROUTES = 100;
const ROUTED_MODEL = "bench-route-050";
/** A Responses API request of the chat one's size, streamed or not. */
const responsesBodyFor = (stream) =>
  Buffer.from(JSON.stringify({ model: "x", input: [{ role: "user", content: "hello" }], ...(stream ? { stream: true } : {}) }));

// ---------------------------------------------------------------------------------------------
// Workers in Miniflare

/** wrangler.toml's compatibility_date, as the tests and the deploy use. */
function compatibilityDate() {
  const toml = fs.readFileSync(path.join(ROOT, "wrangler.toml"), "utf8");
  return toml.match(/^compatibility_date\s*=\s*"([^"]+)"/m)[1];
}

// Undo actions (stop a Worker, the simulator...), run in reverse on the way out, whatever happens.
const cleanups = [];
async function cleanup() {
  while (cleanups.length) {
    const fn = cleanups.pop();
    try {
      await fn();
    } catch (e) {
      console.error(`bench: cleanup failed: ${e.message}`);
    }
  }
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * Copies the built Worker and the baseline into `dir` once no build is under way (worker-build
 * works in build/.tmp) and the copy is consistent, waiting at most two minutes.
 */
async function snapshotBuild(dir) {
  const files = [
    ["build/index.js", "index.js"],
    ["build/index_bg.wasm", "index_bg.wasm"],
    ["bench/baseline.js", "baseline.js"],
  ];
  const building = () => fs.existsSync(path.join(ROOT, "build/.tmp"));
  const stamps = () => files.map(([from]) => fs.statSync(path.join(ROOT, from)).mtimeMs).join();
  for (let waited = 0; waited < 120_000; waited += 500) {
    if (!building()) {
      const before = stamps();
      for (const [from, to] of files) fs.copyFileSync(path.join(ROOT, from), path.join(dir, to));
      if (!building() && stamps() === before) return;
    }
    if (waited === 0) console.log("bench: a build is under way in build/; waiting for it to finish");
    await sleep(500);
  }
  throw new Error("build/ kept changing for 2 minutes; is a build looping?");
}

/**
 * Starts one Worker in its own Miniflare (its own workerd process) on 127.0.0.1, with the test
 * harness's options. `rootPath` must be the current directory (workerd refuses paths with "..")
 * and `scriptPath` a file in it. Returns { name, url, host, port, mf, pid, logs }; `logs`
 * counts the Worker's console lines.
 */
async function startWorker(name, rootPath, scriptPath, bindings, extra = {}) {
  const before = workerdChildren();
  const logs = { lines: 0, warnings: 0, errors: 0, samples: [] };
  const mf = new Miniflare({
    rootPath,
    scriptPath,
    modules: true,
    modulesRules: [{ type: "CompiledWasm", include: ["**/*.wasm"], fallthrough: true }],
    compatibilityDate: compatibilityDate(),
    kvNamespaces: ["ROUTER_KV"],
    bindings,
    host: "127.0.0.1",
    port: 0,
    log: new Log(LogLevel.NONE),
    // Taking the structured logs keeps workerd's output off our stdout; they are only counted.
    handleStructuredLogs: ({ level, message }) => {
      logs.lines++;
      if (level === "warn") logs.warnings++;
      if (level === "error") logs.errors++;
      if ((level === "warn" || level === "error") && logs.samples.length < 3) logs.samples.push(message);
    },
    ...extra,
  });
  cleanups.push(() => mf.dispose()); // at once, so that even a failed start is cleaned up
  const url = new URL(await mf.ready);
  const fresh = [...workerdChildren()].filter((pid) => !before.has(pid));
  if (fresh.length !== 1) {
    throw new Error(`${name}: expected one new workerd child process, found ${JSON.stringify(fresh)}`);
  }
  return { name, url: url.origin, host: url.hostname, port: Number(url.port), mf, pid: fresh[0], logs };
}

/** Creates the routes of `target` through its admin API, one after another (with `remove`,
 * deletes them). */
async function configureRoutes(target, remove = false) {
  for (let i = 0; i < ROUTES; i++) {
    const name = `bench-route-${String(i).padStart(3, "0")}`;
    const res = await fetch(`${target.url}/admin/routes/${name}`, {
      method: remove ? "DELETE" : "PUT",
      headers: { authorization: "Bearer bench", "content-type": "application/json" },
      body: remove ? undefined : JSON.stringify({ blue_model: `model-${i}` }),
    });
    if (res.status !== (remove ? 200 : 201)) throw new Error(`${remove ? "deleting" : "creating"} ${name}: ${res.status} ${await res.text()}`);
  }
}

/** Checks that `target`'s requests are served by `route` (the x-bluegreen-route header). */
async function expectRoute(target, route) {
  const res = await fetch(`${target.url}${target.path ?? "/v1/chat/completions"}`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: target.body ?? BODY,
  });
  await res.arrayBuffer();
  const got = res.headers.get("x-bluegreen-route");
  if (res.status !== 200 || got !== route) throw new Error(`${target.name}: served by route ${got} (${res.status}), not ${route}`);
}

// ---------------------------------------------------------------------------------------------
// Load

const nowMs = () => Number(process.hrtime.bigint()) / 1e6;

/**
 * One POST of the target's API (`target.path`, chat completions unless set). Never rejects;
 * resolves to { ok, status, totalMs, ttfbMs, error } where ttfbMs is the arrival of the first
 * body chunk. The body is read to its end (so the keep-alive socket can be reused); a stream
 * must carry its end (`data: [DONE]`, or `target.streamEnd`).
 */
function oneRequest(target, agent, stream) {
  const body = stream ? (target.streamBody ?? STREAM_BODY) : (target.body ?? BODY);
  return new Promise((resolve) => {
    const t0 = nowMs();
    let settled = false;
    const done = (r) => {
      if (!settled) {
        settled = true;
        resolve(r);
      }
    };
    const req = http.request(
      {
        host: target.host,
        port: target.port,
        path: target.path ?? "/v1/chat/completions",
        method: "POST",
        agent,
        headers: { "content-type": "application/json", "content-length": body.length },
      },
      (res) => {
        let ttfbMs;
        let tail = "";
        res.on("data", (chunk) => {
          if (ttfbMs === undefined) ttfbMs = nowMs() - t0;
          if (stream) tail = (tail + chunk.toString("latin1")).slice(-4096);
        });
        res.on("end", () => {
          const totalMs = nowMs() - t0;
          let error = null;
          if (res.statusCode !== 200) error = `status ${res.statusCode}`;
          else if (stream && !tail.includes(target.streamEnd ?? "data: [DONE]")) error = "stream without its end";
          done({ ok: !error, status: res.statusCode, totalMs, ttfbMs: ttfbMs ?? totalMs, error });
        });
        res.on("error", (e) => done({ ok: false, status: res.statusCode, error: e.code ?? e.message }));
        res.on("close", () => {
          if (!res.complete) done({ ok: false, status: res.statusCode, error: "response cut" });
        });
      },
    );
    req.setTimeout(REQUEST_TIMEOUT_MS, () => req.destroy(new Error("timeout")));
    req.on("error", (e) => done({ ok: false, status: 0, error: e.code ?? e.message }));
    req.end(body);
  });
}

/**
 * Sends up to `requests` requests with `concurrency` in flight, stopping early at `capMs`.
 * Returns { sent, ok, elapsedMs, capped, totals[], ttfbs[], errors: {reason: n} }.
 */
async function load(target, agent, { requests, concurrency, stream, capMs }) {
  const out = { sent: 0, ok: 0, elapsedMs: 0, capped: false, totals: [], ttfbs: [], errors: {} };
  const start = nowMs();
  const deadline = start + capMs;
  const lane = async () => {
    while (out.sent < requests) {
      if (nowMs() > deadline) {
        out.capped = true;
        return;
      }
      out.sent++;
      const r = await oneRequest(target, agent, stream);
      if (r.ok) {
        out.ok++;
        out.totals.push(r.totalMs);
        out.ttfbs.push(r.ttfbMs);
      } else {
        out.errors[r.error] = (out.errors[r.error] ?? 0) + 1;
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, lane));
  out.elapsedMs = nowMs() - start;
  return out;
}

/** Nearest-rank percentile of unsorted samples; NaN when there are none. */
function percentile(samples, p) {
  if (!samples.length) return NaN;
  const sorted = [...samples].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}

/**
 * One round of a cell against one target: its own agent, a short warm-up, then `requests`
 * measured requests. Returns the load result plus warm-up errors and CPU ticks.
 */
async function runRound(target, cell, requests) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: cell.concurrency });
  try {
    const shape = { concurrency: cell.concurrency, stream: cell.stream, capMs: CELL_CAP_MS / ROUNDS };
    const warm = await load(target, agent, { ...shape, requests: CELL_WARMUP(cell.concurrency) });
    const ticks0 = cell.measureCpu && target.pid ? cpuTicks(target.pid) : undefined;
    const r = await load(target, agent, { ...shape, requests });
    const ticks = ticks0 === undefined ? undefined : cpuTicks(target.pid) - ticks0;
    return { ...r, warmErrors: warm.sent - warm.ok, ticks };
  } finally {
    agent.destroy();
  }
}

/** Merges a cell's rounds for one target and derives its figures. */
function mergeRounds(rounds) {
  const r = { sent: 0, ok: 0, elapsedMs: 0, capped: false, totals: [], ttfbs: [], errors: {}, warmErrors: 0 };
  let ticks = 0;
  for (const x of rounds) {
    r.sent += x.sent;
    r.ok += x.ok;
    r.elapsedMs += x.elapsedMs;
    r.capped ||= x.capped;
    r.totals.push(...x.totals);
    r.ttfbs.push(...x.ttfbs);
    r.warmErrors += x.warmErrors;
    for (const [k, n] of Object.entries(x.errors)) r.errors[k] = (r.errors[k] ?? 0) + n;
    ticks = x.ticks === undefined ? undefined : ticks + x.ticks;
  }
  return {
    ...r,
    // Each round's own figures, for the spread between rounds (the run's noise).
    roundTicksPerReq: rounds.map((x) => (x.ticks === undefined ? NaN : x.ticks / x.sent)),
    roundP50: rounds.map((x) => percentile(x.totals, 50)),
    rps: (r.ok / r.elapsedMs) * 1000,
    p50: percentile(r.totals, 50),
    p99: percentile(r.totals, 99),
    ttfb50: percentile(r.ttfbs, 50),
    ttfb99: percentile(r.ttfbs, 99),
    ticks,
  };
}

/**
 * Every target's warm-up, then cell by cell; each cell in ROUNDS rounds that take the targets in
 * turn, so that a drift in machine load (this is a shared 2-core VM) hits them alike. Returns
 * { [target name]: { warmup, [cell key]: merged rounds } }.
 */
async function measure(targets, cells) {
  const results = Object.fromEntries(targets.map((t) => [t.name, {}]));
  for (const t of targets) {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 32 });
    const warm = await load(t, agent, { requests: TARGET_WARMUP, concurrency: 32, stream: false, capMs: CELL_CAP_MS });
    agent.destroy();
    results[t.name].warmup = { ...warm, warmErrors: 0 };
  }
  for (const cell of cells) {
    const rounds = Object.fromEntries(targets.map((t) => [t.name, []]));
    for (let i = 0; i < ROUNDS; i++) {
      for (const t of targets) rounds[t.name].push(await runRound(t, cell, Math.ceil(cell.requests / ROUNDS)));
    }
    for (const t of targets) {
      const r = mergeRounds(rounds[t.name]);
      results[t.name][cell.key] = r;
      const errs = Object.entries(r.errors).map(([k, n]) => `${k}: ${n}`).join(", ");
      console.log(
        `bench: ${cell.key.padEnd(6)} ${t.name.padEnd(8)} ${r.ok}/${r.sent} ok in ${(r.elapsedMs / 1000).toFixed(1)} s` +
          (r.capped ? " (time cap)" : "") +
          (errs ? ` errors {${errs}}` : "") +
          (r.warmErrors ? ` warm-up errors ${r.warmErrors}` : ""),
      );
    }
  }
  return results;
}

/**
 * 100 routes against 1 from the crossover: `a1`, `b100` the first half (process A with 1 route,
 * B with 100), `a100`, `b1` the second (swapped), each a merged cell with per-round figures.
 * Returns the estimate and its per-round range for CPU per request (a ratio: the geometric
 * mean of the halves' ratios B100/A1 and A100/B1) and for p50 (a difference: the mean of the
 * halves' differences), the within-process ratios, and B's CPU over A's (the processes' own
 * difference, which the crossover takes out).
 */
function crossover({ a1, b100, a100, b1 }) {
  const perRound = (f) => a1.c32.roundTicksPerReq.map((_, i) => f(i));
  const cpu = (x, i) => (i === undefined ? x.ticks / x.sent : x.roundTicksPerReq[i]);
  const cpuRatio = (i) => Math.sqrt((cpu(b100.c32, i) / cpu(a1.c32, i)) * (cpu(a100.c32, i) / cpu(b1.c32, i)));
  const p50 = (x, i) => (i === undefined ? x.p50 : x.roundP50[i]);
  const p50Delta = (i) => (p50(b100.c1, i) - p50(a1.c1, i) + (p50(a100.c1, i) - p50(b1.c1, i))) / 2;
  return {
    cpuRatio: cpuRatio(),
    cpuRounds: perRound(cpuRatio),
    p50Delta: p50Delta(),
    p50Rounds: perRound(p50Delta),
    withinA: cpu(a100.c32) / cpu(a1.c32),
    withinB: cpu(b100.c32) / cpu(b1.c32),
    processes: Math.sqrt((cpu(b100.c32) / cpu(a1.c32)) * (cpu(b1.c32) / cpu(a100.c32))),
  };
}

// ---------------------------------------------------------------------------------------------
// Report

const fmt = (x, digits = 1) => (Number.isFinite(x) ? x.toFixed(digits) : "—");

function table(targets, results, cpuMsPerReq) {
  const head = [
    "target",
    "req/s c=32",
    "p50 c=1 ms",
    "p99 c=1 ms",
    "p50 c=32 ms",
    "p99 c=32 ms",
    "stream TTFB p50/p99 ms",
    "CPU ms/req",
    "errors",
  ];
  const lines = [`| ${head.join(" | ")} |`, `|${head.map((h, i) => (i ? "---:" : ":---")).join("|")}|`];
  for (const t of targets) {
    const r = results[t.name];
    const errors = Object.values(r).reduce((n, c) => n + (c.sent - c.ok) + c.warmErrors, 0);
    const capped = Object.values(r).some((c) => c.capped) ? " (capped)" : "";
    lines.push(
      `| ${t.name} | ${fmt(r.c32.rps, 0)} | ${fmt(r.c1.p50, 2)} | ${fmt(r.c1.p99, 2)} | ${fmt(r.c32.p50, 2)} | ` +
        `${fmt(r.c32.p99, 2)} | ${fmt(r.stream.ttfb50, 2)} / ${fmt(r.stream.ttfb99, 2)} | ` +
        `${fmt(cpuMsPerReq[t.name], 3)} | ${errors}${capped} |`,
    );
  }
  return lines.join("\n");
}

const verdict = (pass) => (pass ? "PASS" : "MISS");

// ---------------------------------------------------------------------------------------------
// Main

async function main() {
  for (const f of ["build/index.js", "build/index_bg.wasm"]) {
    if (!fs.existsSync(path.join(ROOT, f))) throw new Error(`${f} is missing: run \`bash scripts/build.sh\``);
  }
  const startedAt = Date.now();
  const cpus = os.cpus();
  console.log(
    `bench: node ${process.version}, ${cpus.length} × ${cpus[0]?.model ?? "cpu"}, ` +
      `load average ${os.loadavg().map((x) => x.toFixed(2)).join(" ")}${QUICK ? ", BENCH_QUICK" : ""}`,
  );

  // workerd resolves the Worker's files from the current directory and refuses "..": run from
  // the snapshot. On the way out, step back before it is removed (after the instances stop).
  const snapshot = fs.mkdtempSync(path.join(os.tmpdir(), "bluegreen-bench-"));
  cleanups.push(() => {
    process.chdir(ROOT);
    fs.rmSync(snapshot, { recursive: true, force: true });
  });
  await snapshotBuild(snapshot);
  process.chdir(snapshot);

  const sim = await startSimulator({ host: "127.0.0.1", delayMs: SIM_DELAY_MS });
  cleanups.push(() => sim.close());
  const upstream = `${sim.url}/v1`;
  const simUrl = new URL(sim.url);
  const direct = { name: "direct", url: sim.url, host: simUrl.hostname, port: sim.port };

  // One at a time, so each new workerd pid is known to belong to the instance just started.
  const baseline = await startWorker("baseline", snapshot, "baseline.js", { UPSTREAM_BASE_URL: upstream });
  const durableObjects = {
    ROLLOUT: { className: "RolloutController", useSQLite: true },
    ROUTE_REGISTRY: { className: "RouteRegistry", useSQLite: true },
  };
  // The same bindings for both, as they swap configurations later.
  const routerBindings = { UPSTREAM_BASE_URL: upstream, ADMIN_TOKEN: "bench", ROUTE_LIMIT: String(ROUTES + 1) };
  const router = await startWorker("router", snapshot, "index.js", routerBindings, { durableObjects });
  const router100 = await startWorker("router100", snapshot, "index.js", routerBindings, { durableObjects });
  await configureRoutes(router100);
  router100.body = bodyFor(ROUTED_MODEL, false);
  router100.streamBody = bodyFor(ROUTED_MODEL, true);
  // The Responses requests go to the router's own workerd process: Miniflare instances of the
  // same Worker differ by up to ~12% in CPU per request from one another (three runs: router100
  // and queued, chat both, measured 5–12% above router), which would drown the API's own cost.
  // Targets take turns, so each one's CPU is still read over its own rounds alone.
  const responses = { ...router, name: "responses" };
  Object.assign(responses, {
    path: "/v1/responses",
    body: responsesBodyFor(false),
    streamBody: responsesBodyFor(true),
    streamEnd: "event: response.completed",
  });
  const queued = await startWorker("queued", snapshot, "index.js", { UPSTREAM_BASE_URL: upstream }, {
    durableObjects,
    queueProducers: { STATS_QUEUE: "bluegreen-stats" },
    queueConsumers: { "bluegreen-stats": { maxBatchSize: 100, maxBatchTimeout: 5, maxRetries: 100 } },
  });
  const targets = [direct, baseline, router, router100, responses, queued];
  console.log(
    `bench: simulator ${sim.url} (delay ${SIM_DELAY_MS} ms), baseline ${baseline.url} (workerd pid ${baseline.pid}), ` +
      `router ${router.url} (workerd pid ${router.pid}), router100 ${router100.url} (workerd pid ${router100.pid}, ${ROUTES} routes)`,
  );

  // Preflight: each target must answer a plain and a streaming completion before we measure.
  for (const t of targets) {
    for (const stream of [false, true]) {
      const agent = new http.Agent({ keepAlive: false });
      const r = await oneRequest(t, agent, stream);
      agent.destroy();
      if (!r.ok) throw new Error(`${t.name} failed its preflight (${stream ? "stream" : "json"}): ${r.error}`);
    }
  }

  const results = await measure(targets, CELLS);

  // The crossover's second half: the two processes swap configurations, and the isolates'
  // cached registry (ROUTING_CACHE_SECONDS, 5 s by default) catches up before the warm-up.
  await configureRoutes(router);
  await configureRoutes(router100, true);
  await sleep(6000);
  const swapped = [
    { ...router, name: "router+100", body: router100.body, streamBody: router100.streamBody },
    { ...router100, name: "router100-1", body: BODY, streamBody: STREAM_BODY },
  ];
  await expectRoute(swapped[0], ROUTED_MODEL);
  await expectRoute(swapped[1], "default");
  const second = await measure(swapped, CELLS.filter((c) => c.key !== "stream"));

  const hz = clockTicksPerSecond();
  const cpuMsPerReq = {};
  const cpuNotes = [];
  for (const t of [baseline, router, router100, responses, queued]) {
    const c = results[t.name].c32;
    cpuMsPerReq[t.name] = ((c.ticks / hz) * 1000) / c.sent;
    cpuNotes.push(`${t.name} ${c.ticks} ticks / ${c.sent} requests`);
  }

  const wasm = fs.readFileSync(path.join(snapshot, "index_bg.wasm"));
  const rawKb = wasm.length / 1024;
  const gzKb = zlib.gzipSync(wasm, { level: 9 }).length / 1024;

  console.log("");
  console.log(
    `Non-streaming: ${CELLS[0].requests} requests at c=32, ${CELLS[1].requests} at c=1; streaming: ` +
      `${CELLS[2].requests} at c=1. Simulator delay ${SIM_DELAY_MS} ms. Latency = whole response; ` +
      `TTFB = first body chunk.`,
  );
  console.log("");
  console.log(table(targets, results, cpuMsPerReq));
  console.log("");
  console.log(
    `CPU = workerd utime+stime over the c=32 cell at ${hz} ticks/s (${cpuNotes.join(", ")}); ` +
      `it includes Miniflare's entry worker, the same for both.`,
  );
  console.log(`wasm: build/index_bg.wasm ${fmt(rawKb)} KB raw, ${fmt(gzKb)} KB gzipped (level 9); 1 KB = 1024 bytes.`);

  const b = results.baseline;
  const r = results.router;
  const rpsRatio = r.c32.rps / b.c32.rps;
  const p50Delta = r.c1.p50 - b.c1.p50;
  const cpuRatio = cpuMsPerReq.router / cpuMsPerReq.baseline;
  console.log("");
  console.log("Router vs baseline:");
  console.log(
    `- throughput c=32: ${fmt(r.c32.rps, 0)} vs ${fmt(b.c32.rps, 0)} req/s = ${fmt(rpsRatio * 100)}% ` +
      `(target ≥ 90%): ${verdict(rpsRatio >= 0.9)}`,
  );
  console.log(
    `- p50 latency c=1: ${fmt(r.c1.p50, 2)} vs ${fmt(b.c1.p50, 2)} ms = ${p50Delta >= 0 ? "+" : ""}${fmt(p50Delta, 2)} ms ` +
      `(target ≤ +1 ms): ${verdict(p50Delta <= 1)}`,
  );
  console.log(
    `- CPU per request: ${fmt(cpuMsPerReq.router, 3)} vs ${fmt(cpuMsPerReq.baseline, 3)} ms = ${fmt(cpuRatio, 2)}× ` +
      `(target ≤ 1.5×): ${verdict(cpuRatio <= 1.5)}`,
  );
  console.log(`- wasm gzipped: ${fmt(gzKb)} KB (target ≤ 420 KB): ${verdict(gzKb <= 420)}`);
  console.log(
    `- stream TTFB p50: router ${fmt(r.stream.ttfb50, 2)} vs baseline ${fmt(b.stream.ttfb50, 2)} ms = ` +
      `+${fmt(r.stream.ttfb50 - b.stream.ttfb50, 2)} ms (no target; for information)`,
  );
  console.log(
    `- for scale, the baseline Worker over direct: p50 c=1 +${fmt(b.c1.p50 - results.direct.c1.p50, 2)} ms, ` +
      `stream TTFB p50 +${fmt(b.stream.ttfb50 - results.direct.stream.ttfb50, 2)} ms, ` +
      `req/s c=32 ${fmt((b.c32.rps / results.direct.c32.rps) * 100)}%`,
  );

  const spread = (xs, k = 1) => `${fmt(Math.min(...xs) * k, 3)}–${fmt(Math.max(...xs) * k, 3)}`;
  const msPerTick = 1000 / hz;
  const pct = (x) => `${x >= 1 ? "+" : ""}${fmt((x - 1) * 100)}%`;
  const ms = (x) => `${x >= 0 ? "+" : ""}${fmt(x, 2)} ms`;
  const halves = { a1: r, b100: results.router100, a100: second["router+100"], b1: second["router100-1"] };
  const x = crossover(halves);
  const cpuOf = (c) => fmt(((c.c32.ticks / hz) * 1000) / c.c32.sent, 3);
  console.log(
    `- ${ROUTES} routes configured vs 1 (its requests name one route), crossover of two processes A (router) ` +
      `and B (router100): CPU per request A ${cpuOf(halves.a100)} vs ${cpuOf(halves.a1)} ms, ` +
      `B ${cpuOf(halves.b100)} vs ${cpuOf(halves.b1)} ms; estimate ${pct(x.cpuRatio)} ` +
      `(rounds ${x.cpuRounds.map(pct).join(", ")}); within process A ${pct(x.withinA)}, B ${pct(x.withinB)} ` +
      `(drift between the halves included); B over A in the same configuration ${pct(x.processes)}; ` +
      `within the noise when the rounds' estimates lie on both sides of 0`,
  );
  console.log(
    `- p50 c=1 with ${ROUTES} routes vs 1: A ${fmt(halves.a100.c1.p50, 2)} vs ${fmt(halves.a1.c1.p50, 2)} ms, ` +
      `B ${fmt(halves.b100.c1.p50, 2)} vs ${fmt(halves.b1.c1.p50, 2)} ms; estimate ${ms(x.p50Delta)} ` +
      `(rounds ${x.p50Rounds.map(ms).join(", ")}); within the noise when the rounds' estimates lie on both sides of 0`,
  );

  const rs = results.responses;
  const respCpu = cpuMsPerReq.responses / cpuMsPerReq.router - 1;
  const holdMs = rs.stream.ttfb50 - r.stream.ttfb50;
  console.log(
    `- Responses vs chat, the same router and request size: CPU per request ${fmt(cpuMsPerReq.responses, 3)} vs ` +
      `${fmt(cpuMsPerReq.router, 3)} ms = ${respCpu >= 0 ? "+" : ""}${fmt(respCpu * 100)}% ` +
      `(rounds ${spread(rs.c32.roundTicksPerReq, msPerTick)} vs ${spread(r.c32.roundTicksPerReq, msPerTick)}; ` +
      `target ≤ +10%): ${verdict(respCpu <= 0.1)}`,
  );
  console.log(
    `- stream TTFB p50, Responses (lifecycle events held) vs chat (role chunk held): ${fmt(rs.stream.ttfb50, 2)} vs ` +
      `${fmt(r.stream.ttfb50, 2)} ms = ${holdMs >= 0 ? "+" : ""}${fmt(holdMs, 2)} ms (target ≤ +1 ms): ${verdict(holdMs <= 1)}`,
  );

  const q = results.queued;
  console.log(
    `- stats through a queue vs posted: CPU per request ${fmt(cpuMsPerReq.queued, 3)} vs ${fmt(cpuMsPerReq.router, 3)} ms ` +
      `(rounds ${spread(q.c32.roundTicksPerReq, msPerTick)} vs ${spread(r.c32.roundTicksPerReq, msPerTick)}); ` +
      `p50 c=1 ${fmt(q.c1.p50, 2)} vs ${fmt(r.c1.p50, 2)} ms (rounds ${spread(q.c1.roundP50)} vs ${spread(r.c1.roundP50)}); ` +
      `within the noise when each figure lies in the other's range of rounds`,
  );

  const totalErrors = targets.reduce(
    (n, t) => n + Object.values(results[t.name]).reduce((m, c) => m + (c.sent - c.ok) + c.warmErrors, 0),
    0,
  );
  console.log(`- errors (non-200, network, timeouts, incl. warm-ups): ${totalErrors}`);
  for (const t of [baseline, router, router100, responses, queued]) {
    if (t.logs.warnings || t.logs.errors) {
      console.log(`- ${t.name} logged ${t.logs.warnings} warnings, ${t.logs.errors} errors, e.g. ${JSON.stringify(t.logs.samples[0])}`);
    }
  }
  console.log(`bench: done in ${((Date.now() - startedAt) / 1000).toFixed(0)} s`);
}

// A hard stop for the whole run, and for Ctrl-C: clean up, then leave.
const watchdog = setTimeout(async () => {
  console.error(`bench: still running after ${RUN_CAP_MS / 1000} s; stopping`);
  await cleanup();
  process.exit(1);
}, RUN_CAP_MS);
watchdog.unref();
for (const signal of ["SIGINT", "SIGTERM"]) {
  process.on(signal, async () => {
    await cleanup();
    process.exit(130);
  });
}

let code = 0;
try {
  await main();
} catch (e) {
  console.error(`bench: failed: ${e.stack ?? e}`);
  code = 1;
} finally {
  await cleanup();
}
process.exit(code);
