import net from "node:net";
import pg from "pg";
import { isMultiHost, type PgHost, type PostgresTarget, parsePostgresUrl, type TargetSessionAttrs } from "../config/postgres-url.js";

/**
 * A database URL naming several servers, as libpq writes it for a primary and its standbys:
 * `postgres://u@h1:5432,h2:5433/db?target_session_attrs=read-write`. node-postgres connects to one host only;
 * this module is the one place that knows which of the hosts is the writable one now.
 *
 * - `target_session_attrs=read-write` (a server whose sessions are not read-only) or `primary` (a server not in
 *   recovery): the hosts are probed, all at once, and the first in the URL's order that qualifies is used;
 *   `any` (libpq's default): the first in order that answers. `read-only`, `standby` and `prefer-standby` are
 *   refused: Gatehouse writes on every connection.
 * - Every new connection (the pool's, the LISTEN connection's) goes to the host found last. A connection that
 *   fails, or a server that answers "read-only" (25006), makes the locator probe again; a probe that finds a
 *   host no longer qualifies drops every pooled connection to it, so the pool refills from the new primary.
 * - A URL with one host is not touched: it goes to node-postgres as it is.
 */

const sameHost = (a: PgHost | null, b: PgHost | null) => a !== null && b !== null && a.host === b.host && a.port === b.port;
const hostName = (h: PgHost) => (h.host.includes(":") ? `[${h.host}]:${h.port}` : `${h.host}:${h.port}`);

// ── probing ──────────────────────────────────────────────────────────────────────────────────────────────

interface ProbeResult {
  host: PgHost;
  qualifies: boolean;
  /** It answered (so a "no" is about what it is, not whether it is up). */
  answered: boolean;
  reason: string;
  error?: Error;
}

const CHECK_SQL = "SELECT pg_is_in_recovery() AS in_recovery, current_setting('transaction_read_only') AS read_only";

/** Why a server that answered CHECK_SQL does not qualify, or undefined when it does. */
function disqualification(attrs: TargetSessionAttrs, row: { in_recovery: boolean; read_only: string } | undefined): string | undefined {
  if (attrs === "read-write" && row?.read_only !== "off") return row?.in_recovery ? "read-only (a standby)" : "read-only";
  if (attrs === "primary" && row?.in_recovery !== false) return "in recovery (a standby)";
  return undefined;
}

/** Postgres's "session is read-only" as libpq reports it: no SQLSTATE of its own, so the connection's class (08). */
function notWritable(host: PgHost, attrs: TargetSessionAttrs, why: string): Error {
  return Object.assign(new Error(`the server at ${hostName(host)} is ${why}, and the database URL asks for target_session_attrs=${attrs}`), { code: "08001" });
}

async function probeHost(target: PostgresTarget, host: PgHost, timeoutMs: number, database?: string): Promise<ProbeResult> {
  const client = new pg.Client({
    connectionString: target.urlFor(host, database),
    connectionTimeoutMillis: timeoutMs,
    query_timeout: timeoutMs,
    application_name: "gatehouse-locate",
  });
  client.on("error", () => {});
  try {
    await client.connect();
    if (target.targetSessionAttrs === "any") return { host, qualifies: true, answered: true, reason: "answers" };
    const { rows } = await client.query<{ in_recovery: boolean; read_only: string }>(CHECK_SQL);
    const why = disqualification(target.targetSessionAttrs, rows[0]);
    return { host, qualifies: why === undefined, answered: true, reason: why ?? "accepts writes" };
  } catch (err) {
    const e = err as Error & { code?: string };
    // The database does not exist yet (a first start creates it): ask the maintenance database instead.
    if (e.code === "3D000" && database === undefined) return probeHost(target, host, timeoutMs, "postgres");
    return { host, qualifies: false, answered: false, reason: e.code ?? e.message, error: e };
  } finally {
    await client.end().catch(() => {});
  }
}

// ── the locator ──────────────────────────────────────────────────────────────────────────────────────────

/** After a probe that found nothing, the next one waits this long: a server coming up is not hammered. */
const FAILED_PROBE_HOLD_MS = 200;

export class PrimaryLocator {
  private current: PgHost | null = null;
  private probing: Promise<PgHost> | null = null;
  private lastFailure: { at: number; error: Error } | null = null;
  /** Connections open now, by host: dropped when their host stops qualifying. */
  private readonly connections = new Set<{ host: PgHost; drop: () => void }>();

  constructor(
    readonly target: PostgresTarget,
    private readonly probeTimeoutMs = 2_000,
  ) {}

  /** The host found last, if any. */
  get located(): PgHost | null {
    return this.current;
  }

  /** Whether a connection must prove it may write (else any server that answers will do). */
  get needsWritable(): boolean {
    return this.target.targetSessionAttrs !== "any";
  }

  /** The host new connections go to: the one found last, or (none known, or `fresh`) what a probe finds now. */
  locate(options: { fresh?: boolean } = {}): Promise<PgHost> {
    if (this.current && !options.fresh) return Promise.resolve(this.current);
    if (this.lastFailure && Date.now() - this.lastFailure.at < FAILED_PROBE_HOLD_MS && !this.probing) return Promise.reject(this.lastFailure.error);
    this.probing ??= this.probe().finally(() => {
      this.probing = null;
    });
    return this.probing;
  }

  /**
   * A connection to `host` failed, or the server answered as read-only: the next connection probes again.
   * A probe starts now, so connections to a server that stopped qualifying are dropped soon, not when next used.
   */
  suspect(host: PgHost): void {
    if (sameHost(this.current, host)) this.current = null;
    this.locate({ fresh: true }).catch(() => {});
  }

  /** Registers an open connection to `host`; `drop` is called if the host stops qualifying. Returns the unregistration. */
  track(host: PgHost, drop: () => void): () => void {
    const entry = { host, drop };
    this.connections.add(entry);
    return () => this.connections.delete(entry);
  }

  private async probe(): Promise<PgHost> {
    const results = await Promise.all(this.target.hosts.map((host) => probeHost(this.target, host, this.probeTimeoutMs)));
    if (this.needsWritable) {
      for (const r of results) {
        if (!r.answered || r.qualifies) continue;
        if (sameHost(this.current, r.host)) this.current = null;
        for (const c of [...this.connections]) if (sameHost(c.host, r.host)) c.drop();
      }
    }
    const found = results.find((r) => r.qualifies);
    if (found) {
      this.current = found.host;
      this.lastFailure = null;
      return found.host;
    }
    const error = noServerError(this.target, results);
    this.lastFailure = { at: Date.now(), error };
    throw error;
  }
}

/** Every host failed the same way (all refused, all refused the password): that error, with its code. Else one that lists them. */
function noServerError(target: PostgresTarget, results: ProbeResult[]): Error {
  const first = results[0]?.error as (Error & { code?: string }) | undefined;
  if (first && results.every((r) => r.error && (r.error as { code?: string }).code === first.code && first.code !== undefined)) return first;
  const list = results.map((r) => `${hostName(r.host)} ${r.reason}`).join("; ");
  const wanted = target.targetSessionAttrs === "any" ? "answers" : `accepts writes (target_session_attrs=${target.targetSessionAttrs})`;
  return Object.assign(new Error(`could not connect to a server that ${wanted}: ${list}`), { code: "08001" });
}

/** One locator per URL, shared by whatever connects with it (the pool, the LISTEN connection, migrations). */
const locators = new Map<string, PrimaryLocator>();

/** The locator of a multi-host URL; undefined for a URL with one host (it needs none). Throws PostgresUrlError. */
export function locatorFor(url: string): PrimaryLocator | undefined {
  if (!isMultiHost(url)) return undefined;
  let locator = locators.get(url);
  if (!locator) {
    locator = new PrimaryLocator(parsePostgresUrl(url));
    locators.set(url, locator);
  }
  return locator;
}

/** The single-host URL of the server a multi-host URL points to now (a probe when none is known); others as they are. */
export async function locatedUrl(url: string): Promise<string> {
  const locator = locatorFor(url);
  if (!locator) return url;
  return locator.target.urlFor(await locator.locate());
}

// ── connections that follow the locator ──────────────────────────────────────────────────────────────────

type Callback = (err: Error | null, client?: pg.Client) => void;
const clientClasses = new WeakMap<PrimaryLocator, typeof pg.Client>();

/**
 * A pg.Client (for pg.Pool's `Client` option) whose connect() asks the locator where to go, checks that the
 * server qualifies (when the URL asks for a writable one), and reports failures back to the locator. pg-pool
 * calls `connect(callback)`; the promise form works too.
 */
export function locatedClientClass(locator: PrimaryLocator): typeof pg.Client {
  const known = clientClasses.get(locator);
  if (known) return known;
  class LocatedClient extends pg.Client {
    override connect(): Promise<pg.Client>;
    override connect(callback: Callback): void;
    override connect(callback?: Callback): Promise<pg.Client> | undefined {
      const connecting = this.connectLocated();
      if (!callback) return connecting;
      connecting.then(
        (client) => callback(null, client),
        (err: Error) => callback(err),
      );
      return undefined;
    }

    private async connectLocated(): Promise<pg.Client> {
      const host = await locator.locate();
      const stream = (this.connection as unknown as { stream: net.Socket }).stream;
      // The pool's connection timeout ran out while the hosts were probed: it has given up on this client.
      if (stream.destroyed) throw new Error("Connection terminated due to connection timeout");
      const params = (this as unknown as { connectionParameters: PgHost }).connectionParameters;
      this.host = params.host = host.host;
      this.port = params.port = host.port;
      try {
        await super.connect();
      } catch (err) {
        locator.suspect(host);
        throw err;
      }
      if (locator.needsWritable) {
        let why: string | undefined;
        try {
          const { rows } = await super.query<{ in_recovery: boolean; read_only: string }>(CHECK_SQL);
          why = disqualification(locator.target.targetSessionAttrs, rows[0]);
        } catch (err) {
          locator.suspect(host);
          await this.end().catch(() => {});
          throw err;
        }
        if (why !== undefined) {
          locator.suspect(host);
          await this.end().catch(() => {});
          throw notWritable(host, locator.target.targetSessionAttrs, why);
        }
      }
      // A server that says "read-only" (it was demoted, or fenced) is probed again; the probe drops every
      // connection to it if it no longer qualifies. Destroying the socket makes an idle pooled client emit
      // 'error', which is how pg-pool learns to discard it; a checked-out one fails its query (retried).
      // The 'error' listener also keeps such an event from crashing the process when nobody else listens.
      const untrack = locator.track(host, () => stream.destroy());
      this.connection.on("errorMessage", (msg: { code?: string }) => {
        if (msg.code === "25006" && locator.needsWritable) locator.suspect(host);
      });
      this.on("error", () => locator.suspect(host));
      this.once("end", untrack);
      return this;
    }
  }
  clientClasses.set(locator, LocatedClient);
  return LocatedClient;
}

/**
 * The connection settings for a connection made by code that builds its own pg.Client (pg-listen builds a new
 * one from a copy of these on every reconnect, so a getter would be read once): the socket itself asks the
 * locator, freshly, where to connect, each time it connects.
 */
export function locatedConnection(url: string): { connectionString: string; stream?: () => net.Socket } {
  const locator = locatorFor(url);
  if (!locator) return { connectionString: url };
  return {
    connectionString: locator.target.urlFor(locator.target.hosts[0]!),
    stream: () => new LocatedSocket(locator),
  };
}

/** A socket whose connect() ignores the address it is given and goes where a fresh probe says. */
class LocatedSocket extends net.Socket {
  constructor(private readonly locator: PrimaryLocator) {
    super();
  }

  override connect(...args: unknown[]): this {
    if (args.length === 0 || typeof args[0] === "function") return super.connect(...(args as Parameters<net.Socket["connect"]>));
    this.locator.locate({ fresh: true }).then(
      (host) => {
        if (this.destroyed) return;
        this.once("error", () => this.locator.suspect(host));
        if (host.host.startsWith("/")) super.connect(`${host.host}/.s.PGSQL.${host.port}`);
        else super.connect(host.port, host.host);
      },
      (err: Error) => this.destroy(err),
    );
    return this;
  }
}
