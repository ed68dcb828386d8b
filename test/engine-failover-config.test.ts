import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import type { Redis } from "ioredis";
import pg from "pg";
import { stringify } from "yaml";
import { afterAll, describe, expect, it } from "vitest";
import { ConfigError, settingsFromConfig } from "../src/config/settings.js";
import { isMultiHost, parsePostgresUrl, PostgresUrlError } from "../src/config/postgres-url.js";
import { locatorFor } from "../src/store/primary-locator.js";
import { api, chatBody } from "./helpers/http.js";
import { withRedisAt } from "./helpers/redis-server.js";
import { startSentinelRedis } from "./helpers/redis-sentinel.js";
import { createRedisNamespace, createTestDatabase, REDIS_URL, waitFor, type RedisNamespace, type TestDatabase } from "./helpers/services.js";
import { startPgPair, type PgPair } from "./support/pg-cluster.mjs";
import { spawnReplica, type ReplicaProcess } from "./support/replica-process.mjs";

/**
 * Failover of the two shared stores, with real servers: Redis found through Sentinel, and a DATABASE_URL naming a
 * standby and a primary (libpq's multi-host form). In both, a running replica, not restarted, follows a promotion.
 */

const ONE_MODEL = { model_list: [{ model_name: "m", litellm_params: { model: "mock/m" } }] };
const CONFIG = { model_list: [{ model_name: "mock-gpt", litellm_params: { model: "mock/mock-gpt" } }] };

// Everything started here is SIGKILLed by cleanup (process groups), and again at exit should a test be cut short.
const cleanups: Array<() => Promise<unknown> | unknown> = [];
afterAll(async () => {
  for (const cleanup of cleanups.reverse()) await Promise.resolve(cleanup()).catch(() => {});
});

describe("a database URL with several hosts (libpq's form)", () => {
  it("reads hosts in order, default ports, percent-encoding and IPv6, and keeps the other parameters", () => {
    const t = parsePostgresUrl("postgres://u:p%40ss%2Fw@db1,db2:5433,[::1]:6000,%2Fvar%2Frun%2Fpostgresql/gh%20db?sslmode=disable&target_session_attrs=read-write");
    expect(t.hosts).toEqual([
      { host: "db1", port: 5432 },
      { host: "db2", port: 5433 },
      { host: "::1", port: 6000 },
      { host: "/var/run/postgresql", port: 5432 },
    ]);
    expect(t.targetSessionAttrs).toBe("read-write");
    // Each host's own URL: the credentials, database and other parameters as written, target_session_attrs gone.
    expect(t.urlFor(t.hosts[1]!)).toBe("postgres://u:p%40ss%2Fw@db2:5433/gh%20db?sslmode=disable");
    expect(t.urlFor(t.hosts[2]!)).toBe("postgres://u:p%40ss%2Fw@[::1]:6000/gh%20db?sslmode=disable");
    expect(t.urlFor(t.hosts[3]!, "postgres")).toBe("postgres://u:p%40ss%2Fw@%2Fvar%2Frun%2Fpostgresql:5432/postgres?sslmode=disable");
    // node-postgres reads those back as the same server.
    const back = new pg.Client({ connectionString: t.urlFor(t.hosts[3]!) });
    expect([back.host, back.port, back.user, back.password, back.database]).toEqual(["/var/run/postgresql", 5432, "u", "p@ss/w", "gh db"]);
  });

  it("target_session_attrs: any by default, read-write and primary accepted, the standby ones refused", () => {
    expect(parsePostgresUrl("postgresql://h1,h2/db").targetSessionAttrs).toBe("any");
    expect(parsePostgresUrl("postgres://h1,h2/db?target_session_attrs=primary").targetSessionAttrs).toBe("primary");
    expect(parsePostgresUrl("postgres://h1,h2/db?a=1&target_session_attrs=any&b=2").urlFor({ host: "h2", port: 5432 })).toBe("postgres://h2:5432/db?a=1&b=2");
    for (const attrs of ["standby", "read-only", "prefer-standby"]) {
      expect(() => parsePostgresUrl(`postgres://h1,h2/db?target_session_attrs=${attrs}`)).toThrowError(/would send Gatehouse's writes to a standby/);
    }
    expect(() => parsePostgresUrl("postgres://h1,h2/db?target_session_attrs=writable")).toThrowError(/"writable" is not one of read-write, primary, any/);
  });

  it("refuses what it cannot read, saying what is wrong and never the password", () => {
    const cases: Array<[string, RegExp]> = [
      ["postgres://u:secret@h1,,h2/db", /an empty host/],
      ["postgres://u:secret@h1,/db", /an empty host/],
      ["postgres://u:secret@h1:0,h2/db", /port must be a number from 1 to 65535/],
      ["postgres://u:secret@h1:5432x,h2/db", /port must be a number/],
      ["postgres://u:secret@h1,::1/db", /IPv6 address in brackets/],
      ["postgres://u:secret@h1,h%zz/db", /malformed percent-encoding/],
      ["mysql://u:secret@h1,h2/db", /must start with postgres:\/\//],
    ];
    for (const [url, message] of cases) {
      let error: unknown;
      try {
        parsePostgresUrl(url);
      } catch (err) {
        error = err;
      }
      expect(error, url).toBeInstanceOf(PostgresUrlError);
      expect((error as Error).message, url).toMatch(message);
      expect((error as Error).message).not.toContain("secret");
    }
  });

  it("one host is not a multi-host URL: it gets no locator and goes to node-postgres as it is", () => {
    expect(isMultiHost("postgres://u:a,b@h1:5432/db")).toBe(false); // a comma in the password is not a host list
    expect(isMultiHost("postgres://u@h1:5432,h2/db")).toBe(true);
    expect(locatorFor("postgres://u@h1:5432/db?target_session_attrs=read-write")).toBeUndefined();
  });

  it("a malformed host list fails the start, naming the variable or the field", () => {
    const fail = (env: Record<string, string>, config: object = ONE_MODEL) => {
      try {
        settingsFromConfig(config, { source: "f.yaml", env });
      } catch (err) {
        expect(err).toBeInstanceOf(ConfigError);
        return (err as Error).message;
      }
      throw new Error("accepted");
    };
    expect(fail({ DATABASE_URL: "postgres://u:pw@h1,h2:x/db" })).toMatch(/^environment variable DATABASE_URL: host "h2:x": the port must be/m);
    expect(fail({ DATABASE_URL: "postgres://h1/db", DATABASE_LISTEN_URL: "postgres://h1,h2/db?target_session_attrs=standby" })).toMatch(
      /^environment variable DATABASE_LISTEN_URL: target_session_attrs=standby/m,
    );
    expect(fail({}, { ...ONE_MODEL, general_settings: { database_url: "postgres://h1,,h2/db" } })).toMatch(/^config f\.yaml: general_settings\.database_url: an empty host/m);
    const ok = settingsFromConfig(ONE_MODEL, { source: "t", env: { DATABASE_URL: "postgres://u@h1,h2:5433/db?target_session_attrs=read-write" } });
    expect(ok.databaseUrl).toBe("postgres://u@h1,h2:5433/db?target_session_attrs=read-write");
  });
});

describe("Redis Sentinel settings", () => {
  const settings = (env: Record<string, string>, config: object = ONE_MODEL) => settingsFromConfig(config, { source: "f.yaml", env });
  const failure = (env: Record<string, string>, config: object = ONE_MODEL) => {
    try {
      settings(env, config);
    } catch (err) {
      expect(err).toBeInstanceOf(ConfigError);
      return (err as Error).message;
    }
    throw new Error("accepted");
  };
  const DB = { DATABASE_URL: "postgres://h/db" };

  it("from the environment: host:port list (port 26379 when left out, IPv6 in brackets), name, password", () => {
    const s = settings({ ...DB, REDIS_SENTINELS: " s1:26380, s2 ,[fe80::1]:26381", REDIS_SENTINEL_NAME: "mymaster", REDIS_SENTINEL_PASSWORD: "sentinel-pw" });
    expect(s.redisSentinel).toEqual({
      sentinels: [
        { host: "s1", port: 26380 },
        { host: "s2", port: 26379 },
        { host: "fe80::1", port: 26381 },
      ],
      name: "mymaster",
      password: "sentinel-pw",
    });
    // REDIS_URL still gives the password and database number.
    expect(settings({ ...DB, REDIS_URL: "redis://:pw@ignored/2", REDIS_SENTINELS: "s1", REDIS_SENTINEL_NAME: "m" }).redisUrl).toBe("redis://:pw@ignored/2");
    expect(settings(DB).redisSentinel).toBeUndefined();
    expect(settings({ ...DB, GATEHOUSE_REDIS_SENTINELS: "s9:1", GATEHOUSE_REDIS_SENTINEL_NAME: "n" }).redisSentinel?.sentinels).toEqual([{ host: "s9", port: 1 }]);
  });

  it("from the file, as a list, the password through os.environ/", () => {
    const s = settings(
      { ...DB, SENTINEL_PW: "from-env" },
      { ...ONE_MODEL, gatehouse_settings: { redis_sentinels: ["a:1", "b:2"], redis_sentinel_name: "mymaster", redis_sentinel_password: "os.environ/SENTINEL_PW" } },
    );
    expect(s.redisSentinel).toEqual({
      sentinels: [
        { host: "a", port: 1 },
        { host: "b", port: 2 },
      ],
      name: "mymaster",
      password: "from-env",
    });
  });

  it("refuses a malformed entry, one setting without the other, TLS, and Sentinels without a shared database", () => {
    expect(failure({ ...DB, REDIS_SENTINELS: "s1:26379,s2:port", REDIS_SENTINEL_NAME: "m" })).toMatch(
      /^environment variable REDIS_SENTINELS \(gatehouse_settings\.redis_sentinels\): "s2:port" is not a Sentinel address: write host:port/m,
    );
    expect(failure({ ...DB, REDIS_SENTINELS: "s1:70000", REDIS_SENTINEL_NAME: "m" })).toMatch(/"s1:70000" is not a Sentinel address/);
    expect(failure({ ...DB, REDIS_SENTINELS: "s1,,s2", REDIS_SENTINEL_NAME: "m" })).toMatch(/"" is not a Sentinel address/);
    expect(failure(DB, { ...ONE_MODEL, gatehouse_settings: { redis_sentinels: ["ok:1", "redis://x:1"], redis_sentinel_name: "m" } })).toMatch(
      /^config f\.yaml: gatehouse_settings\.redis_sentinels: "redis:\/\/x:1" is not a Sentinel address/m,
    );
    expect(failure({ ...DB, REDIS_SENTINELS: "s1" })).toMatch(/^environment variable REDIS_SENTINELS: Sentinels need the name of the master/m);
    expect(failure({ ...DB, REDIS_SENTINEL_NAME: "m" })).toMatch(/^environment variable REDIS_SENTINEL_NAME: a master name without Sentinels/m);
    expect(failure({ ...DB, REDIS_URL: "rediss://h:1", REDIS_SENTINELS: "s1", REDIS_SENTINEL_NAME: "m" })).toMatch(/TLS \(rediss:\/\/\) is not supported through Sentinel/);
    expect(failure({ REDIS_SENTINELS: "s1", REDIS_SENTINEL_NAME: "m" })).toMatch(/REDIS_SENTINELS \(or redis_sentinels\) is set but no DATABASE_URL/);
  });
});

// ── real servers ─────────────────────────────────────────────────────────────────────────────────────────

/** One command on a short-lived connection to 127.0.0.1:`port` (no retries: a server that is down answers at once). */
function redisAt<T>(port: number, use: (r: Redis) => Promise<T>): Promise<T> {
  return withRedisAt(`redis://127.0.0.1:${port}`, use);
}

const runId = (port: number) => redisAt(port, async (r) => /run_id:(\w+)/.exec(await r.info("server"))![1]!);
const keysUnder = (port: number, prefix: string) => redisAt(port, (r) => r.keys(`${prefix}*`));

interface Gateway {
  replica: ReplicaProcess;
  admin: (p: string, body?: unknown) => ReturnType<typeof api>;
  chat: (key: string) => Promise<number>;
}

async function startGateway(env: Record<string, string>, masterKey = `sk-master-${randomBytes(12).toString("hex")}`): Promise<Gateway> {
  const dir = mkdtempSync(path.join(tmpdir(), "gh-failover-"));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  const configFile = path.join(dir, "config.yaml");
  writeFileSync(configFile, stringify(CONFIG));
  const replica = await spawnReplica({ GATEHOUSE_MASTER_KEY: masterKey, GATEHOUSE_DATA_DIR: dir, GATEHOUSE_REPLICA_ID: `failover-${randomBytes(3).toString("hex")}`, ...env }, [
    "--config",
    configFile,
  ]);
  cleanups.push(() => replica.stop("SIGKILL"));
  return {
    replica,
    admin: (p, body) => api(replica.url, p, { key: masterKey, body }),
    chat: async (key) => (await api(replica.url, "/v1/chat/completions", { key, body: chatBody("mock-gpt") })).status,
  };
}

async function generateKey(gw: Gateway): Promise<string> {
  const res = await gw.admin("/key/generate", {});
  if (res.status !== 200) throw new Error(`key/generate answered ${res.status}: ${res.text}`);
  return (res.body as { key: string }).key;
}

describe("Redis through Sentinel: a running replica follows a promotion", () => {
  it("kill -9 of the Redis master: the Sentinels promote the replica and the gateway uses it within seconds", async () => {
    const set = await startSentinelRedis("mymaster");
    cleanups.push(() => set.stop());
    const masterPort = set.master.port;
    const replicaPort = set.replica.port;

    const db: TestDatabase = await createTestDatabase();
    cleanups.push(() => db.drop());
    const ns: RedisNamespace = createRedisNamespace();
    const sentinelEnv = {
      DATABASE_URL: db.url,
      REDIS_SENTINELS: set.sentinels,
      REDIS_SENTINEL_NAME: set.name,
      GATEHOUSE_REDIS_PREFIX: ns.prefix,
    };
    const masterKey = `sk-master-${randomBytes(12).toString("hex")}`;
    // Two replicas of the gateway, both finding Redis through the Sentinels.
    const gw = await startGateway(sentinelEnv, masterKey);
    const gw2 = await startGateway(sentinelEnv, masterKey);
    const coherence = async () => (await gw.admin("/debug/coherence")).body as { l2: { trusted: boolean; redis: string; redis_run_id: string | null } };

    // It found the master through the Sentinels: its L2 guard verified that server, and its keys are there.
    const masterRunId = await runId(masterPort);
    await waitFor(async () => (await coherence()).l2.redis_run_id === masterRunId && (await coherence()).l2.trusted, { timeoutMs: 10_000, what: "L2 verified on the master" });
    const before = await generateKey(gw);
    expect(await gw.chat(before)).toBe(200);
    expect((await keysUnder(masterPort, ns.prefix)).length).toBeGreaterThan(0);

    let killedAt = 0;
    let promotedAt = 0;
    await set.failover(
      () => (killedAt = Date.now()),
      () => (promotedAt = Date.now()),
    );
    const newRunId = await runId(replicaPort);
    // The gateway follows: connected to the new master and its L2 verified there (the cursor replayed onto it).
    await waitFor(
      async () => {
        const l2 = (await coherence()).l2;
        return l2.redis === "ready" && l2.redis_run_id === newRunId && l2.trusted;
      },
      { timeoutMs: 8_000, intervalMs: 50, what: "the gateway to use the promoted replica" },
    );
    const followedAt = Date.now();

    // On both replicas, within the hard bound: a key blocked after the failover is refused; one generated after it
    // works; the new master holds their records.
    expect(await gw2.chat(before)).toBe(200);
    expect((await gw.admin("/key/block", { key: before })).status).toBe(200);
    const blockedAt = Date.now();
    for (const g of [gw, gw2])
      await waitFor(async () => (await g.chat(before)) === 401, { timeoutMs: Math.max(1, blockedAt + 2_000 - Date.now()), what: "the blocked key to be refused" });
    const after = await generateKey(gw);
    const generatedAt = Date.now();
    for (const g of [gw, gw2])
      await waitFor(async () => (await g.chat(after)) === 200, { timeoutMs: Math.max(1, generatedAt + 2_000 - Date.now()), what: "the new key to be accepted" });
    expect((await keysUnder(replicaPort, ns.prefix)).length).toBeGreaterThan(0);
    console.log(`sentinel failover: promoted ${promotedAt - killedAt} ms after the kill; gateway on the new master ${followedAt - promotedAt} ms after the promotion`);
    await gw.replica.stop("SIGKILL");
    await gw2.replica.stop("SIGKILL");
  }, 60_000);
});

describe("DATABASE_URL with a standby and a primary: a running replica follows a promotion", () => {
  it("picks the writable host (the standby is listed first), then after kill -9 and promote takes writes again", async () => {
    const pair: PgPair = await startPgPair();
    cleanups.push(() => pair.stop());
    const ns = createRedisNamespace();
    cleanups.push(() => ns.cleanup());
    const url = `postgres://postgres@127.0.0.1:${pair.standby.port},127.0.0.1:${pair.primary.port}/${pair.database}?target_session_attrs=read-write`;
    const gw = await startGateway({ DATABASE_URL: url, REDIS_URL, GATEHOUSE_REDIS_PREFIX: ns.prefix });

    const before = await generateKey(gw);
    expect(await gw.chat(before)).toBe(200);
    const listeners = async (which: "primary" | "standby") =>
      ((await pair.query(which, "SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name LIKE 'gatehouse-listen:%'")) as Array<{ n: number }> | null)?.[0]?.n;
    // Its pool and its LISTEN connection are on the primary, not the standby named first.
    expect(await listeners("primary")).toBe(1);
    expect((await pair.query("primary", "SELECT count(*)::int AS n FROM gh_keys"))?.[0]?.n).toBe(1);

    await pair.waitForStandbyCaughtUp();
    await pair.killPrimary();
    const killedAt = Date.now();
    await pair.promoteStandby();
    const promotedAt = Date.now();

    // The same process (not restarted) takes admin writes again; 503 while no host accepts writes is allowed.
    const statuses = new Set<number>();
    const after = await waitFor(
      async () => {
        const res = await gw.admin("/key/generate", {});
        statuses.add(res.status);
        return res.status === 200 ? (res.body as { key: string }).key : undefined;
      },
      { timeoutMs: 15_000, intervalMs: 200, what: "admin writes on the promoted standby" },
    );
    const writableAt = Date.now();
    expect([...statuses].filter((s) => s !== 200 && s !== 503)).toEqual([]);
    await waitFor(async () => (await gw.chat(after)) === 200, { timeoutMs: 5_000, what: "the key generated after the switch to authenticate" });
    expect((await gw.admin("/key/block", { key: before })).status).toBe(200);
    await waitFor(async () => (await gw.chat(before)) === 401, { timeoutMs: 5_000, what: "a key blocked after the switch to be refused" });
    // Its LISTEN connection followed too.
    await waitFor(async () => (await listeners("standby")) === 1, { timeoutMs: 10_000, what: "the LISTEN connection on the new primary" });
    await waitFor(async () => ((await gw.admin("/debug/coherence")).body as { listener: string }).listener === "listening", {
      timeoutMs: 5_000,
      what: "the listener to report listening",
    });
    console.log(`postgres failover: promoted ${promotedAt - killedAt} ms after the kill; writes again ${writableAt - promotedAt} ms after the promotion`);
    await gw.replica.stop("SIGKILL");
  }, 60_000);
});
