import { Client } from "undici";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startCluster, type Cluster, type Replica } from "./helpers/cluster.js";
import { startFakeUpstream, type FakeUpstream } from "./helpers/fake-upstream.js";
import { chatBody } from "./helpers/http.js";
import { waitFor } from "./helpers/services.js";

/**
 * `gatehouse start --workers 2`: one port, two worker processes, each a full replica. A keep-alive connection
 * stays on the worker that accepted it, so one undici Client (one connection) addresses one worker.
 */
let cluster: Cluster;
let upstream: FakeUpstream;
let gateway: Replica;

beforeAll(async () => {
  upstream = await startFakeUpstream();
  cluster = await startCluster({
    size: 1,
    config: {
      model_list: [
        { model_name: "mock-gpt", litellm_params: { model: "mock/gpt" } },
        { model_name: "stream-gated", litellm_params: { model: "openai/stream-gated", api_base: `${upstream.url}/v1` } },
      ],
    },
    env: { GATEHOUSE_SERVER_WORKERS: "2" },
  });
  gateway = cluster.replicas[0]!;
}, 60_000);
afterAll(async () => {
  await cluster?.close();
  await upstream?.close();
});

interface Pinned {
  client: Client;
  pid: number;
  index: number;
  /** Connections the client opened so far: a second one may have gone to the other worker. */
  connects: () => number;
  call(method: string, path: string, key: string, body?: unknown): Promise<{ status: number; body: any }>;
}

async function call(client: Client, method: string, path: string, key: string, body?: unknown) {
  const res = await client.request({
    method: method as "GET",
    path,
    headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.body.text();
  return { status: res.statusCode, body: text.startsWith("{") || text.startsWith("[") ? JSON.parse(text) : text };
}

/** One connection to each worker: connections are opened until every worker has answered on one. */
async function pinEveryWorker(count: number): Promise<Pinned[]> {
  const byPid = new Map<number, Pinned>();
  const spare: Client[] = [];
  for (let i = 0; i < 20 && byPid.size < count; i++) {
    const client = new Client(gateway.url, { pipelining: 1 });
    let connects = 0;
    client.on("connect", () => connects++);
    const { body } = await call(client, "GET", "/health/readiness", cluster.masterKey);
    if (byPid.has(body.worker.pid)) {
      spare.push(client);
      continue;
    }
    byPid.set(body.worker.pid, { client, pid: body.worker.pid, index: body.worker.index, connects: () => connects, call: (m, p, k, b) => call(client, m, p, k, b) });
  }
  await Promise.all(spare.map((c) => c.close()));
  expect(byPid.size).toBe(count);
  return [...byPid.values()].sort((a, b) => a.index - b.index);
}

describe("gatehouse start --workers 2", () => {
  it("serves one port from two workers, each with its own LISTEN connection and replica id", async () => {
    const workers = await pinEveryWorker(2);
    const { body } = await workers[0]!.call("GET", "/health/readiness", cluster.masterKey);
    expect(body.status).toBe("healthy");
    expect(body.workers).toEqual({ expected: 2, listening: 2 });
    // One LISTEN connection per worker, named after the worker's own replica id.
    const listeners = await cluster.pool.query(
      "SELECT application_name FROM pg_stat_activity WHERE datname = current_database() AND application_name LIKE 'gatehouse-listen:%' ORDER BY 1",
    );
    expect(listeners.rows.map((r: { application_name: string }) => r.application_name.replace(/^.*-(w\d+)$/, "$1"))).toEqual(["w0", "w1"]);
    await Promise.all(workers.map((w) => w.client.close()));
  });

  it("a key blocked through one worker is refused by the other within the propagation bound", async () => {
    const [w0, w1] = await pinEveryWorker(2);
    const { body: key } = await w0!.call("POST", "/key/generate", cluster.masterKey, {});
    // Warm both workers' caches first: the refusal must come from an invalidation, not from a cold miss.
    for (const w of [w0!, w1!]) expect((await w.call("POST", "/v1/chat/completions", key.key, chatBody("mock-gpt"))).status).toBe(200);
    expect((await w0!.call("POST", "/key/block", cluster.masterKey, { key: key.key })).status).toBe(200);
    expect((await w0!.call("POST", "/v1/chat/completions", key.key, chatBody("mock-gpt"))).status).toBe(401);
    const blockedAt = performance.now();
    await waitFor(async () => (await w1!.call("POST", "/v1/chat/completions", key.key, chatBody("mock-gpt"))).status === 401, {
      timeoutMs: 2_000,
      intervalMs: 5,
      what: "the other worker to refuse the blocked key",
    });
    expect(performance.now() - blockedAt).toBeLessThan(2_000);
    await Promise.all([w0!, w1!].map((w) => w.client.close()));
  });

  it("/metrics covers every worker; ?scope=worker only the worker that answered", async () => {
    const workers = await pinEveryWorker(2);
    const { body: key } = await workers[0]!.call("POST", "/key/generate", cluster.masterKey, {});
    const series = (text: string) => {
      const line = text.split("\n").find((l) => l.startsWith('gatehouse_requests_total{route="/v1/models",model="",status="200"}'));
      return line ? Number(line.split(" ").pop()) : 0;
    };
    for (const w of workers) for (let i = 0; i < 3; i++) expect((await w.call("GET", "/v1/models", key.key)).status).toBe(200);
    const host = await workers[0]!.call("GET", "/metrics", cluster.masterKey);
    const own = await workers[0]!.call("GET", "/metrics?scope=worker", cluster.masterKey);
    expect(series(host.body)).toBe(6);
    expect(series(own.body)).toBe(3);
    await Promise.all(workers.map((w) => w.client.close()));
  });

  it("a worker that dies is replaced, and readiness says how many are up meanwhile", async () => {
    const [w0, w1] = await pinEveryWorker(2);
    process.kill(w1!.pid, "SIGKILL");
    await waitFor(async () => (await w0!.call("GET", "/health/readiness", cluster.masterKey)).body.workers.listening === 1, {
      timeoutMs: 5_000,
      intervalMs: 10,
      what: "the primary to count the dead worker",
    });
    await waitFor(async () => (await w0!.call("GET", "/health/readiness", cluster.masterKey)).body.workers.listening === 2, {
      timeoutMs: 15_000,
      what: "a new worker in its place",
    });
    const again = await pinEveryWorker(2);
    expect(again.map((w) => w.pid)).not.toContain(w1!.pid);
    await Promise.all([w0!, ...again].map((w) => w.client.close()));
  });

  it("SIGTERM to the primary drains every worker's streams, then every process exits", async () => {
    const workers = await pinEveryWorker(2);
    const { body: key } = await workers[0]!.call("POST", "/key/generate", cluster.masterKey, {});
    const streams = await Promise.all(
      workers.map(async (w) => {
        const res = await within(
          w.client.request({
            method: "POST",
            path: "/v1/chat/completions",
            headers: { authorization: `Bearer ${key.key}`, "content-type": "application/json" },
            body: JSON.stringify(chatBody("stream-gated", { stream: true })),
          }),
          10_000,
          `worker ${w.pid} to start streaming`,
        );
        const chunks: string[] = [];
        res.body.on("data", (c: Buffer) => chunks.push(c.toString()));
        const ended = new Promise<string>((resolve, reject) => {
          res.body.once("end", () => resolve(chunks.join("")));
          res.body.once("error", (err: Error) => reject(new Error(`the stream of worker ${w.pid} failed after ${JSON.stringify(chunks.join(""))}: ${err.message}`)));
        });
        ended.catch(() => {}); // reported where it is awaited
        await waitFor(async () => chunks.join("").includes("part0"), { timeoutMs: 5_000, intervalMs: 10, what: "the stream's first chunk" });
        return { ended }; // not the promise itself: awaiting this map must not wait for the streams to end
      }),
    );
    // Each stream must be on the connection that was pinned to its worker: a reconnect could have gone to the other.
    for (const w of workers) if (w.connects() !== 1) throw new Error(`the connection pinned to worker ${w.pid} was opened ${w.connects()} times before its stream`);
    gateway.child.kill("SIGTERM");
    // Both workers are draining, neither has exited: their streams are still open.
    // A probe is bounded and closes its connection when it gives up: a connection the port accepted in the instant a
    // worker was closing is held by that worker until it drains (seen under load), and must not hold the drain up.
    await waitFor(
      async () =>
        fetch(`${gateway.url}/health/liveliness`, { signal: AbortSignal.timeout(500), headers: { connection: "close" } }).then(
          () => false,
          () => true,
        ),
      { timeoutMs: 5_000, what: "new connections to be refused (or left unanswered)" },
    );
    for (const w of workers) {
      if (!isAlive(w.pid)) throw new Error(`worker ${w.pid} exited before its stream ended; the gateway's last lines:\n${gateway.output.slice(-60).join("\n")}`);
    }
    for (let i = 0; i < 4; i++) upstream.releaseNext();
    for (const text of await within(Promise.all(streams.map((s) => s.ended)), 15_000, "both streams to end")) expect(text).toContain("part2");
    expect(await within(gateway.exited, 20_000, "the primary to exit")).toBe(0);
    for (const w of workers) await waitFor(async () => !isAlive(w.pid), { timeoutMs: 5_000, what: `worker ${w.pid} to exit` });
  }, 60_000);
});

/** `promise`, or a failure after `ms` that says what was awaited and what the gateway printed last. */
async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}; the gateway's last lines:\n${gateway.output.slice(-40).join("\n")}`)), ms);
  });
  try {
    return await Promise.race([promise, late]);
  } finally {
    clearTimeout(timer);
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
