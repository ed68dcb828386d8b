import { spawn } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { spawnReplica } from "./support/replica-process.mjs";
import { createRedisNamespace, createTestDatabase, REDIS_URL, type RedisNamespace, type TestDatabase } from "./helpers/services.js";
import { freePort } from "./support/services.mjs";

/**
 * Starting and stopping as an operator meets them: a start that fails after connecting exits non-zero within
 * seconds with one line saying what failed; two embedded gateways cannot share a data directory; a shutdown
 * whose stdout reader is gone still finishes. Real processes, `node dist/cli.js start`.
 */
const cli = path.resolve(fileURLToPath(new URL("../dist/cli.js", import.meta.url)));

/** Runs the CLI to completion (or `timeoutMs`), collecting its output. */
function run(args: string[], env: Record<string, string>, timeoutMs = 20_000): Promise<{ code: number | null; output: string; ms: number }> {
  return new Promise((resolve) => {
    const started = Date.now();
    const child = spawn(process.execPath, [cli, ...args], { env: { PATH: process.env.PATH ?? "", LOG_LEVEL: "info", ...env }, stdio: ["ignore", "pipe", "pipe"], detached: true });
    let output = "";
    child.stdout.on("data", (d) => (output += d));
    child.stderr.on("data", (d) => (output += d));
    const timer = setTimeout(() => {
      try {
        process.kill(-child.pid!, "SIGKILL");
      } catch {
        /* gone */
      }
    }, timeoutMs);
    child.once("exit", (code) => {
      clearTimeout(timer);
      resolve({ code, output, ms: Date.now() - started });
    });
  });
}

let db: TestDatabase;
let redis: RedisNamespace;
beforeAll(async () => {
  db = await createTestDatabase();
  redis = createRedisNamespace();
});
afterAll(async () => {
  await db?.drop();
  await redis?.cleanup();
});

describe("a start that fails exits, closing what it opened", () => {
  it("port in use: exits non-zero within seconds, one line naming the port and what to do", async () => {
    const port = await freePort();
    const holder = net.createServer().listen(port, "127.0.0.1");
    await new Promise((r) => holder.once("listening", r));
    try {
      const { code, output, ms } = await run(["start", "--port", String(port)], {
        DATABASE_URL: db.url,
        REDIS_URL,
        GATEHOUSE_REDIS_PREFIX: redis.prefix,
        GATEHOUSE_MASTER_KEY: "sk-master-start-test",
      });
      expect(code).toBe(1);
      expect(ms).toBeLessThan(15_000);
      expect(output).toContain(`cannot listen on port ${port}: it is in use`);
      expect(output).toContain("--port");
    } finally {
      holder.close();
    }
  }, 30_000);

  it("Postgres unreachable: exits non-zero, naming where it looked", async () => {
    const port = await freePort();
    const { code, output } = await run(["start", "--port", "0"], {
      DATABASE_URL: `postgres://postgres@127.0.0.1:${port}/nowhere`,
      REDIS_URL,
      GATEHOUSE_MASTER_KEY: "sk-master-start-test",
    });
    expect(code).toBe(1);
    expect(output).toContain(`cannot reach Postgres at 127.0.0.1:${port}`);
  }, 30_000);
});

describe("the embedded database's data directory is locked", () => {
  it("a second gateway on the same directory refuses, naming the directory and the process holding it", async () => {
    const dir = mkdtempSync(path.join(tmpdir(), "gh-lock-"));
    const first = await spawnReplica({ GATEHOUSE_DATA_DIR: dir, GATEHOUSE_MASTER_KEY: "sk-master-lock-test" }, [], { timeoutMs: 60_000 });
    // A first start says what it is doing, one line per phase, before "listening".
    const said = first.output.join("\n");
    for (const phase of ["creating the embedded database", "embedded database ready", "checking database migrations", "catching up on key events", "gatehouse is listening"])
      expect(said).toContain(phase);
    try {
      const second = await run(["start", "--port", "0"], { GATEHOUSE_DATA_DIR: dir, GATEHOUSE_MASTER_KEY: "sk-master-lock-test", PORT: "0" }, 30_000);
      expect(second.code).not.toBe(0);
      expect(second.code).not.toBeNull();
      expect(second.output).toContain(`in use by process ${first.child.pid}`);
      expect(second.output).toContain(path.resolve(dir));
    } finally {
      await first.stop("SIGTERM");
    }
  }, 120_000);

  it("a lock left by a process that was killed is stale and taken over", async () => {
    const dir = mkdtempSync(path.join(tmpdir(), "gh-lock-"));
    writeFileSync(path.join(dir, "gatehouse.lock"), "999999\n"); // no such process
    const replica = await spawnReplica({ GATEHOUSE_DATA_DIR: dir, GATEHOUSE_MASTER_KEY: "sk-master-lock-test" }, [], { timeoutMs: 60_000 });
    const code = await replica.stop("SIGTERM");
    // On failure, say how it ended (a signal, not an exit code) and its last words.
    expect({ code, signal: replica.child.signalCode, last: code === 0 ? [] : replica.output.slice(-8) }).toEqual({ code: 0, signal: null, last: [] });
  }, 120_000);
});

describe("shutdown when stdout's reader is gone", () => {
  it("`gatehouse start | head -3`, then SIGTERM: the process still exits", async () => {
    const replica = await spawnReplica({ DATABASE_URL: db.url, REDIS_URL, GATEHOUSE_REDIS_PREFIX: redis.prefix, GATEHOUSE_MASTER_KEY: "sk-master-epipe-test" });
    // The reader goes away: every later write to stdout fails with EPIPE.
    replica.child.stdout!.destroy();
    // Some traffic so the gateway has lines to write into the broken pipe.
    for (let i = 0; i < 5; i++) await fetch(`${replica.url}/health/liveliness`).catch(() => null);
    replica.child.kill("SIGTERM");
    const code = await Promise.race([replica.exited, new Promise((r) => setTimeout(() => r("hung"), 15_000))]);
    expect(code).not.toBe("hung");
  }, 30_000);
});

describe("a stdout reader that stops reading", () => {
  it("holds up no request, and gets every line once it reads again, the last ones at shutdown", async () => {
    const replica = await spawnReplica({ DATABASE_URL: db.url, REDIS_URL, GATEHOUSE_REDIS_PREFIX: redis.prefix, GATEHOUSE_MASTER_KEY: "sk-master-stalled-reader" });
    try {
      // The reader stops: the pipe (64 KiB) fills with access lines, and the gateway must hold the rest itself.
      replica.child.stdout!.pause();
      const requests = 800;
      for (let sent = 0; sent < requests; sent += 50) {
        const answers = await Promise.all(Array.from({ length: 50 }, (_, i) => fetch(`${replica.url}/health/liveliness`, { headers: { "x-request-id": `stalled-${sent + i}` } })));
        expect(answers.map((a) => a.status)).toEqual(Array(50).fill(200));
      }
      replica.child.stdout!.resume();
      await replica.stop("SIGTERM");
      const seen = new Set(replica.output.flatMap((line) => (line.includes('"request_id":"stalled-') ? [JSON.parse(line).request_id] : [])));
      expect(seen.size).toBe(requests);
    } finally {
      await replica.stop("SIGKILL");
    }
  }, 60_000);
});

describe("the command line", () => {
  it("help, --version, and a near miss get an answer, not a stack trace", async () => {
    const help = await run(["help"], {});
    expect(help.code).toBe(0);
    expect(help.output).toContain("Usage:");
    for (const name of ["DATABASE_URL", "REDIS_URL", "GATEHOUSE_MASTER_KEY", "LOG_FORMAT", "GATEHOUSE_METRICS_TOKEN", "LOG_LEVEL"]) expect(help.output).toContain(name);
    const version = await run(["--version"], {});
    expect(version.code).toBe(0);
    expect(version.output.trim()).toMatch(/^\d+\.\d+\.\d+$/);
    const typo = await run(["start", "--prot", "4000"], {});
    expect(typo.code).toBe(2);
    expect(typo.output).toContain("unknown option --prot (did you mean --port?)");
    expect(typo.output).not.toContain("    at ");
    const command = await run(["strat"], {});
    expect(command.code).toBe(2);
    expect(command.output).toContain('did you mean "start"?');
  });
});
