// The router's cost on the request path, and how fast a cooldown reaches other replicas (docs/routing.md).
// 1. Per request, in-process: the model router's order of deployments and the attempt plan's first pick (what
//    routing adds to an L1-hit request that succeeds at once), for a model of 3 deployments. Target: ≤ 50 µs p99.
//    The same with each routing strategy that orders from memory (cost-, latency-based), and least-busy, which reads
//    the cluster's calls in flight from Redis (one round trip: reported, not held to the in-process target).
// 2. Cooldown propagation: "replicas" (DeploymentHealth instances, each with its own Redis connections, as each
//    replica process has) on one Redis; one counts the failures that start a deployment's cooldown; the time until
//    each other one holds it. Target: p99 ≤ 20 ms.
import { performance } from "node:perf_hooks";

const { ModelRouter } = await import("../dist/proxy/model-router.js");
const { AttemptPlan } = await import("../dist/proxy/attempts.js");
const { DeploymentHealth } = await import("../dist/proxy/deployment-health.js");
const { DEFAULT_ROUTER_SETTINGS } = await import("../dist/config/router-settings.js");
const { routingStrategy } = await import("../dist/proxy/routing-strategy.js");
const { DeploymentLoad } = await import("../dist/proxy/deployment-load.js");
const { createRedis, connectRedis } = await import("../dist/redis/client.js");
const { RedisKeys } = await import("../dist/redis/key-names.js");
const { createLogger } = await import("../dist/logger.js");
const { percentile, printTable, redisNamespace, REDIS_URL, writeResult } = await import("./lib/harness.mjs");

const REQUESTS = Number(process.env.BENCH_REQUESTS ?? 200_000);
const TRIALS = Number(process.env.BENCH_TRIALS ?? 300);
const REPLICAS = 3;

const deployment = (id, weight = 1, price = 0) => ({
  id,
  modelName: "m",
  weight,
  order: 1,
  provider: "mock",
  upstreamModel: id,
  inputCostPerToken: price,
  outputCostPerToken: price,
});
const logger = createLogger({ level: "silent" });
const ns = redisNamespace();
const keys = new RedisKeys(ns.prefix);

// 1. The request path.
const router = new ModelRouter([deployment("a", 2, 3e-6), deployment("b", 1, 1e-6), deployment("c", 1, 2e-6)]);
const idle = new DeploymentHealth({ redis: null, keys, logger, settings: DEFAULT_ROUTER_SETTINGS });
const headers = [];
/** Per request (µs, sorted, the first tenth left out as JIT warm-up): the router, the strategy's order, the plan's pick. */
async function requestPath(strategy, requests) {
  const perRequest = [];
  for (let i = 0; i < requests; i++) {
    const t0 = performance.now();
    const list = await strategy.order(router.pick("m"));
    const plan = new AttemptPlan(
      "m",
      list,
      DEFAULT_ROUTER_SETTINGS,
      idle,
      () => true,
      async () => undefined,
    );
    const chosen = await plan.next();
    headers.push(plan.answerHeaders(chosen).length);
    if (headers.length > 1000) headers.length = 0;
    perRequest.push((performance.now() - t0) * 1000);
  }
  return perRequest.slice(requests / 10).sort((a, b) => a - b);
}
// simple-shuffle (the default) first: the router's rotation as it is.
const hot = await requestPath(routingStrategy(DEFAULT_ROUTER_SETTINGS, new DeploymentLoad({ redis: null, keys, logger })), REQUESTS);
const inMemory = new DeploymentLoad({ redis: null, keys, logger });
for (const id of ["a", "b", "c"]) inMemory.answeredIn(id, 100 + Math.random() * 50);
const strategies = {};
for (const name of ["cost-based-routing", "latency-based-routing"])
  strategies[name] = await requestPath(routingStrategy({ ...DEFAULT_ROUTER_SETTINGS, strategy: name }, inMemory), REQUESTS);
const loadRedis = createRedis(REDIS_URL);
await connectRedis(loadRedis);
const shared = new DeploymentLoad({ redis: loadRedis, keys, logger });
strategies["least-busy"] = await requestPath(routingStrategy({ ...DEFAULT_ROUTER_SETTINGS, strategy: "least-busy" }, shared), Math.min(REQUESTS, 20_000));
loadRedis.disconnect();

// 2. Propagation.
const settings = { ...DEFAULT_ROUTER_SETTINGS, allowedFails: 0, cooldownMs: 60_000 };
const replicas = [];
for (let i = 0; i < REPLICAS; i++) {
  const redis = createRedis(REDIS_URL);
  await connectRedis(redis);
  const health = new DeploymentHealth({ redis, keys, logger, settings, resyncIntervalMs: 60_000 });
  await health.start();
  replicas.push({ redis, health });
}
const lags = [];
for (let t = 0; t < TRIALS; t++) {
  const d = deployment(`dep-${t}`);
  const started = performance.now();
  const [origin, ...others] = replicas;
  const heard = others.map(
    ({ health }) =>
      new Promise((resolve) => {
        const check = () => (health.isCooling(d.id) ? resolve(performance.now() - started) : setImmediate(check));
        check();
      }),
  );
  await origin.health.failed(d, "server_error"); // allowed_fails 0: this failure starts the cooldown
  lags.push(...(await Promise.all(heard)));
}
lags.sort((a, b) => a - b);
for (const { redis, health } of replicas) {
  await health.stop();
  redis.disconnect();
}
await ns.cleanup();

const rows = [
  {
    measure: `router on the request path (3 deployments; ${REQUESTS.toLocaleString("en")} requests)`,
    p50: `${percentile(hot, 50).toFixed(2)} µs`,
    p99: `${percentile(hot, 99).toFixed(2)} µs`,
    target: "≤ 50 µs p99",
    met: percentile(hot, 99) <= 50 ? "yes" : "NO",
  },
  ...["cost-based-routing", "latency-based-routing"].map((name) => ({
    measure: `the same, ${name} (orders from memory)`,
    p50: `${percentile(strategies[name], 50).toFixed(2)} µs`,
    p99: `${percentile(strategies[name], 99).toFixed(2)} µs`,
    target: "≤ 50 µs p99",
    met: percentile(strategies[name], 99) <= 50 ? "yes" : "NO",
  })),
  {
    measure: "the same, least-busy (reads the cluster's calls in flight: one Redis round trip)",
    p50: `${percentile(strategies["least-busy"], 50).toFixed(2)} µs`,
    p99: `${percentile(strategies["least-busy"], 99).toFixed(2)} µs`,
    target: "— (a round trip)",
    met: "—",
  },
  {
    measure: `cooldown: the failure that starts it → held by each other replica (${TRIALS} cooldowns × ${REPLICAS - 1} replicas)`,
    p50: `${percentile(lags, 50).toFixed(2)} ms`,
    p99: `${percentile(lags, 99).toFixed(2)} ms`,
    target: "≤ 20 ms p99",
    met: percentile(lags, 99) <= 20 ? "yes" : "NO",
  },
];
const table = printTable("Routing", rows);
writeResult("routing", {
  requests: REQUESTS,
  trials: TRIALS,
  router_p50_us: percentile(hot, 50),
  router_p99_us: percentile(hot, 99),
  strategies_us: Object.fromEntries(Object.entries(strategies).map(([name, xs]) => [name, { p50: percentile(xs, 50), p99: percentile(xs, 99) }])),
  cooldown_p50_ms: percentile(lags, 50),
  cooldown_p99_ms: percentile(lags, 99),
  markdown: table,
});
process.exit(0);
