import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import express, { type Request, Router } from "express";
import type { LoginAttempt, LoginThrottle } from "../auth/login-throttle.js";
import type { UiSessions } from "../auth/ui-sessions.js";
import { AuthenticationError } from "../errors/errors.js";
import { uiDir } from "../paths.js";
import { type CallerAuth, requireMasterKey } from "./auth-middleware.js";
import type { ClientAddress } from "./client-address.js";
import { sessionClearCookie, sessionSetCookie, sessionTokenOf } from "./session-cookie.js";

export interface UiDeps {
  sessions: UiSessions;
  auth: CallerAuth;
  sessionTtlMs: number;
  replicaId: string;
  /** The cluster page's data (upkeep/replica-heartbeat.ts). */
  cluster: () => Promise<unknown>;
  /** Wrong master keys per client address, for the whole cluster. */
  loginThrottle: LoginThrottle;
  /** Which client a request comes from (the connection, or X-Forwarded-For from a trusted proxy). */
  clientAddress: ClientAddress;
}

/** The browser modules the UI imports by bare name, served from this installation's own packages (no CDN). */
const VENDOR = new Map([
  ["preact.mjs", fileURLToPath(import.meta.resolve("preact"))],
  ["hooks.mjs", fileURLToPath(import.meta.resolve("preact/hooks"))],
  ["htm.mjs", fileURLToPath(import.meta.resolve("htm"))],
]);

/**
 * The admin UI (docs/admin-ui.md): a page of Preact modules under /ui/, and its own small API under /ui/api/
 * (log in, log out, the session's CSRF token, the cluster). Everything else the UI does, it does through the
 * admin API itself, with its session cookie in place of the master key.
 */
export function uiRoutes(deps: UiDeps): Router {
  const router = Router();
  const page = indexPage();
  router.use("/ui", (_req, res, next) => {
    res.setHeader("Content-Security-Policy", page.csp);
    res.setHeader("X-Content-Type-Options", "nosniff");
    res.setHeader("Referrer-Policy", "no-referrer");
    res.setHeader("X-Frame-Options", "DENY");
    next();
  });
  // Express matches "/ui" and "/ui/" alike; the page's relative links want the slash.
  router.get("/ui", (req, res) => {
    if (!req.originalUrl.startsWith("/ui/")) return res.redirect(301, "/ui/");
    res.setHeader("Cache-Control", "no-store");
    res.type("html").send(page.html);
  });
  router.get("/ui/vendor/:file", (req, res, next) => {
    // A Map, not an object: "__proto__" or "constructor" must not name anything.
    const file = VENDOR.get(req.params.file);
    if (!file) return next();
    res.sendFile(file, { headers: { "Content-Type": "text/javascript; charset=utf-8", "Cache-Control": "no-cache" } });
  });
  router.use("/ui/app", express.static(uiDir, { index: false, fallthrough: true, setHeaders: (res) => res.setHeader("Cache-Control", "no-cache") }));

  router.use("/ui/api", (_req, res, next) => {
    res.setHeader("Cache-Control", "no-store");
    next();
  });
  // Counted before the body is read: a client past its limit costs no parsing and gets its 429 whatever it sends.
  router.post("/ui/api/login", async (req, res, next) => {
    res.locals.loginAttempt = await deps.loginThrottle.attempt(deps.clientAddress.of(req));
    next();
  });
  router.post("/ui/api/login", express.json({ limit: 16_384 }), async (req, res) => {
    const attempt = res.locals.loginAttempt as LoginAttempt;
    let login: Awaited<ReturnType<UiSessions["login"]>>;
    try {
      login = await deps.sessions.login((req.body as { master_key?: unknown } | undefined)?.master_key);
    } catch (err) {
      // Only a wrong (or missing) key stays counted: a failure of the gateway's own is no guess.
      if (!(err instanceof AuthenticationError)) await attempt.forgive();
      throw err;
    }
    await attempt.forgive();
    res.setHeader("Set-Cookie", sessionSetCookie(login.token, Math.floor(deps.sessionTtlMs / 1000), isTls(req)));
    res.json({ csrf_token: login.session.csrfToken, expires_at: login.session.expiresAt, replica_id: deps.replicaId });
  });
  router.get("/ui/api/session", async (req, res) => {
    const token = sessionTokenOf(req.headers);
    if (!token) throw new AuthenticationError("Not logged in.", { code: "no_session" });
    const session = await deps.sessions.check(token);
    res.json({ csrf_token: session.csrfToken, expires_at: session.expiresAt, replica_id: deps.replicaId });
  });
  router.post("/ui/api/logout", requireMasterKey(deps.auth), async (req, res) => {
    const token = sessionTokenOf(req.headers);
    if (token) await deps.sessions.logout(token);
    res.setHeader("Set-Cookie", sessionClearCookie(isTls(req)));
    res.json({ logged_out: true });
  });
  router.get("/ui/api/cluster", requireMasterKey(deps.auth), async (_req, res) => {
    res.json(await deps.cluster());
  });
  return router;
}

function isTls(req: Request): boolean {
  return (req.socket as { encrypted?: boolean }).encrypted === true || req.headers["x-forwarded-proto"] === "https";
}

/**
 * index.html, and a Content-Security-Policy that allows only this origin's scripts plus the page's one inline
 * script, the import map, by its hash (an import map cannot be loaded from a file).
 */
function indexPage(): { html: string; csp: string } {
  const html = readFileSync(`${uiDir}/index.html`, "utf8");
  const importMap = /<script type="importmap">([\s\S]*?)<\/script>/.exec(html)?.[1];
  if (importMap === undefined) throw new Error("ui/index.html has no import map");
  const hash = createHash("sha256").update(importMap).digest("base64");
  const csp = [
    "default-src 'self'",
    `script-src 'self' 'sha256-${hash}'`,
    "style-src 'self'",
    "img-src 'self' data:",
    "connect-src 'self'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
  ].join("; ");
  return { html, csp };
}
