// Two builds of Gatehouse, one against the other, at saturation: the figure to trust when a change is worth a few
// per cent, on a machine whose speed moves by more than that from minute to minute. The builds take turns, in
// alternating order, for BENCH_ROUNDS short rounds each; the table gives each round's ratio and their median.
//   BENCH_BASELINE=<a built checkout> node bench/ab.mjs      (BENCH_ROUNDS, default 8; BENCH_SECONDS, default 4)
import { readFileSync } from "node:fs";
import path from "node:path";
import { benchGround, printTable, startReplica, writeResult } from "./lib/harness.mjs";
import { wrk } from "./lib/wrk.mjs";

const BASELINE = process.env.BENCH_BASELINE;
if (!BASELINE) {
  console.error("BENCH_BASELINE=<a checkout of another commit, built> is required");
  process.exit(2);
}
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 8);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 4);
const YOUNG_GENERATION = ["--max-semi-space-size=32"];

const ground = await benchGround();
const { config, master, env } = ground;
const now = await startReplica(env, ["--config", config], YOUNG_GENERATION);
const before = await startReplica(env, ["--config", config], YOUNG_GENERATION, path.join(BASELINE, "dist", "cli.js"));
// CPU seconds of a process (all its threads: libuv's pool and V8's helpers too) and of its main thread alone.
const TICK = 100; // USER_HZ
const cpuOf = (file) => {
  const fields = readFileSync(file, "utf8").split(") ")[1].split(" ");
  return (Number(fields[11]) + Number(fields[12])) / TICK;
};
const cpu = (pid) => ({ all: cpuOf(`/proc/${pid}/stat`), main: cpuOf(`/proc/${pid}/task/${pid}/stat`) });
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const rows = [];
const summary = {};
const cpuUse = new Map();
try {
  const created = await (
    await fetch(`${now.url}/key/generate`, { method: "POST", headers: { authorization: `Bearer ${master}`, "content-type": "application/json" }, body: "{}" })
  ).json();
  const headers = { "content-type": "application/json", authorization: `Bearer ${created.key}` };
  for (const stream of [false, true]) {
    const kind = stream ? "stream" : "plain";
    const body = JSON.stringify({ model: "bench", stream, messages: [{ role: "user", content: "Say hello" }] });
    const run = (url, seconds) => wrk({ url: `${url}/v1/chat/completions`, headers, body, connections: 32, seconds });
    for (const target of [now, before]) await run(target.url, 2);
    const ratios = [];
    for (let round = 0; round < ROUNDS; round++) {
      const order = round % 2 === 0 ? [now, before] : [before, now];
      const rps = new Map();
      const used = new Map();
      for (const target of order) {
        const start = cpu(target.child.pid);
        const r = await run(target.url, SECONDS);
        const end = cpu(target.child.pid);
        const requests = r.rps * SECONDS;
        rps.set(target, r.rps);
        used.set(target, { all: ((end.all - start.all) * 1e6) / requests, main: ((end.main - start.main) * 1e6) / requests });
      }
      const ratio = rps.get(now) / rps.get(before);
      ratios.push(ratio);
      for (const t of [now, before]) (cpuUse.get(t) ?? cpuUse.set(t, []).get(t)).push(used.get(t));
      const us = (t) => `${used.get(t).all.toFixed(1)} (${used.get(t).main.toFixed(1)})`;
      rows.push({
        kind,
        round: round + 1,
        "now req/s": Math.round(rps.get(now)),
        "before req/s": Math.round(rps.get(before)),
        "now / before": ratio.toFixed(3),
        "CPU µs a request, now: all (main thread)": us(now),
        "before: all (main thread)": us(before),
      });
    }
    summary[kind] = { median: median(ratios), min: Math.min(...ratios), max: Math.max(...ratios) };
    const med = (t, k) => median(cpuUse.get(t).map((u) => u[k])).toFixed(1);
    summary[kind].cpu = { now: { all: med(now, "all"), main: med(now, "main") }, before: { all: med(before, "all"), main: med(before, "main") } };
    rows.push({
      kind,
      round: "median",
      "now req/s": "",
      "before req/s": "",
      "now / before": `${summary[kind].median.toFixed(3)} (${summary[kind].min.toFixed(2)}–${summary[kind].max.toFixed(2)})`,
      "CPU µs a request, now: all (main thread)": `${med(now, "all")} (${med(now, "main")})`,
      "before: all (main thread)": `${med(before, "all")} (${med(before, "main")})`,
    });
    cpuUse.clear();
  }
} finally {
  await now.stop();
  await before.stop();
  await ground.cleanup();
}
const table = printTable(`This build against ${BASELINE}, ${ROUNDS} alternating rounds of ${SECONDS} s (wrk, 32 connections)`, rows);
writeResult("ab", { baseline: BASELINE, rounds: ROUNDS, seconds: SECONDS, summary, rows, markdown: table });
