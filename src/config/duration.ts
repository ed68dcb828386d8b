/**
 * Durations as LiteLLM writes them: an integer and a unit, `30s`, `15m`, `24h`, `7d`, `2w`.
 * Strict on purpose: LiteLLM silently read an unparseable grace period as "revoke now" (docs/coherence.md #3),
 * so anything that is not exactly this shape is an error the caller sees.
 */
const UNIT_MS = { s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 } as const;
const DURATION = /^(\d{1,9})([smhdw])$/;

export type DurationUnit = keyof typeof UNIT_MS;

export class DurationError extends Error {}

/** Parses `Ns|Nm|Nh|Nd|Nw` (units limited to `allowed`) into milliseconds; throws DurationError otherwise. */
export function parseDuration(input: unknown, allowed: readonly DurationUnit[] = ["s", "m", "h", "d", "w"]): number {
  if (typeof input !== "string") throw new DurationError(`expected a duration string like "30d", got ${typeof input}`);
  const match = DURATION.exec(input.trim());
  if (!match) throw new DurationError(`"${input}" is not a duration; use a whole number and a unit, e.g. ${allowed.map((u) => `30${u}`).join(", ")}`);
  const unit = match[2] as DurationUnit;
  if (!allowed.includes(unit)) throw new DurationError(`unit "${unit}" is not accepted here; use one of ${allowed.join(", ")}`);
  return Number(match[1]) * UNIT_MS[unit];
}

/**
 * The longest `duration` or `budget_duration` a key accepts: 100 years (36,500 d). Longer values would
 * overflow Postgres when added to now() ("interval out of range", a 500) and nobody means them.
 */
export const MAX_KEY_DURATION_DAYS = 36_500;
export const MAX_KEY_DURATION_MS = MAX_KEY_DURATION_DAYS * UNIT_MS.d;

/**
 * A key's `duration` or `budget_duration`: like parseDuration, but above zero (a zero budget period
 * would divide by zero at every reset) and at most MAX_KEY_DURATION_DAYS. Throws DurationError otherwise.
 */
export function parseKeyDuration(input: unknown, allowed: readonly DurationUnit[] = ["s", "m", "h", "d", "w"]): number {
  const ms = parseDuration(input, allowed);
  if (ms <= 0) throw new DurationError(`"${input}" is zero; a duration must be at least 1${allowed[0] ?? "s"}`);
  if (ms > MAX_KEY_DURATION_MS) throw new DurationError(`"${input}" is longer than the maximum of ${MAX_KEY_DURATION_DAYS}d (100 years)`);
  return ms;
}

/** A budget period: a fixed length, or whole calendar months (LiteLLM's `mo`). */
export type BudgetPeriod = { ms: number; months?: undefined } | { months: number; ms?: undefined };

// LiteLLM's words for budget periods, read as it reads them.
const PERIOD_WORDS: Record<string, string> = { hourly: "1h", daily: "24h", weekly: "7d", monthly: "30d" };
const MONTHS = /^(\d{1,4})mo$/;
/** The most months a budget period may span (100 years, like MAX_KEY_DURATION_DAYS). */
const MAX_PERIOD_MONTHS = 1_200;

/**
 * A `budget_duration` (or a per-model budget's `time_period`) as LiteLLM writes it: `30s`, `15m`, `24h`, `30d`, `2w`,
 * `1mo` (calendar months: a period that starts on the 31st ends on the last day of a shorter month, as Postgres adds
 * months), or `hourly`, `daily`, `weekly`, `monthly` (LiteLLM's words: 1h, 24h, 7d, 30d). Throws DurationError.
 */
export function parseBudgetDuration(input: unknown): BudgetPeriod {
  if (typeof input !== "string") throw new DurationError(`expected a duration string like "30d" or "1mo", got ${typeof input}`);
  const text = PERIOD_WORDS[input.trim().toLowerCase()] ?? input.trim();
  const months = MONTHS.exec(text);
  if (months) {
    const n = Number(months[1]);
    if (n <= 0) throw new DurationError(`"${input}" is zero; a budget period must be at least 1mo`);
    if (n > MAX_PERIOD_MONTHS) throw new DurationError(`"${input}" is longer than the maximum of ${MAX_PERIOD_MONTHS}mo (100 years)`);
    return { months: n };
  }
  if (!DURATION.test(text))
    throw new DurationError(`"${input}" is not a budget period; use a whole number and a unit (30s, 15m, 24h, 30d, 2w, 1mo) or hourly, daily, weekly, monthly`);
  return { ms: parseKeyDuration(text) };
}

/** A budget period as Postgres adds it to a timestamp (calendar months stay months). */
export function budgetInterval(period: BudgetPeriod): string {
  return period.months !== undefined ? `${period.months} months` : `${period.ms} milliseconds`;
}
