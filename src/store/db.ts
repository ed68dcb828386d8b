import pg from "pg";
import { locatedClientClass, locatedUrl, locatorFor } from "./primary-locator.js";

// int8 columns (versions, limits) fit comfortably in a double; read them as numbers, not strings.
pg.types.setTypeParser(pg.types.builtins.INT8, (value) => Number(value));

export type Queryable = Pick<pg.Pool, "query"> | pg.PoolClient;

export interface PoolOptions {
  max?: number;
  applicationName?: string;
  /** Server-side cap on any one statement: a hung query must not hang a request. */
  statementTimeoutMs?: number;
  /** How long opening a new connection may take (2 s when absent). */
  connectTimeoutMs?: number;
}

/**
 * A URL naming several hosts (`h1:5432,h2:5433/db?target_session_attrs=read-write`) gets a pool whose new
 * connections go to the host the locator found writable (store/primary-locator.ts); one host is used as it is.
 */
export function createPool(connectionString: string, options: PoolOptions = {}): pg.Pool {
  const timeoutMs = options.statementTimeoutMs ?? 3_000;
  const locator = locatorFor(connectionString);
  const pool = new pg.Pool({
    connectionString: locator ? locator.target.urlFor(locator.target.hosts[0]!) : connectionString,
    ...(locator ? { Client: locatedClientClass(locator) as unknown as new () => pg.ClientBase } : {}),
    max: options.max ?? 10,
    application_name: options.applicationName ?? "gatehouse",
    statement_timeout: timeoutMs,
    // Client-side bound as well: a server that stops answering (a blackholed connection) cannot enforce
    // its own statement_timeout. This is what ends a call to a hung Postgres (the breaker does not time
    // Postgres calls out, see faults/breaker.ts).
    query_timeout: timeoutMs + 1_000,
    // Waiting longer for a connection than a breaker allows for the whole call would be pointless.
    connectionTimeoutMillis: options.connectTimeoutMs ?? 2_000,
    idleTimeoutMillis: 30_000,
  });
  // An idle client that loses its connection emits 'error' on the pool; without a listener that
  // would crash the process. The next checkout simply gets a fresh connection.
  pool.on("error", () => {});
  return pool;
}

/**
 * Creates the database named in `connectionString` when it does not exist yet, so a newcomer's
 * `npm start` works against a fresh server. Needs CREATEDB on the maintenance database `postgres`.
 * With several hosts, on the one the locator finds writable now.
 */
export async function ensureDatabaseExists(databaseUrl: string): Promise<boolean> {
  const connectionString = await locatedUrl(databaseUrl);
  const probe = new pg.Client({ connectionString });
  try {
    await probe.connect();
    return false;
  } catch (err) {
    if ((err as { code?: string }).code !== "3D000") throw err;
  } finally {
    await probe.end().catch(() => {});
  }
  const url = new URL(connectionString);
  const name = decodeURIComponent(url.pathname.replace(/^\//, ""));
  url.pathname = "/postgres";
  const admin = new pg.Client({ connectionString: url.toString() });
  await admin.connect();
  try {
    // DDL takes no bind parameters; the name is quoted by the driver's identifier escaping.
    await admin.query(`CREATE DATABASE ${admin.escapeIdentifier(name)}`);
  } catch (err) {
    if ((err as { code?: string }).code !== "42P04") throw err; // created by a replica starting alongside
  } finally {
    await admin.end();
  }
  return true;
}

/** Text Postgres reads as a uuid (any version): whether a lookup may compare it with a uuid column. */
export function isUuid(text: string): boolean {
  return UUID_TEXT.test(text);
}

const UUID_TEXT = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** Readiness: does Postgres answer at all (outside the breaker: the probe must see the truth). */
export async function pingDatabase(pool: pg.Pool): Promise<void> {
  await pool.query("SELECT 1");
}

/** Postgres refused a row for a unique constraint (23505): `constraint` names which, when it matters. */
export function isUniqueViolation(err: unknown, constraint?: string): boolean {
  const e = err as { code?: string; constraint?: string };
  return e.code === "23505" && (constraint === undefined || e.constraint === constraint);
}

/**
 * One transaction on a connection of `pool`, for the command-line tools (the replicas use Database.transaction, with
 * its retries and its COMMIT resolution): committed when `work` resolves, rolled back when it throws.
 */
export async function inTransaction<T>(pool: pg.Pool, work: (tx: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  try {
    await client.query("BEGIN");
    const result = await work(client);
    await client.query("COMMIT");
    return result;
  } catch (err) {
    await client.query("ROLLBACK").catch(() => {});
    throw err;
  } finally {
    client.release();
  }
}
