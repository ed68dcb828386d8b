import { randomBytes } from "node:crypto";
import { Writable } from "node:stream";
import { settingsFromConfig, type ConfigFile, type Settings } from "../../src/config/settings.js";
import { startGateway, type Gateway } from "../../src/gateway.js";
import { createLogger } from "../../src/logger.js";
import { relayWay } from "../support/replica-process.mjs";
import { api, type ApiOptions } from "./http.js";
import { createRedisNamespace, createTestDatabase, REDIS_URL, waitFor, type RedisNamespace, type TestDatabase } from "./services.js";

/** Collects a gateway's log lines in memory, so tests can read (and scan) them. */
export class LogCapture extends Writable {
  readonly lines: string[] = [];
  override _write(chunk: Buffer, _enc: BufferEncoding, done: () => void): void {
    this.lines.push(...chunk.toString("utf8").split("\n").filter(Boolean));
    done();
  }
  entries(): Array<Record<string, any>> {
    return this.lines.map((l) => JSON.parse(l));
  }
}

/** `satisfies`, not a ConfigFile annotation: tests spread its `model_list`, which a ConfigFile may leave out. */
export const DEFAULT_TEST_CONFIG = {
  model_list: [
    { model_name: "mock-gpt", litellm_params: { model: "mock/mock-gpt" } },
    { model_name: "mock-other", litellm_params: { model: "mock/mock-other" } },
    { model_name: "mock-embedding", litellm_params: { model: "mock/mock-embedding" } },
  ],
} satisfies ConfigFile;

export interface TestGateway {
  gateway: Gateway;
  url: string;
  masterKey: string;
  logs: LogCapture;
  db: TestDatabase;
  redis: RedisNamespace;
  settings: Settings;
  /** Calls the gateway as the admin (master key) unless another key is given. */
  admin<T = any>(path: string, body?: unknown, options?: ApiOptions): ReturnType<typeof api<T>>;
  call<T = any>(path: string, options?: ApiOptions): ReturnType<typeof api<T>>;
  /**
   * Generates a key and waits until this gateway has applied the key's own change event, so that the
   * event's (harmless, late) eviction cannot undo a cache warm-up the test does next.
   */
  newKey(fields?: Record<string, unknown>): Promise<{ key: string; token: string; [k: string]: any }>;
  /** Resolves once this gateway has applied every key event committed so far. */
  settle(): Promise<void>;
  close(): Promise<void>;
}

/** One in-process gateway on its own database and Redis namespace. */
export interface TestGatewayOptions {
  config?: ConfigFile;
  env?: Record<string, string>;
  /** Rewrites the connection URLs the gateway gets (to put a fault-injecting proxy in between). */
  databaseUrl?: (url: string) => string;
  redisUrl?: (url: string) => string;
}

export async function startTestGateway(options: TestGatewayOptions = {}): Promise<TestGateway> {
  const db = await createTestDatabase();
  const redis = createRedisNamespace();
  const masterKey = `sk-master-${randomBytes(12).toString("hex")}`;
  const settings = settingsFromConfig(options.config ?? DEFAULT_TEST_CONFIG, {
    source: "test",
    env: {
      DATABASE_URL: options.databaseUrl?.(db.url) ?? db.url,
      REDIS_URL: options.redisUrl?.(REDIS_URL) ?? REDIS_URL,
      GATEHOUSE_REDIS_PREFIX: redis.prefix,
      GATEHOUSE_MASTER_KEY: masterKey,
      PORT: "0",
      ...relayWay(),
      ...options.env,
    },
  });
  const logs = new LogCapture();
  const gateway = await startGateway({ settings, masterKey, logger: createLogger({ destination: logs, level: "debug" }), host: "127.0.0.1" });
  const url = gateway.url;
  const t: TestGateway = {
    gateway,
    url,
    masterKey,
    logs,
    db,
    redis,
    settings,
    admin: (path, body, opts = {}) => api(url, path, { key: masterKey, body, ...opts }),
    call: (path, opts = {}) => api(url, path, opts),
    async newKey(fields = {}) {
      const res = await api(url, "/key/generate", { key: masterKey, body: fields });
      if (res.status !== 200) throw new Error(`key/generate failed: ${res.status} ${res.text}`);
      await t.settle();
      return res.body;
    },
    async settle() {
      const { rows } = await gateway.pool.query<{ id: number }>("SELECT COALESCE(max(id), 0)::int AS id FROM gh_key_events");
      await waitFor(() => gateway.coherence.status().last_applied_event_id >= rows[0]!.id, { timeoutMs: 5_000, what: "the gateway to apply every key event" });
    },
    async close() {
      await gateway.close();
      await Promise.all([db.drop(), redis.cleanup()]);
    },
  };
  return t;
}
