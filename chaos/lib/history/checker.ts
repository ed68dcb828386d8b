import type { AdminOp, AuthOp, CommittedEvent, FaultWindow, Op } from "./history.js";
import { matchChanges } from "./matching.js";
import type { Model, ModelView } from "./model.js";
import {
  type AdminAnswer,
  acknowledgedChangeCommitted,
  acknowledgedWithoutEventNamedAKey,
  adminAnswerOf,
  alreadyRotatedOnlyForDeprecatedTokens,
  invalidInputRefused,
  notFoundOnlyForTokensThatAddressNothing,
  onlyDocumentedRefusals,
} from "./rules/admin-answers.js";
import { answerAgreesWithTheModel, type AuthAnswer, authAnswerOf, lastAcceptedBefore, onlyDocumentedAnswers, unavailableOnlyAsDocumented } from "./rules/authentications.js";
import { budgetsHold } from "./rules/budgets.js";
import { changeActedOnAnAddressedToken, everyChangeHasItsRequest, graceCountedFromTheCommit, rotationOfTheCurrentToken } from "./rules/changes.js";
import type { AdminAnswerRule, AuthAnswerRule, ChangeRule, CheckContext, ReplicaStart, TotalRule, UnexplainedChangeRule } from "./rules/context.js";
import { databaseModelFollowsItsChanges } from "./rules/database-model.js";
import { buildModel } from "./sequential-history.js";
import { ViolationLog } from "./violations.js";

/**
 * The history checker. It builds the sequential history of the changes that committed — in commit order, which
 * is event id order — with the meaning each change had for the client that asked for it, and judges every
 * answer of the run against it (docs/coherence.md, "The history checker"):
 *
 * - an authentication that completed at `complete` agrees with the model at some moment of
 *   [invoke − bound, complete]; bound = the normal bound, the hard bound while notifications may be lost, and
 *   since-the-start-of-the-partition while Postgres and Redis are both unreachable (fail static);
 * - an admin 2xx is a change that committed (it has its event) and acted on a token that addressed a key;
 * - an admin error changed nothing (no event is left that only it could explain), and a "not found" was
 *   answered only for a token that addressed no key at some moment of the request;
 * - no change committed that no request explains (a double rotation, a delete nobody asked for);
 * - no 5xx except the documented 503s (a store unreachable, a key changing faster than it can be read);
 * - a key's admitted priced requests cost no more than its budget plus the documented bound (docs/limits.md);
 * - at the end, the database holds exactly the keys the model says, with the model's tokens and fields.
 *
 * Changes are dated by the moment they committed (the checker's own LISTEN hears each NOTIFY, delivered only at
 * COMMIT). After a Postgres failover that lost commits, the model continues from the surviving database's
 * history: the lost changes held until the switch, and from the switch on the state is the survivor's.
 *
 * A violation comes with the window of history that shows it: the requests on that key around it.
 *
 * In parts: matching.ts gives each committed change its request; sequential-history.ts builds the model
 * (model.ts) from them in commit order; each rule above is a function in rules/, listed in RULES below by what it
 * judges, and checkHistory runs them.
 */
export interface CheckerOptions {
  /** Normal staleness bound: notifications flowing (ms). */
  normalBoundMs: number;
  /** Hard bound: notifications lost, the heartbeat is the floor (ms). */
  hardBoundMs: number;
  /** How long after a fault ends it still counts as a fault period (replicas catching up, breakers closing). */
  faultTailMs: number;
  /** Timing tolerance between the database clock and the checker's (same host): ms. */
  clockSlackMs: number;
  /** The model requests are made for; a key limited to other models answers 403. */
  probeModel: string;
  /**
   * How much earlier than its NOTIFY's arrival a change may have committed (ms): Postgres sends a notification to
   * a listener after the COMMIT, and the checker's process may read it a little after a replica's answer that
   * already reflects the change. A change is dated max(its row's created_at, arrival − this).
   */
  notifySlackMs: number;
  /** The priced model budget keys ask for: each admitted request is charged. */
  pricedModel: string;
  /** limits.flush_interval_ms of the run's replicas: the spend a re-seeded ledger may miss (docs/limits.md). */
  flushIntervalMs: number;
  /** Clients that may send one budget key requests at once: each may be admitted while budget was left. */
  budgetClients: number;
}

export const DEFAULT_CHECKER_OPTIONS: CheckerOptions = {
  normalBoundMs: 1_000,
  hardBoundMs: 2_250,
  faultTailMs: 3_000,
  clockSlackMs: 50,
  probeModel: "mock-gpt",
  notifySlackMs: 100,
  pricedModel: "priced",
  flushIntervalMs: 250,
  budgetClients: 3,
};

/**
 * A change's commit time from what was seen of it: the event row's created_at (written before COMMIT) and the
 * arrival of its NOTIFY at the checker (after COMMIT), when it was heard.
 */
export function commitTime(writtenAt: number, heardAt: number | undefined, options: CheckerOptions = DEFAULT_CHECKER_OPTIONS): number {
  return heardAt === undefined ? writtenAt : Math.max(writtenAt, heardAt - options.notifySlackMs);
}

/** A Postgres failover: from `at` on, the primary of generation `gen` (a promoted standby) is the truth. */
export interface Switch {
  gen: number;
  at: number;
}

export interface Violation {
  kind: string;
  message: string;
  at: number;
  /** The shortest window of history that shows it: the requests on the key involved, with times and replicas. */
  window: string[];
}

export interface CheckResult {
  answersChecked: number;
  /** Changes that committed on a primary a failover lost (not in the surviving database). */
  lostChanges: number;
  /** Budget keys and their admitted spend against the bound. */
  budgets: Array<{ token: string; budget: number; spent: number; allowed: number; field: string }>;
  violations: Violation[];
  opsByKind: Record<string, number>;
  answersByStatus: Record<string, number>;
  staleness: { normal: number[]; fault: number[] };
  rotationConflicts: number;
  unexplainedEvents: number;
}

/**
 * Every rule an answer or a change is judged by, each a function that holds an invariant of docs/coherence.md (the
 * budgets: docs/limits.md), grouped by what it judges; within a group they run in the order listed. A new rule is a
 * function in rules/ and an entry here.
 */
export interface Rules {
  /** Each committed change no request explains, as soon as matching finds it. */
  unexplainedChanges: UnexplainedChangeRule[];
  /** Each change as the model takes it, in its own history, against the model of the changes before it. */
  changes: ChangeRule[];
  /** Each admin answer, by what it says (adminAnswerOf). */
  adminAnswers: Record<AdminAnswer, AdminAnswerRule[]>;
  /** Each answered authentication, in the order they completed, by what it says (authAnswerOf). */
  authAnswers: Record<AuthAnswer, AuthAnswerRule[]>;
  /** The whole history at once, once every answer was judged. */
  totals: TotalRule[];
}

export const RULES: Rules = {
  unexplainedChanges: [everyChangeHasItsRequest],
  changes: [changeActedOnAnAddressedToken, rotationOfTheCurrentToken, graceCountedFromTheCommit],
  adminAnswers: {
    "invalid input": [invalidInputRefused],
    acknowledged: [acknowledgedChangeCommitted, acknowledgedWithoutEventNamedAKey],
    "not found": [notFoundOnlyForTokensThatAddressNothing],
    "already rotated": [alreadyRotatedOnlyForDeprecatedTokens],
    // Refusals that change nothing by design (counted in the report).
    "rotation conflict": [],
    // The outcome is known from the events alone: matching gave the request its change, if one committed.
    "no answer": [],
    refused: [onlyDocumentedRefusals],
  },
  authAnswers: {
    "key state": [answerAgreesWithTheModel],
    unavailable: [unavailableOnlyAsDocumented],
    "database model": [databaseModelFollowsItsChanges],
    other: [onlyDocumentedAnswers],
  },
  totals: [budgetsHold],
};

/** Checks a recorded history against the events that committed; never throws on a bad history, it reports. */
export function checkHistory(
  ops: Op[],
  events: CommittedEvent[],
  faults: FaultWindow[],
  options: CheckerOptions = DEFAULT_CHECKER_OPTIONS,
  replicaStarts: ReplicaStart[] = [],
  switches: Switch[] = [],
): { result: CheckResult; model: Model; view: ModelView } {
  const admin = ops.filter((o): o is AdminOp => o.type === "admin");
  const answered = ops
    .filter((o): o is AuthOp => o.type === "auth")
    .sort((a, b) => a.complete - b.complete)
    .filter((o) => o.status !== 0);
  const log = new ViolationLog(ops);
  const result = tally(ops, admin, answered, events, options, log);

  // 1. Which request each committed change belongs to.
  const matching = matchChanges(admin, events, options.clockSlackMs, (e) => {
    for (const rule of RULES.unexplainedChanges) rule(e, { result, violate: log.violate });
  });
  const ctx: CheckContext = {
    ops,
    admin,
    answered,
    events,
    faults,
    options,
    replicaStarts,
    switches,
    matching,
    lastAccepted: lastAcceptedBefore(answered),
    result,
    violate: log.violate,
    get view() {
      return log.view;
    },
  };
  // 2. The sequential history, each change judged as the model takes it.
  const { model } = buildModel(events, matching, switches, log, (change, m) => {
    for (const rule of RULES.changes) rule(change, m, ctx);
  });
  // 3. Admin answers, against the model.
  for (const op of admin) for (const rule of RULES.adminAnswers[adminAnswerOf(op)]) rule(op, ctx);
  // 4. Authentication answers, against the model with the bound that applied.
  for (const op of answered) for (const rule of RULES.authAnswers[authAnswerOf(op, options)]) rule(op, ctx);
  // 5. What only the whole history shows.
  for (const rule of RULES.totals) rule(ctx);
  log.violations.sort((a, b) => a.at - b.at);
  return { result, model, view: ctx.view };
}

/** The result before any rule ran: the counts the report shows, and the violations the rules will add. */
function tally(ops: Op[], admin: AdminOp[], answered: AuthOp[], events: CommittedEvent[], options: CheckerOptions, log: ViolationLog): CheckResult {
  const result: CheckResult = {
    answersChecked: admin.length + answered.length,
    lostChanges: events.filter((e) => e.lost).length,
    budgets: [],
    violations: log.violations,
    opsByKind: {},
    answersByStatus: {},
    staleness: { normal: [], fault: [] },
    rotationConflicts: admin.filter((o) => adminAnswerOf(o) === "rotation conflict").length,
    unexplainedEvents: 0,
  };
  for (const o of ops) {
    const k =
      o.type === "auth"
        ? o.model === options.pricedModel
          ? "priced request (budget key)"
          : "authenticate"
        : o.invalid
          ? `${o.kind} (invalid input)`
          : o.raced
            ? `${o.kind} (raced)`
            : o.kind;
    result.opsByKind[k] = (result.opsByKind[k] ?? 0) + 1;
    result.answersByStatus[String(o.status)] = (result.answersByStatus[String(o.status)] ?? 0) + 1;
  }
  return result;
}
