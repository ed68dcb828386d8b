// Shared bench plumbing: throwaway database/Redis namespace, replica processes, tables and JSON results.
import { spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { createRedisNamespace, createTestDatabase, REDIS_URL } from "../../test/support/services.mjs";
import { spawnReplica } from "../../test/support/replica-process.mjs";

export const root = path.resolve(fileURLToPath(new URL("../..", import.meta.url)));
export { REDIS_URL };

/** A throwaway database for one bench run. */
export const createDatabase = () => createTestDatabase("gh_bench");
/** A Redis key prefix for one bench run. */
export const redisNamespace = () => createRedisNamespace("ghb");

/**
 * A bench script (bench/<file>) in a process of its own, started with `args` after the script (and `nodeArgs` before
 * it); resolves once it printed its `{"listening": url}` line. Its stdout is drained from then on (a relay's access
 * log must not fill the pipe). `exited` resolves with its exit code.
 */
export function startBenchScript(file, args = [], nodeArgs = [], launcher = []) {
  return new Promise((resolve, reject) => {
    // `launcher`: a command that runs Node.js with the rest as its arguments (bench/instructions.mjs: valgrind).
    const [command, ...commandArgs] = [...launcher, process.execPath, ...nodeArgs, path.join(root, "bench", file), ...args];
    const child = spawn(command, commandArgs, { stdio: ["ignore", "pipe", "inherit"] });
    const exited = new Promise((done) => child.once("exit", done));
    child.stdout.once("data", (d) => {
      resolve({ child, exited, url: JSON.parse(d.toString()).listening });
      child.stdout.resume();
    });
    child.once("exit", (c) => reject(new Error(`${file} exited ${c}`)));
  });
}

/** The bench upstream (bench/upstream-server.mjs) in a process of its own, so it does not share the load generator's event loop. */
export const startUpstreamProcess = () => startBenchScript("upstream-server.mjs", ["0"]);

/** A config file with one priced model, "bench" (spend is metered, as in production), served by the bench upstream at `upstreamUrl`. */
export function writeBenchConfig(upstreamUrl) {
  const file = path.join(mkdtempSync(path.join(os.tmpdir(), "gh-bench-")), "config.yaml");
  writeFileSync(
    file,
    `model_list:\n  - model_name: bench\n    litellm_params: { model: openai/bench, api_base: "${upstreamUrl}/v1", api_key: dummy, input_cost_per_token: 0.000001, output_cost_per_token: 0.000002 }\n`,
  );
  return file;
}

export const BENCH_MASTER_KEY = "sk-bench-master-key";

/**
 * What a single-gateway bench stands on: a throwaway database and Redis namespace, the bench upstream in its own
 * process, a config with its priced model, and the environment a replica starts with. `cleanup()` removes them all.
 */
export async function benchGround() {
  const db = await createDatabase();
  const ns = redisNamespace();
  const upstream = await startUpstreamProcess();
  const config = writeBenchConfig(upstream.url);
  const master = BENCH_MASTER_KEY;
  const env = { DATABASE_URL: db.url, REDIS_URL, GATEHOUSE_REDIS_PREFIX: ns.prefix, GATEHOUSE_MASTER_KEY: master };
  return {
    db,
    ns,
    upstream,
    config,
    master,
    env,
    async cleanup() {
      upstream.child.kill();
      await db.drop();
      await ns.cleanup();
    },
  };
}

/** A replica process (the same helper the tests use), its request log drained but not kept; `more`: spawnReplica's other options. */
export function startReplica(env, args = [], nodeArgs = [], cli = undefined, more = {}) {
  return spawnReplica({ LOG_LEVEL: "info", ...env }, args, { keepOutput: Boolean(process.env.BENCH_DEBUG), nodeArgs, cli, ...more });
}

export function machine() {
  return {
    cpus: os.cpus().length,
    cpu_model: os.cpus()[0]?.model,
    memory_gib: Math.round(os.totalmem() / 2 ** 30),
    node: process.version,
    platform: `${os.platform()} ${os.release()}`,
  };
}

export function printTable(title, rows) {
  const cols = Object.keys(rows[0] ?? {});
  const width = cols.map((c) => Math.max(c.length, ...rows.map((r) => String(r[c]).length)));
  const line = (cells) => `| ${cells.map((c, i) => String(c).padEnd(width[i])).join(" | ")} |`;
  const text = [`### ${title}`, "", line(cols), `|${width.map((w) => "-".repeat(w + 2)).join("|")}|`, ...rows.map((r) => line(cols.map((c) => r[c])))].join("\n");
  console.log(`\n${text}\n`);
  return text;
}

export function writeResult(name, data) {
  const dir = path.join(root, "bench", "results");
  mkdirSync(dir, { recursive: true });
  const file = path.join(dir, `${name}.json`);
  writeFileSync(file, JSON.stringify({ name, at: new Date().toISOString(), machine: machine(), ...data }, null, 2));
  console.log(`wrote ${path.relative(root, file)}`);
}

export function percentile(sorted, p) {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}
