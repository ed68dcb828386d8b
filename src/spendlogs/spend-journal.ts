import { closeSync, fsyncSync, openSync, writeSync } from "node:fs";
import { mkdir, readdir, readFile, rename, stat, unlink } from "node:fs/promises";
import { hostname } from "node:os";
import path from "node:path";
import type { SpendLogRow } from "../store/spend-log-row.js";

/**
 * The local, append-only journal of spend log rows Postgres could not take (src/spendlogs/spend-log-writer.ts):
 * one NDJSON file per process under `<data dir>/spend-journal/`, named `<host>-<pid>-<start ms>.ndjson`.
 *
 * A process replays its own file, and claims (by an atomic rename) files of earlier processes of this host that
 * are gone — a pid that no longer runs, or its own pid with another start time (a container restarted as pid 1) —
 * including files such a process had claimed and not finished replaying.
 * Files of other hosts sharing the directory are left to them. Rows carry their request id, so a file replayed
 * twice (a crash between the insert and the unlink) inserts nothing twice.
 */
export class SpendJournal {
  readonly dir: string;
  /** `<host>-<pid>-<start ms>`: whose a journal file is. */
  private readonly id: string;
  private readonly own: string;
  private readonly host = hostname();
  private readonly startedAt = Date.now();

  constructor(dataDir: string) {
    this.dir = path.resolve(dataDir, "spend-journal");
    this.id = `${safe(this.host)}-${process.pid}-${this.startedAt}`;
    this.own = `${this.id}.ndjson`;
  }

  /**
   * Appends rows, and fsyncs them: once this returns, the rows survive the process (and, fsynced, the machine).
   * Synchronous on purpose: it is called on the shutdown path too, where nothing asynchronous may be left.
   */
  append(rows: readonly SpendLogRow[]): void {
    if (rows.length === 0) return;
    const fd = openSync(path.join(this.dir, this.own), "a", 0o600);
    try {
      writeSync(fd, `${rows.map((r) => JSON.stringify(journalForm(r))).join("\n")}\n`);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  }

  async open(): Promise<void> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
  }

  /**
   * Files to replay now: this process's own, and those it could claim — of a process of this host that is gone,
   * including files that process had itself claimed — each renamed to `<own id>.claimed.<original name>`.
   */
  async takeFiles(): Promise<string[]> {
    let names: string[];
    try {
      names = await readdir(this.dir);
    } catch {
      return [];
    }
    const mine: string[] = [];
    for (const name of names) {
      if (!name.endsWith(".ndjson")) continue;
      const owner = ownerOf(name);
      if (owner === this.id) {
        mine.push(name);
        continue;
      }
      if (!this.isGone(owner)) continue;
      const original = name.includes(CLAIMED) ? name.slice(name.indexOf(CLAIMED) + CLAIMED.length) : name;
      const claimed = `${this.id}${CLAIMED}${original}`;
      try {
        await rename(path.join(this.dir, name), path.join(this.dir, claimed));
        mine.push(claimed);
      } catch {
        // another process of this host claimed it first
      }
    }
    return mine;
  }

  /** The rows of one file taken by takeFiles(); a torn last line (a crash mid-write) is skipped. */
  async read(name: string): Promise<SpendLogRow[]> {
    const text = await readFile(path.join(this.dir, name), "utf8");
    const rows: SpendLogRow[] = [];
    for (const line of text.split("\n")) {
      if (line.length === 0) continue;
      try {
        rows.push(JSON.parse(line) as SpendLogRow);
      } catch {
        // torn write: the line was never acknowledged as journaled
      }
    }
    return rows;
  }

  async remove(name: string): Promise<void> {
    await unlink(path.join(this.dir, name)).catch(() => {});
  }

  /** Bytes waiting in this process's own file (metrics, tests). */
  async pendingBytes(): Promise<number> {
    try {
      return (await stat(path.join(this.dir, this.own))).size;
    } catch {
      return 0;
    }
  }

  /** Is the process `owner` (`<host>-<pid>-<start>`) of this host, and gone? Another host's files are its own. */
  private isGone(owner: string): boolean {
    const m = /^(.*)-(\d+)-(\d+)$/.exec(owner);
    if (!m || m[1] !== safe(this.host)) return false;
    const pid = Number(m[2]);
    if (pid === process.pid) return Number(m[3]) !== this.startedAt;
    try {
      process.kill(pid, 0);
      return false;
    } catch (err) {
      return (err as NodeJS.ErrnoException).code === "ESRCH";
    }
  }
}

const CLAIMED = ".claimed.";

/** The process a journal file belongs to: its writer's, or its claimer's. */
function ownerOf(name: string): string {
  const claimed = name.indexOf(CLAIMED);
  return claimed >= 0 ? name.slice(0, claimed) : name.slice(0, -".ndjson".length);
}

/** Host names hold no "-" here, so `<host>-<pid>-<start>` parses back. */
function safe(s: string): string {
  return s.replace(/[^A-Za-z0-9_.]/g, "_");
}

/**
 * A row as the journal keeps it: times as ISO text, as every version has written them, so a journal outlives a
 * downgrade (an older version reading epoch numbers as timestamps would refuse every row). Only an outage writes
 * here, so the cost of formatting dates does not matter.
 */
function journalForm(row: SpendLogRow): SpendLogRow {
  const iso = (t: number | string) => (typeof t === "number" ? new Date(t).toISOString() : t);
  return { ...row, start_time: iso(row.start_time), end_time: iso(row.end_time) };
}
