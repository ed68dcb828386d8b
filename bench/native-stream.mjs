// Does relaying Anthropic's own stream to /v1/messages cost the gateway more than relaying an OpenAI-compatible chat
// stream? One replica, two priced deployments on the same bench upstream (bench/upstream-server.mjs): "bench"
// (openai/, chat chunks) and "bench-claude" (anthropic/, the same five words as Anthropic's events). Streams at
// saturation with autocannon, the two routes in turn for BENCH_ROUNDS rounds, and the replica's CPU time per
// request (from /proc: what the relay itself costs, whatever the load generator does). Beside them, the translated
// paths: chat on the Anthropic deployment, and /v1/messages and /v1/responses on the chat deployment.
import autocannon from "autocannon";
import { readFileSync } from "node:fs";
import { createDatabase, printTable, redisNamespace, REDIS_URL, startReplica, startUpstreamProcess, writeResult } from "./lib/harness.mjs";
import { mkdtempSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";

const SECONDS = Number(process.env.BENCH_SECONDS ?? 5);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 2);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 32);

const db = await createDatabase();
const redis = redisNamespace();
const upstream = await startUpstreamProcess();
const config = path.join(mkdtempSync(path.join(os.tmpdir(), "gh-bench-")), "config.yaml");
const prices = "input_cost_per_token: 0.000001, output_cost_per_token: 0.000002";
writeFileSync(
  config,
  `model_list:
  - model_name: bench
    litellm_params: { model: openai/bench, api_base: "${upstream.url}/v1", api_key: dummy, ${prices} }
  - model_name: bench-claude
    litellm_params: { model: anthropic/bench, api_base: "${upstream.url}", api_key: dummy, ${prices} }
`,
);
const masterKey = `sk-master-${Math.random().toString(36).slice(2)}xx`;
const replica = await startReplica({ DATABASE_URL: db.url, REDIS_URL, GATEHOUSE_REDIS_PREFIX: redis.prefix, GATEHOUSE_MASTER_KEY: masterKey }, ["--config", config]);
const stop = async () => {
  await replica.stop("SIGKILL");
  upstream.child.kill("SIGKILL");
  await db.drop();
  await redis.cleanup();
};

try {
  const generated = await (
    await fetch(`${replica.url}/key/generate`, { method: "POST", headers: { authorization: `Bearer ${masterKey}`, "content-type": "application/json" }, body: "{}" })
  ).json();
  const key = generated.key;
  const message = [{ role: "user", content: "Hello" }];
  const cases = [
    { path: "chat → OpenAI-compatible (native)", route: "/v1/chat/completions", body: { model: "bench", messages: message, stream: true } },
    { path: "/v1/messages → Anthropic (native)", route: "/v1/messages", body: { model: "bench-claude", max_tokens: 64, messages: message, stream: true } },
    { path: "chat → Anthropic (translated)", route: "/v1/chat/completions", body: { model: "bench-claude", messages: message, stream: true } },
    { path: "/v1/messages → OpenAI-compatible (translated)", route: "/v1/messages", body: { model: "bench", max_tokens: 64, messages: message, stream: true } },
    { path: "/v1/responses → OpenAI-compatible (translated)", route: "/v1/responses", body: { model: "bench", input: "Hello", stream: true } },
  ];
  // Each case answers 200 with a whole stream before it is measured.
  for (const c of cases) {
    const res = await fetch(`${replica.url}${c.route}`, {
      method: "POST",
      headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
      body: JSON.stringify(c.body),
    });
    const text = await res.text();
    if (res.status !== 200 || !/message_stop|\[DONE\]|response\.completed/.test(text)) throw new Error(`${c.path}: ${res.status} ${text.slice(0, 300)}`);
  }
  const cpuSeconds = () => {
    const fields = readFileSync(`/proc/${replica.child.pid}/stat`, "utf8").split(") ")[1].split(" ");
    return (Number(fields[11]) + Number(fields[12])) / 100; // utime + stime, in clock ticks of 10 ms
  };
  const results = new Map(cases.map((c) => [c.path, []]));
  for (let round = 0; round < ROUNDS; round++) {
    for (const c of cases) {
      const cpu0 = cpuSeconds();
      const r = await new Promise((resolve, reject) =>
        autocannon(
          {
            url: `${replica.url}${c.route}`,
            method: "POST",
            headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
            body: JSON.stringify(c.body),
            connections: CONNECTIONS,
            duration: SECONDS,
          },
          (err, res) => (err ? reject(err) : resolve(res)),
        ),
      );
      const cpu = cpuSeconds() - cpu0;
      if (r.non2xx > 0 || r.errors > 0) throw new Error(`${c.path}: ${r.non2xx} non-2xx, ${r.errors} errors`);
      results.get(c.path).push({ rps: r.requests.average, p50: r.latency.p50, p99: r.latency.p99, cpuUsPerRequest: (cpu * 1e6) / r.requests.total });
    }
  }
  const best = (xs, f, pick) => pick(...xs.map(f));
  const rows = cases.map((c) => {
    const xs = results.get(c.path);
    return {
      path: c.path,
      "req/s (best round)": Math.round(best(xs, (x) => x.rps, Math.max)),
      "p50 ms": best(xs, (x) => x.p50, Math.min),
      "p99 ms": best(xs, (x) => x.p99, Math.min),
      "replica CPU µs/request (best round)": Math.round(best(xs, (x) => x.cpuUsPerRequest, Math.min)),
    };
  });
  const table = printTable(`Streams through one replica (${CONNECTIONS} connections, ${SECONDS} s × ${ROUNDS} rounds each, priced models)`, rows);
  const native = rows.find((r) => r.path.startsWith("/v1/messages → Anthropic"));
  const openai = rows.find((r) => r.path.startsWith("chat → OpenAI"));
  const ratio = native["replica CPU µs/request (best round)"] / openai["replica CPU µs/request (best round)"];
  console.log(`native Anthropic passthrough costs ${ratio.toFixed(2)}× the CPU of an OpenAI-compatible stream per request`);
  writeResult("native-stream", {
    seconds: SECONDS,
    rounds: ROUNDS,
    connections: CONNECTIONS,
    rows,
    native_over_openai_cpu: ratio,
    markdown: table,
    note: `Native Anthropic passthrough costs ${ratio.toFixed(2)}× the replica CPU of an OpenAI-compatible stream per request.`,
  });
} finally {
  await stop();
}
