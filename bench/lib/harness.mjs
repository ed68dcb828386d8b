// Shared bench plumbing: throwaway database/Redis namespace, replica processes, tables and JSON results.
import { randomBytes } from "node:crypto";
import { mkdirSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import pg from "pg";
import { Redis } from "ioredis";
import { spawnReplica } from "../../test/support/replica-process.mjs";

export const root = path.resolve(fileURLToPath(new URL("../..", import.meta.url)));
export const PG_ADMIN = process.env.BENCH_POSTGRES_URL ?? "postgres://postgres@127.0.0.1:5432/postgres";
export const REDIS_URL = process.env.BENCH_REDIS_URL ?? "redis://127.0.0.1:6379";

export async function createDatabase() {
  const name = `gh_bench_${randomBytes(5).toString("hex")}`;
  const admin = new pg.Client({ connectionString: PG_ADMIN });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  await admin.end();
  const url = new URL(PG_ADMIN);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    async drop() {
      const c = new pg.Client({ connectionString: PG_ADMIN });
      await c.connect();
      await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await c.end();
    },
  };
}

export function redisNamespace() {
  const prefix = `ghb:${randomBytes(5).toString("hex")}:`;
  return {
    prefix,
    async cleanup() {
      const r = new Redis(REDIS_URL);
      let cursor = "0";
      do {
        const [next, keys] = await r.scan(cursor, "MATCH", `${prefix}*`, "COUNT", 1000);
        cursor = next;
        if (keys.length) await r.del(...keys);
      } while (cursor !== "0");
      r.disconnect();
    },
  };
}

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
