// This build of Gatehouse against another target, at saturation: the figure to trust when two targets differ by a
// few per cent, on a machine whose speed moves by more than that from minute to minute. The two take turns, in
// alternating order, for BENCH_ROUNDS short rounds each; the table gives each round's ratio and their median, and the
// CPU each process took a request (all its threads, and its main thread alone).
//   BENCH_BASELINE=<a built checkout> node bench/ab.mjs      another build of Gatehouse
//   BENCH_AGAINST=bare-http-proxy.mjs node bench/ab.mjs      a bare relay of bench/ (bare-proxy.mjs, bare-http-proxy.mjs,
//                                                            bare-dispatch-proxy.mjs; the feature floor needs a key)
//   (BENCH_ROUNDS, default 8; BENCH_SECONDS, default 4; BENCH_KINDS, default plain,stream; BENCH_TOGETHER=1, below)
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { benchGround, printTable, root, startBenchScript, startReplica, writeResult } from "./lib/harness.mjs";
import { wrk } from "./lib/wrk.mjs";

const BASELINE = process.env.BENCH_BASELINE;
const AGAINST = process.env.BENCH_AGAINST;
if (Boolean(BASELINE) === Boolean(AGAINST)) {
  console.error("one of BENCH_BASELINE=<a checkout of another commit, built> or BENCH_AGAINST=<a relay in bench/> is required");
  process.exit(2);
}
if (AGAINST && !existsSync(path.join(root, "bench", AGAINST))) {
  console.error(`BENCH_AGAINST: no bench/${AGAINST}`);
  process.exit(2);
}
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 8);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 4);
// BENCH_TOGETHER=1: the two are loaded at once, by a wrk each, and compared by their main thread's CPU a request
// (before's / now's) rather than by req/s, so that a change of the machine's speed during a round falls on both. It
// does not make this machine quiet: one build against itself (an A/A run, 10 rounds) still moved by 0.74–1.10 a
// round, and its medians came out at 0.96 and 0.93 — a few per cent cannot be told apart here either way.
const TOGETHER = process.env.BENCH_TOGETHER === "1";
const KINDS = (process.env.BENCH_KINDS ?? "plain,stream").split(",");
const YOUNG_GENERATION = ["--max-semi-space-size=32"];

const ground = await benchGround();
const { config, master, env } = ground;

/** A relay of bench/ against the same upstream, with the replica's `stop()`. */
async function startRelay(file) {
  const relay = await startBenchScript(file, [ground.upstream.url]);
  const stop = () => {
    relay.child.kill();
    return relay.exited;
  };
  return { ...relay, stop };
}
const now = await startReplica(env, ["--config", config], YOUNG_GENERATION);
const before = BASELINE ? await startReplica(env, ["--config", config], YOUNG_GENERATION, path.join(BASELINE, "dist", "cli.js")) : await startRelay(AGAINST);
const AGAINST_NAME = BASELINE ?? AGAINST;
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
  for (const kind of KINDS) {
    const stream = kind === "stream";
    const body = JSON.stringify({ model: "bench", stream, messages: [{ role: "user", content: "Say hello" }] });
    const run = (url, seconds) => wrk({ url: `${url}/v1/chat/completions`, headers, body, connections: 32, seconds });
    for (const target of [now, before]) await run(target.url, 2);
    const ratios = [];
    for (let round = 0; round < ROUNDS; round++) {
      const order = round % 2 === 0 ? [now, before] : [before, now];
      const rps = new Map();
      const used = new Map();
      const measure = async (target) => {
        const start = cpu(target.child.pid);
        const r = await run(target.url, SECONDS);
        const end = cpu(target.child.pid);
        rps.set(target, r.rps);
        used.set(target, { all: ((end.all - start.all) * 1e6) / r.requests, main: ((end.main - start.main) * 1e6) / r.requests });
      };
      if (TOGETHER) await Promise.all(order.map(measure));
      else for (const target of order) await measure(target);
      // Together, each process has what the other leaves of the same CPU at the same moment: its CPU a request is
      // the figure compared (what each reaches alone at saturation, where one core's worth is its limit).
      const ratio = TOGETHER ? used.get(before).main / used.get(now).main : rps.get(now) / rps.get(before);
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
const table = printTable(
  `This build ("now") against ${AGAINST_NAME} ("before"), ${ROUNDS} ${TOGETHER ? "rounds loaded together, compared by main-thread CPU a request" : "alternating rounds"} of ${SECONDS} s (wrk, 32 connections)`,
  rows,
);
writeResult(`ab${AGAINST ? `-${path.basename(AGAINST, ".mjs")}` : ""}${TOGETHER ? "-together" : ""}`, {
  baseline: BASELINE,
  against: AGAINST,
  together: TOGETHER,
  rounds: ROUNDS,
  seconds: SECONDS,
  summary,
  rows,
  markdown: table,
});
