// Throwaway databases and Redis namespaces on the real servers, shared by the tests and the benchmarks
// (types in services.d.mts). Loopback (127.0.0.1) only.
import { randomBytes } from "node:crypto";
import pg from "pg";
import { Redis } from "ioredis";

export const POSTGRES_ADMIN_URL = process.env.TEST_POSTGRES_URL ?? "postgres://postgres@127.0.0.1:5432/postgres";
export const REDIS_URL = process.env.TEST_REDIS_URL ?? "redis://127.0.0.1:6379";

/** A fresh database, dropped (with its connections) by drop(). */
export async function createTestDatabase(prefix = "gh_test") {
  const name = `${prefix}_${randomBytes(6).toString("hex")}`;
  const admin = new pg.Client({ connectionString: POSTGRES_ADMIN_URL });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  await admin.end();
  const url = new URL(POSTGRES_ADMIN_URL);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    name,
    async drop() {
      const c = new pg.Client({ connectionString: POSTGRES_ADMIN_URL });
      await c.connect();
      await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await c.end();
    },
  };
}

/** A key prefix of its own on the shared Redis; cleanup() deletes every key under it. */
export function createRedisNamespace(prefix = "ght") {
  const namespace = `${prefix}:${randomBytes(6).toString("hex")}:`;
  return {
    prefix: namespace,
    async cleanup() {
      const redis = new Redis(REDIS_URL);
      try {
        let cursor = "0";
        do {
          const [next, keys] = await redis.scan(cursor, "MATCH", `${namespace}*`, "COUNT", 500);
          cursor = next;
          if (keys.length > 0) await redis.del(...keys);
        } while (cursor !== "0");
      } finally {
        redis.disconnect();
      }
    },
  };
}

/** A TCP port nothing listens on right now, for a server a test or bench starts itself. */
export async function freePort() {
  const { createServer } = await import("node:net");
  const server = createServer();
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address();
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/**
 * Waits until something accepts connections on 127.0.0.1:`port` (a server process just spawned).
 * `gaveUp()` is checked between attempts: a reason (the process exited, say) ends the wait at once.
 */
export async function waitForPort(port, { timeoutMs = 10_000, what = `port ${port}`, gaveUp = () => undefined } = {}) {
  const net = await import("node:net");
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const up = await new Promise((resolve) => {
      const socket = net.connect(port, "127.0.0.1", () => {
        socket.destroy();
        resolve(true);
      });
      socket.on("error", () => resolve(false));
    });
    if (up) return;
    const reason = gaveUp() ?? (Date.now() > deadline ? `nothing listening after ${timeoutMs} ms` : undefined);
    if (reason) throw new Error(`${what} did not start: ${reason}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
