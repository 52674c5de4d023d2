// The deploy path: wrangler.toml and the bundle are valid for `wrangler deploy`, and a plain
// `wrangler dev` builds and serves the worker, with settings given as --var.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn, execFile } from "node:child_process";
import { promisify } from "node:util";
import net from "node:net";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { ROOT, eventually, chat } from "./harness.mjs";
import { startSimulator } from "../sim/upstream.mjs";

const WRANGLER = path.join(ROOT, "node_modules/.bin/wrangler");
const ENV = { ...process.env, WRANGLER_SEND_METRICS: "false", CI: "true", NO_COLOR: "1" };

/** `wrangler deploy --dry-run` with `args`, into a new directory; returns { out, outdir }. */
async function dryRun(args) {
  const outdir = fs.mkdtempSync(path.join(os.tmpdir(), "bg-dry-run-"));
  const { stdout, stderr } = await promisify(execFile)(WRANGLER, ["deploy", "--dry-run", "--outdir", outdir, ...args], {
    cwd: ROOT,
    env: ENV,
    maxBuffer: 64 * 1024 * 1024,
    timeout: 300_000,
  });
  return { out: stdout + stderr, outdir };
}

test("wrangler deploy --dry-run accepts the config and the bundle", async () => {
  const { out, outdir } = await dryRun([]);
  assert.match(out, /--dry-run: exiting now/);
  assert.match(out, /env\.ROUTER_KV/);
  assert.match(out, /env\.ROLLOUT \(RolloutController\)/);
  assert.match(out, /UPSTREAM_BASE_URL/);
  assert.match(out, /env\.ASSETS\s+Assets/, "the dashboard's static assets are bound");
  const files = fs.readdirSync(outdir);
  assert.ok(files.includes("index.js"), files.join(","));
  assert.ok(files.some((f) => f.endsWith(".wasm")), files.join(","));
  fs.rmSync(outdir, { recursive: true, force: true });
});

test("the `queue` environment is the same Worker with the same settings, plus the stats queue", async () => {
  const { unstable_readConfig } = await import("wrangler");
  const top = unstable_readConfig({ config: path.join(ROOT, "wrangler.toml") });
  const queue = unstable_readConfig({ config: path.join(ROOT, "wrangler.toml"), env: "queue" });
  // Environments inherit no bindings and no vars: each is repeated, and must not drift.
  assert.equal(queue.name, top.name, "the same Worker, so the same Durable Objects");
  assert.deepEqual(queue.vars, top.vars);
  assert.deepEqual(queue.kv_namespaces, top.kv_namespaces);
  assert.deepEqual(queue.durable_objects, top.durable_objects);
  assert.deepEqual(queue.triggers, top.triggers);
  assert.deepEqual(queue.migrations, top.migrations);
  assert.deepEqual(queue.queues.producers, [{ binding: "STATS_QUEUE", queue: "bluegreen-stats" }]);
  const [consumer] = queue.queues.consumers;
  assert.equal(consumer.queue, "bluegreen-stats");
  assert.equal(consumer.dead_letter_queue, "bluegreen-stats-dlq");
  assert.ok(consumer.max_batch_size <= 100 && consumer.max_retries > 0, JSON.stringify(consumer));
  assert.deepEqual(top.queues.producers ?? [], [], "no queue without the environment");

  const { out, outdir } = await dryRun(["--env", "queue"]);
  assert.match(out, /--dry-run: exiting now/);
  assert.match(out, /env\.STATS_QUEUE/);
  fs.rmSync(outdir, { recursive: true, force: true });
});

async function freePort() {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, "127.0.0.1", () => {
      const p = s.address().port;
      s.close(() => resolve(p));
    });
  });
}

test("a plain `wrangler dev` builds and serves the router, settings given with --var", { timeout: 240_000 }, async (t) => {
  const sim = await startSimulator();
  const port = await freePort();
  const state = fs.mkdtempSync(path.join(os.tmpdir(), "bg-dev-state-"));
  const args = [
    "dev", "--ip", "127.0.0.1", "--port", String(port), "--persist-to", state, "--test-scheduled",
    "--var", `UPSTREAM_BASE_URL:${sim.url}/v1`, "--var", "GREEN_PERCENT:100", "--var", "GREEN_MODEL:candidate-x",
  ];
  const child = spawn(WRANGLER, args, { cwd: ROOT, env: ENV, detached: true, stdio: ["ignore", "pipe", "pipe"] });
  let output = "";
  child.stdout.on("data", (d) => (output += d));
  child.stderr.on("data", (d) => (output += d));
  t.after(async () => {
    try {
      process.kill(-child.pid, "SIGTERM");
    } catch {}
    await new Promise((r) => (child.exitCode !== null ? r() : child.once("exit", r)));
    await sim.close();
    fs.rmSync(state, { recursive: true, force: true });
  });
  const url = `http://127.0.0.1:${port}`;
  const up = await eventually(async () => {
    try {
      return (await fetch(`${url}/healthz`)).ok;
    } catch {
      return false;
    }
  }, 180_000, 500);
  assert.ok(up, `wrangler dev never became ready:\n${output.slice(-3000)}`);
  const r = await chat(url);
  assert.equal(r.status, 200, r.text);
  assert.equal(r.headers.get("x-bluegreen-environment"), "green");
  assert.equal(r.headers.get("x-bluegreen-model"), "candidate-x");
  assert.match(r.body.choices[0].message.content, /Hello from candidate-x/);
  // The dashboard comes from wrangler.toml's [assets], with the Worker's security headers.
  const dashboard = await fetch(`${url}/dashboard`);
  assert.equal(dashboard.status, 200);
  assert.match(dashboard.headers.get("content-type"), /^text\/html; charset=utf-8$/);
  assert.match(dashboard.headers.get("content-security-policy"), /^default-src 'none';.*frame-ancestors 'none'$/);
  assert.equal(dashboard.headers.get("cache-control"), "no-store");
  assert.match(await dashboard.text(), /<title>bluegreen-router<\/title>/);
  const cron = await fetch(`${url}/__scheduled?cron=*+*+*+*+*`);
  assert.equal(cron.status, 200);
  const logged = await eventually(() => /cron \* \* \* \* \*: route default: tick .*no routing document in KV/.test(output), 10_000);
  assert.ok(logged, output.slice(-2000));
});
