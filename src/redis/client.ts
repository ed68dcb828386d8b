import { readFileSync } from "node:fs";
import path from "node:path";
import { Redis } from "ioredis";
import { luaDir } from "../paths.js";

/** Scripts in src/redis/lua, registered as commands named after their file. */
export interface GatehouseRedis extends Redis {
  l2Fill(key: string, version: number, json: string, ttlSeconds: number): Promise<number>;
  /** numberOfKeys is given per call: the keys, then the TTL, then one version per key. */
  l2Invalidate(numberOfKeys: number, ...keysThenArgs: Array<string | number>): Promise<number>;
  l2StateRead(stateKey: string): Promise<[string, string | null, string | null]>;
  l2StateAdvance(stateKey: string, runId: string, seenRunId: string, seenThrough: string, through: string): Promise<number>;
  /** numberOfKeys is given per call (five per level), then the keys, then the arguments. */
  limitsReserve(numberOfKeys: number, ...keysThenArgs: Array<string | number>): Promise<string[]>;
  limitsSettle(numberOfKeys: number, ...keysThenArgs: Array<string | number>): Promise<string[]>;
  limitsDropStale(ledger: string, generation: string): Promise<number>;
  routerFail(
    failuresKey: string,
    cooldownsKey: string,
    deploymentId: string,
    allowedFails: number,
    cooldownMs: number,
    windowMs: number,
    channel: string,
  ): Promise<[number, number]>;
  routerCooldowns(cooldownsKey: string): Promise<Array<string | number>>;
  /** numberOfKeys is given per call (two per deployment). */
  routerLoad(numberOfKeys: number, ...keys: string[]): Promise<Array<string | number>>;
  routerHealthClaim(roundPrefix: string, intervalMs: number, replicaId: string): Promise<number>;
  routerLatency(latencyKey: string, alpha: number, ttlMs: number, ...idThenMs: Array<string | number>): Promise<string[]>;
  uiLoginAttempt(counterKey: string, limit: number, windowMs: number): Promise<[number, number, number]>;
  uiLoginForgive(counterKey: string): Promise<number>;
}

const SCRIPTS: Array<{ command: string; file: string; keys: number }> = [
  { command: "l2Fill", file: "l2-fill.lua", keys: 1 },
  { command: "l2Invalidate", file: "l2-invalidate.lua", keys: -1 },
  { command: "l2StateRead", file: "l2-state-read.lua", keys: 1 },
  { command: "l2StateAdvance", file: "l2-state-advance.lua", keys: 1 },
  { command: "limitsReserve", file: "limits-reserve.lua", keys: -1 },
  { command: "limitsSettle", file: "limits-settle.lua", keys: -1 },
  { command: "limitsDropStale", file: "limits-drop-stale.lua", keys: 1 },
  { command: "routerFail", file: "router-fail.lua", keys: 2 },
  { command: "routerCooldowns", file: "router-cooldowns.lua", keys: 1 },
  { command: "routerLoad", file: "router-load.lua", keys: -1 },
  { command: "routerLatency", file: "router-latency.lua", keys: 1 },
  { command: "routerHealthClaim", file: "router-health-claim.lua", keys: 1 },
  { command: "uiLoginAttempt", file: "ui-login-attempt.lua", keys: 1 },
  { command: "uiLoginForgive", file: "ui-login-forgive.lua", keys: 1 },
];

/** Redis found through Sentinel: the master of `name` as the `sentinels` say, followed across failovers. */
export interface RedisSentinelSettings {
  sentinels: Array<{ host: string; port: number }>;
  /** The master's name in the Sentinels' `sentinel monitor <name> …`. */
  name: string;
  /** The Sentinels' own password (`requirepass` in sentinel.conf), if they have one. */
  password?: string | undefined;
}

/**
 * A client of `url`, or, with `sentinel`, of the master the Sentinels name: `url` then gives only the Redis
 * username, password and database number (its host and port are not used).
 */
export function createRedis(url: string, sentinel?: RedisSentinelSettings): GatehouseRedis {
  const redis = new Redis(url, {
    // Fail fast instead of queueing while disconnected: L2 is an optimisation and a request must
    // fall through to Postgres rather than wait for Redis to come back.
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    // A command whose caller already gave up (timeout, lost connection) must not run later, on a new
    // connection: a fill sent again after a long disconnection could land after its tombstone expired.
    autoResendUnfulfilledCommands: false,
    commandTimeout: 1_000,
    connectTimeout: 2_000,
    lazyConnect: true,
    retryStrategy: (attempt) => Math.min(50 * 2 ** attempt, 2_000),
    ...(sentinel ? sentinelOptions(sentinel) : {}),
  });
  for (const script of SCRIPTS) {
    redis.defineCommand(script.command, { numberOfKeys: script.keys < 0 ? undefined : script.keys, lua: readFileSync(path.join(luaDir, script.file), "utf8") });
  }
  // ioredis reports connection trouble as 'error' events; callers see failed commands instead.
  redis.on("error", () => {});
  return redis as GatehouseRedis;
}

/**
 * ioredis's own Sentinel support: each (re)connection asks the Sentinels for the master's address and checks
 * the server it reaches is a master (a demoted one is left for the next). The failover detector subscribes to
 * the Sentinels' +switch-master and drops the connection at once on a promotion, so the client follows it
 * even when the old master is still up (a manual failover, a partition) rather than on the next error.
 */
function sentinelOptions(sentinel: RedisSentinelSettings) {
  return {
    sentinels: sentinel.sentinels,
    name: sentinel.name,
    sentinelPassword: sentinel.password,
    failoverDetector: true,
    // All Sentinels unreachable: ask them again soon, forever (the replica runs without L2 meanwhile).
    sentinelRetryStrategy: (attempt: number) => Math.min(100 * attempt, 1_000),
    // A Sentinel of the failover detector that dropped: reconnect within seconds, not ioredis's minute.
    sentinelReconnectStrategy: () => 2_000,
    sentinelCommandTimeout: 1_000,
  };
}

/**
 * Connects, or stops waiting after `timeoutMs`: through Sentinels, ioredis's connect() waits as long as no
 * Sentinel answers. ioredis goes on trying in the background either way.
 */
export function connectRedis(redis: GatehouseRedis, timeoutMs = 5_000): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const gaveUp = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`Redis did not answer within ${timeoutMs} ms`)), timeoutMs);
  });
  return Promise.race([redis.connect(), gaveUp]).finally(() => clearTimeout(timer));
}
