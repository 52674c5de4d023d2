// OpenAI's Python SDK (pinned in scripts/setup.sh, installed into .venv-sdk by `npm test`)
// drives the router unchanged: a chat completion, a response streamed and not, a retrieve, a
// follow-up through previous_response_id, and embeddings through an embeddings route.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import fs from "node:fs";
import path from "node:path";
import { startStack, setRouting, ROOT } from "./harness.mjs";

const PYTHON = path.join(ROOT, ".venv-sdk/bin/python");

test("OpenAI's Python SDK gets chat and Responses answers through the router unchanged", async (t) => {
  assert.ok(fs.existsSync(PYTHON), "the Python SDK is missing: run bash scripts/setup.sh --python-sdk");
  const stack = await startStack({ ROUTING_CACHE_SECONDS: "0", ADMIN_TOKEN: "python-admin" });
  t.after(() => stack.close());
  await setRouting(stack.router, { blue_model: "blue-m", green_model: "green-m", green_percent: 100 });
  const route = await stack.router.admin("PUT", "routes/text-embedding-3-small", { blue_model: "embed-small-v1", kind: "embeddings" });
  assert.equal(route.status, 201, route.text);
  // Asynchronously: the simulator answers from this process's event loop.
  const { stdout } = await promisify(execFile)(PYTHON, [path.join(ROOT, "tests/sdk/python_client.py"), `${stack.router.url}/v1`], { timeout: 60_000 });
  const out = JSON.parse(stdout);
  console.log(`python openai ${out.sdk}`);
  assert.deepEqual(out.chat, { environment: "green", text: "Hello from green-m. You said: hello python" });
  assert.match(out.response.id, /^resp_bgg_/);
  assert.equal(out.response.text, "Hello from green-m. Turn 1. You said: first turn");
  assert.deepEqual(out.stream.first, ["response.created", "response.in_progress"]);
  assert.equal(out.stream.last, "response.completed");
  assert.match(out.stream.id, /^resp_bgg_/);
  assert.equal(out.stream.text, "Hello from green-m. Turn 1. You said: streamed");
  assert.equal(out.retrieved, out.response.id);
  assert.equal(out.follow_up.text, "Hello from green-m. Turn 2. You said: second turn");
  // Embeddings: base64 by the SDK's default, decoded by it; served by blue, never split.
  assert.deepEqual(out.embeddings, { environment: "blue", route: "text-embedding-3-small", lengths: [1536, 1536] });
});
