import type { FailureKind } from "../config/router-settings.js";
import type { ModelDeployment, ProviderName } from "../config/settings.js";
import { litellmModelOf } from "../config/models.js";
import type { Logger } from "../logger.js";
import type { GatehouseRedis } from "../redis/client.js";
import type { RedisKeys } from "../redis/key-names.js";
import { Periodic } from "../timers/periodic.js";
import { ClientGone, type Provider } from "./provider.js";
import type { DeploymentHealth } from "./deployment-health.js";

/**
 * Health checks of every deployment (docs/routing.md, "Health checks"), LiteLLM's `/health` and its background
 * checks — run once per interval for the whole cluster, not once per replica.
 *
 * - Background (`general_settings.background_health_checks`): every replica asks Redis, a few times per interval,
 *   to claim the current round (router-health-claim.lua: rounds numbered by Redis's clock, each claimed once). The
 *   replica that gets it checks every deployment whose `model_info` does not disable it, and writes each result to
 *   a hash every replica reads. A replica that dies mid-round costs that round's missing results, nothing more: the
 *   next round is claimed by whoever asks first.
 * - On demand (`GET /health` without background checks): the asking replica checks now, and shares the results too.
 * - A failed check counts toward the deployment's cooldown like a failed request (deployment-health.ts): a dead
 *   deployment can be left out before a client meets it.
 * - Without Redis, a replica checks on its own every interval and keeps its results to itself.
 */
export interface HealthProberOptions {
  redis: GatehouseRedis | null;
  keys: RedisKeys;
  logger: Logger;
  replicaId: string;
  background: boolean;
  intervalMs: number;
  deployments: () => ModelDeployment[];
  providers: Record<ProviderName, Provider>;
  health: DeploymentHealth;
}

export interface HealthResult {
  healthy: boolean;
  /** Epoch ms of the check. */
  checkedAt: number;
  latencyMs: number;
  /** Why it is unhealthy (never upstream's text for a refused credential: it may quote part of the key). */
  error?: string | undefined;
  /** The replica that ran the check. */
  by: string;
}

/** Bytes of an upstream error answer read for the message. */
const MAX_ERROR_TEXT = 2_048;
/** A check gets at most this long, and never longer than its interval. */
const CHECK_TIMEOUT_MS = 30_000;

export class HealthProber {
  /** Asks for the current round every tick (background checks only). */
  private loop: Periodic | null = null;
  /** Results this replica holds: the last it read from Redis, or its own without Redis. */
  private local = new Map<string, HealthResult>();
  readonly counters = { roundsRun: 0, checks: 0, unhealthy: 0 };

  constructor(private readonly o: HealthProberOptions) {}

  get background(): boolean {
    return this.o.background;
  }

  get intervalMs(): number {
    return this.o.intervalMs;
  }

  start(): void {
    if (!this.o.background || this.loop) return;
    // Asking four times an interval (at most every second) finds each round soon after it opens. A round this
    // replica runs holds the next ask until its checks are done (they take at most an interval): the round after
    // it is asked for within a tick of its end, as rounds are numbered by Redis's clock, not by these ticks.
    const tick = Math.max(50, Math.min(1_000, Math.floor(this.o.intervalMs / 4)));
    this.loop = new Periodic({
      logger: this.o.logger,
      intervalMs: tick,
      pass: () => this.claimAndRun(),
      failureMessage: "a round of health checks failed; the next round goes on",
    });
    this.loop.start();
  }

  async stop(): Promise<void> {
    await this.loop?.stop();
    this.loop = null;
  }

  /** Every deployment's last check, as the cluster shares them (this replica's own without Redis). */
  async results(): Promise<Map<string, HealthResult>> {
    const { redis, keys } = this.o;
    if (!redis) return this.local;
    try {
      const flat = await redis.hgetall(keys.healthResults());
      const out = new Map<string, HealthResult>();
      for (const [id, json] of Object.entries(flat)) out.set(id, JSON.parse(json) as HealthResult);
      this.local = out;
      return out;
    } catch {
      return this.local;
    }
  }

  /** Checks these deployments now, on this replica, and shares the results. */
  async checkNow(deployments: readonly ModelDeployment[]): Promise<Map<string, HealthResult>> {
    const checked = await Promise.all(deployments.map(async (d) => [d.id, await this.check(d)] as const));
    await this.share(checked);
    return new Map(checked);
  }

  private async claimAndRun(): Promise<void> {
    const { redis, keys, intervalMs, replicaId } = this.o;
    if (redis) {
      let round: number;
      try {
        round = Number(await redis.routerHealthClaim(keys.healthRounds(), intervalMs, replicaId));
      } catch {
        return; // Redis unreachable: the round is left to a replica that can claim it.
      }
      if (round === 0) return;
    } else if (this.lastLocalRound !== 0 && Date.now() - this.lastLocalRound < intervalMs) {
      return;
    }
    this.lastLocalRound = Date.now();
    this.counters.roundsRun++;
    await this.checkNow(this.o.deployments().filter((d) => d.healthCheck !== "off"));
  }

  private lastLocalRound = 0;

  private async share(checked: ReadonlyArray<readonly [string, HealthResult]>): Promise<void> {
    for (const [id, r] of checked) this.local.set(id, r);
    const { redis, keys, intervalMs } = this.o;
    if (!redis || checked.length === 0) return;
    try {
      const hash = keys.healthResults();
      await redis
        .multi()
        .hset(hash, Object.fromEntries(checked.map(([id, r]) => [id, JSON.stringify(r)])))
        .pexpire(hash, Math.max(3 * intervalMs, 3_600_000))
        .exec();
    } catch (err) {
      this.o.logger.warn({ err: (err as Error).message }, "health check results could not be shared (Redis unreachable)");
    }
  }

  /** One check: the smallest call the deployment serves (a one-token chat, or an embedding of one word). */
  private async check(d: ModelDeployment): Promise<HealthResult> {
    const signal = new ClientGone();
    const timer = setTimeout(() => signal.abort(), Math.min(CHECK_TIMEOUT_MS, this.o.intervalMs));
    const started = performance.now();
    const embedding = d.healthCheck === "embedding";
    const body: Record<string, unknown> = embedding
      ? { model: d.upstreamModel, input: "ping" }
      : { model: d.upstreamModel, messages: [{ role: "user", content: "ping" }], max_tokens: 1 };
    let failure: { kind: FailureKind; message: string } | undefined;
    try {
      const answer = await this.o.providers[d.provider].forward({ endpoint: embedding ? "embeddings" : "chat.completions", deployment: d, body, stream: false, signal });
      let text = "";
      for await (const chunk of answer.body) if (text.length < MAX_ERROR_TEXT) text += typeof chunk === "string" ? chunk : Buffer.from(chunk).toString("utf8");
      if (answer.status >= 300) failure = failureOf(answer.status, text);
    } catch (err) {
      failure = signal.aborted ? { kind: "timeout", message: "no answer in time" } : { kind: "connection", message: `unreachable: ${(err as Error).message}` };
    } finally {
      clearTimeout(timer);
    }
    this.counters.checks++;
    const result: HealthResult = { healthy: !failure, checkedAt: Date.now(), latencyMs: Math.round(performance.now() - started), by: this.o.replicaId };
    if (failure) {
      this.counters.unhealthy++;
      result.error = failure.message;
      const siblings = this.o.deployments().filter((other) => other.modelName === d.modelName).length;
      await this.o.health.failed(d, failure.kind, siblings > 1);
      this.o.logger.warn({ deployment: d.id, model: litellmModelOf(d), error: failure.message }, "health check failed");
    }
    return result;
  }
}

function failureOf(status: number, text: string): { kind: FailureKind; message: string } {
  if (status === 401 || status === 403) return { kind: "auth", message: `upstream refused the gateway's credentials (${status})` };
  let detail = "";
  try {
    const parsed = JSON.parse(text) as { error?: { message?: unknown } | string };
    detail = typeof parsed.error === "string" ? parsed.error : typeof parsed.error?.message === "string" ? parsed.error.message : "";
  } catch {
    // Not JSON (an HTML error page): the status says enough.
  }
  const message = `HTTP ${status}${detail ? `: ${detail.slice(0, 200)}` : ""}`;
  if (status === 429) return { kind: "rate_limit", message };
  if (status === 408 || status === 504) return { kind: "timeout", message };
  if (status >= 500) return { kind: "server_error", message };
  return { kind: "bad_request", message };
}
