// Proxy overhead: one Gatehouse process with an L1-hit key on a priced model (spend metered), against the same
// canned upstream called directly, nginx proxy_pass (the plain reverse proxy), a bare node:http + undici request()
// relay and a node:http relay with a keep-alive agent (the bare relays the targets are set against), a bare relay on
// undici's dispatch API (what a Node.js relay reaches at all), and that relay with Gatehouse's default per-request
// features written straight into it (bench/feature-floor-proxy.mjs: what those features cost at least). Saturation
// with wrk (a C load generator that leaves the CPU to the system under test) and, beside it, autocannon; latency at
// fixed request rates (open loop, µs timing) from outside and the gateway's own time from inside (its /metrics
// histogram); bytes allocated per request (V8's --trace-gc) and minor GCs per 1,000 requests; and `--workers 2` on
// the same cores.
//
// "gatehouse before" is an earlier build measured in the same run: the old and new figures side by side. By default
// it is the build before the hot-path work, made once from git (bench/lib/baseline.mjs); BENCH_BASELINE=<a checkout
// of another commit, built> measures that one instead, BENCH_BASELINE=none none. It runs with Node's default young
// generation, as builds before --max-semi-space-size=32 were shipped; BENCH_BASELINE_YOUNG=same gives it the current
// build's (the fair comparison for a baseline that already ships with it).
import autocannon from "autocannon";
import { existsSync } from "node:fs";
import path from "node:path";
import { benchGround, printTable, startBenchScript, startReplica, writeResult } from "./lib/harness.mjs";
import { openLoop } from "./lib/load.mjs";
import { startNginx } from "./lib/nginx.mjs";
import { wrk, wrkPath } from "./lib/wrk.mjs";
import { baselineBuild } from "./lib/baseline.mjs";
import { allocationRate } from "./lib/gc-trace.mjs";
import { histogramDelta, quantile, quantileMicros, readHistogram, shareAtMost } from "./lib/prom-histogram.mjs";
import { spawnReplica } from "../test/support/replica-process.mjs";

const SECONDS = Number(process.env.BENCH_SECONDS ?? 6);
const RATES = (process.env.BENCH_RATES ?? "1000").split(",").map(Number);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 32);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 4);
const BASELINE = baselineBuild();
// What `npm start` and every --workers worker run with (docs/performance.md).
const YOUNG_GENERATION = ["--max-semi-space-size=32"];
const BASELINE_YOUNG_GENERATION = process.env.BENCH_BASELINE_YOUNG === "same" ? YOUNG_GENERATION : [];

if (!wrkPath()) {
  console.error("bench/proxy-overhead.mjs needs wrk (apt-get install wrk)");
  process.exit(1);
}
if (BASELINE && !existsSync(path.join(BASELINE, "dist", "cli.js"))) {
  console.error(`BENCH_BASELINE: no dist/cli.js in ${BASELINE} (build it first)`);
  process.exit(1);
}

const autocannonRun = (url, headers, body) =>
  new Promise((resolve, reject) => {
    autocannon({ url, method: "POST", headers, body, connections: CONNECTIONS, duration: SECONDS }, (err, r) => (err ? reject(err) : resolve(r)));
  });

const ground = await benchGround();
const { upstream, config, master, env } = ground;
const gatehouse = await startReplica(env, ["--config", config], YOUNG_GENERATION);
// The same build with every request sent the general way (server.straight_path off): what the straight path buys.
// BENCH_GENERAL=none leaves it out.
const general = process.env.BENCH_GENERAL === "none" ? null : await startReplica({ ...env, GATEHOUSE_SERVER_STRAIGHT_PATH: "off" }, ["--config", config], YOUNG_GENERATION);
const before = BASELINE ? await startReplica(env, ["--config", config], BASELINE_YOUNG_GENERATION, path.join(BASELINE, "dist", "cli.js")) : null;
const nginx = await startNginx([new URL(upstream.url).host]);
const relay = (file, ...args) => startBenchScript(file, [upstream.url, ...args]);
const bare = await relay("bare-proxy.mjs");
const bareDispatch = await relay("bare-dispatch-proxy.mjs");
const bareHttp = await relay("bare-http-proxy.mjs");
let workers;
let floor;

/** The gateway's own-time histogram (its overhead metric) for the chat route, as it stands now. */
async function ownTime(url) {
  const text = await (await fetch(`${url}/metrics?scope=worker`, { headers: { authorization: `Bearer ${master}` } })).text();
  return readHistogram(text, "gatehouse_overhead_duration_seconds", { route: "/v1/chat/completions" });
}

/** Minor GCs and their total seconds so far, read from a gateway's own metrics. */
async function minorGcs(url) {
  const text = await (await fetch(`${url}/metrics?scope=worker`, { headers: { authorization: `Bearer ${master}` } })).text();
  const read = (k) =>
    Number(
      text
        .split("\n")
        .find((l) => l.startsWith(`gatehouse_nodejs_gc_duration_seconds_${k}{kind="minor"}`))
        ?.split(" ")
        .pop() ?? 0,
    );
  return { count: read("count"), seconds: read("sum") };
}

try {
  const created = await (
    await fetch(`${gatehouse.url}/key/generate`, { method: "POST", headers: { authorization: `Bearer ${master}`, "content-type": "application/json" }, body: "{}" })
  ).json();
  const headers = { "content-type": "application/json", authorization: `Bearer ${created.key}` };
  // Given the same key: it authenticates wrk's requests by the key's hash, as Gatehouse does.
  floor = await relay("feature-floor-proxy.mjs", created.key);
  const NGINX = "nginx proxy_pass (1 worker)";
  const BARE = "bare Node proxy (node:http + undici)";
  const HTTP_AGENT = "bare Node relay, node:http keep-alive agent";
  const DISPATCH = "bare Node relay, undici dispatch, one write";
  const FLOOR = "feature floor: the dispatch relay with Gatehouse's default features, written straight";
  const GH = "gatehouse, 1 process";
  const BEFORE = "gatehouse before (same run)";
  const GENERAL = "gatehouse, general path only (straight_path off)";
  const targets = [
    ["upstream direct", upstream.url],
    ...(nginx ? [[NGINX, nginx.url]] : []),
    [BARE, bare.url],
    [HTTP_AGENT, bareHttp.url],
    [DISPATCH, bareDispatch.url],
    [FLOOR, floor.url],
    ...(before ? [[BEFORE, before.url]] : []),
    ...(general ? [[GENERAL, general.url]] : []),
    [GH, gatehouse.url],
  ];
  const saturation = [];
  const fixed = [];
  const inside = [];
  const percent = (share) => (Number.isNaN(share) ? "" : `${(share * 100).toFixed(1)} %`);
  const gc = [];
  const summary = {};
  for (const stream of [false, true]) {
    const body = JSON.stringify({ model: "bench", stream, messages: [{ role: "user", content: "Say hello" }] });
    const kind = stream ? "stream" : "plain";
    const rps = {};
    const best = {};
    // Every round's figure of every target, for the rounds' median ratio beside the best rounds' ratio.
    const rounds = [];
    const gcTotals = {};
    // Rounds interleave the targets, so a disturbance of the shared machine does not fall on one target only;
    // each target's best round is reported (a Node.js process reaches its steady state at different times).
    for (let round = 0; round < ROUNDS; round++) {
      rounds.push({});
      for (const [name, url] of targets) {
        const isGatehouse = name === GH || name === BEFORE || name === GENERAL;
        // Warm the JIT (and the key's L1 entry) first: a cold start is not what a gateway spends its life in.
        if (round === 0 && name !== "upstream direct") await wrk({ url: `${url}/v1/chat/completions`, headers, body, connections: CONNECTIONS, seconds: 2 });
        const gc0 = isGatehouse ? await minorGcs(url) : null;
        const w = await wrk({ url: `${url}/v1/chat/completions`, headers, body, connections: CONNECTIONS, seconds: SECONDS });
        if (gc0) {
          const gc1 = await minorGcs(url);
          gcTotals[name] ??= { requests: 0, count: 0, seconds: 0 };
          const t = gcTotals[name];
          t.requests += w.requests;
          t.count += gc1.count - gc0.count;
          t.seconds += gc1.seconds - gc0.seconds;
        }
        // Each round as it comes, on stderr: the spread between rounds is what says how far the best can be trusted.
        console.error(`${kind} round ${round + 1}: ${name}: ${Math.round(w.rps)} req/s`);
        rounds[round][name] = w.rps;
        if (!best[name] || w.rps > best[name].rps) best[name] = w;
      }
    }
    for (const [name] of targets) {
      const w = best[name];
      rps[name] = w.rps;
      saturation.push({ kind, tool: "wrk", target: name, "req/s": Math.round(w.rps), "p50 ms": w.p50Ms.toFixed(2), "p99 ms": w.p99Ms.toFixed(2), errors: w.errors + w.non2xx });
    }
    for (const [name, t] of Object.entries(gcTotals)) {
      gc.push({
        kind,
        target: name,
        requests: t.requests,
        "minor GCs": t.count,
        "per 1,000 requests": ((t.count * 1000) / t.requests).toFixed(2),
        "ms each": t.count ? ((t.seconds * 1000) / t.count).toFixed(2) : "",
      });
    }
    // autocannon beside wrk for the three that matter: a Node.js load generator takes CPU from what it measures.
    for (const [name, url] of targets.filter(([n]) => n === NGINX || n === BARE || n === GH)) {
      const a = await autocannonRun(`${url}/v1/chat/completions`, headers, body);
      saturation.push({
        kind,
        tool: "autocannon",
        target: name,
        "req/s": Math.round(a.requests.average),
        "p50 ms": a.latency.p50,
        "p99 ms": a.latency.p99,
        errors: a.errors + a.non2xx,
      });
    }
    const ratio = (a, b) => (rps[a] && rps[b] ? rps[a] / rps[b] : NaN);
    summary[kind] = {
      vsNginx: ratio(GH, NGINX),
      vsBare: ratio(GH, BARE),
      vsHttpAgent: ratio(GH, HTTP_AGENT),
      floorVsBare: ratio(FLOOR, BARE),
      vsFloor: ratio(GH, FLOOR),
      bareVsNginx: ratio(BARE, NGINX),
      beforeVsNginx: ratio(BEFORE, NGINX),
      beforeVsBare: ratio(BEFORE, BARE),
      generalVsBare: ratio(GENERAL, BARE),
    };
    // The best rounds' ratio is the figure held to the target; beside it, the median of the ratios of the two targets
    // in the same round (measured within a minute of each other), which says how often the best is reached.
    const roundsMedian = (a, b) => {
      const ratios = rounds
        .filter((r) => r[a] && r[b])
        .map((r) => r[a] / r[b])
        .sort((x, y) => x - y);
      const middle = ratios.length >> 1;
      return ratios.length === 0 ? NaN : ratios.length % 2 ? ratios[middle] : (ratios[middle - 1] + ratios[middle]) / 2;
    };
    const row = (target, value, note, a, b) => {
      const median = a && b ? roundsMedian(a, b) : NaN;
      const rest = Number.isNaN(median) ? "" : `rounds' median ${median.toFixed(2)}`;
      saturation.push({
        kind,
        tool: "wrk",
        target,
        "req/s": Number.isNaN(value) ? "" : value.toFixed(2),
        "p50 ms": "",
        "p99 ms": "",
        errors: [note, rest].filter(Boolean).join("; "),
      });
    };
    summary[kind].vsDispatch = ratio(GH, DISPATCH);
    if (nginx) row("ratio gatehouse / nginx", summary[kind].vsNginx, "target ≥ 0.40", GH, NGINX);
    row("ratio gatehouse / bare Node proxy", summary[kind].vsBare, "target ≥ 0.85", GH, BARE);
    row("ratio gatehouse / bare node:http keep-alive relay", summary[kind].vsHttpAgent, "target ≥ 0.85", GH, HTTP_AGENT);
    row("ratio gatehouse / bare dispatch relay", summary[kind].vsDispatch, "", GH, DISPATCH);
    row("ratio gatehouse / feature floor", summary[kind].vsFloor, "", GH, FLOOR);
    row("ratio feature floor / bare Node proxy", summary[kind].floorVsBare, "the features, written straight", FLOOR, BARE);
    if (before && nginx) row("ratio gatehouse before / nginx", summary[kind].beforeVsNginx, "");
    if (before) row("ratio gatehouse before / bare Node proxy", summary[kind].beforeVsBare, "", BEFORE, BARE);
    if (general) row("ratio gatehouse general path / bare Node proxy", summary[kind].generalVsBare, "straight_path off");
    if (nginx) row("ratio bare Node proxy / nginx", summary[kind].bareVsNginx, "the Node.js ceiling", BARE, NGINX);
    summary[kind].roundsMedian = { vsNginx: roundsMedian(GH, NGINX), vsBare: roundsMedian(GH, BARE), vsHttpAgent: roundsMedian(GH, HTTP_AGENT), vsFloor: roundsMedian(GH, FLOOR) };

    for (const rate of RATES) {
      const results = {};
      for (const [name, url] of targets) {
        // The dispatch relay and the feature floor keep the same histogram: the own time of a relay that does
        // nothing else, and of the same features written straight.
        const own0 = name === GH || name === BEFORE || name === GENERAL || name === FLOOR || name === DISPATCH ? await ownTime(url) : null;
        results[name] = await openLoop({ url, path: "/v1/chat/completions", headers, body, rate, durationMs: SECONDS * 1000 });
        if (own0) {
          // Inside: the gateway's own time of each request of this run (warm-up included), from its histogram.
          const own = histogramDelta(own0, await ownTime(url));
          inside.push({
            kind,
            rate,
            target: name,
            requests: own.at(-1)?.[1] ?? 0,
            "p50 µs": quantileMicros(own, 0.5),
            "p99 µs": quantileMicros(own, 0.99),
            "≤ 50 µs": percent(shareAtMost(own, 0.00005)),
            "≤ 1 ms": percent(shareAtMost(own, 0.001)),
            target_: name === GH && rate === 1000 ? "p50 ≤ 50 µs (≥ 50 % ≤ 50 µs), p99 ≤ 1 ms (≥ 99 % ≤ 1 ms)" : "",
          });
          const atRate = { p50Us: quantile(own, 0.5) * 1e6, p99Us: quantile(own, 0.99) * 1e6, atMost50Us: shareAtMost(own, 0.00005) };
          if (name === FLOOR && rate === 1000) summary[kind].floorInside = atRate;
          if (name === DISPATCH && rate === 1000) summary[kind].dispatchInside = atRate;
          if (name === GH && rate === 1000)
            summary[kind].inside = { p50Us: quantile(own, 0.5) * 1e6, p99Us: quantile(own, 0.99) * 1e6, atMost50Us: shareAtMost(own, 0.00005), atMost1Ms: shareAtMost(own, 0.001) };
        }
        const r = results[name];
        fixed.push({ kind, rate, target: name, "p50 µs": Math.round(r.p50Us), "p99 µs": Math.round(r.p99Us), "max µs": Math.round(r.maxUs), errors: r.errors + r.non2xx });
      }
      const d = results["upstream direct"];
      for (const name of [BARE, ...(before ? [BEFORE] : []), ...(general ? [GENERAL] : []), GH]) {
        const r = results[name];
        fixed.push({
          kind,
          rate,
          target: `overhead (${name} − direct)`,
          "p50 µs": Math.round(r.p50Us - d.p50Us),
          "p99 µs": Math.round(r.p99Us - d.p99Us),
          "max µs": "",
          errors: name === GH && rate === 1000 ? "target p99 ≤ 1000 µs" : "",
        });
      }
      if (rate === 1000) summary[kind].p99OverheadUs = results[GH].p99Us - d.p99Us;
    }
  }

  // Allocation: each build again, alone, with V8's --trace-gc (what it allocates per second at saturation, divided
  // by the requests it served per second). Its own processes: tracing costs a little, and the log lines must be kept.
  const allocation = [];
  const traces = [
    [GH, undefined, {}],
    ...(general ? [[GENERAL, undefined, { GATEHOUSE_SERVER_STRAIGHT_PATH: "off" }]] : []),
    ...(BASELINE ? [[BEFORE, path.join(BASELINE, "dist", "cli.js"), {}]] : []),
  ];
  for (const [name, cli, settings] of traces) {
    const traced = await spawnReplica({ LOG_LEVEL: "info", ...env, ...settings }, ["--config", config], { keepOutput: true, nodeArgs: [...YOUNG_GENERATION, "--trace-gc"], cli });
    try {
      for (const stream of [false, true]) {
        const body = JSON.stringify({ model: "bench", stream, messages: [{ role: "user", content: "Say hello" }] });
        await wrk({ url: `${traced.url}/v1/chat/completions`, headers, body, connections: CONNECTIONS, seconds: 2 });
        const from = traced.output.length;
        const w = await wrk({ url: `${traced.url}/v1/chat/completions`, headers, body, connections: CONNECTIONS, seconds: SECONDS });
        const gcLines = traced.output.slice(from).filter((l) => l.includes(" ms: "));
        const rate = allocationRate(gcLines);
        allocation.push({
          kind: stream ? "stream" : "plain",
          target: name,
          "req/s": Math.round(w.rps),
          "KiB per request": (rate.bytesPerSecond / w.rps / 1024).toFixed(1),
          "minor GCs per 1,000 requests": ((rate.collections.minor * 1000) / w.requests).toFixed(2),
          "major GCs": rate.collections.major,
        });
        traced.output.length = 0;
      }
    } finally {
      await traced.stop();
    }
  }

  // Every core: two workers on one port. The load generator and the upstream share the same two cores.
  await gatehouse.stop();
  await general?.stop();
  workers = await startReplica({ ...env, GATEHOUSE_SERVER_WORKERS: "2" }, ["--config", config]);
  const workerRows = [];
  for (const stream of [false, true]) {
    const body = JSON.stringify({ model: "bench", stream, messages: [{ role: "user", content: "Say hello" }] });
    await wrk({ url: `${workers.url}/v1/chat/completions`, headers, body, connections: CONNECTIONS, seconds: 2 });
    const w = await wrk({ url: `${workers.url}/v1/chat/completions`, headers, body, connections: CONNECTIONS, seconds: SECONDS });
    const kind = stream ? "stream" : "plain";
    const n = saturation.find((r) => r.kind === kind && r.tool === "wrk" && r.target === NGINX)?.["req/s"];
    workerRows.push({
      kind,
      target: "gatehouse --workers 2",
      "req/s": Math.round(w.rps),
      "p50 ms": w.p50Ms.toFixed(2),
      "p99 ms": w.p99Ms.toFixed(2),
      "/ nginx": n ? (w.rps / n).toFixed(2) : "",
      errors: w.errors + w.non2xx,
    });
  }

  const t1 = printTable(
    `Saturation (${CONNECTIONS} connections, best of ${ROUNDS} interleaved rounds of ${SECONDS} s after a 2 s warm-up; wrk, one thread; load generator, upstream and proxy share 2 cores)`,
    saturation,
  );
  const t2 = printTable(`Latency at fixed rates (open loop, ${SECONDS} s each, latency from the scheduled send time)`, fixed);
  const t2b = printTable(
    "The gateway's own time per request at the same fixed rates, measured inside the process (arrival to upstream call, plus upstream's last byte to the client's), from its /metrics histogram",
    inside.map(({ target_, ...r }) => ({ ...r, target: r.target, goal: target_ })),
  );
  const t3b = printTable(`Allocation at saturation (${SECONDS} s of wrk, V8 --trace-gc, each build alone)`, allocation);
  const youngBefore = BASELINE_YOUNG_GENERATION.length > 0 ? "the same before" : "Node's default before";
  const t3 = printTable(`Minor GCs during the saturation rounds (young generation: --max-semi-space-size=32 now, ${youngBefore})`, gc);
  const t4 = printTable("Every core: --workers 2 on this 2-core machine (wrk and the upstream run on the same 2 cores, so this is what is left for the workers)", workerRows);
  writeResult("proxy-overhead", {
    seconds: SECONDS,
    connections: CONNECTIONS,
    baseline: BASELINE ? path.basename(BASELINE) : null,
    saturation,
    fixed,
    inside,
    allocation,
    gc,
    workers: workerRows,
    summary,
    markdown: `${t1}\n\n${t2}\n\n${t2b}\n\n${t3}\n\n${t3b}\n\n${t4}`,
  });
} finally {
  await gatehouse.stop();
  await before?.stop();
  await general?.stop();
  await workers?.stop();
  await nginx?.stop();
  bare.child.kill();
  bareDispatch.child.kill();
  bareHttp.child.kill();
  floor?.child.kill();
  await ground.cleanup();
}
