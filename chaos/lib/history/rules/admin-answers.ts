import type { AdminOp } from "../history.js";
import { short } from "../violations.js";
import { type AdminAnswerRule, duringFault, someMoment } from "./context.js";

/** What an admin answer says, which decides the rules that judge it. */
export type AdminAnswer =
  /** A request with invalid input on purpose, whatever it was answered. */
  | "invalid input"
  /** 2xx: the change committed. */
  | "acknowledged"
  | "not found"
  /** 409 rotation_conflict or rotation_in_progress: refusals that change nothing by design (retry). */
  | "rotation conflict"
  /** 409 key_already_rotated. */
  | "already rotated"
  /** No answer at all (the connection failed): its outcome is only known from the events. */
  | "no answer"
  /** Any other refusal or error. */
  | "refused";

export function adminAnswerOf(op: AdminOp): AdminAnswer {
  if (op.invalid) return "invalid input";
  if (op.status >= 200 && op.status < 300) return "acknowledged";
  if (op.status === 404) return "not found";
  // The key changed under the rotation (its fencing token), or another replica holds the rotation lock of this token.
  if (op.status === 409 && (op.code === "rotation_conflict" || op.code === "rotation_in_progress")) return "rotation conflict";
  if (op.status === 409 && op.code === "key_already_rotated") return "already rotated";
  if (op.status === 0) return "no answer";
  return "refused";
}

/** Invariant 3: a bad request changes nothing and says why (400). */
export const invalidInputRefused: AdminAnswerRule = (op, ctx) => {
  // No answer at all (status 0) is the request's replica being killed or cut off by a fault, not an acceptance;
  // outside a fault it would be a crash, and counts.
  const unanswered = op.status === 0 && duringFault(ctx.faults, op, ctx.options.faultTailMs, () => true);
  if (op.status !== 400 && !unanswered) ctx.violate("invalid input not refused", `${op.kind} with invalid input on ${op.replica} answered ${op.status}`, op.complete, op.addressed);
};

/** Invariants 3 and 11: a 2xx means committed — the change has its event — unless it changes nothing. */
export const acknowledgedChangeCommitted: AdminAnswerRule = (op, ctx) => {
  const slack = ctx.options.clockSlackMs;
  const noEventNeeded =
    op.kind === "reset_spend" ||
    (op.kind === "end_grace" && (op.revoked?.length ?? 0) === 0) ||
    (op.kind === "regenerate" && op.eventIds.length === 0 && !!op.newToken && ctx.matching.byNewToken.has(op.newToken));
  // A change acknowledged just before its primary was lost may have gone with it unheard: lost, not a violation.
  const lostWithItsPrimary = ctx.faults.some((f) => f.lossFrom !== undefined && op.complete >= f.lossFrom - slack && op.invoke <= (f.lossTo ?? f.end) + slack);
  if (!ctx.matching.requests.has(op) && !noEventNeeded && !lostWithItsPrimary)
    ctx.violate("acknowledged change lost", `${op.kind} on ${op.replica} answered ${op.status} but no event committed for it`, op.complete, op.addressed);
};

/**
 * Invariant 8: an acknowledged request that committed no event (reset_spend, an end_grace with nothing in grace)
 * named a token that addressed a key at some moment of the request. (Those with an event are judged as changes.)
 */
export const acknowledgedWithoutEventNamedAKey: AdminAnswerRule = (op, ctx) => {
  if (!(op.kind === "reset_spend" || (op.kind === "end_grace" && !ctx.matching.requests.has(op)))) return;
  const { view } = ctx;
  const slack = ctx.options.clockSlackMs;
  for (const t of op.addressed) {
    if (!someMoment(view, [t], op.invoke - slack, op.complete + slack, (x) => view.mayAddress(t, x)))
      ctx.violate("acted on a token that addressed nothing", `${op.kind} on ${op.replica} answered ${op.status} for ${short(t)}, which addressed no key`, op.complete, [t]);
  }
};

/**
 * Invariant 8: every token that authenticates is addressable — "not found" only for a token that addressed
 * nothing at some moment of the request (delete: at least one of its tokens).
 */
export const notFoundOnlyForTokensThatAddressNothing: AdminAnswerRule = (op, ctx) => {
  const { view } = ctx;
  const slack = ctx.options.clockSlackMs;
  const notFoundSomewhere = op.addressed.some((t) => someMoment(view, [t], op.invoke - slack, op.complete + slack, (x) => !view.addresses(t, x)));
  if (!notFoundSomewhere)
    ctx.violate(
      "not found for a token that works",
      `${op.kind} on ${op.replica} answered 404 for ${op.addressed.map(short).join(", ")}, which addressed a key throughout the request`,
      op.complete,
      op.addressed,
    );
};

/** Invariants 8 and 4: key_already_rotated only for a deprecated token (in its grace, no longer its key's current). */
export const alreadyRotatedOnlyForDeprecatedTokens: AdminAnswerRule = (op, ctx) => {
  const { view } = ctx;
  const slack = ctx.options.clockSlackMs;
  const t = op.addressed[0]!;
  if (!someMoment(view, [t], op.invoke - slack, op.complete + slack, (x) => view.addresses(t, x) && !view.isCurrent(t, x)))
    ctx.violate(
      "refused as already rotated",
      `regenerate on ${op.replica} answered 409 key_already_rotated for ${short(t)}, which was its key's current token throughout`,
      op.complete,
      [t],
    );
};

/** Invariants 3 and 7: a refusal is a documented one (nothing written), a 503 only while Postgres is impaired. */
export const onlyDocumentedRefusals: AdminAnswerRule = (op, ctx) => {
  // A key generated for a user another client was deleting: refused, nothing written (the event check holds).
  if (op.status === 400 && op.kind === "generate" && op.code === "user_deleted") return;
  // A key's models must lie within its user's and its team's: an update asking for more is refused, nothing written.
  if (op.status === 400 && op.kind === "update" && (op.code === "model_not_allowed_for_user" || op.code === "model_not_in_team")) return;
  // A key generated for a team another client was deleting: refused, nothing written.
  if (op.status === 400 && op.kind === "generate" && op.code === "team_not_found") return;
  if (op.status === 503 && (duringFault(ctx.faults, op, ctx.options.faultTailMs, (f) => f.postgresImpaired) || op.code === "rotation_in_progress")) return;
  ctx.violate("unexpected answer", `${op.kind} on ${op.replica} answered ${op.status} ${op.code ?? ""}`, op.complete, op.addressed);
};
