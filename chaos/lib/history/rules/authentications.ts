import type { CheckerOptions } from "../checker.js";
import type { AuthOp } from "../history.js";
import type { Expected, ModelView } from "../model.js";
import { fmt, short } from "../violations.js";
import { type AuthAnswerRule, boundFor, type CheckContext, duringFault } from "./context.js";

/** What an answered authentication says, which decides the rules that judge it. */
export type AuthAnswer =
  /** A request for the run's database model, with a key nothing changes. */
  | "database model"
  /** 200, 401, 403, or a budget key's refusal (it authenticated): the key's state, judged against the model. */
  | "key state"
  /** 503: a store the replica needs is out of reach. */
  | "unavailable"
  /** Any other answer. */
  | "other";

/** A budget's refusal says the key authenticated: it is judged as a 200. */
const isBudgetRefusal = (op: AuthOp) => (op.status === 400 && op.code === "budget_exceeded") || (op.status === 429 && op.code === "budget_reserved");

export function authAnswerOf(op: AuthOp, options: CheckerOptions): AuthAnswer {
  const priced = op.model === options.pricedModel;
  if (op.model !== undefined && !priced) return "database model";
  if (op.status === 503) return "unavailable";
  if (op.status === 200 || op.status === 401 || op.status === 403 || (priced && isBudgetRefusal(op))) return "key state";
  return "other";
}

/**
 * Invariants 1, 2, 5, 6, 9 and 11: an answer on a key agrees with the model at some moment of
 * [invoke − bound, complete] — bound 1 s, the hard bound while notifications may be lost, since-the-partition-began
 * in a partition; after a lossy failover, the model of the surviving history from the switch on. A budget key's
 * answer is judged the same way (a budget key lost with its primary stops authenticating).
 */
export const answerAgreesWithTheModel: AuthAnswerRule = (asked, ctx) => {
  const op = isBudgetRefusal(asked) ? { ...asked, status: 200 } : asked;
  const probeModel = op.model ?? ctx.options.probeModel;
  const { view, faults, options, result } = ctx;
  const inFault = duringFault(faults, op, options.faultTailMs, () => true);
  const staleness = stalenessOf(view, op, probeModel);
  const bound = boundFor(op, faults, options);
  (inFault ? result.staleness.fault : result.staleness.normal).push(Number.isFinite(staleness) ? staleness : -1);
  if (!(staleness > bound)) return;
  const now = view.expected(op.token, op.complete, probeModel);
  const what =
    op.status === 200
      ? now === 403
        ? "served a model the key may not use"
        : "accepted a key that was not valid"
      : op.status === 403
        ? "refused a model the key may use"
        : "rejected a valid key";
  ctx.violate(
    what,
    `${op.replica} answered ${op.status}${op.code ? ` (${op.code})` : ""} for ${short(op.token)} (request ${fmt(op.invoke)}–${fmt(op.complete)}); the model expected ${now}${Number.isFinite(staleness) ? `, last true ${Math.round(staleness)} ms before the request (bound ${Math.round(bound)} ms)` : " at every moment"}`,
    op.complete,
    [op.token],
    op.replica,
  );
};

/**
 * Invariant 7, fail static: with Postgres unreachable a replica serves the keys it holds, so a 503 is right only
 * for a key it does not hold — one it never accepted, or that changed since (an invalidation evicts it; a rotation
 * changes the old token too, whose grace must then be read from Postgres; a failover starts a new epoch, which
 * holds nothing), or a replica restarted since. Otherwise a 503 is the documented answer only while Postgres is
 * impaired, or for a key changing faster than it can be read. A budget key's 503 is right while any fault is in
 * effect (limits fail closed).
 */
export const unavailableOnlyAsDocumented: AuthAnswerRule = (op, ctx) => {
  const { faults, options } = ctx;
  if (op.model === options.pricedModel) {
    if (!duringFault(faults, op, options.faultTailMs, () => true)) unexpectedAnswer(op, ctx);
    return;
  }
  const acceptedAt = ctx.lastAccepted.get(op);
  const held =
    acceptedAt !== undefined &&
    op.invoke - acceptedAt < 60_000 &&
    !changesOfKey(ctx, op.token).some((c) => c >= acceptedAt - options.hardBoundMs && c <= op.complete) &&
    !ctx.replicaStarts.some((r) => r.replica === op.replica && r.at >= acceptedAt - options.hardBoundMs && r.at <= op.complete) &&
    ctx.view.expected(op.token, op.invoke, options.probeModel) === 200;
  if (held && op.code === "key_store_unavailable") {
    ctx.violate(
      "fail static broken",
      `${op.replica} answered 503 for ${short(op.token)}, a key it accepted at ${fmt(acceptedAt!)} and that has not changed since`,
      op.complete,
      [op.token],
      op.replica,
    );
    return;
  }
  if (op.code === "key_changing" || duringFault(faults, op, options.faultTailMs, (f) => f.postgresImpaired)) return;
  ctx.violate("unexpected answer", `authentication of ${short(op.token)} on ${op.replica} answered 503 ${op.code ?? ""} with every store reachable`, op.complete, [op.token]);
};

/** Invariant 7: no answer but 200, 401, 403, a budget's refusals and the documented 503s. */
export const onlyDocumentedAnswers: AuthAnswerRule = (op, ctx) => unexpectedAnswer(op, ctx);

function unexpectedAnswer(op: AuthOp, ctx: CheckContext): void {
  if (op.model === ctx.options.pricedModel)
    ctx.violate(
      "unexpected answer",
      `a priced request of budget key ${short(op.token)} on ${op.replica} answered ${op.status} ${op.code ?? ""}`,
      op.complete,
      [op.token],
      op.replica,
    );
  else ctx.violate("unexpected answer", `authentication of ${short(op.token)} on ${op.replica} answered ${op.status} ${op.code ?? ""}`, op.complete, [op.token]);
}

/**
 * For fail static: each 503 of a key (not a budget key, not the database model's) and when its replica last
 * accepted that token before it, among the answers before it in completion order (the accepted request's start).
 */
export function lastAcceptedBefore(answered: AuthOp[]): Map<AuthOp, number> {
  const last = new Map<string, number>();
  const before = new Map<AuthOp, number>();
  for (const op of answered) {
    if (op.model !== undefined) continue;
    const cacheKey = `${op.replica}|${op.token}`;
    const acceptedAt = last.get(cacheKey);
    if (op.status === 503 && acceptedAt !== undefined) before.set(op, acceptedAt);
    if (op.status === 200) last.set(cacheKey, op.invoke);
  }
  return before;
}

/**
 * The moments a replica's copy of a key stops being one it can serve when Postgres cannot answer: a change of the
 * key's record or its team's (user's), held apart; a rotation, which changes the old token too; a Postgres failover,
 * which starts a new epoch on every replica (L1 dropped).
 */
const changesOfKey = (ctx: CheckContext, token: string) => [
  ...(ctx.view.keyOf(token)?.changes.map((c) => c.at) ?? []),
  ...ctx.view.ownerPoints(token),
  ...ctx.view.tokenPoints(token),
  ...ctx.view.boundaries,
  ...ctx.switches.map((s) => s.at),
];

/** How long before `invoke` the model last agreed with the answer (0 when it agreed during the request). */
function stalenessOf(model: ModelView, op: AuthOp, probeModel: string): number {
  const status = op.status as Expected;
  if (model.expected(op.token, op.complete, probeModel) === status || model.expected(op.token, op.invoke, probeModel) === status) return 0;
  for (const p of model.changePoints(op.token, op.invoke, op.complete)) if (model.expected(op.token, p, probeModel) === status) return 0;
  const ownerPoints = model.ownerPoints(op.token);
  if (ownerPoints.length > 0) return pairStaleness(model, op, probeModel, ownerPoints);
  // Walk back through the moments the answer could have changed.
  const points = model.changePoints(op.token, Number.NEGATIVE_INFINITY, op.invoke).sort((a, b) => b - a);
  for (const p of points) {
    // Just before p the state was the one that p ended.
    if (model.expected(op.token, p - 1e-3, probeModel) === status) return op.invoke - p;
  }
  return Number.POSITIVE_INFINITY;
}

/**
 * A key in a team (or of a user): its record and its team's (user's) are cached apart, so the answer may combine
 * the key's state at one moment with the team's at another. Its staleness is that of the older of the two,
 * minimised over the moments either could have been read at (each change point, or just before it, up to the
 * request's end).
 */
function pairStaleness(model: ModelView, op: AuthOp, probeModel: string, teamPoints: number[]): number {
  const status = op.status as Expected;
  const candidates = (points: number[]) => [op.complete, op.invoke, ...points.filter((p) => p <= op.complete).flatMap((p) => [p, p - 1e-3])];
  const keyTimes = candidates(model.changePoints(op.token, Number.NEGATIVE_INFINITY, op.complete).filter((p) => !teamPoints.includes(p)));
  // Moments more than 10 s back are never within a bound: only the last team change before them matters.
  const horizon = op.invoke - 10_000;
  const recent = teamPoints.filter((p) => p >= horizon);
  const before = teamPoints.filter((p) => p < horizon).at(-1);
  // A switch to another history may change the team's state as well as the key's.
  const teamTimes = candidates([...(before === undefined ? recent : [before, ...recent]), ...model.boundaries.filter((b) => b >= horizon)]);
  let best = Number.POSITIVE_INFINITY;
  for (const tk of keyTimes) {
    const keyAge = Math.max(0, op.invoke - tk);
    if (keyAge >= best) continue;
    for (const tt of teamTimes) {
      const age = Math.max(keyAge, op.invoke - tt, 0);
      if (age < best && model.expectedAt(op.token, tk, tt, probeModel) === status) best = age;
    }
  }
  return best;
}
