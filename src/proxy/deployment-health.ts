import type { Redis } from "ioredis";
import type { FailureKind, RouterSettings } from "../config/router-settings.js";
import type { ModelDeployment } from "../config/settings.js";
import type { Logger } from "../logger.js";
import type { GatehouseRedis } from "../redis/client.js";
import type { RedisKeys } from "../redis/key-names.js";
import { Periodic } from "../timers/periodic.js";
import { reinstated } from "../testing/reinstated-bugs.js";

/**
 * Which deployments are cooling down, one truth for the whole cluster (docs/routing.md, "Shared state").
 *
 * - A failed attempt is counted in Redis, for every replica at once (router-fail.lua): the failure that crosses
 *   the deployment's allowance within a minute starts its cooldown, exactly once, and announces it on a channel.
 *   A dead deployment thus gets at most `allowed_fails + 1` failing calls from the whole cluster before its
 *   cooldown is set (plus the calls already in flight then), not that many from each replica.
 * - Every replica holds the cooldowns in memory (the request path reads a Map, never Redis): the announcement
 *   reaches it in milliseconds, and a resynchronisation every `resyncIntervalMs` (and on every reconnection) bounds
 *   what a lost announcement can cost. A cooldown is announced as "what is left of it", held against the
 *   replica's own monotonic clock: no clock is compared across machines.
 * - When Redis cannot be reached, failures are counted and cooldowns kept by this replica alone (`shared` false,
 *   in a metric and on the cluster page): routing goes on, with the per-replica bound LiteLLM has.
 */
export interface DeploymentHealthOptions {
  redis: GatehouseRedis | null;
  keys: RedisKeys;
  logger: Logger;
  settings: RouterSettings;
  resyncIntervalMs?: number;
  now?: () => number;
}

/** Failures that say something about the deployment (not about the request): they count toward its cooldown. */
const COUNTED: ReadonlySet<FailureKind> = new Set(["rate_limit", "timeout", "server_error", "connection", "auth"]);
const WINDOW_MS = 60_000;

export class DeploymentHealth {
  /** Deployment id → when its cooldown ends, on this replica's monotonic clock. */
  private readonly cooling = new Map<string, number>();
  /** Failures counted here while Redis is unreachable: id → the window's start and count. */
  private readonly localFailures = new Map<string, { since: number; count: number }>();
  private subscriber: Redis | null = null;
  /** The resynchronisation every `resyncIntervalMs` (with Redis only). */
  private loop: Periodic | null = null;
  private readonly now: () => number;
  /** Failed attempts seen by this replica, by deployment and kind (metrics). */
  private readonly failuresByDeployment = new Map<string, Map<FailureKind, number>>();
  /** False while the last exchange with Redis failed: cooldowns are this replica's own. */
  shared = true;
  readonly counters = { failures: 0, cooldownsStarted: 0, cooldownsHeard: 0, resyncs: 0, localOnly: 0 };

  constructor(private readonly o: DeploymentHealthOptions) {
    this.now = o.now ?? (() => performance.now());
  }

  async start(): Promise<void> {
    const { redis, keys } = this.o;
    if (!redis || reinstated("router-local")) {
      this.shared = false;
      return;
    }
    const subscriber = redis.duplicate();
    subscriber.on("error", () => {});
    subscriber.on("message", (_channel: string, message: string) => this.heard(message));
    // Every (re)connection subscribes and resynchronises: announcements made meanwhile were lost. (Subscribing
    // here, not once after connect: with Redis down at start the first subscribe fails, and ioredis only
    // resubscribes channels a subscription succeeded for.)
    subscriber.on("ready", () => {
      subscriber.subscribe(keys.routerChannel()).catch(() => {});
      void this.resync();
    });
    this.subscriber = subscriber;
    await subscriber.connect().catch(() => {});
    await this.resync();
    this.loop = new Periodic({
      logger: this.o.logger,
      intervalMs: this.o.resyncIntervalMs ?? 1_000,
      pass: () => this.resync(),
      failureMessage: "resynchronising deployment cooldowns failed; retrying at the next interval",
    });
    this.loop.start();
  }

  async stop(): Promise<void> {
    await this.loop?.stop();
    this.loop = null;
    this.subscriber?.disconnect();
    this.subscriber = null;
  }

  /** Is this deployment cooling down? (The request path: one Map read.) */
  isCooling(id: string): boolean {
    const until = this.cooling.get(id);
    if (until === undefined) return false;
    if (until > this.now()) return true;
    this.cooling.delete(id);
    return false;
  }

  /** Milliseconds until the first of these deployments is back (for a Retry-After), 0 when one is not cooling. */
  msUntilAny(ids: readonly string[]): number {
    let least = Number.POSITIVE_INFINITY;
    const now = this.now();
    for (const id of ids) least = Math.min(least, Math.max(0, (this.cooling.get(id) ?? 0) - now));
    return Number.isFinite(least) ? least : 0;
  }

  /** This replica's failed attempts by deployment and kind (gatehouse_deployment_failures_total). */
  failureCounts(): Array<{ deployment: string; kind: string; count: number }> {
    const out: Array<{ deployment: string; kind: string; count: number }> = [];
    for (const [deployment, byKind] of this.failuresByDeployment) for (const [kind, count] of byKind) out.push({ deployment, kind, count });
    return out;
  }

  /** Every deployment cooling down now, with the milliseconds left (the cluster page, /health). */
  snapshot(): Array<{ id: string; msLeft: number }> {
    const now = this.now();
    return [...this.cooling].filter(([, until]) => until > now).map(([id, until]) => ({ id, msLeft: Math.round(until - now) }));
  }

  /**
   * A failed attempt on `deployment`; resolves once it is counted (and a cooldown it started is held here).
   * `mayCoolDown` false (a model's only deployment): counted for the metrics only.
   */
  async failed(deployment: ModelDeployment, kind: FailureKind, mayCoolDown = true): Promise<void> {
    const byKind = this.failuresByDeployment.get(deployment.id) ?? new Map<FailureKind, number>();
    byKind.set(kind, (byKind.get(kind) ?? 0) + 1);
    this.failuresByDeployment.set(deployment.id, byKind);
    if (!mayCoolDown || !COUNTED.has(kind)) return;
    this.counters.failures++;
    const { settings, redis, keys } = this.o;
    const allowed = settings.allowedFailsPolicy[kind] ?? settings.allowedFails;
    if (redis && !reinstated("router-local")) {
      try {
        const [, cooldownMs] = await redis.routerFail(
          keys.routerFailures(deployment.id),
          keys.routerCooldowns(),
          deployment.id,
          allowed,
          settings.cooldownMs,
          WINDOW_MS,
          keys.routerChannel(),
        );
        this.shared = true;
        if (Number(cooldownMs) > 0) this.hold(deployment.id, Number(cooldownMs));
        return;
      } catch (err) {
        if (this.shared) this.o.logger.warn({ err: (err as Error).message }, "deployment failures cannot be shared (Redis unreachable): counting them on this replica alone");
        this.shared = false;
        this.counters.localOnly++;
      }
    }
    this.failedLocally(deployment.id, allowed);
  }

  private failedLocally(id: string, allowed: number): void {
    const now = this.now();
    let w = this.localFailures.get(id);
    if (!w || now - w.since > WINDOW_MS) {
      w = { since: now, count: 0 };
      this.localFailures.set(id, w);
    }
    w.count++;
    if (w.count > allowed && !this.isCooling(id)) {
      this.localFailures.delete(id);
      this.hold(id, this.o.settings.cooldownMs);
      this.counters.cooldownsStarted++;
    }
  }

  private hold(id: string, msLeft: number): void {
    const until = this.now() + msLeft;
    if ((this.cooling.get(id) ?? 0) < until) this.cooling.set(id, until);
  }

  /** An announcement: "<deployment id> <ms left>". */
  private heard(message: string): void {
    const space = message.lastIndexOf(" ");
    const ms = Number(message.slice(space + 1));
    if (space <= 0 || !Number.isFinite(ms) || ms <= 0) return;
    this.counters.cooldownsHeard++;
    this.hold(message.slice(0, space), ms);
  }

  /** Every cooldown the cluster holds now, read again (a lost announcement costs at most one interval). */
  private async resync(): Promise<void> {
    const { redis, keys } = this.o;
    if (!redis) return;
    try {
      const flat = await redis.routerCooldowns(keys.routerCooldowns());
      for (let i = 0; i + 1 < flat.length; i += 2) this.hold(String(flat[i]), Number(flat[i + 1]));
      this.counters.resyncs++;
      this.shared = true;
    } catch {
      this.shared = false;
    }
  }
}
