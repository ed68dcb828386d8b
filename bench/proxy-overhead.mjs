// Proxy overhead: one replica with an L1-hit key, against the same upstream called directly and (where
// installed) nginx proxy_pass as the plain-reverse-proxy reference. Saturation throughput (autocannon) and
// latency at fixed request rates (open loop, µs timing), for plain and streamed completions.
import autocannon from "autocannon";
import { spawn } from "node:child_process";
import path from "node:path";
import { createDatabase, printTable, redisNamespace, REDIS_URL, root, startReplica, startUpstreamProcess, writeBenchConfig, writeResult } from "./lib/harness.mjs";
import { openLoop } from "./lib/load.mjs";
import { startNginx } from "./lib/nginx.mjs";

const SECONDS = Number(process.env.BENCH_SECONDS ?? 6);
const RATES = (process.env.BENCH_RATES ?? "500,1000,2000").split(",").map(Number);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 32);

const saturate = (url, headers, body) =>
  new Promise((resolve, reject) => {
    autocannon({ url, method: "POST", headers, body, connections: CONNECTIONS, duration: SECONDS }, (err, r) => (err ? reject(err) : resolve(r)));
  });

const db = await createDatabase();
const ns = redisNamespace();
const upstream = await startUpstreamProcess();
const config = writeBenchConfig(upstream.url);
const master = "sk-bench-master-key";
const replica = await startReplica({ DATABASE_URL: db.url, REDIS_URL, GATEHOUSE_REDIS_PREFIX: ns.prefix, GATEHOUSE_MASTER_KEY: master }, ["--config", config]);
const nginx = await startNginx([new URL(upstream.url).host]);
// The Node.js floor: node:http + undici, nothing else (bench/bare-proxy.mjs).
const bare = await new Promise((resolve, reject) => {
  const child = spawn(process.execPath, [path.join(root, "bench", "bare-proxy.mjs"), upstream.url], { stdio: ["ignore", "pipe", "inherit"] });
  child.stdout.once("data", (d) => resolve({ child, url: JSON.parse(d.toString()).listening }));
  child.once("exit", (c) => reject(new Error(`bare proxy exited ${c}`)));
});
try {
  const created = await (await fetch(`${replica.url}/key/generate`, { method: "POST", headers: { authorization: `Bearer ${master}`, "content-type": "application/json" }, body: "{}" })).json();
  const headers = { "content-type": "application/json", authorization: `Bearer ${created.key}` };
  const targets = [["upstream direct", upstream.url], ...(nginx ? [["nginx proxy_pass (1 worker)", nginx.url]] : []), ["bare Node proxy (node:http + undici)", bare.url], ["gatehouse, 1 replica", replica.url]];
  const saturation = [];
  const fixed = [];
  for (const stream of [false, true]) {
    const body = JSON.stringify({ model: "bench", stream, messages: [{ role: "user", content: "Say hello" }] });
    const kind = stream ? "stream" : "plain";
    const byTarget = {};
    for (const [name, url] of targets) {
      const r = await saturate(`${url}/v1/chat/completions`, headers, body);
      byTarget[name] = r.requests.average;
      saturation.push({ kind, target: name, "req/s": Math.round(r.requests.average), "p50 ms": r.latency.p50, "p99 ms": r.latency.p99, errors: r.errors + r.non2xx });
    }
    saturation.push({ kind, target: "ratio gatehouse / bare Node proxy", "req/s": (byTarget["gatehouse, 1 replica"] / byTarget["bare Node proxy (node:http + undici)"]).toFixed(2), "p50 ms": "", "p99 ms": "", errors: "" });
    if (nginx) saturation.push({ kind, target: "ratio bare Node proxy / nginx", "req/s": (byTarget["bare Node proxy (node:http + undici)"] / byTarget["nginx proxy_pass (1 worker)"]).toFixed(2), "p50 ms": "", "p99 ms": "", errors: "the Node.js ceiling" });
    if (nginx) saturation.push({ kind, target: "ratio gatehouse / nginx", "req/s": (byTarget["gatehouse, 1 replica"] / byTarget["nginx proxy_pass (1 worker)"]).toFixed(2), "p50 ms": "", "p99 ms": "", errors: "target ≥ 0.25" });
    for (const rate of RATES) {
      const results = {};
      for (const [name, url] of targets) {
        results[name] = await openLoop({ url, path: "/v1/chat/completions", headers, body, rate, durationMs: SECONDS * 1000 });
        const r = results[name];
        fixed.push({ kind, rate, target: name, "p50 µs": Math.round(r.p50Us), "p99 µs": Math.round(r.p99Us), "max µs": Math.round(r.maxUs), errors: r.errors + r.non2xx });
      }
      const g = results["gatehouse, 1 replica"];
      const d = results["upstream direct"];
      const b = results["bare Node proxy (node:http + undici)"];
      fixed.push({ kind, rate, target: "overhead (bare Node proxy − direct)", "p50 µs": Math.round(b.p50Us - d.p50Us), "p99 µs": Math.round(b.p99Us - d.p99Us), "max µs": "", errors: "" });
      fixed.push({ kind, rate, target: "overhead (gatehouse − direct)", "p50 µs": Math.round(g.p50Us - d.p50Us), "p99 µs": Math.round(g.p99Us - d.p99Us), "max µs": "", errors: rate === 1000 ? "target p99 ≤ 1000 µs" : "" });
    }
  }
  const t1 = printTable(`Saturation (${CONNECTIONS} connections, ${SECONDS} s each; load generator, upstream and proxy share 2 cores)`, saturation);
  const t2 = printTable(`Latency at fixed rates (open loop, ${SECONDS} s each, latency from the scheduled send time)`, fixed);
  writeResult("proxy-overhead", { seconds: SECONDS, connections: CONNECTIONS, saturation, fixed, markdown: `${t1}\n\n${t2}` });
} finally {
  await replica.stop();
  await nginx?.stop();
  bare.child.kill();
  upstream.child.kill();
  await db.drop();
  await ns.cleanup();
}
