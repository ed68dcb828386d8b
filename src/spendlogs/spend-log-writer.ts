import type { Logger } from "../logger.js";
import type { Database } from "../store/database.js";
import { copySpendLogs, insertSpendLogs, type SpendLogRow } from "../store/spend-log-store.js";
import type { SpendJournal } from "./spend-journal.js";

export interface SpendLogWriterOptions {
  db: Database;
  journal: SpendJournal;
  logger: Logger;
  /** Rows per batch: one transaction each. */
  batchRows: number;
  /** New batches go in by COPY (a Postgres server); false: by INSERT (the embedded database takes no COPY). */
  copy: boolean;
  /** Rows held in memory while neither Postgres nor the journal takes them; past this, rows are dropped (counted). */
  memoryMaxRows: number;
}

/**
 * Spend log rows, written off the request path (docs/spend-logs.md). A finished request's row is queued in memory
 * (record() costs a push); upkeep/spend-log-upkeep.ts calls flush() every `spend_logs.flush_interval_ms`, which
 * writes the rows queued by then in batches of `batch_rows`, one transaction each (idempotent by request id).
 *
 * When Postgres cannot take a batch, the whole queue is appended to the local journal (fsynced) right away, so
 * an outage keeps nothing in memory for long: a SIGKILL loses at most the rows queued since the last flush began
 * (about one flush interval). When a flush succeeds again, the journal is replayed into Postgres and removed.
 * Only when the journal cannot be written either (disk full) do rows stay in memory, up to `memory_max_rows`;
 * beyond that they are dropped, counted in `gatehouse_spend_log_rows_dropped_total` and logged. close() flushes
 * once more and journals what is left.
 */
export class SpendLogWriter {
  private queue: SpendLogRow[] = [];
  private flushing: Promise<void> | null = null;
  /** Journal files of this or earlier processes may hold rows: look on the next successful flush. */
  private journalToReplay = true;
  private closed = false;
  readonly counters = { recorded: 0, written: 0, journaled: 0, replayed: 0, dropped: 0, flushFailures: 0 };

  constructor(private readonly o: SpendLogWriterOptions) {}

  /** Queues a finished request's row. Never throws, never waits. */
  record(row: SpendLogRow): void {
    this.counters.recorded++;
    if (this.queue.length >= this.o.memoryMaxRows) {
      this.counters.dropped++;
      if (this.counters.dropped === 1 || this.counters.dropped % 10_000 === 0)
        this.o.logger.error({ dropped: this.counters.dropped, queued: this.queue.length }, "spend log rows dropped: neither Postgres nor the journal takes them");
      return;
    }
    this.queue.push(row);
  }

  /** Rows waiting in memory (metrics, tests). */
  get queued(): number {
    return this.queue.length;
  }

  /** Writes what is queued (and the journal, once Postgres answers); resolves when done or failed. Never rejects. */
  flush(): Promise<void> {
    if (!this.flushing) {
      this.flushing = this.flushAll().finally(() => {
        this.flushing = null;
      });
    }
    return this.flushing;
  }

  /** Shutdown: one last flush; whatever Postgres did not take goes to the journal, for the next start to replay. */
  async close(): Promise<void> {
    this.closed = true;
    await this.flush();
    if (this.queue.length > 0) this.spill();
  }

  private async flushAll(): Promise<void> {
    // Only the rows queued when the flush began (all of them on shutdown). Rows that arrive while it writes wait
    // for the next flush: chasing them turned a busy replica's flush into an endless run of small batches, one
    // transaction each, and the fixed cost of each (a commit's fsync, a COPY's setup, a statement's planning)
    // was most of what logging cost Postgres.
    let due = this.queue.length;
    while (this.queue.length > 0 && (due > 0 || this.closed)) {
      const batch = this.queue.slice(0, this.closed ? this.o.batchRows : Math.min(this.o.batchRows, due));
      try {
        await this.insert(batch);
      } catch (err) {
        this.counters.flushFailures++;
        this.o.logger.warn({ err: (err as Error).message, queued: this.queue.length }, "spend log flush failed; rows go to the local journal");
        this.spill();
        return;
      }
      this.queue.splice(0, batch.length);
      this.counters.written += batch.length;
      due -= batch.length;
    }
    if (this.journalToReplay && !this.closed) await this.replay();
  }

  /**
   * Writes a batch. A batch from the queue is first written as new (the cheaper statement); if a row of it is
   * already there — its earlier write's outcome was unknown, and it did commit — the batch is written again
   * skipping the rows already in. A journaled batch may have been written before (a process that died after the
   * insert, before it removed the file), so it always skips them.
   * A batch Postgres refuses for its data (SQLSTATE class 22: a value it cannot store) is written row by row
   * instead, and a row refused on its own is dropped (counted, logged): one bad row must not hold back every row
   * queued or journaled after it. Any other failure (Postgres unreachable) is thrown.
   */
  private async insert(batch: readonly SpendLogRow[], mayRepeat = false): Promise<void> {
    try {
      if (!mayRepeat && this.o.copy) await this.o.db.transaction((tx) => copySpendLogs(tx, batch));
      else await this.o.db.query((q) => insertSpendLogs(q, batch, mayRepeat));
      return;
    } catch (err) {
      if (isUniqueViolation(err) && !mayRepeat) return this.insert(batch, true);
      if (!isDataError(err)) throw err;
      // Said, so that a batch way that keeps failing (a value the encoder should not have let through) shows.
      this.o.logger.warn({ err: (err as Error).message, rows: batch.length }, "a spend log batch Postgres refused for its data is written row by row");
    }
    for (const row of batch) {
      try {
        await this.o.db.query((q) => insertSpendLogs(q, [row]));
      } catch (err) {
        if (!isDataError(err)) throw err;
        this.counters.dropped++;
        this.o.logger.error({ err: (err as Error).message, request_id: row.request_id }, "a spend log row Postgres cannot store was dropped");
      }
    }
  }

  /** Moves the queue to the journal; if the journal cannot be written, the rows stay queued (bounded by record()). */
  private spill(): void {
    if (this.queue.length === 0) return;
    try {
      this.o.journal.append(this.queue);
      this.counters.journaled += this.queue.length;
      this.queue = [];
      this.journalToReplay = true;
    } catch (err) {
      this.o.logger.error({ err: (err as Error).message, queued: this.queue.length }, "the spend log journal cannot be written; rows stay in memory");
    }
  }

  private async replay(): Promise<void> {
    for (const file of await this.o.journal.takeFiles()) {
      const rows = await this.o.journal.read(file);
      for (let i = 0; i < rows.length; i += this.o.batchRows) {
        const batch = rows.slice(i, i + this.o.batchRows);
        try {
          await this.insert(batch, true);
        } catch (err) {
          // The file stays; the next successful flush tries again (rows already in are not inserted twice).
          this.o.logger.warn({ err: (err as Error).message, file }, "replaying the spend log journal failed; will retry");
          return;
        }
        this.counters.replayed += batch.length;
      }
      await this.o.journal.remove(file);
      this.o.logger.info({ file, rows: rows.length }, "spend log journal replayed into Postgres");
    }
    this.journalToReplay = false;
  }
}

function isUniqueViolation(err: unknown): boolean {
  return (err as { code?: unknown }).code === "23505";
}

/** A value Postgres cannot store (class 22), or a required one missing (23502: a damaged journal line). */
function isDataError(err: unknown): boolean {
  const code = (err as { code?: unknown }).code;
  return typeof code === "string" && (code.startsWith("22") || code === "23502");
}
