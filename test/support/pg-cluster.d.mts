import type { TcpProxy } from "./tcp-proxy.mjs";

export interface PgServer {
  port: number;
  /** postgres://postgres@127.0.0.1:<port>/<database> */
  url: string;
}

export interface PgPair {
  root: string;
  database: string;
  /** The server taking writes (after promoteStandby(), still the old one until rebuildStandby()). */
  readonly primary: PgServer;
  readonly standby: PgServer;
  /** The standby's replication connection runs through it: blackhole it to withhold WAL. */
  walProxy: TcpProxy;
  waitForStandbyCaughtUp(timeoutMs?: number): Promise<void>;
  killPrimary(): Promise<void>;
  /** A clean shutdown (pg_ctl stop -m fast). */
  stopPrimary(): Promise<void>;
  promoteStandby(): Promise<void>;
  /** After promoteStandby(): the promoted server becomes `primary`, and a new `standby` is copied from it (through `walProxy`). */
  rebuildStandby(): Promise<void>;
  query(which: "primary" | "standby", sql: string, params?: unknown[]): Promise<Array<Record<string, unknown>> | null>;
  stop(): Promise<void>;
}

export function startPgPair(options?: { database?: string }): Promise<PgPair>;
