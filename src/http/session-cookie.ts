import type { IncomingHttpHeaders } from "node:http";
import { parseCookie, stringifySetCookie } from "cookie";

/** The admin UI's session cookie (docs/admin-ui.md). */
export const SESSION_COOKIE = "gatehouse_session";

export function sessionTokenOf(headers: IncomingHttpHeaders): string | undefined {
  if (!headers.cookie) return undefined;
  const token = parseCookie(headers.cookie)[SESSION_COOKIE];
  return token ? token : undefined;
}

/**
 * HttpOnly (no script reads it), SameSite=Strict (no other site's page sends it), Path=/ (the UI calls the admin
 * API), Secure when the page came over TLS (directly, or per the proxy's X-Forwarded-Proto).
 */
export function sessionSetCookie(token: string, maxAgeSeconds: number, secure: boolean): string {
  return stringifySetCookie(SESSION_COOKIE, token, { httpOnly: true, sameSite: "strict", path: "/", maxAge: maxAgeSeconds, secure });
}

export function sessionClearCookie(secure: boolean): string {
  return stringifySetCookie(SESSION_COOKIE, "", { httpOnly: true, sameSite: "strict", path: "/", maxAge: 0, secure });
}
