import { randomBytes } from "node:crypto";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { stringify } from "yaml";
import pg from "pg";
import type { ConfigFile } from "../../src/config/settings.js";
import { RedisKeys } from "../../src/redis/key-names.js";
import { DEFAULT_TEST_CONFIG } from "./gateway-fixture.js";
import { api, chatBody, type ApiOptions } from "./http.js";
import { spawnReplica, type ReplicaProcess } from "../support/replica-process.mjs";
import { createRedisNamespace, createTestDatabase, REDIS_URL, waitFor, type RedisNamespace, type TestDatabase } from "./services.js";

/**
 * N gateway replicas as separate processes on real ports, sharing one Postgres database and one Redis
 * namespace: the shape Gatehouse runs in production, minus the load balancer.
 */
export interface Replica extends ReplicaProcess {
  name: string;
  replicaId: string;
  admin<T = any>(path: string, body?: unknown, options?: ApiOptions): ReturnType<typeof api<T>>;
  chat(key: string, model?: string): Promise<number>;
}

export interface Cluster {
  replicas: Replica[];
  masterKey: string;
  db: TestDatabase;
  redis: RedisNamespace;
  /** A pool on the cluster's database, for assertions and fault injection. */
  pool: pg.Pool;
  configFile: string;
  env: Record<string, string>;
  /**
   * Waits until every replica has applied every event committed so far. Call before warming caches, so a
   * key's own "generate" event cannot evict the warmed record afterwards and make a test pass trivially.
   */
  settle(): Promise<void>;
  /** The names of the cluster's Redis keys, in the namespace of the database history the first replica follows. */
  redisKeys(): Promise<RedisKeys>;
  /** Starts one more replica (or restarts a stopped one under a new name). */
  addReplica(name: string, extraEnv?: Record<string, string>): Promise<Replica>;
  close(): Promise<void>;
}

export interface ClusterOptions {
  size?: number;
  config?: ConfigFile;
  env?: Record<string, string>;
  /** Rewrites the database URL the replicas get (to put a fault-injecting proxy in between). */
  databaseUrl?: (url: string) => string;
  /** With `databaseUrl`: LISTEN and migrations still go straight to Postgres (DATABASE_LISTEN_URL). */
  listenDirect?: boolean;
  /** Rewrites the LISTEN (and migration) URL the replicas get, like `databaseUrl`. */
  listenUrl?: (url: string) => string;
  /** Keep every log line of every replica (default true); long runs turn it off. */
  keepOutput?: boolean;
}

export async function startCluster(options: ClusterOptions = {}): Promise<Cluster> {
  const db = await createTestDatabase();
  const redis = createRedisNamespace();
  const masterKey = `sk-master-${randomBytes(12).toString("hex")}`;
  const dir = mkdtempSync(path.join(tmpdir(), "gh-cluster-"));
  const configFile = path.join(dir, "config.yaml");
  writeFileSync(configFile, stringify(options.config ?? DEFAULT_TEST_CONFIG));
  const env = {
    DATABASE_URL: options.databaseUrl?.(db.url) ?? db.url,
    ...(options.listenDirect ? { DATABASE_LISTEN_URL: db.url } : {}),
    ...(options.listenUrl ? { DATABASE_LISTEN_URL: options.listenUrl(db.url) } : {}),
    REDIS_URL,
    GATEHOUSE_REDIS_PREFIX: redis.prefix,
    GATEHOUSE_MASTER_KEY: masterKey,
    GATEHOUSE_DATA_DIR: dir,
    ...reinstatedBugsEnv(),
    ...options.env,
  };
  const suffix = randomBytes(3).toString("hex");
  const replicas: Replica[] = [];

  const addReplica = async (name: string, extraEnv: Record<string, string> = {}): Promise<Replica> => {
    const replicaId = `${name}-${suffix}`;
    const proc = await spawnReplica({ ...env, GATEHOUSE_REPLICA_ID: replicaId, ...extraEnv }, ["--config", configFile], { keepOutput: options.keepOutput ?? true });
    const replica: Replica = Object.assign(proc, {
      name,
      replicaId,
      admin: (p: string, body?: unknown, opts: ApiOptions = {}) => api(proc.url, p, { key: masterKey, body, ...opts }),
      chat: async (key: string, model = "mock-gpt") => (await api(proc.url, "/v1/chat/completions", { key, body: chatBody(model) })).status,
    });
    replicas.push(replica);
    return replica;
  };

  const names = ["A", "B", "C", "D", "E"].slice(0, options.size ?? 3);
  // The first replica migrates; the others then start together.
  await addReplica(names[0]!);
  await Promise.all(names.slice(1).map((n) => addReplica(n)));
  const pool = new pg.Pool({ connectionString: db.url, max: 4 });
  pool.on("error", () => {});

  return {
    replicas,
    masterKey,
    db,
    redis,
    pool,
    configFile,
    env,
    addReplica,
    async redisKeys() {
      const keys = new RedisKeys(redis.prefix);
      keys.useLineage((await replicas[0]!.admin("/debug/coherence")).body.lineage);
      return keys;
    },
    async settle() {
      const { rows } = await pool.query("SELECT COALESCE(max(id), 0)::int AS id FROM gh_key_events");
      await Promise.all(
        replicas.map((r) => waitFor(async () => (await r.admin("/debug/coherence")).body.last_applied_event_id >= rows[0].id, { timeoutMs: 5_000, what: `${r.name} to catch up` })),
      );
    },
    async close() {
      await Promise.all(replicas.map((r) => r.stop("SIGKILL")));
      await pool.end();
      await db.drop();
      await redis.cleanup();
    },
  };
}

/** The test switch that brings known coherence bugs back (src/testing/reinstated-bugs.ts), passed on to replicas. */
export function reinstatedBugsEnv(): Record<string, string> {
  const bugs = process.env.GATEHOUSE_TEST_REINSTATE_BUGS;
  return bugs ? { GATEHOUSE_TEST_REINSTATE_BUGS: bugs } : {};
}

/** Generates a key through `on` (asserting the 200) and returns what the answer says of it. */
export async function generateKey(on: Replica, fields: Record<string, unknown> = {}): Promise<{ key: string; token: string; key_id: string; key_name: string }> {
  const res = await on.admin("/key/generate", fields);
  if (res.status !== 200) throw new Error(`key/generate on ${on.name} answered ${res.status}: ${res.text}`);
  return res.body;
}
