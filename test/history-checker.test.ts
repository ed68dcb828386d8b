import { describe, expect, it } from "vitest";
import { checkHistory } from "../chaos/lib/history/checker.js";
import type { AdminOp, AuthOp, CommittedEvent, FaultWindow } from "../chaos/lib/history/history.js";

/**
 * The history checker on small hand-made histories: the rule that a replica keeps serving a key it holds while
 * Postgres is unreachable (fail static) must not count a rotated token's 503 against it — the rotation evicts the
 * old token, whose grace the replica then has to read from Postgres.
 */
const t0 = 1_000_000;
const admin = (o: Partial<AdminOp> & Pick<AdminOp, "id" | "kind" | "invoke" | "complete">): AdminOp => ({
  type: "admin",
  replica: "A",
  status: 200,
  addressed: [],
  eventIds: [],
  ...o,
});
const auth = (id: number, replica: string, at: number, token: string, status: number, code?: string): AuthOp => ({
  type: "auth",
  id,
  replica,
  invoke: at,
  complete: at + 3,
  status,
  token,
  ...(code ? { code } : {}),
});
const outage: FaultWindow = { name: "Postgres blackholed", start: t0 + 5_800, end: t0 + 7_000, postgresImpaired: true, partition: false, notificationsLost: false };

function failStaticViolations(rotated: boolean): string[] {
  const ops = [
    admin({ id: 1, kind: "generate", invoke: t0, complete: t0 + 10, eventIds: [1], newToken: "old-token", keyId: "key-1", models: [] }),
    auth(2, "C", t0 + 5_000, "old-token", 200),
    ...(rotated
      ? [
          admin({
            id: 3,
            kind: "regenerate",
            invoke: t0 + 5_150,
            complete: t0 + 5_300,
            addressed: ["old-token"],
            grace: "2s",
            eventIds: [2],
            newToken: "new-token",
            keyId: "key-1",
          }),
        ]
      : []),
    auth(4, "C", t0 + 5_900, "old-token", 503, "key_store_unavailable"),
  ];
  const events: CommittedEvent[] = [
    { id: 1, kind: "generate", tokens: ["old-token"], at: t0 + 5 },
    ...(rotated ? [{ id: 2, kind: "regenerate", tokens: ["old-token", "new-token"], at: t0 + 5_250 }] : []),
  ];
  const { result } = checkHistory(ops, events, [outage]);
  return result.violations.filter((v) => v.kind === "fail static broken").map((v) => v.message);
}

describe("history checker: fail static", () => {
  it("a 503 during an outage for a key the replica holds, unchanged, is a violation", () => {
    expect(failStaticViolations(false)).toHaveLength(1);
  });

  it("a 503 during an outage for a token rotated since the replica accepted it is not", () => {
    expect(failStaticViolations(true)).toEqual([]);
  });
});
