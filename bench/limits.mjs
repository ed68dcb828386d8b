// The cost of budgets and rate limits per request: target ≤ 150 µs p99 added on an L1-hit key,
// and at most one Redis call to admit and one to settle.
//  1. In process, the checks themselves, timed per call against the real Redis, for a key with every limit:
//     a. admit when the key's admission was prefetched (a key far from its limits whose requests come more
//        than one Redis round trip apart: the common case, docs/limits.md "Prefetched admissions");
//     b. admit by its own round trip (a key near a limit, or limits.prefetch 0);
//     c. the settle Lua call (after the response, not on its path), and a bare PING for the floor;
//     d. a–c again for a request with three limited levels (key + user + team): still one call each way.
//  2. End to end, the gateway in a process of its own (as deployed) and this process as the client:
//     sequential requests to a mock model, a key with every limit against a key with none, interleaved;
//     the difference is what the limits add to a request. Lua calls per limited request are counted by
//     Redis itself (INFO commandstats).
import { randomUUID } from "node:crypto";
import { mkdtempSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { Redis } from "ioredis";

const { settingsFromConfig } = await import("../dist/config/settings.js");
const { startGateway } = await import("../dist/gateway.js");
const { createLogger } = await import("../dist/logger.js");
const { LimitEnforcer } = await import("../dist/limits/limit-enforcer.js");
const { LocalLimiter } = await import("../dist/limits/local-limiter.js");
const { RedisLimiter } = await import("../dist/limits/redis-limiter.js");
const { RedisServerIdentity } = await import("../dist/redis/server-identity.js");
const { createDatabase, percentile, printTable, redisNamespace, REDIS_URL, startReplica, writeResult } = await import("./lib/harness.mjs");

const CALLS = Number(process.env.BENCH_LIMIT_CALLS ?? 20_000);
const REQUESTS = Number(process.env.BENCH_LIMIT_REQUESTS ?? 5_000);
const f = (n) => n.toFixed(1);
const stats = (us) => {
  us.sort((a, b) => a - b);
  return { p50: percentile(us, 50), p90: percentile(us, 90), p99: percentile(us, 99), max: us.at(-1) };
};
const PRICED_MODEL = { model_name: "bench", litellm_params: { model: "mock/bench", input_cost_per_token: 1e-9, output_cost_per_token: 2e-9 } };

const db = await createDatabase();
const ns = redisNamespace();
const masterKey = `sk-master-${randomUUID()}`;
const env = { DATABASE_URL: db.url, REDIS_URL, GATEHOUSE_REDIS_PREFIX: ns.prefix, GATEHOUSE_MASTER_KEY: masterKey };
const settings = settingsFromConfig({ model_list: [PRICED_MODEL] }, { source: "bench", env: { ...env, PORT: "0" } });
const logger = createLogger({ level: "warn" });
const gateway = await startGateway({ settings, masterKey, logger, host: "127.0.0.1" });
const limitedFields = { max_budget: 1e9, rpm_limit: 1e9, tpm_limit: 1e12, max_parallel_requests: 1_000 };
let replica;
try {
  // 1. In process.
  const worst = { promptTokens: 20, completionTokens: 4_096, cost: 0.0001 };
  const redisLimiter = new RedisLimiter(
    gateway.redis,
    gateway.redisKeys,
    { read: async () => ({ spend: 0, generation: "0" }) },
    600_000,
    gateway.breakers.redis,
    new RedisServerIdentity(gateway.redis),
  );
  // The enforcer as a replica has it with prefetching off: every admission is its own round trip.
  const ownRoundTrip = new LimitEnforcer({
    settings: { ...settings.limits, prefetch: 0 },
    redis: redisLimiter,
    local: new LocalLimiter(600_000),
    ledger: gateway.spendLedger,
    db: gateway.db,
    logger,
    replicaCount: () => 1,
  });
  const prefetcher = gateway.limits.prefetch;
  // Before every admission but a key's first: wait (untimed, with a deadline) until the next one is ready.
  const untilPrefetched = async (i, keyId) => {
    const deadline = Date.now() + 2_000;
    while (i > 0 && prefetcher.held(keyId) === 0) {
      if (Date.now() > deadline) throw new Error("no admission was prefetched for a key far from its limits");
      await new Promise((r) => setImmediate(r));
    }
  };
  // Times `calls` admissions through `enforcer`, each followed by the settle the enforcer would send after
  // the response, here awaited so it can be timed too. `between` runs untimed before each admission.
  // A request's levels, each with every limit: its key alone, or its key, its user and its team.
  const every = { maxBudget: 1e9, rpmLimit: 1e9, tpmLimit: 1e12, maxParallelRequests: 1_000 };
  const requestLimits = (levels) => {
    const keyId = randomUUID();
    const subjects = levels.map((level) => {
      const id = level === "key" ? keyId : randomUUID();
      return { level, id, ledger: level === "key" ? id : `${level}:${id}`, ...every };
    });
    return { keyId, subjects, owners: subjects };
  };
  const run = async (enforcer, calls, between, levels = ["key"]) => {
    const limits = requestLimits(levels);
    const admitUs = [];
    const settleUs = [];
    for (let i = 0; i < calls; i++) {
      await between(i, limits.keyId);
      const a = process.hrtime.bigint();
      const lease = await enforcer.admit(limits, worst);
      const b = process.hrtime.bigint();
      await redisLimiter.settle(limits, { requestId: lease.requestId, generations: lease.generations, cost: 0.00001, tokens: 30 });
      const c = process.hrtime.bigint();
      admitUs.push(Number(b - a) / 1000);
      settleUs.push(Number(c - b) / 1000);
    }
    return { admit: stats(admitUs), settle: stats(settleUs) };
  };
  const usedBefore = prefetcher.counters.used;
  await run(gateway.limits, 2_000, untilPrefetched); // warm-up
  const prefetched = await run(gateway.limits, CALLS, untilPrefetched);
  const prefetchedShare = (prefetcher.counters.used - usedBefore) / (CALLS + 2_000);
  await run(ownRoundTrip, 2_000, async () => {});
  const own = await run(ownRoundTrip, CALLS, async () => {});
  // The same with three levels (key + user + team), every one with every limit: still one Lua call each way.
  const threeLevels = ["key", "user", "team"];
  await run(gateway.limits, 2_000, untilPrefetched, threeLevels);
  const usedBefore3 = prefetcher.counters.used;
  const prefetched3 = await run(gateway.limits, CALLS, untilPrefetched, threeLevels);
  const prefetchedShare3 = (prefetcher.counters.used - usedBefore3) / CALLS;
  await run(ownRoundTrip, 2_000, async () => {}, threeLevels);
  const own3 = await run(ownRoundTrip, CALLS, async () => {}, threeLevels);
  // The floor: one round trip to the same Redis that does nothing.
  const pingUs = [];
  for (let i = 0; i < CALLS; i++) {
    const a = process.hrtime.bigint();
    await gateway.redis.ping();
    pingUs.push(Number(process.hrtime.bigint() - a) / 1000);
  }
  const ping = stats(pingUs);

  // 2. End to end: a replica process as deployed, this process the client.
  const configFile = path.join(mkdtempSync(path.join(os.tmpdir(), "gh-bench-limits-")), "config.yaml");
  writeFileSync(configFile, JSON.stringify({ model_list: [PRICED_MODEL] }));
  replica = await startReplica(env, ["--config", configFile]);
  const admin = async (route, fields) => {
    const res = await fetch(`${replica.url}${route}`, {
      method: "POST",
      headers: { authorization: `Bearer ${masterKey}`, "content-type": "application/json" },
      body: JSON.stringify(fields),
    });
    if (res.status !== 200) throw new Error(`${route}: ${res.status} ${await res.text()}`);
    return await res.json();
  };
  const newKey = async (fields) => (await admin("/key/generate", fields)).key;
  const plainKey = await newKey({});
  const limitedKey = await newKey(limitedFields);
  const team = await admin("/team/new", limitedFields);
  const user = await admin("/user/new", { ...limitedFields, auto_create_key: false });
  const threeLevelKey = await newKey({ ...limitedFields, team_id: team.team_id, user_id: user.user_id });
  const body = JSON.stringify({ model: "bench", messages: [{ role: "user", content: "hello" }], max_tokens: 16 });
  const request = async (key) => {
    const s = process.hrtime.bigint();
    const res = await fetch(`${replica.url}/v1/chat/completions`, { method: "POST", headers: { authorization: `Bearer ${key}`, "content-type": "application/json" }, body });
    await res.arrayBuffer();
    if (res.status !== 200) throw new Error(`status ${res.status}`);
    return Number(process.hrtime.bigint() - s) / 1000;
  };
  for (let i = 0; i < 1_500; i++) await request([plainKey, limitedKey, threeLevelKey][i % 3]);
  // Lua calls as Redis counts them (the limits scripts are the only ones a warm replica runs per request).
  const redisStats = new Redis(REDIS_URL);
  const luaCalls = async () => {
    const info = await redisStats.info("commandstats");
    return [...info.matchAll(/cmdstat_(?:evalsha|eval):calls=(\d+)/g)].reduce((n, m) => n + Number(m[1]), 0);
  };
  const scrape = async () => await (await fetch(`${replica.url}/metrics`, { headers: { authorization: `Bearer ${masterKey}` } })).text();
  const admissions = (text, p) => Number(new RegExp(`gatehouse_limit_admissions_total\\{path="${p}"\\} (\\d+)`).exec(text)?.[1] ?? 0);
  const metricsBefore = await scrape();
  const luaBefore = await luaCalls();
  const plainUs = [];
  const limitedUs = [];
  const threeLevelUs = [];
  // Interleaved, so every key sees the same machine state.
  for (let i = 0; i < REQUESTS; i++) {
    plainUs.push(await request(plainKey));
    limitedUs.push(await request(limitedKey));
    threeLevelUs.push(await request(threeLevelKey));
  }
  // Two limited requests per round (the key alone, and key + user + team).
  const luaPerRequest = ((await luaCalls()) - luaBefore) / (2 * REQUESTS);
  const metricsAfter = await scrape();
  const e2ePrefetched = (admissions(metricsAfter, "prefetched") - admissions(metricsBefore, "prefetched")) / (2 * REQUESTS);
  await redisStats.quit();
  const plain = stats(plainUs);
  const limited = stats(limitedUs);
  const threeLevel = stats(threeLevelUs);

  const row = (what, calls, s, target = "") => ({ what, calls, "p50 µs": f(s.p50), "p90 µs": f(s.p90), "p99 µs": f(s.p99), "max µs": f(s.max), target });
  const table = [
    row(`admit, prefetched (key far from its limits; ${(prefetchedShare * 100).toFixed(0)} % found ready)`, CALLS, prefetched.admit, "p99 ≤ 150 µs"),
    row("admit, its own Lua round trip (key near a limit, or prefetch off)", CALLS, own.admit),
    row("settle: one Lua call (after the response, not awaited by it)", CALLS, own.settle),
    row(`key + user + team: admit, prefetched (${(prefetchedShare3 * 100).toFixed(0)} % found ready)`, CALLS, prefetched3.admit),
    row("key + user + team: admit, its own Lua round trip", CALLS, own3.admit),
    row("key + user + team: settle, one Lua call", CALLS, own3.settle),
    row("floor: Redis PING round trip from the same process", CALLS, ping),
    row("request, key without limits (replica process, mock model)", REQUESTS, plain),
    row(`request, key with all four limits (${(e2ePrefetched * 100).toFixed(0)} % of limited requests prefetched)`, REQUESTS, limited),
    row("request, key + user + team, each with all four limits", REQUESTS, threeLevel),
    // The p99s of both are set by garbage-collection pauses (several ms) that land on either kind of
    // request; their difference is noise of that size, shown but not the measure (docs/limits.md).
    {
      what: "added by the limits (difference; p99 is GC noise)",
      calls: "",
      "p50 µs": f(limited.p50 - plain.p50),
      "p90 µs": f(limited.p90 - plain.p90),
      "p99 µs": f(limited.p99 - plain.p99),
      "max µs": "",
      target: "",
    },
    {
      what: "Redis Lua calls per limited request (INFO commandstats)",
      calls: REQUESTS,
      "p50 µs": luaPerRequest.toFixed(2),
      "p90 µs": "",
      "p99 µs": "",
      "max µs": "",
      target: "≤ 2 (one admit, one settle)",
    },
  ];
  const text = printTable("Budgets and rate limits", table);
  writeResult("limits", { calls: CALLS, requests: REQUESTS, rows: table, redis_lua_calls_per_request: luaPerRequest, prefetched_share_end_to_end: e2ePrefetched, markdown: text });
} finally {
  await replica?.stop();
  await gateway.close();
  await db.drop();
  await ns.cleanup();
}
