import type { AdminKind } from "../history.js";
import { writtenAt } from "../matching.js";
import { parseGrace, rotatedKey } from "../sequential-history.js";
import { fmt, short } from "../violations.js";
import { type ChangeRule, someMoment, type UnexplainedChangeRule } from "./context.js";

/**
 * The rules on committed changes: each change has a request that explains it, acted on a token that addressed a
 * key, rotated a current token, and started its grace at its commit.
 */

/**
 * Invariants 3, 4 and 11: every committed change, lost ones included, is explained by a request — a 4xx changed
 * nothing, no change happened twice (a double rotation) or that nobody asked for.
 */
export const everyChangeHasItsRequest: UnexplainedChangeRule = (e, ctx) => {
  ctx.result.unexplainedEvents++;
  ctx.violate("unexplained change", `event ${e.id} (${e.kind}${e.lost ? ", lost in a failover" : ""}) committed at ${fmt(e.at)} but no request explains it`, e.at, e.tokens);
};

/** The changes that act on a key named by one of its tokens. */
const ACTS_BY_TOKEN: ReadonlySet<AdminKind> = new Set<AdminKind>(["regenerate", "end_grace", "block", "unblock", "update", "delete", "reset_spend"]);

/**
 * Invariant 8: a committed change acted on a token that addressed a key at some moment between its request's
 * start and its own commit (when the request resolved it).
 */
export const changeActedOnAnAddressedToken: ChangeRule = ({ op, event, at }, model, ctx) => {
  if (!ACTS_BY_TOKEN.has(op.kind)) return;
  const slack = ctx.options.clockSlackMs;
  for (const t of op.addressed) {
    if (!someMoment(model, [t], op.invoke - slack, at + slack, (x) => model.mayAddress(t, x)))
      ctx.violate("acted on a token that addressed nothing", `${op.kind} on ${op.replica} committed (event ${event.id}) for ${short(t)}, which addressed no key then`, at, [t]);
  }
};

/** Invariant 4: a rotation rotated its key's current token (the row version fences a second one). */
export const rotationOfTheCurrentToken: ChangeRule = ({ op, event, at }, model, ctx) => {
  if (op.kind !== "regenerate" || !rotatedKey(model, op)) return;
  const slack = ctx.options.clockSlackMs;
  const old = op.addressed[0]!;
  if (!someMoment(model, [old], op.invoke - slack, at + slack, (x) => model.mayBeCurrent(old, x)))
    ctx.violate("double rotation", `regenerate on ${op.replica} committed (event ${event.id}) for ${short(old)}, which was not its key's current token`, at, [old]);
};

/**
 * Invariant 1: a rotation's revoke_at is its commit time plus its grace. The commit lies after the event row was
 * written and before the answer; a replica whose Postgres answers late takes its "now" late in that span.
 */
export const graceCountedFromTheCommit: ChangeRule = ({ op, event, at }, model, ctx) => {
  if (op.kind !== "regenerate" || !rotatedKey(model, op)) return;
  const slack = ctx.options.clockSlackMs;
  const graceMs = parseGrace(op.grace);
  const w = writtenAt(event);
  if (graceMs > 0 && op.revokeAt !== undefined && (op.revokeAt < w + graceMs - slack || op.revokeAt > Math.max(w + 1_000, at + 1_000, op.complete) + graceMs))
    ctx.violate("grace not counted from the commit", `regenerate on ${op.replica}: revoke_at ${fmt(op.revokeAt)} is not commit ${fmt(at)} + ${op.grace}`, at, [op.addressed[0]!]);
};
