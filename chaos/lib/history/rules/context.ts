import type { CheckerOptions, CheckResult, Switch } from "../checker.js";
import type { AdminOp, AuthOp, CommittedEvent, FaultWindow, Op } from "../history.js";
import type { Matching } from "../matching.js";
import type { Model, ModelView } from "../model.js";
import type { Change } from "../sequential-history.js";
import type { Violate } from "../violations.js";

/** When a replica (by name) was (re)started: its caches start empty then. */
export interface ReplicaStart {
  replica: string;
  at: number;
}

/** Where a rule reports, and the counts it may add to. */
export interface Reporting {
  result: CheckResult;
  violate: Violate;
}

/** What every rule may read: the recorded history, its changes matched to their requests, and the model. */
export interface CheckContext extends Reporting {
  ops: Op[];
  admin: AdminOp[];
  /** Authentications that got an answer, in the order they completed. */
  answered: AuthOp[];
  events: CommittedEvent[];
  faults: FaultWindow[];
  options: CheckerOptions;
  replicaStarts: ReplicaStart[];
  /** Postgres failovers: when each promoted standby became the truth. */
  switches: Switch[];
  matching: Matching;
  /** For each 503 of a key: when its replica last accepted that token before (the accepted request's start). */
  lastAccepted: Map<AuthOp, number>;
  /** The model as far as it is built; once it is, one Model, or a Timeline of them across lossy failovers. */
  readonly view: ModelView;
}

/** A rule on a committed change no request explains, run as soon as matching finds it. */
export type UnexplainedChangeRule = (event: CommittedEvent, ctx: Reporting) => void;
/** A rule on a change as the model takes it (in its own history), against the model of the changes before it. */
export type ChangeRule = (change: Change, model: Model, ctx: CheckContext) => void;
/** A rule on one admin answer. */
export type AdminAnswerRule = (op: AdminOp, ctx: CheckContext) => void;
/** A rule on one answered authentication. */
export type AuthAnswerRule = (op: AuthOp, ctx: CheckContext) => void;
/** A rule on the whole history at once. */
export type TotalRule = (ctx: CheckContext) => void;

/** Did `op` overlap a fault `which` picks, or its tail (replicas catching up, breakers closing)? */
export function duringFault(faults: readonly FaultWindow[], op: Span, tailMs: number, which: (f: FaultWindow) => boolean): boolean {
  return faultsDuring(faults, op, tailMs, which).length > 0;
}

/** The faults `which` picks that `span` overlapped, or their tails. */
export function faultsDuring(faults: readonly FaultWindow[], span: Span, tailMs: number, which: (f: FaultWindow) => boolean): FaultWindow[] {
  return faults.filter((f) => which(f) && span.complete >= f.start && span.invoke <= f.end + (f.tailMs ?? tailMs));
}

/** A stretch of the run's time: a request's, or any other. */
export type Span = Pick<Op, "invoke" | "complete">;

/** The staleness bound that applied to `op`: the normal one, the hard one while notifications may be lost, longer in a partition. */
export function boundFor(op: Op, faults: FaultWindow[], o: CheckerOptions): number {
  let bound = o.normalBoundMs;
  for (const f of faults) {
    if (op.invoke > f.end + (f.tailMs ?? o.faultTailMs) || op.complete < f.start) continue;
    // Slow or failing queries do not widen the bound: only lost notifications do (the heartbeat is then the floor).
    if (f.notificationsLost) bound = Math.max(bound, o.hardBoundMs);
    // Fail static: with Postgres and Redis both gone a replica serves what it holds, whatever changed since the
    // partition began; after it heals, the hard bound runs from the end.
    if (f.partition) bound = Math.max(bound, op.invoke - f.start + o.hardBoundMs);
  }
  return bound;
}

/**
 * Does `predicate` hold at some moment of [from, to]? The model only changes at its change points, so the
 * moments to try are the ends of the interval and, for each change point inside, just before and just after.
 */
export function someMoment(model: ModelView, tokens: string[], from: number, to: number, predicate: (t: number) => boolean): boolean {
  if (predicate(from) || predicate(to)) return true;
  for (const token of tokens) {
    for (const p of model.keyPoints(token)) {
      if (!Number.isFinite(p) || p < from || p > to) continue;
      if (predicate(p) || predicate(Math.max(from, p - 0.01)) || predicate(Math.min(to, p + 0.01))) return true;
    }
  }
  return false;
}
