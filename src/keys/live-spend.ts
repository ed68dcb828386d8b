/**
 * The live spend ledger as the admin routes see it (limits/limit-enforcer.ts), by ledger name
 * (limits/admission.ts: a key's is its key_id, a team's `team:<team_id>`, ...).
 */
export interface LiveSpend {
  liveSpend(ledger: string): Promise<number | null>;
  /** The durable ledger was reset or the budget changed: the live one must be rebuilt from Postgres. */
  afterReset(ledger: string, generation?: string): Promise<void>;
}

/** `spend` as the live ledger has it (settled requests not yet flushed to Postgres included), and Postgres's. */
export async function withLiveSpend<V extends { spend: number }>(view: V, ledger: string, spend: LiveSpend): Promise<V & { durable_spend: number }> {
  const live = await spend.liveSpend(ledger);
  return { ...view, spend: live ?? view.spend, durable_spend: view.spend };
}
