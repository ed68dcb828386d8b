import type { AuthRecord, TeamRecord, UserRecord } from "../auth/auth-record.js";
import type { Authenticator } from "../auth/authenticator.js";
import { BudgetExceededError, type GatewayError } from "../errors/errors.js";
import { budgetOwner, budgetSpent, describeOwner } from "../limits/admission.js";
import { requestLimitsOf } from "../limits/request-limits.js";
import type { Database } from "../store/database.js";
import { readDurableSpend } from "../store/spend-store.js";
import type { LiveSpend } from "./live-spend.js";

/**
 * Whether a request made with a token would get past the key's own rules right now: `refusal` is what it would be
 * answered (its error code and message, as the client would read them), null when it would not be refused.
 * Rate limits and requests in flight are left out: they pass within seconds and are not the key's standing.
 */
export interface KeyStanding {
  usable: boolean;
  refusal: { code: string; message: string } | null;
}

/**
 * A key's standing, decided by the request path's own rules, never a copy of them: the authenticator's (blocked,
 * expired, grace ended, team blocked or deleted, user deleted; auth/authenticator.ts) and the limiter's budgets
 * (every level of the key with a budget whose spend has reached it; limits/admission.ts budgetSpent), on the
 * live spend. The admin API reports it with every key, so the UI never says "valid" of a key the API refuses.
 */
export class KeyStandings {
  constructor(
    private readonly auth: Pick<Authenticator, "standing">,
    private readonly db: Database,
    private readonly spend: LiveSpend,
  ) {}

  /** The standing of a token of `record` (a grace token's record carries its own revokeAt). */
  async of(record: AuthRecord): Promise<KeyStanding> {
    const { refusal, team, user } = await this.auth.standing(record);
    const refused = refusal ?? (await this.budgetRefusal(record, team, user));
    return refused ? { usable: false, refusal: { code: refused.code, message: refused.message } } : { usable: true, refusal: null };
  }

  /** The first level, in the limiter's order (key, team member, user, team), whose spend has reached its budget. */
  private async budgetRefusal(record: AuthRecord, team: TeamRecord | null, user: UserRecord | null): Promise<GatewayError | null> {
    for (const subject of requestLimitsOf(record, team, user).subjects) {
      if (subject.maxBudget === null) continue;
      const owner = budgetOwner(subject);
      const spend = (await this.spend.liveSpend(owner.ledger)) ?? (await this.db.query((q) => readDurableSpend(q, owner))).spend;
      if (budgetSpent(spend, subject.maxBudget)) return new BudgetExceededError(spend, subject.maxBudget, describeOwner(subject));
    }
    return null;
  }
}
