// What the largest and worst request bodies cost in CPU: the router against the pass-through
// baseline Worker (bench/baseline.js), both in local workerd through Miniflare, in front of the
// upstream simulator, on 127.0.0.1.
//
// Every chat request pays, before any check, for reading its body and what it asks of the
// answer (tool names, response format). The Workers free plan gives a request 10 ms of CPU; the
// paid plans 30 s by default. This prints, for each body shape, the CPU per request of the
// workerd process running each Worker (utime + stime of all its threads, read from /proc before
// and after the shape's requests), and the router's own share: router − baseline, which is
// what the router's code adds to what any Worker pays for a body of that size.
//
// Shapes, each as large as MAX_BODY_BYTES allows by default (10 MiB), then again at 1 MiB (what
// the free plan's 10 ms can take), but for the small one:
//   small        a one-message chat (the README's request)
//   plain        one message holding 10 MiB of text
//   tools        130 000 tools of about 80 bytes (the security review's body)
//   big-tools    16 tools with 640 KiB schemas each (past the bound of what is read)
//   fields       ~600 000 top-level fields `"f123":0` (refused: more than 256, a 400)
//   escapes      one message of 10 MiB of `\u00e9` escapes
//
// Run: bash scripts/bench.sh bodies  (or node bench/bodies.mjs once build/ exists)
// BENCH_QUICK=1 sends 4 requests a shape instead of 16.
import http from "node:http";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { Miniflare, Log, LogLevel } from "miniflare";
import { startSimulator } from "../sim/upstream.mjs";
import { workerdChildren, cpuTicks, clockTicksPerSecond } from "./proc.mjs";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const REQUESTS = process.env.BENCH_QUICK === "1" ? 4 : 16;
const MIB = 1 << 20;
const LIMIT = 10 * MIB; // MAX_BODY_BYTES' default
const FREE_PLAN_MS = 10;

function compatibilityDate() {
  const toml = fs.readFileSync(path.join(ROOT, "wrangler.toml"), "utf8");
  return toml.match(/^compatibility_date\s*=\s*"([^"]+)"/m)[1];
}

/** A body of about `size` bytes: `make(n)` for the largest n that fits. */
function fill(make, size) {
  let lo = 1;
  let hi = 1;
  while (Buffer.byteLength(make(hi * 2)) <= size) hi *= 2;
  hi *= 2;
  while (hi - lo > 1) {
    const mid = Math.floor((lo + hi) / 2);
    if (Buffer.byteLength(make(mid)) <= size) lo = mid;
    else hi = mid;
  }
  return Buffer.from(make(lo));
}

const msg = (content) => ({ role: "user", content });
const SHAPES = {
  small: () => Buffer.from(JSON.stringify({ messages: [msg("Say hello")] })),
  plain: (size) => fill((n) => JSON.stringify({ messages: [msg("x".repeat(n))] }), size),
  tools: (size) =>
    fill((n) =>
      JSON.stringify({
        messages: [msg("hi")],
        tools: Array.from({ length: n }, (_, i) => ({ type: "function", function: { name: `f${i}`, parameters: {} } })),
      }),
    size),
  "big-tools": (size) =>
    fill((n) =>
      JSON.stringify({
        messages: [msg("hi")],
        tools: Array.from({ length: 16 }, (_, i) => ({ type: "function", function: { name: `f${i}`, description: "d".repeat(n) } })),
      }),
    size),
  fields: (size) =>
    fill((n) => {
      const parts = ['"messages":[{"role":"user","content":"hi"}]'];
      for (let i = 0; i < n; i++) parts.push(`"f${i}":0`);
      return `{${parts.join(",")}}`;
    }, size),
  escapes: (size) => fill((n) => `{"messages":[{"role":"user","content":"${"\\u00e9".repeat(n)}"}]}`, size),
};

const HZ = clockTicksPerSecond();

async function start(name, options, simUrl) {
  const before = workerdChildren();
  const mf = new Miniflare({
    rootPath: ROOT,
    modules: true,
    compatibilityDate: compatibilityDate(),
    host: "127.0.0.1",
    port: 0,
    log: new Log(LogLevel.NONE),
    handleStructuredLogs: () => {},
    ...options,
    bindings: { UPSTREAM_BASE_URL: `${simUrl}/v1`, ...(options.bindings ?? {}) },
  });
  const url = new URL((await mf.ready).toString());
  const pid = [...workerdChildren()].find((p) => !before.has(p));
  return { name, mf, host: url.hostname, port: Number(url.port), pid };
}

function post(target, body) {
  return new Promise((resolve) => {
    const req = http.request(
      {
        host: target.host,
        port: target.port,
        path: "/v1/chat/completions",
        method: "POST",
        headers: { "content-type": "application/json", "content-length": body.length },
      },
      (res) => {
        res.resume();
        res.on("end", () => resolve(res.statusCode));
        res.on("error", () => resolve(0));
      },
    );
    req.setTimeout(60_000, () => req.destroy(new Error("timeout")));
    req.on("error", () => resolve(0));
    req.end(body);
  });
}

/** CPU ms per request of `target` for `body`, after two warm-up requests. */
async function measure(target, body) {
  for (let i = 0; i < 2; i++) await post(target, body);
  const t0 = cpuTicks(target.pid);
  const statuses = [];
  for (let i = 0; i < REQUESTS; i++) statuses.push(await post(target, body));
  const ms = ((cpuTicks(target.pid) - t0) / HZ) * 1000;
  return { msPerRequest: ms / REQUESTS, statuses: [...new Set(statuses)].join(",") };
}

const sim = await startSimulator({ delayMs: 0 });
const targets = [
  await start("baseline", { scriptPath: "bench/baseline.js" }, sim.url),
  await start(
    "router",
    {
      scriptPath: "build/index.js",
      modulesRules: [{ type: "CompiledWasm", include: ["**/*.wasm"], fallthrough: true }],
      kvNamespaces: ["ROUTER_KV"],
      durableObjects: {
        ROLLOUT: { className: "RolloutController", useSQLite: true },
        ROUTE_REGISTRY: { className: "RouteRegistry", useSQLite: true },
      },
    },
    sim.url,
  ),
];
try {
  console.log(`bodies: ${REQUESTS} requests a shape and target, sequential; CPU of each workerd process at ${HZ} ticks/s`);
  console.log("| shape | body | baseline CPU ms/req | router CPU ms/req | router − baseline | statuses |");
  console.log("|---|---:|---:|---:|---:|---|");
  const worst = {};
  const cells = [["small", SHAPES.small]];
  for (const size of [LIMIT - 4096, MIB - 4096]) {
    for (const [shape, make] of Object.entries(SHAPES).slice(1)) cells.push([shape, () => make(size)]);
  }
  for (const [shape, make] of cells) {
    const body = make();
    const [base, router] = [await measure(targets[0], body), await measure(targets[1], body)];
    const size = body.length >= MIB ? `${(body.length / MIB).toFixed(2)} MiB` : `${body.length} B`;
    console.log(
      `| ${shape} | ${size} | ${base.msPerRequest.toFixed(1)} | ${router.msPerRequest.toFixed(1)} | ` +
        `${(router.msPerRequest - base.msPerRequest).toFixed(1)} | ${base.statuses} / ${router.statuses} |`,
    );
    const tier = body.length >= 2 * MIB ? "10 MiB" : body.length >= MIB / 2 ? "1 MiB" : "small";
    worst[tier] = Math.max(worst[tier] ?? 0, router.msPerRequest);
  }
  for (const [size, ms] of Object.entries(worst)) {
    console.log(`- worst body of ${size}: ${ms.toFixed(1)} ms of CPU in the router's workerd (free plan: ${FREE_PLAN_MS} ms): ${ms <= FREE_PLAN_MS ? "within" : "over"}`);
  }
} finally {
  for (const t of targets) await t.mf.dispose();
  await sim.close();
}
