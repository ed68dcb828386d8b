import type { AuthOp } from "../history.js";
import { short } from "../violations.js";
import type { TotalRule } from "./context.js";

/**
 * Limits (docs/limits.md "Bounds"): the spend admitted for each budget key (the cost of its 200 answers; its budget is
 * its max_budget, or its model_max_budget on the priced model, every one of its requests being on that model) is at most
 * its budget plus one request's cost beyond it for each request admitted while budget was left (at most one per
 * client sending it requests), and, whenever a live ledger is re-seeded from Postgres, the spend Postgres did not
 * have then — what replicas charged in the last flush interval and had not flushed (a Redis restart, a restore or a
 * failover; a replica killed before its flush), spend flushed to a primary a failover lost, and spend charged while
 * Postgres could not take flushes (a failover, an outage shortly before).
 */
export const budgetsHold: TotalRule = (ctx) => {
  const { admin, faults, options, result, violate } = ctx;
  const priced = ctx.answered.filter((op) => op.model === options.pricedModel && op.status === 200);
  // A key's own budget (max_budget) or its budget on the priced model (model_max_budget): every priced request is
  // charged to both, and each is kept by its own ledger under the same bounds.
  const budgets = new Map<string, { budget: number; field: string }>();
  for (const op of admin) {
    if (op.kind !== "generate" || op.status !== 200 || !op.newToken) continue;
    if (op.maxBudget !== undefined) budgets.set(op.newToken, { budget: op.maxBudget, field: "max_budget" });
    else if (op.modelBudget !== undefined) budgets.set(op.newToken, { budget: op.modelBudget, field: `model_max_budget on ${options.pricedModel}` });
  }
  if (budgets.size === 0) return;
  const margin = 500;
  // Spans whose charges a re-seeded ledger may miss, widened back over a Postgres outage that held flushes.
  const spans = faults
    .flatMap((f) => f.spendMayBeForgotten ?? [])
    .map(({ from, to }) => {
      let start = from - options.flushIntervalMs - margin;
      for (const g of faults)
        if (g.postgresImpaired && g.start <= to && g.end + options.faultTailMs + margin >= start) start = Math.min(start, g.start - options.flushIntervalMs - margin);
      return { from: start, to: to + margin };
    });
  const byToken = new Map<string, AuthOp[]>();
  for (const op of priced) byToken.set(op.token, [...(byToken.get(op.token) ?? []), op]);
  for (const [token, { budget, field }] of budgets) {
    const admitted = byToken.get(token) ?? [];
    const cost = (op: AuthOp) => op.cost ?? 0;
    const spent = admitted.reduce((a, op) => a + cost(op), 0);
    const maxCost = admitted.reduce((a, op) => Math.max(a, cost(op)), 0);
    const forgotten = spans.reduce((sum, s) => sum + admitted.filter((op) => op.complete >= s.from && op.invoke <= s.to).reduce((a, op) => a + cost(op), 0), 0);
    const allowed = budget + maxCost * options.budgetClients + forgotten;
    result.budgets.push({ token, budget, spent, allowed, field });
    if (spent > allowed + 1e-9) {
      const last = admitted.at(-1)!;
      violate(
        "budget overspent",
        `budget key ${short(token)} (${field} ${budget}) was admitted ${admitted.length} priced requests costing ${round(spent)} (${Math.round((spent / budget) * 100)} % of its budget); the bound allows ${round(allowed)} (${round(forgotten)} of it spend a re-seeded ledger may miss)`,
        last.complete,
        [token],
      );
    }
  }
};

const round = (x: number) => Math.round(x * 1e6) / 1e6;
