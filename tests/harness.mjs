// Test harness: the built Worker (build/index.js + its wasm) in local workerd through
// Miniflare, in front of the upstream simulator, reached over real HTTP on 127.0.0.1.
import { Miniflare, Log, LogLevel } from "miniflare";
import { fileURLToPath } from "node:url";
import path from "node:path";
import fs from "node:fs";
import crypto from "node:crypto";
import { startSimulator } from "../sim/upstream.mjs";

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");

/** wrangler.toml's compatibility_date, so tests run the runtime the deploy gets. */
export function compatibilityDate() {
  const toml = fs.readFileSync(path.join(ROOT, "wrangler.toml"), "utf8");
  return toml.match(/^compatibility_date\s*=\s*"([^"]+)"/m)[1];
}

/**
 * wrangler.toml's `[assets]` as Miniflare's `assets` option (as `wrangler dev` makes it), so
 * tests serve the dashboard the way the deploy does: from the static assets, through the
 * Worker's binding, the Worker running first for every request (`run_worker_first`).
 */
export function assetsOptions() {
  const toml = fs.readFileSync(path.join(ROOT, "wrangler.toml"), "utf8");
  const section = toml.match(/^\[assets\]\n((?:(?!\[).*\n)*)/m)?.[1];
  if (section === undefined) return undefined;
  const value = (key) => {
    const raw = section.match(new RegExp(`^${key}\\s*=\\s*(.+?)\\s*$`, "m"))?.[1];
    return raw === undefined ? undefined : JSON.parse(raw);
  };
  return {
    directory: path.join(ROOT, value("directory")),
    binding: value("binding"),
    routerConfig: { has_user_worker: true, invoke_user_worker_ahead_of_assets: value("run_worker_first") === true },
    assetConfig: { html_handling: value("html_handling"), not_found_handling: value("not_found_handling") },
  };
}

/** The stats queue as `wrangler.toml`'s `queue` environment binds it, for `{ queue: true }`. */
export const STATS_QUEUE = "bluegreen-stats";

/**
 * Starts the router with `vars` (strings; secrets are vars locally too). Returns
 * { url, mf, kv, logs, outcomes(), tick(), admin(), status(), events(), close() }. `logs` collects the worker's
 * console lines. With `persistTo`, KV and the Durable Object live in that directory, so a
 * second router started on it finds what the first stored. With `direct`, `directUrl` also
 * reaches workerd's own socket for the Worker, without Miniflare's entry Worker in front (which
 * parses every URL with `new URL()`, so that `%2e%2e` segments and backslashes are gone before
 * the router sees them); workerd passes the request line's path on as it came.
 */
export async function startRouter(vars = {}, { persistTo, withoutKv = false, direct = false, queue = false, faults = false } = {}) {
  if (!fs.existsSync(path.join(ROOT, "build/index.js"))) {
    throw new Error("build/index.js is missing: run `bash scripts/build.sh` first");
  }
  const logs = [];
  const mf = new Miniflare({
    // Relative to rootPath: a scriptPath containing ".." crashes workerd.
    rootPath: ROOT,
    // `faults`: the built router inside tests/faults.worker.mjs, which makes the platform's
    // failures (a consumer that throws, a controller that refuses) happen on demand.
    ...(faults
      ? {
          modules: [
            { type: "ESModule", path: "build/faults.mjs", contents: fs.readFileSync(path.join(ROOT, "tests/faults.worker.mjs"), "utf8") },
            { type: "ESModule", path: "build/index.js" },
            { type: "CompiledWasm", path: "build/index_bg.wasm" },
          ],
        }
      : {
          scriptPath: "build/index.js",
          modules: true,
          modulesRules: [{ type: "CompiledWasm", include: ["**/*.wasm"], fallthrough: true }],
        }),
    compatibilityDate: compatibilityDate(),
    // `withoutKv`: no KV binding at all, so that every KV read and write fails.
    kvNamespaces: withoutKv ? [] : ["ROUTER_KV"],
    assets: assetsOptions(),
    durableObjects: {
      ROLLOUT: { className: "RolloutController", useSQLite: true },
      ROUTE_REGISTRY: { className: "RouteRegistry", useSQLite: true },
    },
    ...(persistTo
      ? { kvPersist: path.join(persistTo, "kv"), durableObjectsPersist: path.join(persistTo, "do") }
      : {}),
    bindings: vars,
    // `queue`: stats go through a queue the Worker itself consumes (`queue` may override the
    // consumer's settings, e.g. { maxRetries: 0 }).
    ...(queue
      ? {
          queueProducers: { STATS_QUEUE: STATS_QUEUE },
          queueConsumers: {
            [STATS_QUEUE]: { maxBatchSize: 100, maxBatchTimeout: 1, maxRetries: 10, retryDelay: 0, deadLetterQueue: `${STATS_QUEUE}-dlq`, ...(queue === true ? {} : queue) },
          },
        }
      : {}),
    ...(direct ? { unsafeDirectSockets: [{ host: "127.0.0.1", port: 0 }] } : {}),
    host: "127.0.0.1",
    port: 0,
    log: new Log(LogLevel.NONE),
    handleStructuredLogs: ({ level, message }) => {
      logs.push({ level, message });
    },
  });
  const url = (await mf.ready).toString().replace(/\/$/, "");
  const kv = withoutKv ? undefined : await mf.getKVNamespace("ROUTER_KV");
  const directUrl = direct ? (await mf.unsafeGetDirectURL()).toString().replace(/\/$/, "") : undefined;
  return {
    url,
    directUrl,
    mf,
    kv,
    logs,
    /** Outcome records logged by the worker, parsed. */
    outcomes: () =>
      logs
        .filter((l) => l.message.startsWith("outcome "))
        .map((l) => JSON.parse(l.message.slice("outcome ".length))),
    /** Runs the cron handler once, as the `* * * * *` trigger would. */
    tick: async () => {
      const worker = await mf.getWorker();
      return worker.scheduled({ cron: "* * * * *", scheduledTime: new Date() });
    },
    /** Calls the admin API; returns { status, body, text }. */
    admin: (method, route, body, token = vars.ADMIN_TOKEN) =>
      adminCall(url, method, route, body, token),
    /** GET /admin/status with the admin token: the parsed body; throws on anything but a 200. */
    status: () => adminGet(url, "status", vars.ADMIN_TOKEN),
    /** GET /admin/events[?limit=N] with the admin token: the parsed body ({ events }, newest first). */
    events: (limit) => adminGet(url, limit === undefined ? "events" : `events?limit=${limit}`, vars.ADMIN_TOKEN),
    close: () => mf.dispose(),
  };
}

/** `text` parsed as JSON, or undefined when it is not JSON. */
function parseJson(text) {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/** One admin API call with `Authorization: Bearer <token>` (none when token is null). */
export async function adminCall(url, method, route, body, token) {
  const headers = {};
  if (token != null) headers.authorization = `Bearer ${token}`;
  if (body !== undefined) headers["content-type"] = "application/json";
  const res = await fetch(`${url}/admin/${route}`, {
    method,
    headers,
    body: body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body),
  });
  const text = await res.text();
  const json = parseJson(text);
  return { status: res.status, body: json, text };
}

/** A GET of an admin route that must answer 200 with JSON; returns the parsed body. */
async function adminGet(url, route, token) {
  const res = await adminCall(url, "GET", route, undefined, token);
  if (res.status !== 200 || res.body === undefined) {
    throw new Error(`GET /admin/${route} answered ${res.status}: ${res.text.slice(0, 500)}`);
  }
  return res.body;
}

/** Starts a simulator and a router pointed at it. */
export async function startStack(vars = {}, simOptions = {}, routerOptions = {}) {
  const sim = await startSimulator(simOptions);
  const router = await startRouter({ UPSTREAM_BASE_URL: `${sim.url}/v1`, ...vars }, routerOptions);
  return {
    sim,
    router,
    close: async () => {
      await router.close();
      await sim.close();
    },
  };
}

export const CHAT = { messages: [{ role: "user", content: "Say hello" }] };

/** POSTs a chat completion; returns { status, headers, body (parsed when JSON), text }. */
export async function chat(url, body = CHAT, headers = {}) {
  let res;
  try {
    res = await fetch(`${url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json", ...headers },
      body: typeof body === "string" ? body : JSON.stringify(body),
    });
  } catch (e) {
    throw new Error(`fetch failed: ${e.cause?.code ?? ""} ${e.cause?.message ?? e.message}`);
  }
  const text = await res.text();
  const json = parseJson(text);
  return { status: res.status, headers: res.headers, body: json, text };
}

/** Writes the routing document into the router's KV. */
export async function setRouting(router, doc) {
  await router.kv.put("routing", typeof doc === "string" ? doc : JSON.stringify(doc));
}

/** Runs `fn` for `n` items with at most `concurrency` in flight. */
export async function pool(n, concurrency, fn) {
  const results = new Array(n);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(n, concurrency) }, async () => {
      while (next < n) {
        const i = next++;
        results[i] = await fn(i);
      }
    }),
  );
  return results;
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Polls `fn` until it returns truthy or `ms` pass; returns the last value. */
export async function eventually(fn, ms = 5000, every = 100) {
  const end = Date.now() + ms;
  let v;
  while (Date.now() < end) {
    v = await fn();
    if (v) return v;
    await sleep(every);
  }
  return fn();
}

/** Sends `n` chat completions to the router, 8 at a time; returns { sent, ok } (ok: 200s). */
export async function traffic(router, n) {
  const results = await pool(n, 8, () => chat(router.url));
  return { sent: results.length, ok: results.filter((r) => r.status === 200).length };
}

/** Requests counted by the controller since the rollout began (blue + green). */
export async function countedRequests(router) {
  const s = await router.status();
  return s.stats.rollout.blue.requests + s.stats.rollout.green.requests;
}

/** Waits until the controller has counted `n` requests; returns the status body. */
export async function waitForCount(router, n, ms = 8000) {
  await eventually(async () => (await countedRequests(router)) >= n, ms, 100);
  return router.status();
}

/**
 * A local webhook receiver on 127.0.0.1. `failFirst` answers the first N posts with 500.
 * Returns { url, received: [{ status, body }], close() }.
 */
export async function startReceiver({ failFirst = 0 } = {}) {
  const http = await import("node:http");
  const received = [];
  const server = http.createServer(async (req, res) => {
    const chunks = [];
    for await (const c of req) chunks.push(c);
    const status = received.length < failFirst ? 500 : 200;
    let body;
    try {
      body = JSON.parse(Buffer.concat(chunks).toString("utf8"));
    } catch {
      body = null;
    }
    received.push({ status, body, contentType: req.headers["content-type"] });
    res.writeHead(status, { "content-type": "text/plain" }).end(status === 200 ? "ok" : "fail");
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  return {
    url: `http://127.0.0.1:${server.address().port}/hook`,
    received,
    close: () => new Promise((r) => server.close(r)),
  };
}

/**
 * Posts one isolate batch: `green` and `blue` requests routed under routing `version`, of which
 * `random` ([green, blue]; all of them unless given) routed by a random draw, the rest by a
 * sticky key.
 */
export async function postRouted(router, version, green, blue, random = [green, blue]) {
  const ns = await router.mf.getDurableObjectNamespace("ROLLOUT");
  const controller = ns.get(ns.idFromName("global"));
  const minute = Math.floor(Date.now() / 60_000);
  const batch = {
    id: crypto.randomBytes(16).toString("hex"),
    entries: [
      { minute, env: "green", version, stats: { requests: green, random_requests: random[0] } },
      { minute, env: "blue", version, stats: { requests: blue, random_requests: random[1] } },
    ],
  };
  const res = await controller.fetch("https://controller/internal/stats", { method: "POST", body: JSON.stringify(batch) });
  if (res.status !== 200) throw new Error(`stats post: ${res.status} ${await res.text()}`);
}
