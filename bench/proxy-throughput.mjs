// One replica relaying to a local upstream: saturation throughput and latency, against the upstream
// called directly. The upstream runs in a child process so it does not share the load generator's loop.
import { spawn } from "node:child_process";
import { writeFileSync, mkdtempSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import autocannon from "autocannon";
import { createDatabase, printTable, redisNamespace, REDIS_URL, root, startReplica, writeResult } from "./lib/harness.mjs";

const DURATION = Number(process.env.BENCH_SECONDS ?? 8);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 32);

function startUpstreamProcess() {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [path.join(root, "bench", "upstream-server.mjs"), "0"], { stdio: ["ignore", "pipe", "inherit"] });
    child.stdout.once("data", (d) => resolve({ child, url: JSON.parse(d.toString()).listening }));
    child.once("exit", (c) => reject(new Error(`upstream exited ${c}`)));
  });
}

function run(url, headers, body) {
  return new Promise((resolve, reject) => {
    autocannon({ url, method: "POST", headers, body, connections: CONNECTIONS, duration: DURATION, pipelining: 1 }, (err, result) => (err ? reject(err) : resolve(result)));
  });
}

const row = (what, r) => ({
  what,
  "req/s": Math.round(r.requests.average),
  "p50 ms": r.latency.p50,
  "p99 ms": r.latency.p99,
  "non-2xx": r.non2xx,
  errors: r.errors,
});

const db = await createDatabase();
const ns = redisNamespace();
const upstream = await startUpstreamProcess();
const dir = mkdtempSync(path.join(os.tmpdir(), "gh-bench-"));
const config = path.join(dir, "config.yaml");
writeFileSync(config, `model_list:\n  - model_name: bench\n    litellm_params: { model: openai/bench, api_base: "${upstream.url}/v1", api_key: dummy }\n`);
const master = "sk-bench-master-key";
const replica = await startReplica({ DATABASE_URL: db.url, REDIS_URL, GATEHOUSE_REDIS_PREFIX: ns.prefix, GATEHOUSE_MASTER_KEY: master }, ["--config", config]);
try {
  const created = await (await fetch(`${replica.url}/key/generate`, { method: "POST", headers: { authorization: `Bearer ${master}`, "content-type": "application/json" }, body: "{}" })).json();
  const body = JSON.stringify({ model: "bench", messages: [{ role: "user", content: "Say hello" }] });
  const headers = { "content-type": "application/json", authorization: `Bearer ${created.key}` };
  const direct = await run(`${upstream.url}/v1/chat/completions`, headers, body);
  const gateway = await run(`${replica.url}/v1/chat/completions`, headers, body);
  const rows = [row("upstream direct", direct), row("gatehouse (L1-hit key)", gateway)];
  printTable(`Proxy throughput: ${CONNECTIONS} connections, ${DURATION}s each, 2 cores shared by load generator, gateway and upstream`, rows);
  writeResult("proxy-throughput", { connections: CONNECTIONS, seconds: DURATION, rows });
} finally {
  await replica.stop();
  upstream.child.kill();
  await db.drop();
  await ns.cleanup();
}
