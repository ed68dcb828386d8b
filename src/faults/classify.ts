/**
 * The one place that decides what kind of failure a Postgres or Redis error is.
 *
 * - "connection": the link to the server is gone or refused. Retried; counts toward opening a breaker.
 * - "timeout": the server did not answer in time (client or server side). Retried; counts toward a breaker.
 * - "conflict": serialization failure or deadlock. The transaction is retried; says nothing about health.
 * - "permanent": constraint violations, bad SQL, bad input, anything else. Never retried.
 */
export type FailureKind = "connection" | "timeout" | "conflict" | "permanent";

const CONNECTION_MESSAGES = [
  /Connection terminated unexpectedly/i,
  /Client has encountered a connection error and is not queryable/i,
  /Client was closed and is not queryable/i,
  /Connection terminated/i,
  /connection (is )?closed/i,
  /\bClosed\b/,
  /Stream isn't writeable/i,
  /Reached the max retries per request limit/i,
  /timeout exceeded when trying to connect/i,
  /the database system is (starting up|shutting down)/i,
  /terminating connection/i,
];
const TIMEOUT_MESSAGES = [/Query read timeout/i, /Command timed out/i, /canceling statement due to statement timeout/i, /Timed out/i];
// 25006 read_only_sql_transaction: the connection reached a server that no longer takes writes (a primary demoted
// by a switchover, a standby behind a name that moved): like a lost link, another connection may reach the new
// primary, and nothing was written.
const CONNECTION_CODES = new Set(["ECONNRESET", "ECONNREFUSED", "EPIPE", "ENOTCONN", "EHOSTUNREACH", "ENETUNREACH", "EAI_AGAIN", "57P01", "57P02", "57P03", "25006"]);
const TIMEOUT_CODES = new Set(["ETIMEDOUT", "57014"]);
const CONFLICT_CODES = new Set(["40001", "40P01"]);

export function classifyFailure(err: unknown): FailureKind {
  if (!err || typeof err !== "object") return "permanent";
  const e = err as { code?: unknown; message?: unknown; name?: unknown; cause?: unknown };
  const code = typeof e.code === "string" ? e.code : undefined;
  if (code) {
    if (CONFLICT_CODES.has(code)) return "conflict";
    if (TIMEOUT_CODES.has(code)) return "timeout";
    if (CONNECTION_CODES.has(code) || code.startsWith("08")) return "connection";
    // Any other five-character SQLSTATE is the server answering: not a connectivity problem.
    if (/^[0-9A-Z]{5}$/.test(code)) return "permanent";
  }
  const message = typeof e.message === "string" ? e.message : "";
  if (TIMEOUT_MESSAGES.some((re) => re.test(message))) return "timeout";
  if (CONNECTION_MESSAGES.some((re) => re.test(message))) return "connection";
  if (e.name === "MaxRetriesPerRequestError") return "connection";
  if (e.cause && e.cause !== err) return classifyFailure(e.cause);
  return "permanent";
}

/** Evidence that the server is unhealthy: what opens a circuit breaker. */
export function countsAgainstHealth(err: unknown): boolean {
  const kind = classifyFailure(err);
  return kind === "connection" || kind === "timeout";
}
