import { memberBudget, type AuthRecord, type TeamRecord, type UserRecord } from "../auth/auth-record.js";
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
  return { keyId: key.keyId, subjects, owners };
}
