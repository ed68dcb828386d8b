import { existsSync, mkdirSync, mkdtempSync } from "node:fs";
import { type IncomingMessage, request } from "node:http";
import { tmpdir } from "node:os";
import path from "node:path";
import { type Browser, type BrowserContext, chromium, type Page } from "playwright-core";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { loadOrCreateMasterKey } from "../src/config/master-key-file.js";
import { type ConfigFile, settingLeaves } from "../src/config/settings.js";
import { ClientAddress } from "../src/http/client-address.js";
import { pruneSilentReplicas } from "../src/store/replica-store.js";
import { generateKey, startCluster, type Cluster, type Replica } from "./helpers/cluster.js";
import { api, chatBody, openAIError } from "./helpers/http.js";
import { costOf, INPUT_COST, OUTPUT_COST, pricedModel } from "./helpers/prices.js";
import { waitFor } from "./helpers/services.js";

/**
 * The admin UI on two real replica processes sharing Postgres and Redis: sessions (cookie, CSRF, master key
 * only, logout and master-key rotation end them everywhere), then the pages driven in headless Chromium — the
 * Debian package, pointed at by CHROMIUM_PATH or found at /usr/bin/chromium; nothing is downloaded.
 *
 * Screenshots of every page go to UI_SCREENSHOTS_DIR (docs/ui/ when refreshed with `npm run ui:screenshots`),
 * or to a temporary directory.
 */
const config: ConfigFile = {
  model_list: [
    pricedModel("priced"),
    { model_name: "mock-gpt", litellm_params: { model: "mock/mock-gpt" } },
    // A model of two deployments: the first tried (order 1) is one nothing listens for, so a request's first attempt
    // fails and, with allowed_fails 0, starts its cooldown; the other serves. Not health-checked: only the request
    // may start that cooldown.
    {
      model_name: "pair",
      litellm_params: { model: "openai/unreachable", api_base: "http://127.0.0.1:9/v1", api_key: "k", order: 1 },
      model_info: { disable_background_health_check: true },
    },
    { model_name: "pair", litellm_params: { model: "mock/pair-ok", order: 2 } },
  ],
  router_settings: { allowed_fails: 0, cooldown_time: 60 },
  // One round of checks as the cluster starts (the next comes long after the tests end): the routing table's health.
  general_settings: { background_health_checks: true, health_check_interval: 300 },
  gatehouse_settings: { spend_logs: { flush_interval_ms: 100 }, admin_ui: { heartbeat_interval_ms: 300 } },
};

const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
const haveChromium = existsSync(CHROMIUM);
if (!haveChromium && process.env.GATEHOUSE_REQUIRE_CHROMIUM) throw new Error(`Chromium is required here (GATEHOUSE_REQUIRE_CHROMIUM) but ${CHROMIUM} does not exist`);
const SHOTS = process.env.UI_SCREENSHOTS_DIR ? path.resolve(process.env.UI_SCREENSHOTS_DIR) : path.join(tmpdir(), `gatehouse-ui-${process.pid}`);

/**
 * A condition on the page, polled until it holds, for up to 15 s: the browser, two replicas and Postgres share two
 * cores with the rest of the suite. (vitest's own default is 1 s; Playwright's actions never give up by default.)
 */
const eventually = <T>(condition: () => Promise<T> | T) => expect.poll(condition, { timeout: 15_000, interval: 50 });

/** A GET sent with its path exactly as given (fetch would resolve "..", and so never send it). */
function rawGet(base: string, rawPath: string): Promise<{ status: number; body: string }> {
  const { hostname, port } = new URL(base);
  return new Promise((resolve, reject) => {
    const req = request({ host: hostname, port, path: rawPath, method: "GET" }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (c) => (body += c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on("error", reject);
    req.end();
  });
}

/**
 * The sessions' cluster: its replicas count wrong logins per client with a 3 s window (the tests wait one out), and
 * trust one proxy, 127.0.0.2 (a loopback address the tests connect from to play it), to name the client.
 */
const PROXY = "127.0.0.2";
const LOGIN_WINDOW_MS = 3_000;
const sessionsConfig: ConfigFile = {
  ...config,
  gatehouse_settings: {
    ...config.gatehouse_settings,
    admin_ui: { ...config.gatehouse_settings!.admin_ui, login_failure_window_ms: LOGIN_WINDOW_MS, trusted_proxies: [PROXY] },
  },
};

/**
 * POST /ui/api/login with `masterKey`, sent from the local address `from` (127.0.0.1 unless given) with an
 * X-Forwarded-For header when given: a client behind the trusted proxy, or a client claiming to be someone else.
 */
function loginFrom(
  on: Replica,
  masterKey: string,
  { from, forwardedFor }: { from?: string; forwardedFor?: string } = {},
): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: any }> {
  const body = JSON.stringify({ master_key: masterKey });
  const headers: Record<string, string> = { "content-type": "application/json", "content-length": String(Buffer.byteLength(body)) };
  if (forwardedFor !== undefined) headers["x-forwarded-for"] = forwardedFor;
  return new Promise((resolve, reject) => {
    const req = request({ host: "127.0.0.1", port: on.port, path: "/ui/api/login", method: "POST", headers, ...(from ? { localAddress: from } : {}) }, (res) => {
      let text = "";
      res.setEncoding("utf8");
      res.on("data", (c) => (text += c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: JSON.parse(text) }));
    });
    req.on("error", reject);
    req.end(body);
  });
}

/** Logs in with the master key through the API, as a browser would; the cookie and the CSRF token. */
async function login(on: Replica, masterKey: string): Promise<{ cookie: string; csrf: string }> {
  const res = await api(on.url, "/ui/api/login", { body: { master_key: masterKey } });
  expect(res.status).toBe(200);
  const setCookie = res.headers.get("set-cookie")!;
  return { cookie: setCookie.split(";")[0]!, csrf: res.body.csrf_token };
}

describe("admin UI sessions on two replicas", () => {
  let cluster: Cluster;
  let A: Replica, B: Replica;
  beforeAll(async () => {
    cluster = await startCluster({ size: 2, config: sessionsConfig });
    [A, B] = cluster.replicas as [Replica, Replica];
  }, 60_000);
  afterAll(async () => {
    await cluster?.close();
  });

  it("only the master key logs in; the cookie is HttpOnly and SameSite=Strict; the session works on the other replica", async () => {
    const key = await generateKey(A);
    const asVirtualKey = await api(A.url, "/ui/api/login", { body: { master_key: key.key } });
    expect(asVirtualKey.status).toBe(401);
    expect(openAIError(asVirtualKey.body).code).toBe("invalid_master_key");
    expect(asVirtualKey.headers.get("set-cookie")).toBeNull();
    expect((await api(A.url, "/ui/api/login", { body: {} })).status).toBe(401);
    expect((await api(A.url, "/ui/api/login", { rawBody: "master_key=x", headers: { "content-type": "application/x-www-form-urlencoded" } })).status).toBe(401);

    const res = await api(A.url, "/ui/api/login", { body: { master_key: cluster.masterKey } });
    const setCookie = res.headers.get("set-cookie")!;
    expect(setCookie).toMatch(/^gatehouse_session=[\w-]{43};/);
    expect(setCookie).toContain("HttpOnly");
    expect(setCookie).toContain("SameSite=Strict");
    expect(setCookie).toContain("Path=/");
    // Only the token's hash is stored.
    const token = setCookie.split(";")[0]!.split("=")[1]!;
    const { rows } = await cluster.pool.query("SELECT session_hash FROM gh_ui_sessions");
    expect(rows.map((r) => r.session_hash)).not.toContain(token);
    expect(rows.length).toBe(1);

    const cookie = setCookie.split(";")[0]!;
    const onB = await api(B.url, "/key/list", { headers: { cookie } });
    expect(onB.status).toBe(200);
    expect((await api(B.url, "/ui/api/session", { headers: { cookie } })).body.csrf_token).toBe(res.body.csrf_token);
  });

  it("a change made with a session needs its CSRF token; nothing is applied without it", async () => {
    const { cookie, csrf } = await login(A, cluster.masterKey);
    // Its last character changed to another (a fixed replacement would equal the token one time in 64).
    const wrongToken = `${csrf.slice(0, -1)}${csrf.endsWith("x") ? "y" : "x"}`;
    const without = await api(B.url, "/key/generate", { body: { key_alias: "csrf-less" }, headers: { cookie } });
    expect(without.status).toBe(403);
    expect(openAIError(without.body).code).toBe("csrf_token_mismatch");
    const wrong = await api(B.url, "/key/generate", { body: { key_alias: "csrf-less" }, headers: { cookie, "x-csrf-token": wrongToken } });
    expect(wrong.status).toBe(403);
    expect((await cluster.pool.query("SELECT 1 FROM gh_keys WHERE key_alias = 'csrf-less'")).rowCount).toBe(0);
    const withToken = await api(B.url, "/key/generate", { body: { key_alias: "csrf-ok" }, headers: { cookie, "x-csrf-token": csrf } });
    expect(withToken.status).toBe(200);
    // A virtual key in a cookie's place, or a made-up cookie, is no session.
    expect((await api(A.url, "/key/list", { headers: { cookie: `gatehouse_session=${withToken.body.key}` } })).status).toBe(401);
  });

  it("logging out on one replica ends the session on the other at once", async () => {
    const { cookie, csrf } = await login(A, cluster.masterKey);
    expect((await api(B.url, "/key/list", { headers: { cookie } })).status).toBe(200);
    const out = await api(B.url, "/ui/api/logout", { method: "POST", headers: { cookie, "x-csrf-token": csrf } });
    expect(out.status).toBe(200);
    expect(out.headers.get("set-cookie")).toMatch(/^gatehouse_session=;.*Max-Age=0/);
    const after = await api(A.url, "/key/list", { headers: { cookie } });
    expect(after.status).toBe(401);
    expect(openAIError(after.body).code).toBe("session_expired");
  });

  it("a replica started with a new master key ends every session made with the old one, on every replica", async () => {
    const { cookie } = await login(A, cluster.masterKey);
    const newKey = `${cluster.masterKey}-rotated`;
    const C = await cluster.addReplica("C", { GATEHOUSE_MASTER_KEY: newKey });
    try {
      expect((await api(C.url, "/key/list", { headers: { cookie } })).status).toBe(401);
      // C removed the old key's sessions as it started: A (still on the old key, mid-rollout) refuses it too.
      expect((await api(A.url, "/key/list", { headers: { cookie } })).status).toBe(401);
      const fresh = await login(C, newKey);
      expect((await api(C.url, "/key/list", { headers: { cookie: fresh.cookie } })).status).toBe(200);
    } finally {
      await C.stop();
    }
  });

  it("the registry lists every live replica current; a silent one is not alive, and is forgotten 10 minutes after its last heartbeat", async () => {
    const current = (r: any) => r.alive && r.behind_events === 0 && r.listener === "listening";
    await waitFor(async () => (await A.admin("/ui/api/cluster")).body.replicas.filter(current).length === 2, { what: "both replicas to beat, current" });
    const insert = "INSERT INTO gh_replicas VALUES ($1, 'gone-host', 1, '0', now() - $2::interval, now() - $2::interval, 0, '{}')";
    await cluster.pool.query(insert, ["silent-minutes", "9 minutes"]);
    await cluster.pool.query(insert, ["silent-eleven", "11 minutes"]);
    const answer = (await B.admin("/ui/api/cluster")).body;
    expect(answer.forget_after_ms).toBe(600_000);
    const listed = answer.replicas;
    expect(listed.find((r: any) => r.replica_id === "silent-minutes")).toMatchObject({ alive: false });
    for (const r of [A, B]) expect(listed.find((x: any) => x.replica_id === r.replicaId)).toMatchObject({ alive: true });
    // Past 10 minutes, no longer listed, whether or not the sweeper has run; and the sweeper deletes the row.
    expect(listed.map((r: any) => r.replica_id)).not.toContain("silent-eleven");
    expect(await pruneSilentReplicas(cluster.pool)).toBe(1);
    const { rows } = await cluster.pool.query("SELECT replica_id FROM gh_replicas WHERE replica_id LIKE 'silent-%'");
    expect(rows.map((r) => r.replica_id)).toEqual(["silent-minutes"]);
    await cluster.pool.query("DELETE FROM gh_replicas WHERE replica_id = 'silent-minutes'");
  });

  it("the UI is served with every asset local and a strict Content-Security-Policy", async () => {
    const page = await fetch(`${A.url}/ui/`);
    expect(page.status).toBe(200);
    const csp = page.headers.get("content-security-policy")!;
    expect(csp).toContain("default-src 'self'");
    expect(csp).toMatch(/script-src 'self' 'sha256-[\w+/=]+'/);
    expect(csp).toContain("frame-ancestors 'none'");
    const html = await page.text();
    // No address outside this gateway anywhere in the page.
    expect(html).not.toMatch(/https?:\/\//);
    for (const asset of ["/ui/vendor/preact.mjs", "/ui/vendor/hooks.mjs", "/ui/vendor/htm.mjs", "/ui/app/app.js", "/ui/app/style.css"]) {
      expect((await fetch(`${A.url}${asset}`)).status, asset).toBe(200);
    }
    expect((await fetch(`${A.url}/ui`, { redirect: "manual" })).headers.get("location")).toBe("/ui/");
    // Only the files named: nothing else of the installation, by an encoded "..", or by an object's own names.
    for (const p of ["/ui/app/..%2fpackage.json", "/ui/app/%2e%2e/package.json", "/ui/vendor/..%2f..%2fpackage.json", "/ui/vendor/__proto__", "/ui/vendor/constructor"]) {
      const res = await rawGet(A.url, p);
      expect(res.status, p).toBeGreaterThanOrEqual(400);
      expect(res.status, p).toBeLessThan(500);
      expect(res.body, p).not.toContain('"dependencies"');
    }
  });

  it("searches keys by alias prefix (LIKE's wildcards taken literally), key id, user id and team id", async () => {
    const [pct, x, owned] = [
      await generateKey(A, { key_alias: "pct%key" }),
      await generateKey(A, { key_alias: "pctXkey" }),
      await generateKey(A, { key_alias: "owned", user_id: "search-user", team_id: null }),
    ];
    const search = async (text: string) =>
      ((await A.admin(`/key/list?return_full_object=true&size=100&search=${encodeURIComponent(text)}`)).body.keys as Array<{ key_id: string }>).map((k) => k.key_id).sort();
    expect(await search("pct%")).toEqual([pct.key_id]);
    expect(await search("pct")).toEqual([pct.key_id, x.key_id].sort());
    expect(await search("pct_key")).toEqual([]);
    expect(await search(x.key_id)).toEqual([x.key_id]);
    expect(await search("search-user")).toEqual([owned.key_id]);
    expect(await search("nothing-like-this")).toEqual([]);
  });

  it("wrong master keys from one client are refused on every replica past 10 a window: 429 with Retry-After, the right key too, until the window ends", async () => {
    // A client behind the trusted proxy: X-Forwarded-For names it.
    const client = { from: PROXY, forwardedFor: "198.51.100.20, 203.0.113.7" };
    // The window starts at the first guess counted, after this.
    const firstGuessAt = Date.now();
    for (let i = 0; i < 10; i++) {
      const res = await loginFrom(i % 2 === 0 ? A : B, "sk-wrong-guess", client);
      expect(res.status, `guess ${i + 1}`).toBe(401);
      expect(openAIError(res.body).code).toBe("invalid_master_key");
    }
    for (const r of [A, B]) {
      const refused = await loginFrom(r, "sk-wrong-guess", client);
      expect(refused.status, `11th guess on ${r.name}`).toBe(429);
      const error = openAIError(refused.body);
      expect(error).toMatchObject({ type: "rate_limit_error", code: "too_many_login_attempts", param: null });
      // It names the address it counts (what an operator needs to see a proxy missing from trusted_proxies).
      expect(error.message).toContain("203.0.113.7");
      const retryAfter = Number(refused.headers["retry-after"]);
      expect(retryAfter).toBeGreaterThanOrEqual(1);
      expect(retryAfter).toBeLessThanOrEqual(LOGIN_WINDOW_MS / 1000);
    }
    // The right key too: a 200 among 429s would give a right guess away.
    const right = await loginFrom(A, cluster.masterKey, client);
    expect(right.status).toBe(429);
    expect(right.headers["set-cookie"]).toBeUndefined();
    // Another client behind the same proxy is not held back by it.
    expect((await loginFrom(B, cluster.masterKey, { from: PROXY, forwardedFor: "203.0.113.8" })).status).toBe(200);
    // The right key logs in once the window ends, not before (and the refused attempts did not extend it).
    const loggedInAt = await waitFor(async () => ((await loginFrom(B, cluster.masterKey, client)).status === 200 ? Date.now() : false), {
      timeoutMs: LOGIN_WINDOW_MS + 5_000,
      intervalMs: 100,
      what: "the window to end",
    });
    expect(loggedInAt - firstGuessAt).toBeGreaterThanOrEqual(LOGIN_WINDOW_MS);
  });

  it("guesses sent at once are counted before they are checked: of 25 at once, 10 are answered 401 and the rest 429", async () => {
    const client = { from: PROXY, forwardedFor: "203.0.113.9" };
    const statuses = await Promise.all(Array.from({ length: 25 }, (_, i) => loginFrom(i % 2 === 0 ? A : B, "sk-wrong-guess", client).then((r) => r.status)));
    expect(statuses.filter((s) => s === 401)).toHaveLength(10);
    expect(statuses.filter((s) => s === 429)).toHaveLength(15);
  });

  it("with Redis out of reach a replica counts on its own, with the same limit", async () => {
    const C = await cluster.addReplica("C", { REDIS_URL: "redis://127.0.0.1:1" });
    try {
      const client = { from: PROXY, forwardedFor: "203.0.113.10" };
      for (let i = 0; i < 10; i++) expect((await loginFrom(C, "sk-wrong-guess", client)).status, `guess ${i + 1} on C`).toBe(401);
      expect((await loginFrom(C, "sk-wrong-guess", client)).status).toBe(429);
      // C's count was its own: the replicas that reach Redis never saw those guesses.
      expect((await loginFrom(A, cluster.masterKey, client)).status).toBe(200);
    } finally {
      await C.stop();
    }
  });

  it("X-Forwarded-For from a client that is not a trusted proxy is ignored: its guesses count against its own address", async () => {
    // From 127.0.0.1, not a trusted proxy: each guess claims another address, and all of them count as 127.0.0.1's.
    for (let i = 0; i < 10; i++) expect((await loginFrom(A, "sk-wrong-guess", { forwardedFor: `192.0.2.${i}` })).status).toBe(401);
    const refused = await loginFrom(B, "sk-wrong-guess", { forwardedFor: "192.0.2.200" });
    expect(refused.status).toBe(429);
    expect(openAIError(refused.body).message).toContain("127.0.0.1");
    // The proxy itself, connecting with no header, is a client like any other: its own count, not 127.0.0.1's.
    expect((await loginFrom(A, cluster.masterKey, { from: PROXY })).status).toBe(200);
    // Leaves 127.0.0.1 able to log in again for whatever runs next.
    await waitFor(async () => (await loginFrom(A, cluster.masterKey)).status === 200, { timeoutMs: LOGIN_WINDOW_MS + 5_000, intervalMs: 100, what: "127.0.0.1's window to end" });
  });
});

describe("the client a UI login counts against", () => {
  const req = (remoteAddress: string, forwardedFor?: string) =>
    ({ socket: { remoteAddress }, headers: forwardedFor === undefined ? {} : { "x-forwarded-for": forwardedFor } }) as unknown as IncomingMessage;

  it("is the connection's address unless a trusted proxy names another; an IPv6 client counts by its /64", () => {
    const noProxies = new ClientAddress([]);
    expect(noProxies.of(req("203.0.113.5", "198.51.100.1"))).toBe("203.0.113.5");
    expect(noProxies.of(req("::ffff:203.0.113.5"))).toBe("203.0.113.5");
    expect(noProxies.of(req("2001:db8:1:2:3:4:5:6"))).toBe("2001:db8:1:2::/64");
    expect(noProxies.of(req("2001:0db8::1"))).toBe("2001:db8:0:0::/64");
    const proxies = new ClientAddress(["10.0.0.0/8", "192.0.2.1"]);
    // Back through two trusted proxies to the first address that is not one.
    expect(proxies.of(req("10.1.2.3", "198.51.100.7, 192.0.2.1"))).toBe("198.51.100.7");
    // What the client itself wrote in the header (the left entry) is never reached past an untrusted address.
    expect(proxies.of(req("10.1.2.3", "192.0.2.1, 198.51.100.7"))).toBe("198.51.100.7");
    expect(proxies.of(req("10.1.2.3", "unknown"))).toBe("10.1.2.3");
    expect(proxies.of(req("10.1.2.3"))).toBe("10.1.2.3");
    expect(proxies.of(req("10.1.2.3", "[2001:db8:aa:bb::1]:443"))).toBe("2001:db8:aa:bb::/64");
    // Not a proxy: its header is ignored.
    expect(proxies.of(req("198.51.100.9", "198.51.100.1"))).toBe("198.51.100.9");
  });
});

describe.skipIf(!haveChromium)("admin UI in a real browser, on two replicas", () => {
  let cluster: Cluster;
  let A: Replica, B: Replica;
  let browser: Browser;
  let context: BrowserContext;
  let page: Page;
  /** Errors thrown in the pages: each test ends by finding none. */
  const pageErrors: string[] = [];
  /** The key generated in the UI (its one-time display), and the new one after the UI regenerated it. */
  let first: string;
  let second: string;
  /** That key's id: its page's address. */
  let keyId: string;

  const shot = (name: string) => page.screenshot({ path: path.join(SHOTS, `${name}.png`), fullPage: true });
  const go = async (p: Page, section: string) => {
    await p.getByRole("link", { name: section, exact: true }).click();
    await p.getByRole("heading", { level: 1, name: section }).waitFor();
  };
  /** Everything a page shows or holds: its text, and the value of every field (a DOM property, not in its HTML). */
  const onScreen = (p: Page) =>
    p.evaluate(() => [document.body.textContent ?? "", ...[...document.querySelectorAll("input, textarea, select")].map((el) => (el as HTMLInputElement).value)].join("\n"));
  /** Every form control has a label a screen reader reads out (one, by a unique id), and every button a name. */
  const expectLabelled = async (p: Page) => {
    const unlabelled = await p.evaluate(() =>
      [...document.querySelectorAll("input, select, button")]
        .filter((el) => {
          const e = el as HTMLInputElement;
          if (e.type === "hidden") return false;
          if (el.tagName === "BUTTON") return (el.textContent ?? "").trim() === "" && !el.getAttribute("aria-label");
          return (e.labels?.length ?? 0) === 0 && !el.getAttribute("aria-label");
        })
        .map((el) => el.outerHTML.slice(0, 120)),
    );
    expect(unlabelled).toEqual([]);
    // A label points at one id: two fields with the same id would leave one of them unnamed.
    const ids = await p.evaluate(() => [...document.querySelectorAll("[id]")].map((el) => el.id));
    expect(ids.filter((id, i) => ids.indexOf(id) !== i)).toEqual([]);
  };

  beforeAll(async () => {
    mkdirSync(SHOTS, { recursive: true });
    cluster = await startCluster({ size: 2, config });
    [A, B] = cluster.replicas as [Replica, Replica];
    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ["--no-sandbox", "--disable-dev-shm-usage"] });
    context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    // No action or wait may hang a test until its own timeout, which would hide what it waited for.
    context.setDefaultTimeout(15_000);
    page = await context.newPage();
    context.on("weberror", (e) => pageErrors.push(String(e.error())));
  }, 60_000);
  afterEach(() => {
    expect(pageErrors).toEqual([]);
  });
  afterAll(async () => {
    await browser?.close();
    await cluster?.close();
  });

  it("logs in with the master key, by keyboard alone; the page says where a generated master key is", async () => {
    await page.goto(`${A.url}/ui/`);
    const field = page.getByLabel("Master key");
    await field.waitFor();
    await expectLabelled(page);
    // The file the gateway writes a generated key to, in its default data directory, as the code names them.
    const file = path.basename(loadOrCreateMasterKey(mkdtempSync(path.join(tmpdir(), "gh-key-name-"))).file);
    const dataDir = settingLeaves().find((l) => l.path.join(".") === "data_dir")!.default as string;
    await page.getByText("Where is the master key?").click();
    const where = await page.locator(".where-key").textContent();
    for (const text of ["GATEHOUSE_MASTER_KEY", "general_settings.master_key", "GATEHOUSE_DATA_DIR", `${dataDir}/${file}`]) expect(where).toContain(text);
    await shot("login");
    await field.fill("sk-not-the-master-key");
    await field.press("Enter");
    await eventually(() => page.getByRole("alert").textContent()).toContain("not the master key");
    await field.fill(cluster.masterKey);
    await field.press("Enter");
    await page.getByRole("heading", { level: 1, name: "Keys" }).waitFor();
    const [cookie] = await context.cookies();
    expect(cookie).toMatchObject({ name: "gatehouse_session", httpOnly: true, sameSite: "Strict" });
  });

  it("generates a key, shows it once with a copy button, and the key works through the API", async () => {
    await page.getByText("Generate a key").click();
    await page.getByLabel("Alias").fill("ui-key");
    await page.getByLabel("Models").fill("priced, mock-gpt");
    await page.getByRole("button", { name: "Generate key" }).click();
    const shown = page.locator(".one-time-key");
    await shown.waitFor();
    first = await shown.inputValue();
    expect(first).toMatch(/^sk-/);
    await eventually(() => page.getByRole("button", { name: "Copy" }).isVisible()).toBe(true);
    await shot("keys-generated");
    expect(await B.chat(first, "priced")).toBe(200);
    await page.getByRole("button", { name: /hide the key/ }).click();
    await eventually(() => shown.count()).toBe(0);
    expect(await onScreen(page)).not.toContain(first);
    await eventually(() => page.getByRole("link", { name: "ui-key" }).isVisible()).toBe(true);
  });

  it("a key has an address of its own: the link opens it, and so does a reload", async () => {
    keyId = (await B.admin(`/key/info?key=${encodeURIComponent(first)}`)).body.info.key_id;
    await page.getByRole("link", { name: "ui-key" }).click();
    await page.getByRole("heading", { level: 2, name: "Key ui-key" }).waitFor();
    expect(new URL(page.url()).hash).toBe(`#/keys/${keyId}`);
    await page.reload();
    await page.getByRole("heading", { level: 2, name: "Key ui-key" }).waitFor();
    await eventually(() => page.locator(".detail dl").textContent()).toContain(keyId);
    // Closing it goes back to the list's address.
    await page.getByRole("button", { name: "Close" }).click();
    await eventually(() => new URL(page.url()).hash).toBe("#/keys");
    expect(await page.locator(".detail").count()).toBe(0);
    await page.getByRole("link", { name: "ui-key" }).click();
    await page.getByRole("heading", { level: 2, name: "Key ui-key" }).waitFor();
  });

  it("regenerates with a grace: the timeline shows both tokens valid, and both authenticate on both replicas", async () => {
    await eventually(() => page.getByLabel("Grace period for the old token").inputValue()).toBe("1h");
    await page.getByRole("button", { name: "Regenerate" }).click();
    await eventually(() => page.locator(".one-time-key").count()).toBe(1);
    second = await page.locator(".one-time-key").inputValue();
    expect(second).toMatch(/^sk-/);
    expect(second).not.toBe(first);
    const lanes = page.locator(".timeline li");
    await eventually(() => lanes.count()).toBe(2);
    expect(await page.locator(".timeline li.old .lane-text").textContent()).toMatch(/^valid now, until .* \(in (59|60) min\)$/);
    expect(await page.locator(".timeline li.current .lane-text").textContent()).toMatch(/^valid now/);
    // The key kept its id, and its page its address.
    expect(new URL(page.url()).hash).toBe(`#/keys/${keyId}`);
    await page.getByRole("button", { name: /hide the key/ }).click();
    await expectLabelled(page);
    await shot("keys-rotation");
    for (const r of [A, B]) {
      expect(await r.chat(first, "priced"), `old token on ${r.name}`).toBe(200);
      expect(await r.chat(second, "priced"), `new token on ${r.name}`).toBe(200);
    }
    // No plaintext key stays on the page once its one-time display is closed.
    expect(await page.locator(".one-time-key").count()).toBe(0);
    const content = await onScreen(page);
    expect(content).not.toContain(first);
    expect(content).not.toContain(second);
  });

  it("blocks the key in its grace: both tokens read not valid, as both are refused everywhere; unblocked, both work again", async () => {
    await page.getByRole("button", { name: "Block", exact: true }).click();
    await eventually(() => page.locator(".detail .badge").first().textContent()).toBe("blocked");
    for (const lane of ["old", "current"]) {
      expect(await page.locator(`.timeline li.${lane} .lane-text`).textContent(), lane).toMatch(/^not valid now \(blocked\)/);
      expect(await page.locator(`.timeline li.${lane}`).getAttribute("class"), lane).toContain("refused");
    }
    expect(await page.getByTestId("refusal").textContent()).toBe("This key is blocked.");
    // The list says the same of the key.
    await eventually(() => page.getByRole("table", { name: "Keys, newest first" }).getByRole("row").filter({ hasText: "ui-key" }).locator(".badge").textContent()).toBe("blocked");
    for (const r of [A, B]) {
      for (const token of [first, second]) {
        const res = await api(r.url, "/v1/chat/completions", { key: token, body: chatBody("priced") });
        expect(res.status, `blocked key on ${r.name}`).toBe(401);
        expect(openAIError(res.body).code).toBe("key_blocked");
      }
    }
    await page.getByRole("button", { name: "Unblock" }).click();
    await eventually(() => page.locator(".detail .badge").first().textContent()).toBe("active");
    for (const lane of ["old", "current"]) expect(await page.locator(`.timeline li.${lane} .lane-text`).textContent(), lane).toMatch(/^valid now/);
    for (const r of [A, B]) expect(await r.chat(second, "priced"), `unblocked key on ${r.name}`).toBe(200);
  });

  it("ends the grace early: the old token is refused everywhere, the new one still works", async () => {
    await page.getByRole("button", { name: "End grace now" }).click();
    await eventually(() => page.locator(".timeline li").count()).toBe(1);
    for (const r of [A, B]) {
      expect(await r.chat(first, "priced"), `old token on ${r.name}`).toBe(401);
      expect(await r.chat(second, "priced"), `new token on ${r.name}`).toBe(200);
    }
  });

  it("edits the key's limits from its current values: only what changed is saved, and holds on every replica", async () => {
    await page.getByText("Edit limits").click();
    await expectLabelled(page);
    // The fields hold the key's values, not hints of them.
    expect(await page.locator("#f-edit-models").inputValue()).toBe("priced, mock-gpt");
    expect(await page.locator("#f-edit-rpm_limit").inputValue()).toBe("");
    await page.locator("#f-edit-rpm_limit").fill("7");
    await page.getByRole("button", { name: "Save limits" }).click();
    await eventually(() => page.getByRole("status").filter({ hasText: "Limits saved." }).count()).toBe(1);
    const info = await B.admin(`/key/info?key=${encodeURIComponent(second)}`);
    expect(info.body.info).toMatchObject({ rpm_limit: 7, models: ["priced", "mock-gpt"] });
    await eventually(() => page.locator("#f-edit-rpm_limit").inputValue()).toBe("7");
  });

  it("a key refused for its team, its budget or its expiry reads so on its page and in the list, as the API answers it", async () => {
    expect((await A.admin("/team/new", { team_id: "ui-blocked-team", team_alias: "Blocked team" })).status).toBe(200);
    const inTeam = await generateKey(A, { key_alias: "ui-refused-team", team_id: "ui-blocked-team" });
    expect((await A.admin("/team/block", { team_id: "ui-blocked-team" })).status).toBe(200);
    const teamRefusal = await api(B.url, "/v1/chat/completions", { key: inTeam.key, body: chatBody("priced") });
    expect(teamRefusal.status).toBe(401);
    const budget = await generateKey(A, { key_alias: "ui-refused-budget", max_budget: 0.001 });
    // The first request is admitted (nothing spent yet) and costs more than the whole budget; the next is refused.
    expect(await B.chat(budget.key, "priced")).toBe(200);
    const budgetRefusal = await api(A.url, "/v1/chat/completions", { key: budget.key, body: chatBody("priced") });
    expect(budgetRefusal.status).toBe(400);
    const expiring = await generateKey(A, { key_alias: "ui-refused-expired", duration: "2s" });
    const expiredRefusal = await waitFor(
      async () => {
        const res = await api(B.url, "/v1/chat/completions", { key: expiring.key, body: chatBody("priced") });
        return res.status === 401 && res;
      },
      { timeoutMs: 10_000, intervalMs: 200, what: "the key to expire" },
    );
    const cases = [
      { key: inTeam, alias: "ui-refused-team", status: "team blocked", answer: teamRefusal },
      { key: budget, alias: "ui-refused-budget", status: "over budget", answer: budgetRefusal },
      { key: expiring, alias: "ui-refused-expired", status: "expired", answer: expiredRefusal },
    ];
    for (const { key, alias, status, answer } of cases) {
      // Its own address, opened as a link from elsewhere would.
      await page.goto(`${A.url}/ui/#/keys/${key.key_id}`);
      await page.getByRole("heading", { level: 2, name: `Key ${alias}` }).waitFor();
      await eventually(() => page.locator(".detail .badge").first().textContent()).toBe(status);
      const error = openAIError(answer.body);
      // The reason the page gives is the API's own, word for word (a budget's message carries the spend as read).
      const reason = await page.getByTestId("refusal").textContent();
      if (status === "over budget") expect(reason).toMatch(/^Budget has been exceeded! Key=[0-9a-f-]+ Current cost: [\d.e-]+, Max budget: 0\.001$/);
      else expect(reason).toBe(error.message);
      expect(await page.locator(".timeline li.current .lane-text").textContent()).toMatch(new RegExp(`^not valid now \\(${status}\\)`));
    }
    expect(openAIError(budgetRefusal.body).type).toBe("budget_exceeded");
    await page.getByLabel("Search keys").fill("ui-refused-");
    await page.getByRole("button", { name: "Search", exact: true }).click();
    const rows = page.getByRole("table", { name: "Keys, newest first" }).getByRole("row");
    await eventually(() => rows.filter({ hasText: "ui-refused-" }).count()).toBe(3);
    for (const { key, status } of cases) expect(await rows.filter({ hasText: key.key_name }).locator(".badge").textContent(), status).toBe(status);
    await page.getByLabel("Search keys").fill("");
    await page.getByRole("button", { name: "Search", exact: true }).click();
  });

  it("creates a team with a member and shows its limits as values; labels teams blocked or over budget; adds a priced database model every replica serves and charges", async () => {
    // A team whose one request spent more than its budget: its keys are refused now.
    expect((await A.admin("/team/new", { team_id: "ui-spent-team", team_alias: "Spent team", max_budget: 0.001 })).status).toBe(200);
    const spender = await generateKey(A, { team_id: "ui-spent-team" });
    expect(await B.chat(spender.key, "priced")).toBe(200);
    expect((await api(A.url, "/v1/chat/completions", { key: spender.key, body: chatBody("priced") })).status).toBe(400);
    await go(page, "Teams");
    const teamRows = page.getByRole("table", { name: "Teams (first 100)" }).getByRole("row");
    await eventually(() => teamRows.filter({ hasText: "Spent team" }).getByTestId("team-status").textContent()).toBe("over budget");
    expect(await teamRows.filter({ hasText: "Blocked team" }).getByTestId("team-status").textContent()).toBe("blocked");
    await page.getByText("Create a team").click();
    await page.getByLabel("Team alias").fill("UI team");
    await page.getByLabel("Team id").fill("ui-team");
    await page.getByLabel("Max budget (USD)").first().fill("5");
    await page.getByRole("button", { name: "Create team" }).click();
    await page.getByRole("heading", { level: 2, name: "Team UI team" }).waitFor();
    await eventually(() => teamRows.filter({ hasText: "UI team" }).getByTestId("team-status").textContent()).toBe("active");
    await page.getByLabel("User id").fill("ui-user");
    await page.getByRole("button", { name: "Add member" }).click();
    await eventually(() => page.getByRole("table", { name: "Members" }).textContent()).toContain("ui-user");
    // The team's limits are in its fields as values.
    await eventually(() => page.locator("#f-team-max_budget").inputValue()).toBe("5");
    await page.locator("#f-team-max_budget").fill("6");
    await page.getByRole("button", { name: "Save team limits" }).click();
    await eventually(() => page.getByRole("status").filter({ hasText: "Team limits saved" }).count()).toBe(1);
    expect((await B.admin("/team/info?team_id=ui-team")).body.team_info.max_budget).toBe(6);
    // A limit changed elsewhere (the API, another replica) shows as its value when the team is opened again.
    expect((await B.admin("/team/update", { team_id: "ui-team", rpm_limit: 40 })).status).toBe(200);
    await page.getByRole("button", { name: "Close" }).click();
    await page.getByRole("button", { name: "UI team" }).click();
    await eventually(() => page.locator("#f-team-rpm_limit").inputValue()).toBe("40");
    expect(await page.locator("#f-team-max_budget").inputValue()).toBe("6");
    expect(await page.getByTestId("team-limits").textContent()).toBe("budget $6.00, rpm 40, tpm —, parallel —");
    await expectLabelled(page);
    await shot("teams");
    const team = await B.admin("/team/info?team_id=ui-team");
    expect(team.body.team_info).toMatchObject({ team_alias: "UI team", max_budget: 6, rpm_limit: 40 });
    expect(team.body.team_info.members_with_roles).toEqual([expect.objectContaining({ user_id: "ui-user", role: "user" })]);

    await go(page, "Models");
    await page.getByText("Add a database model").click();
    await page.getByLabel("Model name (what clients ask for)").fill("ui-model");
    await page.getByLabel("Upstream model").fill("mock/ui-model");
    await page.getByLabel("API key").fill("sk-upstream-secret-ui");
    await page.getByLabel("Input cost per token (USD)").fill(String(INPUT_COST));
    await page.getByLabel("Output cost per token (USD)").fill(String(OUTPUT_COST));
    await page.getByRole("button", { name: "Add model" }).click();
    await eventually(() => page.getByRole("table", { name: "Models served by every replica" }).textContent()).toContain("ui-model");
    // The credential is write-only: never on the page once added (the form is cleared, the table says "set").
    expect(await onScreen(page)).not.toContain("sk-upstream-secret-ui");
    // What each model charges, per million tokens: the new one and the config file's priced one alike.
    const modelRows = page.getByRole("table", { name: "Models served by every replica" }).getByRole("row");
    const perMillion = `$${(INPUT_COST * 1e6).toFixed(2)} / $${(OUTPUT_COST * 1e6).toFixed(2)}`;
    for (const name of ["ui-model", "priced"]) expect(await modelRows.filter({ hasText: name }).getByTestId("price").textContent(), name).toBe(perMillion);
    expect(await modelRows.filter({ hasText: "mock-gpt" }).getByTestId("price").textContent()).toBe("free (no price set)");
    await expectLabelled(page);
    await shot("models");
    const added = ((await B.admin("/model/info")).body.data as any[]).find((m) => m.model_name === "ui-model");
    expect(added.litellm_params).toMatchObject({ input_cost_per_token: INPUT_COST, output_cost_per_token: OUTPUT_COST });
    const key = await generateKey(A, {});
    for (const r of [A, B]) await waitFor(async () => (await r.chat(key.key, "ui-model")) === 200, { what: `${r.name} to serve ui-model` });
    // Requests on it are charged its prices.
    const logs = await waitFor(
      async () => {
        const rows = (await A.admin(`/spend/logs?api_key=${encodeURIComponent(key.key)}`)).body as any[];
        const served = rows.filter((r) => r.model === "ui-model" && r.status === "success");
        return served.length >= 2 && served;
      },
      { what: "the requests' spend logs" },
    );
    for (const row of logs) {
      expect(row.spend).toBeGreaterThan(0);
      expect(row.spend).toBe(costOf(row));
    }

    await go(page, "Users");
    await page.getByText("Create a user").click();
    await page.locator("#f-user_id").fill("ui-person");
    await page.getByLabel("Email").fill("person@example.com");
    await page.locator("#f-max_budget").fill("3");
    await page.getByRole("button", { name: "Create user" }).click();
    await page.getByRole("button", { name: "ui-person" }).click();
    await page.getByRole("heading", { level: 2, name: "User ui-person" }).waitFor();
    await eventually(() => page.locator(".detail dl").textContent()).toContain("$0.00 of $3.00");
    await page.locator("#f-detail-max_budget").fill("4");
    await page.getByRole("button", { name: "Save budget" }).click();
    await eventually(() => page.locator(".detail dl").textContent()).toContain("$0.00 of $4.00");
    expect((await B.admin("/user/info?user_id=ui-person")).body.user_info).toMatchObject({ user_email: "person@example.com", max_budget: 4 });
    await expectLabelled(page);
    await shot("users");
  });

  it("the models page shows every deployment as the cluster routes it: health, and a cooldown started on another replica", async () => {
    await go(page, "Models");
    const summary = page.getByTestId("routing-summary");
    await eventually(() => summary.textContent()).toMatch(/Strategy simple-shuffle\. Routing state \(health, cooldowns, load\) is shared by every replica\./);
    const table = page.getByRole("table", { name: "Routing: every deployment, as the cluster sees it" });
    // Every deployment configured, and the database model added above.
    const shown = async () => (await table.getByTestId("deployment").allTextContents()).sort();
    await eventually(shown).toEqual(["mock/mock-gpt", "mock/pair-ok", "mock/priced", "mock/ui-model", "openai/unreachable"]);
    const deployments = (await A.admin("/debug/routing")).body.deployments as Array<{ id: string; deployment: string }>;
    const row = (deployment: string) => table.locator(`tr:has(code[title="id ${deployments.find((d) => d.deployment === deployment)!.id}"])`);
    // The checks run as the cluster started: the mock deployments passed; the unreachable one is never checked.
    const checked = ["mock/mock-gpt", "mock/pair-ok", "mock/priced"];
    await eventually(() => Promise.all(checked.map((d) => row(d).getByTestId("health").textContent()))).toEqual(checked.map(() => "healthy"));
    expect(await row("openai/unreachable").getByTestId("health").textContent()).toBe("not checked");
    expect(await row("mock/ui-model").getByTestId("health").textContent()).toBe("not checked");
    for (const d of deployments) expect(await row(d.deployment).getByTestId("limits").textContent()).toBe("none");
    // No request has tried the unreachable deployment yet: nothing cools down.
    expect(await row("openai/unreachable").getByTestId("cooldown").textContent()).toBe("—");

    // A request through B: its first attempt fails there, the cluster cools the deployment down, the retry serves.
    const key = await generateKey(A, {});
    expect(await B.chat(key.key, "pair")).toBe(200);
    // The page, served by A, shows the cooldown B started; the others stay in routing.
    await eventually(() => row("openai/unreachable").getByTestId("cooldown").textContent()).toMatch(/^cooling (59|60) s$/);
    for (const d of ["mock/mock-gpt", "mock/pair-ok", "mock/priced", "mock/ui-model"]) expect(await row(d).getByTestId("cooldown").textContent()).toBe("—");
    await eventually(() => summary.textContent()).toContain("5 deployments, 1 cooling down.");
    await expectLabelled(page);
    await shot("models-routing");
  });

  it("the spend chart moves after requests; per key, a key rotated is one row, its tokens summed", async () => {
    await go(page, "Spend");
    const total = page.getByTestId("spend-total");
    await total.waitFor();
    const before = await total.textContent();
    for (let i = 0; i < 4; i++) expect(await A.chat(second, "priced")).toBe(200);
    const refresh = async () => {
      const answered = page.waitForResponse((r) => r.url().includes("/global/spend/report"));
      await page.getByRole("button", { name: "Refresh" }).click();
      await answered;
    };
    await waitFor(
      async () => {
        await refresh();
        return (await total.textContent()) !== before;
      },
      { timeoutMs: 10_000, what: "the spend total to change" },
    );
    expect(await page.getByRole("table", { name: "Spend per model" }).textContent()).toContain("priced");
    // ui-key spent through two tokens (the old one in its grace, then the new one).
    const logged = async () =>
      (await cluster.pool.query("SELECT count(DISTINCT key_hash)::int AS tokens, count(*)::int AS requests FROM gh_spend_logs WHERE key_id = $1", [keyId])).rows[0] as {
        tokens: number;
        requests: number;
      };
    expect((await logged()).tokens).toBe(2);
    await page.getByLabel("Per", { exact: true }).selectOption("key");
    const perKey = page.getByRole("table", { name: "Spend per key" });
    const uiKeyRows = perKey.getByRole("row").filter({ hasText: "ui-key" });
    await eventually(() => uiKeyRows.count()).toBe(1);
    // One row, with every request of both tokens (as the spend logs hold them once all are written); no row left
    // over for a token (a "key …" row names one).
    await waitFor(
      async () => {
        const { requests } = await logged();
        await refresh();
        const cells = await uiKeyRows.getByRole("cell").allTextContents();
        return cells[2] === requests.toLocaleString("en-US");
      },
      { timeoutMs: 10_000, what: "ui-key's row to count both tokens' requests" },
    );
    expect(
      await perKey
        .getByRole("row")
        .filter({ hasText: /^key …/ })
        .count(),
    ).toBe(0);
    // Its name links to the key's page.
    expect(await uiKeyRows.getByRole("link", { name: "ui-key" }).getAttribute("href")).toBe(`#/keys/${keyId}`);
    await page.getByLabel("Per", { exact: true }).selectOption("model");
    await page.getByRole("table", { name: "Spend per model" }).waitFor();
    expect(await page.locator(".chart rect").count()).toBeGreaterThan(0);
    await expectLabelled(page);
    await shot("spend");
  });

  it("the cluster page shows both replicas current, and the event a change made applied on each", async () => {
    await go(page, "Cluster");
    const summary = page.getByTestId("cluster-summary");
    await eventually(() => summary.textContent()).toMatch(/^✓ 2 of 2 replicas are current \(/);
    const key = await generateKey(A, {});
    expect((await B.admin("/key/block", { key: key.key })).status).toBe(200);
    const eventId = (await cluster.pool.query("SELECT max(id)::int AS id FROM gh_key_events")).rows[0].id as number;
    const table = page.getByRole("table", { name: "Replicas" });
    for (const r of [A, B]) {
      const row = table.getByRole("row").filter({ hasText: r.replicaId });
      await eventually(() => row.getByTestId("applied").textContent()).toBe(`#${eventId.toLocaleString("en-US")}`);
      expect(await row.getByTestId("state").textContent()).toBe("current");
      // How long that change took to reach this replica.
      expect(await row.getByTestId("last-lag").textContent()).toMatch(/^\d+(\.\d)? ms$/);
      // Its cooldowns, failures and load are the cluster's (Redis), not its own.
      await eventually(() => row.getByTestId("routing").textContent()).toBe("shared");
    }
    await expectLabelled(page);
  });

  it("a killed replica is shown gone: counted, its last report greyed, never green; forgotten 10 minutes after its last heartbeat; the table fits at 1,280 px", async () => {
    const C = await cluster.addReplica("C");
    const summary = page.getByTestId("cluster-summary");
    await eventually(() => summary.textContent()).toMatch(/^✓ 3 of 3 replicas are current \(/);
    const table = page.getByRole("table", { name: "Replicas" });
    const row = table.getByRole("row").filter({ hasText: C.replicaId });
    expect(await row.locator(".badge.good").count()).toBeGreaterThan(0);
    await C.stop("SIGKILL");
    await eventually(() => summary.textContent()).toMatch(/^! 2 of 3 replicas are current; 1 gone \(/);
    expect(await row.getByTestId("state").textContent()).toBe("gone");
    expect(await row.getAttribute("class")).toBe("gone");
    // What it last said (listening, breakers closed, routing shared) is kept, in words and grey, not as live badges.
    expect(await row.locator(".badge.good").count()).toBe(0);
    expect((await row.getByTestId("breaker").allTextContents()).sort()).toEqual(["was postgres closed", "was redis closed"]);
    expect(await row.getByTestId("routing").textContent()).toBe("was shared");
    expect(await row.textContent()).toContain("was listening");
    // Every column in view at 1,280 px: nothing to scroll to, nothing cut.
    const wrap = page.locator(".table-wrap").filter({ has: table });
    expect(await wrap.evaluate((el) => el.scrollWidth - el.clientWidth)).toBeLessThanOrEqual(0);
    await expectLabelled(page);
    await shot("cluster");
    // Its last heartbeat 11 minutes ago: no longer listed, and the line counts only the live ones again.
    await cluster.pool.query("UPDATE gh_replicas SET heartbeat_at = now() - interval '11 minutes' WHERE replica_id = $1", [C.replicaId]);
    await eventually(() => row.count()).toBe(0);
    await eventually(() => summary.textContent()).toMatch(/^✓ 2 of 2 replicas are current \(/);
  });

  it("pages and searches through 100,000 keys, newest first, and shows when a page is loading", async () => {
    await cluster.pool.query(`
      INSERT INTO gh_keys (token, key_alias, key_name)
      SELECT encode(sha256(('bulk-' || i)::bytea), 'hex'), 'bulk-' || lpad(i::text, 6, '0'), 'sk-...' || lpad(i::text, 4, '0')
      FROM generate_series(1, 100000) i`);
    await generateKey(A, { key_alias: "newest-key" });
    await go(page, "Keys");
    await eventually(() => page.getByRole("status").filter({ hasText: "keys" }).first().textContent()).toMatch(/^100,0\d\d keys\.$/);
    // The key made last heads the first page.
    const table = page.getByRole("table", { name: "Keys, newest first" });
    expect(await table.getByRole("row").nth(1).getByRole("link").textContent()).toBe("newest-key");
    const pages = Number((await page.getByText(/^Page 1 of /).textContent())!.replace(/^Page 1 of /, "").replace(/,/g, ""));
    // The next page's answer held back: the page says it is loading meanwhile, and the old rows are marked busy.
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    const isList = (url: URL) => url.pathname === "/key/list";
    await page.route(isList, async (route) => {
      await held;
      await route.continue();
    });
    try {
      await page.getByLabel("Go to page").fill(String(pages));
      await page.getByRole("button", { name: "Go", exact: true }).click();
      await eventually(() => page.getByTestId("loading").textContent()).toBe("Loading keys…");
      expect(await table.getAttribute("aria-busy")).toBe("true");
    } finally {
      release();
    }
    await eventually(() => page.getByTestId("loading").count()).toBe(0);
    expect(await table.getAttribute("aria-busy")).toBeNull();
    await page.unroute(isList);
    expect(await page.getByText(/^Page [\d,]+ of /).textContent()).toBe(`Page ${pages.toLocaleString("en-US")} of ${pages.toLocaleString("en-US")}`);
    // The last page holds the first key made: ui-key.
    expect(await table.textContent()).toContain("ui-key");
    await shot("keys");
    await page.getByLabel("Search keys").fill("bulk-09999");
    await page.getByRole("button", { name: "Search", exact: true }).click();
    await eventually(() => page.getByRole("status").filter({ hasText: "matching" }).textContent()).toBe("10 keys matching “bulk-09999”.");
  });

  it("is usable at a phone's width: nothing runs off the side, captions read across, the one-time key is whole, the chart's labels are readable", async () => {
    await page.setViewportSize({ width: 390, height: 844 });
    await page.getByLabel("Search keys").fill("");
    await page.getByRole("button", { name: "Search", exact: true }).click();
    await eventually(() => page.getByRole("status").filter({ hasText: "keys" }).first().textContent()).toMatch(/^100,0\d\d keys\.$/);
    const overflow = () => page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    expect(await overflow()).toBeLessThanOrEqual(0);
    /** Each table caption as wide as its table: a caption squeezed to its longest word is narrower. */
    const narrowCaptions = () =>
      page.evaluate(() =>
        [...document.querySelectorAll("caption")]
          .filter((c) => c.getBoundingClientRect().width < c.closest(".table-wrap")!.getBoundingClientRect().width * 0.9)
          .map((c) => c.textContent),
      );
    expect(await narrowCaptions()).toEqual([]);
    await page.screenshot({ path: path.join(SHOTS, "keys-phone.png") });

    // A key generated at this width: all of it in view, none scrolled away inside its field.
    await page.getByText("Generate a key").click();
    await page.getByLabel("Alias").fill("phone-key");
    await page.getByRole("button", { name: "Generate key" }).click();
    const shown = page.locator(".one-time-key");
    await shown.waitFor();
    const box = await shown.evaluate((el) => {
      const r = el.getBoundingClientRect();
      return { hidden: el.scrollWidth - el.clientWidth + Math.max(0, el.scrollHeight - el.clientHeight), left: r.left, right: r.right, width: window.innerWidth };
    });
    expect(box.hidden).toBeLessThanOrEqual(0);
    expect(box.left).toBeGreaterThanOrEqual(0);
    expect(box.right).toBeLessThanOrEqual(box.width);
    expect(await overflow()).toBeLessThanOrEqual(0);
    await page.screenshot({ path: path.join(SHOTS, "keys-generated-phone.png") });
    await page.getByRole("button", { name: /hide the key/ }).click();

    await go(page, "Spend");
    // Drawn once its width is known: one unit of the drawing, one pixel on the screen.
    await eventually(() => page.locator(".chart svg").evaluate((el) => Math.abs(el.getBoundingClientRect().width - (el as SVGSVGElement).viewBox.baseVal.width))).toBeLessThan(1);
    const ticks = await page.evaluate(() => {
      const svg = document.querySelector(".chart svg")!.getBoundingClientRect();
      const boxes = [...document.querySelectorAll(".chart text.tick")].map((t) => {
        const r = t.getBoundingClientRect();
        return { day: t.classList.contains("day"), left: r.left, right: r.right, height: r.height };
      });
      return { svg: { left: svg.left, right: svg.right }, boxes };
    });
    // Drawn at full size on the screen (12 px text: the drawing is not shrunk to fit), inside the chart, no two day
    // labels overlapping.
    for (const t of ticks.boxes) {
      expect(t.height).toBeGreaterThanOrEqual(11);
      expect(t.left).toBeGreaterThanOrEqual(ticks.svg.left);
      expect(t.right).toBeLessThanOrEqual(ticks.svg.right);
    }
    const days = ticks.boxes.filter((t) => t.day).sort((a, b) => a.left - b.left);
    expect(days.length).toBeGreaterThan(1);
    for (let i = 1; i < days.length; i++) expect(days[i]!.left).toBeGreaterThan(days[i - 1]!.right);
    expect(await narrowCaptions()).toEqual([]);
    expect(await overflow()).toBeLessThanOrEqual(0);
    await page.screenshot({ path: path.join(SHOTS, "spend-phone.png"), fullPage: true });
    await page.setViewportSize({ width: 1280, height: 900 });
  });

  it("logging out on one replica logs the other replica's page out", async () => {
    // Another browser holding the same session (a copy of the cookie): the logout clears this browser's cookie, so
    // only a page that still sends it shows that the session itself ended, on every replica.
    const otherContext = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    otherContext.setDefaultTimeout(15_000);
    await otherContext.addCookies(await context.cookies());
    const other = await otherContext.newPage();
    await other.goto(`${B.url}/ui/#/teams`);
    await other.getByRole("heading", { level: 1, name: "Teams" }).waitFor(); // the same session, on B
    await page.getByRole("button", { name: "Log out" }).click();
    await page.getByLabel("Master key").waitFor();
    // The other page's next call (its Users page loading) meets the ended session and returns to the login form.
    await other.getByRole("link", { name: "Users", exact: true }).click();
    await other.getByLabel("Master key").waitFor();
    expect(await other.locator(".login .notice").textContent()).toMatch(/^You were logged out: Your session has ended/);
    await otherContext.close();
  });
});
