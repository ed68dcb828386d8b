import { createHmac } from "node:crypto";
import type { Logger } from "../logger.js";
import type { SoftBudgetCrossing } from "../store/spend-store.js";

/**
 * A key's or a team's soft budget crossed (docs/keys.md, "Soft budgets"): told once per budget period, by the replica whose spend
 * flush crossed it (store/spend-store.ts: the row lock orders the replicas' flushes, so exactly one does) — a log
 * line, a metric, and, when `alerting.webhook_url` is set, a signed POST. Never on the request path: flushes run in
 * the background, and a webhook is sent, and retried with backoff, by its own timers.
 *
 * The POST's body is JSON; its `Gatehouse-Signature: t=<unix seconds>,v1=<hex>` is HMAC-SHA256 under
 * `alerting.webhook_secret` of `<t>.<body>` (Stripe's scheme): a receiver recomputes it and refuses an old `t`.
 */
export interface SoftBudgetAlertOptions {
  logger: Logger;
  webhookUrl: string | undefined;
  webhookSecret: string | undefined;
  /** Attempts per alert (the first, then retries 1 s, 2 s, 4 s… apart). */
  attempts: number;
  /** Per attempt. */
  timeoutMs?: number;
}

export class SoftBudgetAlerts {
  readonly counters = { alerts: 0, webhooksDelivered: 0, webhooksGivenUp: 0 };
  private readonly pending = new Set<Promise<void>>();
  private closed = false;

  constructor(private readonly o: SoftBudgetAlertOptions) {}

  crossed(crossings: SoftBudgetCrossing[]): void {
    for (const c of crossings) {
      this.counters.alerts++;
      const who = c.level === "key" ? { key_id: c.key_id, key_alias: c.key_alias } : { team_id: c.team_id, team_alias: c.team_alias };
      this.o.logger.warn({ ...who, spend: c.spend, soft_budget: c.soft_budget, max_budget: c.max_budget }, `a ${c.level} crossed its soft budget`);
      if (this.o.webhookUrl && !this.closed) {
        const body = JSON.stringify({ type: "soft_budget_crossed", at: new Date().toISOString(), ...c });
        const sent = this.deliver(body).finally(() => this.pending.delete(sent));
        this.pending.add(sent);
      }
    }
  }

  /** Stops retrying; waits (bounded by one attempt's timeout) for deliveries in progress. */
  async close(): Promise<void> {
    this.closed = true;
    await Promise.allSettled([...this.pending]);
  }

  private async deliver(body: string): Promise<void> {
    const { webhookUrl, webhookSecret, attempts, logger } = this.o;
    let lastProblem = "";
    for (let attempt = 1; attempt <= attempts; attempt++) {
      const t = Math.floor(Date.now() / 1000);
      const signature = createHmac("sha256", webhookSecret ?? "")
        .update(`${t}.${body}`)
        .digest("hex");
      try {
        const res = await fetch(webhookUrl!, {
          method: "POST",
          headers: { "content-type": "application/json", "gatehouse-event": "soft_budget_crossed", "gatehouse-signature": `t=${t},v1=${signature}` },
          body,
          signal: AbortSignal.timeout(this.o.timeoutMs ?? 5_000),
        });
        await res.arrayBuffer().catch(() => undefined);
        if (res.ok) {
          this.counters.webhooksDelivered++;
          return;
        }
        lastProblem = `HTTP ${res.status}`;
        // The receiver refused the alert itself: sending it again would change nothing.
        if (res.status >= 400 && res.status < 500 && res.status !== 408 && res.status !== 429) break;
      } catch (err) {
        lastProblem = (err as Error).message;
      }
      if (this.closed || attempt === attempts) break;
      await new Promise<void>((resolve) => setTimeout(resolve, 1_000 * 2 ** (attempt - 1)).unref());
    }
    this.counters.webhooksGivenUp++;
    // The URL may carry a token in its path: only its origin is logged.
    logger.warn({ webhook: new URL(webhookUrl!).origin, problem: lastProblem }, "a soft budget alert could not be delivered; given up");
  }
}
