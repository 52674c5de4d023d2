// A Responses conversation stays with the environment that holds its state, on any isolate:
// five turns at a 50% split through a router restarted before every turn (nothing kept in an
// isolate; the id alone says where the conversation lives).
import { test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import OpenAI from "openai";
import { startRouter, setRouting } from "./harness.mjs";
import { startSimulator } from "../sim/upstream.mjs";

test("a 5-turn conversation at a 50% split stays in one environment on every turn, across workerd restarts", async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "bluegreen-conversation-"));
  const sim = await startSimulator();
  let router;
  t.after(async () => {
    await router?.close();
    await sim.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  const vars = { UPSTREAM_BASE_URL: `${sim.url}/v1`, ROUTING_CACHE_SECONDS: "0", ADMIN_TOKEN: "conversation-admin" };
  const seen = { blue: 0, green: 0 };
  // Several conversations, so that both environments start some (each first turn is a coin flip).
  for (let c = 0; c < 4; c++) {
    let previous;
    let environment;
    for (let turn = 1; turn <= 5; turn++) {
      await router?.close();
      router = await startRouter(vars, { persistTo: dir });
      if (c === 0 && turn === 1) await setRouting(router, { blue_model: "blue-m", green_model: "green-m", green_percent: 50, sticky: false });
      const client = new OpenAI({ baseURL: `${router.url}/v1`, apiKey: "unused", maxRetries: 0 });
      const { data, response } = await client.responses
        .create({ model: "chat", input: `turn ${turn}`, ...(previous ? { previous_response_id: previous } : {}) })
        .withResponse();
      const served = response.headers.get("x-bluegreen-environment");
      environment ??= served;
      assert.equal(served, environment, `conversation ${c}, turn ${turn}`);
      assert.equal(data.output_text, `Hello from ${environment}-m. Turn ${turn}. You said: turn ${turn}`);
      previous = data.id;
    }
    seen[environment]++;
  }
  console.log(`conversations: ${seen.blue} on blue, ${seen.green} on green, each kept its environment for 5 turns`);
});
