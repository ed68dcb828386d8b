// Shared bench plumbing: throwaway database/Redis namespace, replica processes, tables and JSON results.
import { mkdirSync, writeFileSync } from "node:fs";
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

/** A replica process (the same helper the tests use), its request log drained but not kept. */
export function startReplica(env, args = []) {
  return spawnReplica({ LOG_LEVEL: "info", ...env }, args, { keepOutput: Boolean(process.env.BENCH_DEBUG) });
}

export function machine() {
  return { cpus: os.cpus().length, cpu_model: os.cpus()[0]?.model, memory_gib: Math.round(os.totalmem() / 2 ** 30), node: process.version, platform: `${os.platform()} ${os.release()}` };
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
