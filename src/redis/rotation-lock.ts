import { ExecutionError, Redlock, ResourceLockedError } from "@sesamecare-oss/redlock";
import type { Logger } from "../logger.js";
import type { DependencyBreaker } from "../faults/breaker.js";
import { ConflictError } from "../errors/errors.js";
import type { GatehouseRedis } from "./client.js";
import type { RedisKeys } from "./key-names.js";

/** Which lock the rotation runs under: this one, or the Postgres fallback (store/rotation-advisory-lock.ts). */
export type LockMode = "redlock" | "advisory";

// Far longer than a rotation transaction takes (milliseconds), short enough that a crashed holder
// does not block the key for long.
const LOCK_TTL_MS = 5_000;

/**
 * Serialises rotations of one key across replicas so concurrent requests do not race to do the same
 * work (docs/coherence.md #4). This is an optimisation, not the guarantee: a lock can expire under a pause,
 * so the rotation itself is conditional on the row version it read. With Redis unreachable the caller
 * falls back to a Postgres advisory lock (mode "advisory"), never to no lock.
 */
export class RotationLock {
  private readonly redlock: Redlock | null;

  constructor(
    /** Null without Redis (the embedded single replica): always the Postgres advisory lock. */
    private readonly redis: GatehouseRedis | null,
    private readonly keys: RedisKeys,
    private readonly logger: Logger,
    private readonly breaker: DependencyBreaker,
  ) {
    // Waits up to about 2 s for a holder on another replica to finish.
    this.redlock = redis ? new Redlock([redis], { retryCount: 40, retryDelay: 50, retryJitter: 25, driftFactor: 0.01 }) : null;
    this.redlock?.on("error", () => {});
  }

  async run<T>(tokenHash: string, work: (mode: LockMode) => Promise<T>): Promise<T> {
    const redlock = this.redlock;
    if (!redlock || this.redis?.status !== "ready" || this.breaker.isOpen) return work("advisory");
    let lock: Awaited<ReturnType<Redlock["acquire"]>>;
    try {
      lock = await this.breaker.run(() => redlock.acquire([this.keys.rotationLock(tokenHash)], LOCK_TTL_MS));
    } catch (err) {
      if (await isContention(err)) throw new ConflictError("another regeneration of this key is in progress; retry", { code: "rotation_in_progress" });
      this.logger.warn({ err: (err as Error).message }, "Redis lock unavailable; using a Postgres advisory lock");
      return work("advisory");
    }
    try {
      return await work("redlock");
    } finally {
      await lock.release().catch(() => {});
    }
  }
}

/** Did Redis answer "held by someone else" (contention), as opposed to not answering at all? */
async function isContention(err: unknown): Promise<boolean> {
  if (err instanceof ResourceLockedError) return true;
  if (!(err instanceof ExecutionError)) return false;
  const stats = await Promise.all(err.attempts).catch(() => []);
  const last = stats.at(-1);
  if (!last) return false;
  return [...last.votesAgainst.values()].every((e) => e instanceof ResourceLockedError);
}
