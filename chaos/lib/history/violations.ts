import type { Violation } from "./checker.js";
import type { Op } from "./history.js";
import { Model, type ModelView } from "./model.js";

/** How a rule reports: what went wrong, when, and the tokens (and replica) whose history shows it. */
export type Violate = (kind: string, message: string, at: number, tokens: string[], replica?: string) => void;

/** The window of history is what a reader needs for the first violations; past this many it only costs time. */
const WINDOWS = 100;

/** The violations found, in the order the rules found them, each with the window of history that shows it. */
export class ViolationLog {
  readonly violations: Violation[] = [];
  /**
   * The model windows are drawn from, as far as it is built: empty while changes are matched to requests, the
   * history being built while its changes are applied, then the whole.
   */
  view: ModelView = new Model();

  constructor(private readonly ops: Op[]) {}

  readonly violate: Violate = (kind, message, at, tokens, replica) => {
    this.violations.push({ kind, message, at, window: this.violations.length < WINDOWS ? windowOf(this.ops, this.view, tokens, at, replica) : [] });
  };
}

export const short = (token: string) => `${token.slice(0, 8)}…`;
export const fmt = (t: number) => new Date(t).toISOString().slice(11, 23);

/**
 * The requests on the key of `tokens` from 3 s before `at` to 0.5 s after, one line each: every change of the
 * key, and the authentications of its tokens on the replica that answered wrongly (all replicas when none is
 * named). At most 30 lines.
 */
function windowOf(ops: Op[], model: ModelView, tokens: string[], at: number, replica?: string): string[] {
  const keyTokens = new Set<string>(tokens);
  for (const t of tokens) for (const kt of model.keyOf(t)?.tokens ?? []) keyTokens.add(kt);
  // A key's team changes are part of its history.
  for (const t of tokens) {
    const key = model.keyOf(t);
    if (key?.team !== undefined) keyTokens.add(`team:${key.team}`);
    if (key?.user !== undefined) keyTokens.add(`user:${key.user}`);
  }
  const lines = ops
    .filter((o) => o.complete >= at - 3_000 && o.invoke <= at + 500)
    .filter((o) =>
      o.type === "auth"
        ? keyTokens.has(o.token) && (!replica || o.replica === replica)
        : o.addressed.some((t) => keyTokens.has(t)) || (o.newToken !== undefined && keyTokens.has(o.newToken)),
    )
    .sort((a, b) => a.invoke - b.invoke)
    .map((o) => {
      const span = `${fmt(o.invoke)}–${fmt(o.complete)}`;
      if (o.type === "auth") return `${span} ${o.replica} authenticate ${short(o.token)}${o.model ? ` for ${o.model}` : ""} → ${o.status}${o.code ? ` ${o.code}` : ""}`;
      const args = [
        o.addressed.map((t) => (/^(team|user|models):/.test(t) ? t : short(t))).join(","),
        o.modelId ? `model ${o.modelId.slice(0, 8)}` : "",
        o.grace ? `grace ${o.grace}` : "",
        o.models ? `models ${JSON.stringify(o.models)}` : "",
        o.raced ? "raced" : "",
      ]
        .filter(Boolean)
        .join(" ");
      const out = [o.newToken ? `new ${short(o.newToken)}` : "", o.eventIds.length ? `event ${o.eventIds.join(",")}` : ""].filter(Boolean).join(" ");
      return `${span} ${o.replica} ${o.kind} ${args} → ${o.status}${o.code ? ` ${o.code}` : ""} ${out}`.trimEnd();
    });
  return lines.length > 30 ? [...lines.slice(0, 10), `… ${lines.length - 30} more …`, ...lines.slice(-20)] : lines;
}
