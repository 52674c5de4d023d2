// The built router with the platform's failures made to happen on demand, for the tests only.
// The router's own code runs unchanged inside; this module stands where the platform's faults
// would (a consumer invocation that throws, a Durable Object that refuses or stalls), as the upstream
// simulator stands for a provider's. Loaded next to build/index.js by the harness (`faults`).
import Router, { RolloutController as Controller, RouteRegistry } from "./index.js";

export { RouteRegistry };

/** Queue deliveries the consumer throws on from now on (set through POST /__faults/consumer). */
let consumerThrows = 0;

export default class extends Router {
  async fetch(request) {
    const url = new URL(request.url);
    if (url.pathname === "/__faults/consumer") {
      if (url.searchParams.has("throws")) consumerThrows = Number(url.searchParams.get("throws"));
      return Response.json({ throws_left: consumerThrows });
    }
    return super.fetch(request);
  }

  async queue(batch) {
    if (consumerThrows > 0) {
      consumerThrows--;
      throw new Error(`fault: the consumer threw on a delivery of ${batch.messages.length} messages`);
    }
    return super.queue(batch);
  }
}

/** Whether controllers answer stats batches 503 (set through POST /__faults/controller?refuse=stats). */
let refuseStats = false;

export class RolloutController extends Controller {
  /** How long this instance (only it) waits before it handles a call, in ms: a controller
   * stalled by an overload (set through POST /__faults/controller?slow=<ms>, 0 to end it). */
  slowMs = 0;

  async fetch(request) {
    const url = new URL(request.url);
    if (url.pathname === "/__faults/controller") {
      if (url.searchParams.has("slow")) this.slowMs = Number(url.searchParams.get("slow"));
      else refuseStats = url.searchParams.get("refuse") === "stats";
      return new Response(null, { status: 204 });
    }
    if (this.slowMs > 0) await new Promise((resolve) => setTimeout(resolve, this.slowMs));
    if (refuseStats && url.pathname === "/internal/stats") {
      await request.arrayBuffer();
      return new Response("fault: the controller is overloaded", { status: 503 });
    }
    return super.fetch(request);
  }
}
