import { isUniqueViolation } from "../store/db.js";
import type { Logger } from "../logger.js";
import type { Database } from "../store/database.js";
import { SpendLogBatch } from "../store/spend-log-copy.js";
import type { SpendLogRow } from "../store/spend-log-row.js";
import { copySpendLogBatch, insertSpendLogs } from "../store/spend-log-store.js";
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
 * Spend log rows, written off the request path (docs/spend-logs.md). A finished request's row is encoded at once
 * into the batch being filled (store/spend-log-copy.ts: a few hundred bytes outside the JavaScript heap, and its
 * sums for the daily totals); upkeep/spend-log-upkeep.ts calls flush() every `spend_logs.flush_interval_ms`, which
 * writes the batches filled by then, `batch_rows` rows at most each, one transaction each (idempotent by
 * request id).
 *
 * When Postgres cannot take a batch, the whole queue is appended to the local journal (fsynced) right away, so
 * an outage keeps nothing in memory for long: a SIGKILL loses at most the rows queued since the last flush began
 * (about one flush interval). When a flush succeeds again, the journal is replayed into Postgres and removed.
 * Only when the journal cannot be written either (disk full) do rows stay in memory, up to `memory_max_rows`;
 * beyond that they are dropped, counted in `gatehouse_spend_log_rows_dropped_total` and logged. close() flushes
 * once more and journals what is left.
 */
export class SpendLogWriter {
  /** Batches waiting, oldest first; rows are added to the last one until it is full or a flush takes it. */
  private batches: SpendLogBatch[] = [];
  private filling: SpendLogBatch | null = null;
  private queuedRows = 0;
  private flushing: Promise<void> | null = null;
  /** Journal files of this or earlier processes may hold rows: look on the next successful flush. */
  private journalToReplay = true;
  private closed = false;
  readonly counters = { recorded: 0, written: 0, journaled: 0, replayed: 0, dropped: 0, flushFailures: 0 };

  constructor(private readonly o: SpendLogWriterOptions) {}

  /** Queues a finished request's row. Never throws, never waits. */
  record(row: SpendLogRow): void {
    this.counters.recorded++;
    if (this.queuedRows >= this.o.memoryMaxRows) {
      this.counters.dropped++;
      if (this.counters.dropped === 1 || this.counters.dropped % 10_000 === 0)
        this.o.logger.error({ dropped: this.counters.dropped, queued: this.queuedRows }, "spend log rows dropped: neither Postgres nor the journal takes them");
      return;
    }
    let batch = this.filling;
    if (batch === null || batch.rows >= this.o.batchRows) {
      batch = this.filling = new SpendLogBatch();
      this.batches.push(batch);
    }
    try {
      batch.add(row);
    } catch (err) {
      // A value no column can hold: the row could never be stored, and the batch is left as it was.
      this.counters.dropped++;
      this.o.logger.error({ err: (err as Error).message, request_id: row.request_id }, "a spend log row Postgres cannot store was dropped");
      return;
    }
    this.queuedRows++;
  }

  /** Rows waiting in memory (metrics, tests). */
  get queued(): number {
    return this.queuedRows;
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
    if (this.queuedRows > 0) this.spill();
  }

  private async flushAll(): Promise<void> {
    // Only the batches queued when the flush began (all of them on shutdown): rows that arrive while it writes
    // go to a new batch, for the next flush. Chasing them turned a busy replica's flush into an endless run of
    // small batches, one transaction each, and the fixed cost of each (a commit's fsync, a COPY's setup, a
    // statement's planning) was most of what logging cost Postgres.
    let due = this.batches.length;
    this.filling = null;
    while (this.batches.length > 0 && (due > 0 || this.closed)) {
      const batch = this.batches[0]!;
      // Closing, the batch being filled goes too: rows recorded meanwhile start another.
      if (batch === this.filling) this.filling = null;
      try {
        await this.write(batch);
      } catch (err) {
        this.counters.flushFailures++;
        this.o.logger.warn({ err: (err as Error).message, queued: this.queuedRows }, "spend log flush failed; rows go to the local journal");
        this.spill();
        return;
      }
      this.batches.shift();
      this.queuedRows -= batch.rows;
      this.counters.written += batch.rows;
      due--;
    }
    if (this.journalToReplay && !this.closed) await this.replay();
  }

  /**
   * Writes a batch never written before: by COPY, its cheapest way in. If a row of it is already there — an
   * earlier write's outcome was unknown, and it did commit — its rows are written again skipping those already in.
   * Where COPY cannot be used (the embedded database), its rows go as one INSERT.
   */
  private async write(batch: SpendLogBatch): Promise<void> {
    if (batch.rows === 0) return; // its only row was refused by the encoder
    if (!this.o.copy) return this.insert(batch.rowsBack());
    try {
      await this.o.db.transaction((tx) => copySpendLogBatch(tx, batch));
      batch.release();
      return;
    } catch (err) {
      const repeated = isUniqueViolation(err);
      if (!repeated && !isDataError(err)) throw err;
      // Refused for its data (a value the encoder should not have let through): said, so that it shows, and the
      // rows go the INSERT way, which sets aside a row Postgres cannot store.
      if (!repeated) this.o.logger.warn({ err: (err as Error).message, rows: batch.rows }, "a spend log batch COPY refused for its data is written by INSERT");
      return this.insert(batch.rowsBack(), repeated);
    }
  }

  /**
   * Writes rows as one INSERT. `mayRepeat`: they may have been written before — a batch retried, or a journal
   * (a process that died after the insert, before it removed the file) — and rows already there are skipped.
   * Without it, a row already there refuses the whole statement, and the rows are sent again with it.
   * Rows Postgres refuses for their data (SQLSTATE class 22: a value it cannot store) are written row by row
   * instead, and a row refused on its own is dropped (counted, logged): one bad row must not hold back every row
   * queued or journaled after it. Any other failure (Postgres unreachable) is thrown.
   */
  private async insert(rows: readonly SpendLogRow[], mayRepeat = false): Promise<void> {
    try {
      await this.o.db.query((q) => insertSpendLogs(q, rows, mayRepeat));
      return;
    } catch (err) {
      if (isUniqueViolation(err) && !mayRepeat) return this.insert(rows, true);
      if (!isDataError(err)) throw err;
      this.o.logger.warn({ err: (err as Error).message, rows: rows.length }, "a spend log batch Postgres refused for its data is written row by row");
    }
    for (const row of rows) {
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
    if (this.queuedRows === 0) return;
    // Reading a batch's rows back ends it: new rows start another batch, whether or not the journal takes these.
    this.filling = null;
    try {
      this.o.journal.append(this.batches.flatMap((b) => b.rowsBack()));
      this.counters.journaled += this.queuedRows;
      this.batches = [];
      this.queuedRows = 0;
      this.journalToReplay = true;
    } catch (err) {
      this.o.logger.error({ err: (err as Error).message, queued: this.queuedRows }, "the spend log journal cannot be written; rows stay in memory");
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

/** A value Postgres cannot store (class 22), or a required one missing (23502: a damaged journal line). */
function isDataError(err: unknown): boolean {
  const code = (err as { code?: unknown }).code;
  return typeof code === "string" && (code.startsWith("22") || code === "23502");
}
