import http from "node:http";
import type { AddressInfo } from "node:net";
import { setTimeout as sleep } from "node:timers/promises";
import type pg from "pg";
import type { Violation } from "./checker.js";
import { type AdminOp, type AuthOp, checkerNow, type FaultWindow } from "./history.js";
import { duringFault, faultsDuring, type Span } from "./rules/context.js";
import { short } from "./violations.js";

/**
 * Soft budgets (docs/keys.md "Soft budgets"): each budget key of the run has a soft budget of half its budget, and
 * the replicas POST their alerts to a receiver here. What the run shows:
 *
 * - **Told at most once.** No key is told twice, but after a Postgres failover that lost commits while it was being
 *   spent (the surviving database's spend crosses it again).
 * - **Told.** A key whose durable spend (the surviving database's, read once the run stopped) is at or past its
 *   soft budget was told, within a few seconds — whatever the faults did to the flush that crossed it (a connection
 *   dying during its COMMIT is retried, and the retry tells it), but for a replica killed while the key was spent
 *   (an alert not yet delivered dies with its replica: alerts are not kept in an outbox).
 */

/** The webhook secret of the run's replicas. */
export const ALERT_SECRET = "history-checker-alert-secret";

export interface SoftBudgetAlert {
  keyId: string;
  at: number;
  spend: number;
  softBudget: number;
}

/** Receives the replicas' alerts; never faulted. */
export class AlertReceiver {
  readonly alerts: SoftBudgetAlert[] = [];
  private readonly server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      try {
        const body = JSON.parse(Buffer.concat(chunks).toString("utf8")) as { level?: string; key_id?: string; spend?: number; soft_budget?: number };
        if (body.level === "key" && typeof body.key_id === "string")
          this.alerts.push({ keyId: body.key_id, at: checkerNow(), spend: Number(body.spend), softBudget: Number(body.soft_budget) });
      } catch {
        // Not an alert: nothing to record.
      }
      res.writeHead(204).end();
    });
  });

  async start(): Promise<string> {
    await new Promise<void>((resolve) => this.server.listen(0, "127.0.0.1", resolve));
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}/alerts`;
  }

  close(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

/** How long an alert of spend already durable may take to arrive: a flush's webhook, sent at once, to this process. */
const DELIVERY_MS = 5_000;

/** The run's soft budgets judged: the surviving database's spend read, the alerts it owes waited for, then judged. */
export async function checkSoftBudgets(input: Omit<SoftBudgetInput, "durable"> & { db: Pick<pg.Pool, "query"> }): Promise<SoftBudgetResult> {
  const keys = softBudgetKeys(input.ops);
  if (keys.length === 0) return { violations: [], keys: 0, told: 0 };
  const { rows } = await input.db.query<{ key_id: string; spend: number }>("SELECT key_id::text, spend FROM gh_keys WHERE key_id = ANY($1::uuid[])", [keys.map((k) => k.keyId!)]);
  const durable = new Map(rows.map((r) => [r.key_id, r.spend]));
  // The alerts of spend that is durable now may still be on their way: waited for, up to DELIVERY_MS.
  const owed = keys.filter((k) => (durable.get(k.keyId!) ?? 0) >= k.softBudget!);
  const deadline = Date.now() + DELIVERY_MS;
  while (owed.some((k) => !input.alerts.some((a) => a.keyId === k.keyId)) && Date.now() < deadline) await sleep(50);
  return softBudgetsHold({ ...input, durable });
}

export interface SoftBudgetInput {
  ops: ReadonlyArray<AdminOp | AuthOp>;
  faults: ReadonlyArray<FaultWindow>;
  alerts: ReadonlyArray<SoftBudgetAlert>;
  /** Each budget key's spend in the surviving database once the run stopped, by key_id. */
  durable: ReadonlyMap<string, number>;
  flushIntervalMs: number;
  tailMs: number;
}

export interface SoftBudgetResult {
  violations: Violation[];
  /** Budget keys with a soft budget. */
  keys: number;
  /** Of them, those told they crossed it. */
  told: number;
}

const softBudgetKeys = (ops: ReadonlyArray<AdminOp | AuthOp>) =>
  ops.filter((o): o is AdminOp => o.type === "admin" && o.kind === "generate" && o.status === 200 && o.softBudget !== undefined && o.keyId !== undefined);

/** The rules above, on what was recorded. */
export function softBudgetsHold(input: SoftBudgetInput): SoftBudgetResult {
  const { ops, faults, alerts, durable, flushIntervalMs, tailMs } = input;
  const keys = softBudgetKeys(ops);
  const violations: Violation[] = [];
  const lastCharged = new Map<string, number>();
  for (const o of ops) if (o.type === "auth" && o.status === 200 && o.cost !== undefined) lastCharged.set(o.token, Math.max(lastCharged.get(o.token) ?? 0, o.complete));
  // When each key was being spent: from its generation to its last charge's flush.
  const lifeOf = (k: AdminOp): Span => ({ invoke: k.invoke, complete: (lastCharged.get(k.newToken!) ?? k.complete) + flushIntervalMs + 1_000 });
  let told = 0;
  for (const k of keys) {
    const mine = alerts.filter((a) => a.keyId === k.keyId);
    if (mine.length > 0) told++;
    const life = lifeOf(k);
    const lossy = faultsDuring(faults, life, tailMs, (f) => f.lossFrom !== undefined);
    if (mine.length > 1 + lossy.length)
      violations.push({
        kind: "soft budget told twice",
        message: `budget key ${short(k.newToken!)} (soft_budget ${k.softBudget}) was told ${mine.length} times (spend ${mine.map((a) => a.spend).join(", ")}); ${lossy.length} failover(s) that lost commits while it was spent`,
        at: mine[1 + lossy.length]!.at,
        window: [],
      });
    for (const a of mine)
      if (a.spend < k.softBudget! - 1e-9 || Math.abs(a.softBudget - k.softBudget!) > 1e-9)
        violations.push({
          kind: "soft budget told wrong",
          message: `budget key ${short(k.newToken!)}: told spend ${a.spend} of soft_budget ${a.softBudget}; its soft_budget is ${k.softBudget}`,
          at: a.at,
          window: [],
        });
    const spent = durable.get(k.keyId!) ?? 0;
    if (spent >= k.softBudget! && mine.length === 0 && !duringFault(faults, life, tailMs, (f) => f.name.includes("SIGKILL")))
      violations.push({
        kind: "soft budget crossing never told",
        message: `budget key ${short(k.newToken!)} spent ${spent} durably, past its soft_budget ${k.softBudget}, and no alert came within ${DELIVERY_MS / 1000} s of the run's end`,
        at: life.complete,
        window: [],
      });
  }
  return { violations, keys: keys.length, told };
}
