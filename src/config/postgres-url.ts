/**
 * A database URL naming several servers, as libpq writes it for a primary and its standbys:
 * `postgres://u@h1:5432,h2:5433/db?target_session_attrs=read-write`. Reading it is configuration (settings
 * checks it at start); finding which host is writable now is store/primary-locator.ts.
 */

export type TargetSessionAttrs = "any" | "read-write" | "primary";

export interface PgHost {
  host: string;
  port: number;
}

export interface PostgresTarget {
  /** In the URL's order. */
  hosts: PgHost[];
  targetSessionAttrs: TargetSessionAttrs;
  /** The URL naming `host` alone (and `database` instead of its own, when given), without target_session_attrs. */
  urlFor(host: PgHost, database?: string): string;
}

/** A database URL that cannot be read; the message says what is wrong with it, never the password. */
export class PostgresUrlError extends Error {}

const DEFAULT_PORT = 5432;
const ACCEPTED: readonly string[] = ["any", "read-write", "primary"];
const LIBPQ_ONLY: readonly string[] = ["read-only", "standby", "prefer-standby"];

interface UrlParts {
  /** `postgres://` or `postgresql://` */
  scheme: string;
  /** `user:password@`, or "" */
  userinfo: string;
  hostlist: string;
  /** The path, query and fragment, from the `/` or `?` on. */
  rest: string;
}

function splitUrl(url: string): UrlParts | undefined {
  const m = /^(postgres(?:ql)?:\/\/)([^/?#]*)(.*)$/is.exec(url);
  if (!m) return undefined;
  const authority = m[2]!;
  const at = authority.lastIndexOf("@");
  return { scheme: m[1]!, userinfo: authority.slice(0, at + 1), hostlist: authority.slice(at + 1), rest: m[3]! };
}

/** Does the URL name more than one host (`h1:5432,h2:5433`)? Only then is a locator needed. */
export function isMultiHost(url: string): boolean {
  return splitUrl(url)?.hostlist.includes(",") ?? false;
}

/** Reads a libpq-style URL, one host or several. Throws PostgresUrlError on anything it cannot read. */
export function parsePostgresUrl(url: string): PostgresTarget {
  const parts = splitUrl(url);
  if (!parts) throw new PostgresUrlError("must start with postgres:// or postgresql://");
  const hosts = parts.hostlist.split(",").map((entry) => parseHostEntry(entry));
  const hash = parts.rest.indexOf("#");
  const beforeFragment = hash >= 0 ? parts.rest.slice(0, hash) : parts.rest;
  const q = beforeFragment.indexOf("?");
  const path = q >= 0 ? beforeFragment.slice(0, q) : beforeFragment;
  const kept: string[] = [];
  let attrs = "any";
  for (const param of (q >= 0 ? beforeFragment.slice(q + 1) : "").split("&")) {
    if (param === "") continue;
    const eq = param.indexOf("=");
    if (decodeParam(eq >= 0 ? param.slice(0, eq) : param) === "target_session_attrs") attrs = decodeParam(eq >= 0 ? param.slice(eq + 1) : "");
    else kept.push(param);
  }
  if (LIBPQ_ONLY.includes(attrs)) {
    throw new PostgresUrlError(`target_session_attrs=${attrs} would send Gatehouse's writes to a standby; use read-write, primary or any`);
  }
  if (!ACCEPTED.includes(attrs)) throw new PostgresUrlError(`target_session_attrs=${JSON.stringify(attrs)} is not one of read-write, primary, any`);
  const query = kept.length > 0 ? `?${kept.join("&")}` : "";
  return {
    hosts,
    targetSessionAttrs: attrs as TargetSessionAttrs,
    urlFor(host, database) {
      const name = host.host.includes(":") ? `[${host.host}]` : encodeURIComponent(host.host);
      return `${parts.scheme}${parts.userinfo}${name}:${host.port}${database === undefined ? path : `/${encodeURIComponent(database)}`}${query}`;
    },
  };
}

function parseHostEntry(entry: string): PgHost {
  const shown = JSON.stringify(entry);
  if (!entry.startsWith("[") && entry.split(":").length > 2) throw new PostgresUrlError(`host ${shown}: write an IPv6 address in brackets, e.g. [::1]:5432`);
  const m = /^\[([^\]]*)\](?::(.*))?$/.exec(entry) ?? /^([^:[\]]*)(?::(.*))?$/.exec(entry);
  if (!m) throw new PostgresUrlError(`host ${shown} is not host or host:port (e.g. db1:5432)`);
  let host: string;
  try {
    host = decodeURIComponent(m[1]!);
  } catch {
    throw new PostgresUrlError(`host ${shown} has a malformed percent-encoding`);
  }
  if (host === "") throw new PostgresUrlError(entry === "" ? "an empty host in the host list (two commas, or one at an end?)" : `host ${shown} has no host name`);
  const portText = m[2];
  if (portText === undefined || portText === "") return { host, port: DEFAULT_PORT };
  const port = Number(portText);
  if (!/^\d+$/.test(portText) || port < 1 || port > 65535) throw new PostgresUrlError(`host ${shown}: the port must be a number from 1 to 65535`);
  return { host, port };
}

function decodeParam(text: string): string {
  try {
    return decodeURIComponent(text.replace(/\+/g, " "));
  } catch {
    return text;
  }
}
