import type pg from "pg";
import { classifyFailure } from "../faults/classify.js";
import { ChangeContendedError, CommitOutcomeUnknownError, DependencyUnavailableError } from "../errors/errors.js";
import type { DependencyBreaker } from "../faults/breaker.js";
import { retry } from "../faults/retry.js";
import type { Queryable } from "./db.js";

/**
 * Every Postgres call of the gateway goes through here: the breaker, retries of what is safe to retry,
 * and resolution of a COMMIT whose outcome is unknown (docs/coherence.md #3, #7).
 *
 * - query(): reads and repeatable writes, retried on connection failures, timeouts and conflicts within `retryDeadlineMs`.
 * - transaction(): retried when it failed before COMMIT was sent. If the connection dies during COMMIT,
 *   the change may or may not have landed: `verifyCommitted` (asked on a fresh connection) decides. Landed:
 *   the result is returned. Not landed: the transaction is run again. Cannot tell: 503, never a guess.
 * A dependency that does not answer becomes DependencyUnavailableError (503 with Retry-After); a deadlock or
 * serialization failure that outlasts the retries, ChangeContendedError (503: it rolled back, retry).
 */

class CommitInterrupted<T> extends Error {
  constructor(
    readonly result: T,
    override readonly cause: unknown,
    /** The server process that ran the transaction: until it is gone, its COMMIT may still land. */
    readonly backendPid: number | undefined,
  ) {
    super("connection lost during COMMIT");
  }
}

// Ends the backend that ran an interrupted transaction (if it is still there) and reports whether it is
// gone. A COMMIT already being processed is not undone by this: Postgres finishes a commit it has started
// before it honours the signal, so once the backend is gone the outcome is final either way.
const END_BACKEND = `
SELECT NOT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = $1) AS gone,
       (SELECT pg_terminate_backend($1) FROM pg_stat_activity WHERE pid = $1) AS signalled`;

export interface TransactionOptions<T> {
  /** Asked when the connection died during COMMIT: did this transaction's change land? */
  verifyCommitted?: (result: T) => Promise<boolean>;
}

export class Database {
  /** retries: calls run again; conflicts: deadlocks and serialization failures met (each rolled back). */
  readonly counters = { retries: 0, conflicts: 0, commitsVerified: 0, commitsRerun: 0 };
  /** Whether a failed call may be run again; counts the conflicts on the way. */
  private readonly shouldRetry = (err: unknown): boolean => {
    if (!retriable(err)) return false;
    if (classifyFailure(err) === "conflict") this.counters.conflicts++;
    return true;
  };

  constructor(
    readonly pool: pg.Pool,
    readonly breaker: DependencyBreaker,
    private readonly retryDeadlineMs = 2_000,
  ) {}

  /** Statements outside a transaction: reads, or writes that are safe to repeat. */
  async query<T>(work: (db: Queryable) => Promise<T>): Promise<T> {
    try {
      return await retry(
        (n) => {
          if (n > 0) this.counters.retries++;
          return this.breaker.run(() => work(this.pool));
        },
        { deadlineMs: this.retryDeadlineMs, shouldRetry: this.shouldRetry },
      );
    } catch (err) {
      throw this.unavailable(err);
    }
  }

  async transaction<T>(work: (tx: pg.PoolClient) => Promise<T>, options: TransactionOptions<T> = {}): Promise<T> {
    const deadline = Date.now() + this.retryDeadlineMs;
    for (;;) {
      try {
        return await retry(
          (n) => {
            if (n > 0) this.counters.retries++;
            return this.breaker.run(() => this.runOnce(work));
          },
          { deadlineMs: Math.max(0, deadline - Date.now()), shouldRetry: this.shouldRetry },
        );
      } catch (err) {
        if (!(err instanceof CommitInterrupted)) throw this.unavailable(err);
        const interrupted = err as CommitInterrupted<T>;
        if (!options.verifyCommitted) throw new CommitOutcomeUnknownError(interrupted.cause);
        // "Not visible" only means "not landed" once the backend that got the COMMIT can no longer commit.
        const landed = await this.verify(async () => {
          if (interrupted.backendPid !== undefined) await this.waitForBackendGone(interrupted.backendPid);
          return options.verifyCommitted!(interrupted.result);
        }, deadline);
        if (landed === true) {
          this.counters.commitsVerified++;
          return interrupted.result;
        }
        if (landed === undefined || Date.now() >= deadline) throw new CommitOutcomeUnknownError(interrupted.cause);
        this.counters.commitsRerun++; // it did not land: running it again cannot do it twice
      }
    }
  }

  /** What a call that failed for good is told as: the server unreachable, or contention that outlasted the retries. */
  private unavailable(err: unknown): unknown {
    return classifyFailure(err) === "conflict" ? new ChangeContendedError(err) : this.breaker.unavailable(err);
  }

  private async runOnce<T>(work: (tx: pg.PoolClient) => Promise<T>): Promise<T> {
    const client = await this.pool.connect();
    // A checked-out client whose connection dies emits 'error' besides failing its query; unheard, that
    // event would crash the process. The failed query already tells us everything.
    const ignore = () => {};
    client.on("error", ignore);
    let committing = false;
    let broken = false;
    try {
      await client.query("BEGIN");
      const result = await work(client);
      committing = true;
      try {
        await client.query("COMMIT");
      } catch (err) {
        // A server that answered COMMIT with an error rolled back; a connection that died did not say.
        const kind = classifyFailure(err);
        if (kind === "connection" || kind === "timeout") {
          broken = true;
          throw new CommitInterrupted(result, err, (client as unknown as { processID?: number }).processID);
        }
        throw err;
      }
      return result;
    } catch (err) {
      const kind = classifyFailure(err);
      if (kind === "connection" || kind === "timeout") {
        // Do not wait on a connection that failed or hangs: closing it makes the server roll back.
        broken = true;
      } else if (!committing) {
        try {
          await client.query("ROLLBACK");
        } catch {
          broken = true;
        }
      }
      throw err;
    } finally {
      client.removeListener("error", ignore);
      client.release(broken);
    }
  }

  /** Resolves once the backend `pid` has exited; throws (retriable) while it is still there. */
  private async waitForBackendGone(pid: number): Promise<void> {
    const { rows } = await this.pool.query<{ gone: boolean }>(END_BACKEND, [pid]);
    if (!rows[0]!.gone) throw Object.assign(new Error(`backend ${pid} is still running`), { code: "ETIMEDOUT" });
  }

  /** true / false when the database answered, undefined when it could not be asked before the deadline. */
  private async verify(ask: () => Promise<boolean>, deadline: number): Promise<boolean | undefined> {
    try {
      return await retry(() => ask(), { deadlineMs: Math.max(250, deadline - Date.now()), shouldRetry: retriable });
    } catch {
      return undefined;
    }
  }
}

function retriable(err: unknown): boolean {
  if (err instanceof DependencyUnavailableError || err instanceof CommitInterrupted) return false;
  return classifyFailure(err) !== "permanent";
}
