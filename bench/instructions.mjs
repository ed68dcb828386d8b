// Instructions per request: Gatehouse, the bare relays and the feature floor, each run under valgrind's callgrind,
// which counts the instructions a process executes (user space, all its threads) rather than timing them. A count
// does not move with the machine: on shared cores where a process's CPU per request swings by ±10–25 % from one
// round to the next (bench/ab.mjs), the same build, inputs and warm-up count the same within a few per cent. It is
// the figure to compare builds, or a gateway with a bare relay, by what each asks of the CPU; proxy-overhead.mjs
// stays the measure of throughput.
//
// Each target is started under callgrind, warmed with INSTR_WARMUP requests (default 15,000), then its counters are
// zeroed, INSTR_REQUESTS requests (default 2,000) are sent over 8 keep-alive connections and the counters are
// dumped. V8 runs with --single-threaded (INSTR_V8_FLAGS): with its compiler and garbage collector on threads of
// their own, how much of their work fell in the counted window depended on how callgrind scheduled the threads, and
// two runs of the same build differed by up to 2.5 times; and --no-memory-reducer (below). Reported: all
// instructions per request, those of V8's optimizing compiler (TurboFan's own functions: still tens of thousands
// a request after the warm-up, for the bare relays too, where a real run's compiler thread uses ~2 µs a request
// once warm — time-driven tiering counts more per request when callgrind slows a process some 30 times), those of
// major (mark-compact) collections, and the rest, which is the figure compared. The major-collection column names
// marking and sweeping; some of a collection's other work (evacuation, pointer updates) stays in the rest. A major collection marks the whole heap at once: one that falls inside the
// 2,000 counted requests adds 10,000–40,000 instructions to each of them, and whether one does is chance (the
// heap's growth toward V8's limit is paced by the clock and the warm-up), for the relays as for Gatehouse — it was
// most of the ±10 % between runs of one build. At full speed both make about none per 100,000 requests
// (proxy-overhead.mjs's allocation table counts them), so they are left out of the comparison and shown beside it.
// What a count leaves out: the kernel (system calls: the relays and Gatehouse make the same per request, strace -c
// shows two writev and two reads each way), the cost of each instruction (a cache miss counts as one), and other
// processes (Postgres's share of the spend log, wrk). Work driven by timers is counted more per request than it
// costs at full speed, because callgrind slows a process some 30 times (Gatehouse's upkeep: heartbeats, flushes;
// the relays have none).
//   node bench/instructions.mjs        (INSTR_KINDS=plain,stream  INSTR_TARGETS=gatehouse,request,...  INSTR_BASELINE=<dir>)
import { spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { Pool } from "undici";
import { benchGround, printTable, startBenchScript, startReplica, writeResult } from "./lib/harness.mjs";

const WARMUP = Number(process.env.INSTR_WARMUP ?? 15_000);
const REQUESTS = Number(process.env.INSTR_REQUESTS ?? 2_000);
const CONNECTIONS = 8;
// --no-memory-reducer: V8's memory reducer starts major collections when a process allocates slowly by the clock, as
// every process does under callgrind; with it on, Gatehouse's bigger heap drew two or three full collections into
// each 2,000 counted requests, a third of the count, where a run at full speed makes none (see below).
const V8_FLAGS = (process.env.INSTR_V8_FLAGS ?? "--single-threaded --no-memory-reducer").split(" ").filter(Boolean);
const KINDS = (process.env.INSTR_KINDS ?? "plain,stream").split(",");

if (spawnSync("valgrind", ["--version"]).error !== undefined) {
  console.error("bench/instructions.mjs needs valgrind (apt-get install valgrind)");
  process.exit(1);
}

const ground = await benchGround();
const { config, master, env } = ground;
// The key the requests carry, made by a replica of the same database (the floor is given it too).
const maker = await startReplica(env, ["--config", config]);
const created = await (
  await fetch(`${maker.url}/key/generate`, { method: "POST", headers: { authorization: `Bearer ${master}`, "content-type": "application/json" }, body: "{}" })
).json();
await maker.stop();

const TARGETS = [
  ["gatehouse", "Gatehouse, 1 process"],
  ["request", "bare Node proxy (node:http + undici request())", "bare-proxy.mjs"],
  ["http-agent", "bare Node relay, node:http keep-alive agent", "bare-http-proxy.mjs"],
  ["dispatch", "bare Node relay, undici dispatch, one write", "bare-dispatch-proxy.mjs"],
  ["floor", "feature floor (the dispatch relay with Gatehouse's default features)", "feature-floor-proxy.mjs", [created.key]],
  // INSTR_BASELINE=<a checkout of another commit, built>: that build of Gatehouse too, to count what a change saved.
  ...(process.env.INSTR_BASELINE ? [["baseline", `Gatehouse, the build in ${path.basename(process.env.INSTR_BASELINE)}`]] : []),
].filter(([id]) => !process.env.INSTR_TARGETS || process.env.INSTR_TARGETS.split(",").includes(id));

/** A target started under callgrind, its counts written into `outDir`: Gatehouse (this build or `cli`'s), or the bench relay `script`. */
async function underCallgrind(script, scriptArgs, outDir, cli) {
  const launcher = ["valgrind", "--quiet", "--tool=callgrind", "--smc-check=all-non-file", `--callgrind-out-file=${outDir}/callgrind.%p`];
  const nodeArgs = ["--max-semi-space-size=32", ...V8_FLAGS];
  if (script === undefined) {
    const replica = await startReplica(env, ["--config", config], nodeArgs, cli, { launcher, timeoutMs: 300_000 });
    return { url: replica.url, pid: replica.child.pid, stop: () => replica.stop("SIGKILL") };
  }
  const relay = await startBenchScript(script, [ground.upstream.url, ...scriptArgs], nodeArgs, launcher);
  return {
    url: relay.url,
    pid: relay.child.pid,
    async stop() {
      relay.child.kill("SIGKILL");
      await relay.exited;
    },
  };
}

/** `count` requests over CONNECTIONS connections; the number answered other than 200. */
async function send(url, body, count) {
  const pool = new Pool(url, { connections: CONNECTIONS });
  const headers = { "content-type": "application/json", authorization: `Bearer ${created.key}` };
  let sent = 0;
  let failed = 0;
  const one = async () => {
    while (sent < count) {
      sent++;
      const res = await pool.request({ path: "/v1/chat/completions", method: "POST", headers, body });
      await res.body.text();
      if (res.statusCode !== 200) failed++;
    }
  };
  await Promise.all(Array.from({ length: CONNECTIONS }, one));
  await pool.close();
  return failed;
}

const COMPILER = /v8::internal::compiler::|v8::internal::maglev::|TurbofanCompilationJob|OptimizedCompilationJob/;
// A major (mark-compact) collection's own functions: marking, its write barrier's slow path, sweeping.
const MAJOR_GC =
  /MarkCompactCollector|MarkingVisitor|IncrementalMarking|MarkingBarrier|MarkingWorklist|MarkingState|Sweeper::|BodyDescriptorBase::Iterate[A-Za-z]*Pointers<v8::internal::MainMarkingVisitor/;

/** All instructions of a callgrind dump; those of V8's optimizing compiler, and of major collections (self cost of their functions). */
function countsOf(file) {
  const names = new Map();
  const nameOf = (rest) => {
    const m = /^\((\d+)\)(?: (.*))?$/.exec(rest);
    if (!m) return rest;
    if (m[2] !== undefined) names.set(m[1], m[2]);
    return names.get(m[1]);
  };
  let total = 0;
  let compiler = 0;
  let majorGc = 0;
  let inCompiler = false;
  let inMajorGc = false;
  let callCost = false;
  for (const line of readFileSync(file, "utf8").split("\n")) {
    if (line.startsWith("fn=")) {
      const name = nameOf(line.slice(3)) ?? "";
      inCompiler = COMPILER.test(name);
      inMajorGc = MAJOR_GC.test(name);
    } else if (line.startsWith("cfn=")) nameOf(line.slice(4));
    else if (line.startsWith("calls=")) callCost = true;
    else if (/^[0-9+\-*]/.test(line)) {
      if (callCost) {
        callCost = false; // a call's inclusive cost, counted where it was spent
        continue;
      }
      const ir = Number(line.split(" ")[1] ?? 0);
      total += ir;
      if (inCompiler) compiler += ir;
      if (inMajorGc) majorGc += ir;
    }
  }
  return { total, compiler, majorGc };
}

const rows = [];
const results = {};
try {
  for (const kind of KINDS) {
    const body = JSON.stringify({ model: "bench", stream: kind === "stream", messages: [{ role: "user", content: "Say hello" }] });
    results[kind] = {};
    for (const [id, , script, scriptArgs = []] of TARGETS) {
      const outDir = mkdtempSync(path.join(os.tmpdir(), "gh-callgrind-"));
      const cli = id === "baseline" ? path.join(process.env.INSTR_BASELINE, "dist", "cli.js") : undefined;
      const target = await underCallgrind(script, scriptArgs, outDir, cli);
      try {
        const warmFailed = await send(target.url, body, WARMUP);
        spawnSync("callgrind_control", ["--zero", String(target.pid)]);
        const failed = await send(target.url, body, REQUESTS);
        spawnSync("callgrind_control", ["--dump", String(target.pid)]);
        const dump = readdirSync(outDir).find((f) => /\.\d+\.1$/.test(f) || /\.\d+-\d+\.1$/.test(f));
        if (!dump) throw new Error(`${id}: callgrind wrote no dump`);
        const { total, compiler, majorGc } = countsOf(path.join(outDir, dump));
        const perRequest = {
          all: total / REQUESTS,
          compiler: compiler / REQUESTS,
          majorGc: majorGc / REQUESTS,
          // The compared figure: what the request path itself asks (the compiler's work and major collections apart).
          compared: (total - compiler - majorGc) / REQUESTS,
          failed: warmFailed + failed,
        };
        results[kind][id] = perRequest;
        console.error(
          `${kind} ${id}: ${Math.round(perRequest.all)} instructions a request (the compiler ${Math.round(perRequest.compiler)}, major collections ${Math.round(perRequest.majorGc)}, the rest ${Math.round(perRequest.compared)})`,
        );
      } finally {
        await target.stop();
        // INSTR_KEEP=1 keeps the dumps (for callgrind_annotate; V8 names its compiled functions in /tmp/perf-<pid>.map
        // when INSTR_V8_FLAGS adds --perf-basic-prof).
        if (process.env.INSTR_KEEP === "1") console.error(`${kind} ${id}: callgrind's dump is in ${outDir}`);
        else rmSync(outDir, { recursive: true, force: true });
      }
    }
    const gh = results[kind].gatehouse;
    for (const [id, name] of TARGETS) {
      const r = results[kind][id];
      rows.push({
        kind,
        target: name,
        "instructions a request": Math.round(r.all).toLocaleString("en-US"),
        compiler: Math.round(r.compiler).toLocaleString("en-US"),
        "major GC": Math.round(r.majorGc).toLocaleString("en-US"),
        "the rest (compared)": Math.round(r.compared).toLocaleString("en-US"),
        // What Gatehouse's throughput would be against this target, were a request's CPU its instruction count.
        "this / Gatehouse": gh && id !== "gatehouse" ? (r.compared / gh.compared).toFixed(2) : "",
        "answers not 200": r.failed,
      });
    }
  }
} finally {
  await ground.cleanup();
}

const table = printTable(
  `Instructions per request under callgrind (${WARMUP.toLocaleString("en-US")} requests' warm-up, ${REQUESTS.toLocaleString("en-US")} counted, ${CONNECTIONS} connections)`,
  rows,
);
writeResult("instructions", { warmup: WARMUP, requests: REQUESTS, connections: CONNECTIONS, results, markdown: table });
