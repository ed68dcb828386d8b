import { existsSync } from "node:fs";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startRedisServer, withRedisAt, type RedisServer } from "./helpers/redis-server.js";

/** The chaos suite's private Redis: restarts empty, snapshots, and restarts from an older snapshot. */

let server: RedisServer;

const runId = async (redis: Redis) => /run_id:([0-9a-f]+)/.exec(await redis.info("server"))?.[1];

function connect(): Redis {
  const redis = new Redis(server.url, { maxRetriesPerRequest: 0, retryStrategy: () => null });
  redis.on("error", () => {});
  return redis;
}

/** One command on a fresh connection (the old one dies with the server). */
async function withRedis<T>(use: (redis: Redis) => Promise<T>): Promise<T> {
  const redis = connect();
  try {
    return await use(redis);
  } finally {
    redis.disconnect();
  }
}

beforeAll(async () => {
  server = await startRedisServer();
});
afterAll(async () => {
  await server?.stop();
});

describe("chaos RedisServer", () => {
  it("restartFrom brings back exactly the snapshot's dataset, on the same port, with a new run_id", async () => {
    const firstRunId = await withRedis(async (redis) => {
      await redis.set("chaos:k", "old");
      return runId(redis);
    });
    const snapshot = await server.snapshot();
    expect(existsSync(snapshot)).toBe(true);
    expect(snapshot.startsWith(server.dir)).toBe(true);
    const secondSnapshot = await server.snapshot();
    expect(secondSnapshot).not.toBe(snapshot); // uniquely named

    await withRedis(async (redis) => {
      await redis.set("chaos:k", "new");
      await redis.set("chaos:other", "x");
    });

    await server.restartFrom(snapshot, 100);
    const afterSnapshotRunId = await withRedis(async (redis) => {
      expect(await redis.get("chaos:k")).toBe("old");
      expect(await redis.get("chaos:other")).toBeNull();
      expect(await redis.dbsize()).toBe(1);
      // still no automatic saving
      expect(await redis.config("GET", "save")).toEqual(["save", ""]);
      expect(await redis.config("GET", "appendonly")).toEqual(["appendonly", "no"]);
      return runId(redis);
    });
    // Every start of redis-server gets a fresh random run_id (40 hex digits).
    expect(firstRunId).toMatch(/^[0-9a-f]{40}$/);
    expect(afterSnapshotRunId).toMatch(/^[0-9a-f]{40}$/);
    expect(afterSnapshotRunId).not.toBe(firstRunId);

    // The snapshot file survives being loaded, so it can be loaded again.
    await withRedis((redis) => redis.set("chaos:k", "newer"));
    await server.restartFrom(snapshot, 0);
    expect(await withRedis((redis) => redis.get("chaos:k"))).toBe("old");

    // restart() still comes back empty, even after a restartFrom (no dump.rdb left behind is loaded).
    await server.restart(100);
    const emptyRunId = await withRedis(async (redis) => {
      expect(await redis.dbsize()).toBe(0);
      return runId(redis);
    });
    expect(emptyRunId).not.toBe(afterSnapshotRunId);
  });

  it("a Lua script may call INFO server on this Redis", async () => {
    const version = await withRedis(async (redis) => /redis_version:(\S+)/.exec(await redis.info("server"))?.[1]);
    expect(version).toMatch(/^7\./);
    const reply = await withRedis((redis) => redis.eval("return redis.call('INFO','server')", 0));
    // Allowed: INFO is not a noscript command; the script gets the bulk string of INFO server.
    expect(typeof reply).toBe("string");
    expect(reply as string).toMatch(/^# Server\r\n/);
    expect(reply as string).toMatch(/run_id:[0-9a-f]{40}/);
  });

  it("stop() kills the server and removes its directory", async () => {
    const other = await startRedisServer();
    await withRedisAt(other.url, (redis) => redis.set("a", "1"));
    const snap = await other.snapshot();
    await other.stop();
    expect(existsSync(snap)).toBe(false);
    expect(existsSync(other.dir)).toBe(false);
    await expect(withRedisAt(other.url, (redis) => redis.ping())).rejects.toThrow();
    await other.stop(); // idempotent
  });
});
