import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startCluster, type Cluster } from "./helpers/cluster.js";
import { startFakeUpstream, type FakeUpstream } from "./helpers/fake-upstream.js";
import { api, chatBody } from "./helpers/http.js";
import { waitFor } from "./helpers/services.js";

let cluster: Cluster;
let upstream: FakeUpstream;
beforeAll(async () => {
  upstream = await startFakeUpstream();
  cluster = await startCluster({
    size: 1,
    config: { model_list: [{ model_name: "stream-gated", litellm_params: { model: "openai/stream-gated", api_base: `${upstream.url}/v1` } }] },
    // Time for a load balancer to see readiness fail before the listener closes.
    env: { GATEHOUSE_SHUTDOWN_DELAY_MS: "700" },
  });
}, 60_000);
afterAll(async () => {
  await cluster?.close();
  await upstream?.close();
});

describe("graceful shutdown on SIGTERM", () => {
  it("readiness fails first, then new connections are refused while an in-flight stream finishes, then a clean exit", async () => {
    const [A] = cluster.replicas;
    const { body: key } = await A!.admin("/key/generate", {});
    const res = await fetch(`${A!.url}/v1/chat/completions`, {
      method: "POST",
      headers: { authorization: `Bearer ${key.key}`, "content-type": "application/json" },
      body: JSON.stringify(chatBody("stream-gated", { stream: true })),
    });
    const reader = res.body!.getReader();
    const decoder = new TextDecoder();
    let text = decoder.decode((await reader.read()).value);
    expect(text).toContain("part0");

    A!.child.kill("SIGTERM");
    await waitFor(async () => (await api(A!.url, "/health/readiness")).status === 503, { timeoutMs: 2_000, intervalMs: 20, what: "readiness to fail" });
    expect((await api(A!.url, "/health/readiness")).body.status).toBe("shutting_down");
    await waitFor(
      async () =>
        fetch(`${A!.url}/health/liveliness`).then(
          () => false,
          () => true,
        ),
      { timeoutMs: 5_000, what: "new connections to be refused" },
    );
    expect(A!.child.exitCode).toBeNull(); // still draining the stream

    upstream.releaseNext();
    upstream.releaseNext();
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      text += decoder.decode(value, { stream: true });
    }
    expect(text).toContain("part2");
    expect(text.trim().endsWith("data: [DONE]")).toBe(true);
    expect(await A!.exited).toBe(0);
    expect(A!.output.join("\n")).toContain("shut down cleanly");
  });
});
