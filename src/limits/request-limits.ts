import { memberBudget, type AuthRecord, type ModelLimit, type TeamRecord, type UserRecord } from "../auth/auth-record.js";
import type { ModelDeployment } from "../config/schema.js";
import { budgetInterval, parseBudgetDuration } from "../config/duration.js";
import { hasLimits, ledgerOf, type LimitSubject, type RequestLimits, type SpendOwner } from "./admission.js";

/**
 * The levels a request of this key belongs to, from the records its authentication produced:
 * - the key, always;
 * - its team member (the key's user inside the key's team), when the key has both; limited by the member's
 *   `max_budget_in_team`;
 * - its user, when the key names a user that exists;
 * - its team, when the key is in a team.
 *
 * Records are immutable and replaced on every change, so the result is remembered per key record and reused
 * while the team and user records it was built from are the current ones: a request on a warm key allocates
 * nothing here.
 */
export function requestLimitsOf(key: AuthRecord, team: TeamRecord | null, user: UserRecord | null): RequestLimits {
  const remembered = built.get(key);
  if (remembered && remembered.team === team && remembered.user === user) return remembered.limits;
  const limits = build(key, team, user);
  built.set(key, { team, user, limits });
  return limits;
}

const built = new WeakMap<AuthRecord, { team: TeamRecord | null; user: UserRecord | null; limits: RequestLimits }>();

function build(key: AuthRecord, team: TeamRecord | null, user: UserRecord | null): RequestLimits {
  const owners: SpendOwner[] = [];
  const subjects: LimitSubject[] = [];
  const add = (owner: SpendOwner, limits: Omit<LimitSubject, keyof SpendOwner>) => {
    owners.push(owner);
    if (hasLimits(limits))
      subjects.push({ ...owner, maxBudget: limits.maxBudget, rpmLimit: limits.rpmLimit, tpmLimit: limits.tpmLimit, maxParallelRequests: limits.maxParallelRequests });
  };
  add({ level: "key", id: key.keyId, ledger: ledgerOf("key", key.keyId) }, key);
  if (team && key.userId !== null) {
    const maxBudget = memberBudget(team, key.userId);
    add(
      { level: "team_member", id: key.userId, teamId: team.teamId, ledger: ledgerOf("team_member", key.userId, team.teamId) },
      { maxBudget, rpmLimit: null, tpmLimit: null, maxParallelRequests: null },
    );
  }
  if (user) add({ level: "user", id: user.userId, ledger: ledgerOf("user", user.userId) }, user);
  if (team) add({ level: "team", id: team.teamId, ledger: ledgerOf("team", team.teamId) }, team);
  return { keyId: key.keyId, heldAs: key.keyId, subjects, owners };
}

/**
 * Counted on a deployment level without being limited: the routing strategy reads its tokens a minute
 * (usage-based routing) though the deployment sets no tpm. Never reached, so never refuses.
 */
export const COUNTED_NOT_LIMITED = 1e15;

/**
 * One attempt's limits: the request's, plus its deployment as a level when the deployment has limits of its own
 * (rpm, tpm, max_parallel_requests, held for the whole cluster by the same admission as a key's) or the routing
 * strategy reads its load (`tracked`: its calls in flight, its tokens this minute). Remembered per request limits
 * and deployment, like requestLimitsOf.
 */
export function withDeployment(limits: RequestLimits, d: ModelDeployment, tracked: boolean): RequestLimits {
  if (!tracked && d.rpm === undefined && d.tpm === undefined && d.maxParallelRequests === undefined) return limits;
  return rememberedFor(
    withDeployments,
    limits,
    d,
    () => deploymentLimits(limits, d, tracked),
    () => new WeakMap(),
  );
}

function deploymentLimits(limits: RequestLimits, d: ModelDeployment, tracked: boolean): RequestLimits {
  const subject: LimitSubject = {
    level: "deployment",
    id: d.id,
    ledger: ledgerOf("deployment", d.id),
    maxBudget: null,
    rpmLimit: d.rpm ?? null,
    tpmLimit: d.tpm ?? (tracked ? COUNTED_NOT_LIMITED : null),
    maxParallelRequests: d.maxParallelRequests ?? null,
  };
  return { keyId: limits.keyId, heldAs: null, subjects: [...limits.subjects, subject], owners: limits.owners };
}

const withDeployments = new WeakMap<RequestLimits, WeakMap<ModelDeployment, RequestLimits>>();

/**
 * One attempt's limits on the key's own limits for the model it is served by (model_max_budget, model_rpm_limit,
 * model_tpm_limit): one more level, the key's model, held for the whole cluster like every other; its spend is
 * recorded durably (per key and model, in its own budget period) when the model has a budget. Remembered per request
 * limits and model.
 */
export function withModelLimits(limits: RequestLimits, key: AuthRecord, model: string): RequestLimits {
  const own = key.modelLimits?.[model];
  if (!own) return limits;
  return rememberedFor(
    withModels,
    limits,
    model,
    () => modelLimits(limits, key, model, own),
    () => new Map(),
  );
}

function modelLimits(limits: RequestLimits, key: AuthRecord, model: string, own: ModelLimit): RequestLimits {
  const owner: SpendOwner = {
    level: "key_model",
    id: key.keyId,
    model,
    ledger: ledgerOf("key_model", key.keyId, undefined, model),
    budgetInterval: own.budgetPeriod === null ? null : budgetInterval(parseBudgetDuration(own.budgetPeriod)),
  };
  const subject: LimitSubject = { ...owner, maxBudget: own.maxBudget, rpmLimit: own.rpmLimit, tpmLimit: own.tpmLimit, maxParallelRequests: null };
  // The key's model comes right after the key: its refusal names the narrower limit first.
  const afterKey = limits.subjects.length > 0 && limits.subjects[0]!.level === "key" ? 1 : 0;
  return {
    keyId: limits.keyId,
    // Admissions held ready are per key: one held for another model would not fit this one.
    heldAs: null,
    subjects: [...limits.subjects.slice(0, afterKey), subject, ...limits.subjects.slice(afterKey)],
    owners: own.maxBudget === null ? limits.owners : [...limits.owners, owner],
  };
}

const withModels = new WeakMap<RequestLimits, Map<string, RequestLimits>>();

/**
 * The limits made from `limits` for `key` (a deployment, a model), made once: records are immutable and replaced on
 * every change, so a request on a warm key allocates nothing here.
 */
function rememberedFor<K, M extends { get(k: K): RequestLimits | undefined; set(k: K, v: RequestLimits): unknown }>(
  memo: WeakMap<RequestLimits, M>,
  limits: RequestLimits,
  key: K,
  make: () => RequestLimits,
  newMap: () => M,
): RequestLimits {
  let byKey = memo.get(limits);
  if (!byKey) {
    byKey = newMap();
    memo.set(limits, byKey);
  }
  let made = byKey.get(key);
  if (!made) {
    made = make();
    byKey.set(key, made);
  }
  return made;
}
