/**
 * The vocabulary shared by the two limiters (Redis, cluster-wide; local, the fallback) and the enforcer.
 *
 * A request belongs to up to four levels — its key, the key's team member (the key's user inside the key's
 * team), the key's user, the key's team — and is admitted only if every level that sets a limit has room. Each
 * attempt is admitted on one more level when its deployment has limits of its own (rpm, tpm, parallel calls) or
 * the routing strategy reads its load: the deployment, which is never charged spend (it owns no budget).
 */

/** The levels spend is charged to (durably, in Postgres). */
export type SpendOwnerLevel = "key" | "team_member" | "user" | "team" | "key_model";
export type LimitLevel = SpendOwnerLevel | "deployment";

/** One level a request's spend is charged to: its key, team member, user or team. */
export interface SpendOwner {
  level: SpendOwnerLevel;
  /** key_id, team_id or user_id; for a team member, its user_id (`teamId` says which team). */
  id: string;
  /** For a team member only: the team it is a member of. */
  teamId?: string;
  /** For a key's model only (model_max_budget): the served model, and its budget's period as a Postgres interval. */
  model?: string;
  budgetInterval?: string | null;
  /**
   * Where the level's live ledger and counters are kept (Redis, the local fallback): the key_id for a key (as
   * before levels existed, so an upgrade keeps every key's live ledger), `<level>:<id>` otherwise.
   */
  ledger: string;
}

/** One level's limits. Null means "no limit". Only a level that owns spend (not a deployment) has a budget. */
export interface LimitSubject extends Omit<SpendOwner, "level"> {
  level: LimitLevel;
  maxBudget: number | null;
  rpmLimit: number | null;
  tpmLimit: number | null;
  maxParallelRequests: number | null;
}

/** Everything one request is admitted against and charged to. */
export interface RequestLimits {
  /** The key's id. */
  keyId: string;
  /**
   * Where admissions held ready (prefetched) for these limits are kept: the key's id. Null when none is ever held:
   * for an attempt admitted on its deployment's level too (request-limits.ts withDeployment), an admission held
   * ready would count as a call in flight on that deployment and hold part of its rpm for a request to come.
   */
  heldAs: string | null;
  /** The levels that set a limit, in the order a refusal is looked for: key, team member, user, team, deployment. */
  subjects: LimitSubject[];
  /** Every level the request's spend is recorded for (durably), limits or not; the key's first. */
  owners: SpendOwner[];
}

/** What one request may use at most, reserved before it is forwarded. */
export interface Reservation {
  requestId: string;
  cost: number;
  tokens: number;
}

export interface WindowState {
  remaining: number;
  resetMs: number;
}

/** What one level has left after an admission. */
export interface LevelAdmission {
  /** The spend generation of the level's live ledger at admission ("" when it has none). */
  generation: string;
  /** Spend of the current period as the limiter saw it, when it keeps one for this level. */
  spend: number | null;
  requests: WindowState | null;
  tokens: WindowState | null;
  /** What is left of the budget after this admission's reservation (null: no budget, or not known). */
  budgetLeft: number | null;
  /** Parallel slots left after this admission (null: no limit, or not known). */
  parallelLeft: number | null;
}

/** `levels` lines up with RequestLimits.subjects. */
export type Admission = { kind: "ok"; levels: LevelAdmission[] } | Refusal;

/** A refusal names the level (`subject`, an index into RequestLimits.subjects) that had no room. */
export type Refusal =
  | { kind: "budget"; spend: number; subject: number }
  | { kind: "budget_reserved"; spend: number; subject: number }
  | { kind: "parallel"; inFlight: number; subject: number }
  | { kind: "rpm"; retryAfterMs: number; subject: number }
  | { kind: "tpm"; retryAfterMs: number; subject: number };

export interface Settlement {
  requestId: string;
  /** Per subject, the spend generation seen at admission. */
  generations: string[];
  cost: number;
  tokens: number;
}

export function hasLimits(s: Omit<LimitSubject, keyof SpendOwner>): boolean {
  return s.maxBudget !== null || s.rpmLimit !== null || s.tpmLimit !== null || s.maxParallelRequests !== null;
}

/** The ledger name of a level (see SpendOwner.ledger). A member's team id is length-prefixed: ids may hold ':'. */
export function ledgerOf(level: LimitLevel, id: string, teamId?: string, model?: string): string {
  switch (level) {
    case "key":
      return id;
    case "team_member":
      return `team_member:${teamId!.length}:${teamId}:${id}`;
    case "key_model":
      return `key_model:${model!.length}:${model}:${id}`;
    default:
      return `${level}:${id}`;
  }
}

/**
 * A level whose spend has reached its budget refuses every request (400 budget_exceeded) until the budget is
 * raised or its period resets. The Redis limiter applies the same rule in limits-reserve.lua.
 */
export function budgetSpent(spend: number, maxBudget: number | null): boolean {
  return maxBudget !== null && spend >= maxBudget;
}

/** How errors and logs name a level: `Key=…`, `TeamMember=<user> (team <team>)`, `User=…`, `Team=…`. */
export function describeOwner(owner: Pick<LimitSubject, "level" | "id" | "teamId" | "model">): string {
  switch (owner.level) {
    case "key":
      return `Key=${owner.id}`;
    case "team_member":
      return `TeamMember=${owner.id} (Team=${owner.teamId})`;
    case "user":
      return `User=${owner.id}`;
    case "team":
      return `Team=${owner.id}`;
    case "deployment":
      return `Deployment=${owner.id}`;
    case "key_model":
      return `Key=${owner.id} Model=${owner.model}`;
  }
}

/** "key", "team member", "user", "team": for sentences such as "this team allows 10 requests per minute". */
export function levelNoun(level: LimitLevel): string {
  return level === "team_member" ? "team member" : level === "key_model" ? "key's model" : level;
}

/** A level that may carry a budget: one that owns spend (every level but a deployment). */
export function budgetOwner(subject: LimitSubject): SpendOwner {
  if (subject.level === "deployment") throw new Error("a deployment owns no spend");
  return subject as SpendOwner;
}
