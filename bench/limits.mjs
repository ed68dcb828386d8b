// The cost of budgets and rate limits per request (issue 6): target ≤ 150 µs p99 added on an L1-hit key,
// and at most one Redis call to admit and one to settle.
//  1. In process: LimitEnforcer.admit (on the request path) and the settle Lua call (after the response),
//     timed per call against the real Redis, for a key with every limit set.
//  2. End to end: one in-process gateway, sequential requests to a mock model, a key with every limit
//     against a key with none; the difference of the two is what the limits add to a request.
// Redis round trips are counted at the gateway's Redis client over the end-to-end run.
import { randomUUID } from "node:crypto";

const { settingsFromConfig } = await import("../dist/config/settings.js");
const { startGateway } = await import("../dist/gateway.js");
const { createLogger } = await import("../dist/logger.js");
const { RedisLimiter } = await import("../dist/limits/redis-limiter.js");
const { RedisKeys } = await import("../dist/redis/key-names.js");
const { createDatabase, percentile, printTable, redisNamespace, REDIS_URL, writeResult } = await import("./lib/harness.mjs");

const CALLS = Number(process.env.BENCH_LIMIT_CALLS ?? 20_000);
const REQUESTS = Number(process.env.BENCH_LIMIT_REQUESTS ?? 5_000);
const f = (n) => n.toFixed(1);
const stats = (us) => {
  us.sort((a, b) => a - b);
  return { p50: percentile(us, 50), p99: percentile(us, 99), max: us.at(-1) };
};

const db = await createDatabase();
const ns = redisNamespace();
const masterKey = `sk-master-${randomUUID()}`;
const settings = settingsFromConfig(
  {
    model_list: [{ model_name: "bench", litellm_params: { model: "mock/bench", input_cost_per_token: 1e-9, output_cost_per_token: 2e-9 } }],
  },
  { source: "bench", env: { DATABASE_URL: db.url, REDIS_URL, GATEHOUSE_REDIS_PREFIX: ns.prefix, GATEHOUSE_MASTER_KEY: masterKey, PORT: "0" } },
);
const gateway = await startGateway({ settings, masterKey, logger: createLogger({ level: "warn" }), host: "127.0.0.1" });
const limitedFields = { max_budget: 1e9, rpm_limit: 1e9, tpm_limit: 1e12, max_parallel_requests: 1_000 };
try {
  // 1. In process.
  const limits = { keyId: randomUUID(), maxBudget: 1e9, rpmLimit: 1e9, tpmLimit: 1e12, maxParallelRequests: 1_000 };
  const worst = { promptTokens: 20, completionTokens: 4_096, cost: 0.0001 };
  // The settle the enforcer sends after a response, here awaited so it can be timed.
  const redisLimiter = new RedisLimiter(gateway.redis, new RedisKeys(ns.prefix), { read: async () => null }, 600_000, gateway.breakers.redis);
  for (let i = 0; i < 2_000; i++) {
    const lease = await gateway.limits.admit(limits, worst);
    await redisLimiter.settle({ requestId: lease.requestId, keyId: limits.keyId, generation: lease.generation, cost: 0.00001, tokens: 30 });
  }
  const admitUs = [];
  const settleUs = [];
  for (let i = 0; i < CALLS; i++) {
    const a = process.hrtime.bigint();
    const lease = await gateway.limits.admit(limits, worst);
    const b = process.hrtime.bigint();
    await redisLimiter.settle({ requestId: lease.requestId, keyId: limits.keyId, generation: lease.generation, cost: 0.00001, tokens: 30 });
    const c = process.hrtime.bigint();
    admitUs.push(Number(b - a) / 1000);
    settleUs.push(Number(c - b) / 1000);
  }
  const admit = stats(admitUs);
  const settle = stats(settleUs);
  // The floor: one round trip to the same Redis that does nothing.
  const pingUs = [];
  for (let i = 0; i < CALLS; i++) {
    const a = process.hrtime.bigint();
    await gateway.redis.ping();
    pingUs.push(Number(process.hrtime.bigint() - a) / 1000);
  }
  const ping = stats(pingUs);

  // 2. End to end.
  const newKey = async (fields) => {
    const res = await fetch(`${gateway.url}/key/generate`, { method: "POST", headers: { authorization: `Bearer ${masterKey}`, "content-type": "application/json" }, body: JSON.stringify(fields) });
    return (await res.json()).key;
  };
  const plainKey = await newKey({});
  const limitedKey = await newKey(limitedFields);
  const body = JSON.stringify({ model: "bench", messages: [{ role: "user", content: "hello" }], max_tokens: 16 });
  const request = async (key) => {
    const s = process.hrtime.bigint();
    const res = await fetch(`${gateway.url}/v1/chat/completions`, { method: "POST", headers: { authorization: `Bearer ${key}`, "content-type": "application/json" }, body });
    await res.arrayBuffer();
    if (res.status !== 200) throw new Error(`status ${res.status}`);
    return Number(process.hrtime.bigint() - s) / 1000;
  };
  for (let i = 0; i < 1_000; i++) await request(i % 2 ? plainKey : limitedKey);
  // Round trips the gateway makes: every command its Redis client sends (a Lua script is one).
  let sent = 0;
  const send = gateway.redis.sendCommand.bind(gateway.redis);
  gateway.redis.sendCommand = (...args) => {
    sent++;
    return send(...args);
  };
  const commandCalls = async () => sent;
  const plainUs = [];
  const limitedUs = [];
  // Interleaved, so both keys see the same machine state; Redis calls counted for the limited key alone.
  let limitedCalls = 0;
  for (let i = 0; i < REQUESTS; i++) {
    plainUs.push(await request(plainKey));
    await new Promise((r) => setTimeout(r, 1)); // let the previous settle land before counting
    const before = await commandCalls();
    limitedUs.push(await request(limitedKey));
    await new Promise((r) => setTimeout(r, 1));
    limitedCalls += (await commandCalls()) - before;
  }
  const plain = stats(plainUs);
  const limited = stats(limitedUs);
  const callsPerRequest = limitedCalls / REQUESTS;

  const table = [
    { what: "admit: one Lua call, every limit checked and reserved (on the request path)", calls: CALLS, "p50 µs": f(admit.p50), "p99 µs": f(admit.p99), "max µs": f(admit.max), target: "p99 ≤ 150 µs" },
    { what: "settle: one Lua call (after the response, not awaited by it)", calls: CALLS, "p50 µs": f(settle.p50), "p99 µs": f(settle.p99), "max µs": f(settle.max), target: "" },
    { what: "floor: Redis PING round trip from the same process", calls: CALLS, "p50 µs": f(ping.p50), "p99 µs": f(ping.p99), "max µs": f(ping.max), target: "" },
    { what: "request, key without limits (end to end, mock model)", calls: REQUESTS, "p50 µs": f(plain.p50), "p99 µs": f(plain.p99), "max µs": f(plain.max), target: "" },
    { what: "request, key with all four limits", calls: REQUESTS, "p50 µs": f(limited.p50), "p99 µs": f(limited.p99), "max µs": f(limited.max), target: "" },
    { what: "added by the limits (difference)", calls: "", "p50 µs": f(limited.p50 - plain.p50), "p99 µs": f(limited.p99 - plain.p99), "max µs": "", target: "p99 ≤ 150 µs" },
    { what: "Redis round trips per limited request", calls: REQUESTS, "p50 µs": callsPerRequest.toFixed(2), "p99 µs": "", "max µs": "", target: "≤ 2 (one admit, one settle)" },
  ];
  const text = printTable("Budgets and rate limits", table);
  writeResult("limits", { calls: CALLS, requests: REQUESTS, rows: table, redis_commands_per_request: callsPerRequest, markdown: text });
} finally {
  await gateway.close();
  await db.drop();
  await ns.cleanup();
}
