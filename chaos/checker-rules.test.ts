import { describe, expect, it } from "vitest";
import { checkHistory, commitTime, DEFAULT_CHECKER_OPTIONS } from "./lib/history/checker.js";
import type { AdminOp, AuthOp, CommittedEvent, FaultWindow } from "./lib/history/history.js";
import { type SoftBudgetAlert, softBudgetsHold } from "./lib/history/soft-budgets.js";

/**
 * The history checker's rules for failovers, commit dating, budgets and soft budgets, on small hand-made histories (the runs in
 * history.test.ts exercise them at scale; these pin down each rule's edge).
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
const auth = (id: number, replica: string, at: number, token: string, status: number, extra: Partial<AuthOp> = {}): AuthOp => ({
  type: "auth",
  id,
  replica,
  invoke: at,
  complete: at + 3,
  status,
  token,
  ...extra,
});
const kinds = (r: ReturnType<typeof checkHistory>) => r.result.violations.map((v) => v.kind);

describe("history checker: a lossy Postgres failover", () => {
  // Generation 0 commits key k1 (event 1, survives) and then key k2 and a block of k1 (events 2 and 3, lost: the
  // standby promoted at t0+5000 held event 1 only). Generation 1 issues id 2 again: a block of k1.
  const failover: FaultWindow = {
    name: "postgres failover losing commits",
    start: t0 + 3_000,
    end: t0 + 5_000,
    postgresImpaired: true,
    partition: false,
    notificationsLost: true,
    lossFrom: t0 + 3_000,
    lossTo: t0 + 4_800,
  };
  const ops = (after: AuthOp[]) => [
    admin({ id: 1, kind: "generate", invoke: t0, complete: t0 + 10, eventIds: [1], newToken: "k1", keyId: "key-1", models: [] }),
    admin({ id: 2, kind: "generate", invoke: t0 + 3_100, complete: t0 + 3_110, eventIds: [2], newToken: "k2", keyId: "key-2", models: [] }),
    admin({ id: 3, kind: "block", invoke: t0 + 3_200, complete: t0 + 3_210, eventIds: [3], addressed: ["k1"] }),
    auth(4, "B", t0 + 3_500, "k2", 200),
    auth(5, "B", t0 + 3_600, "k1", 401),
    ...after,
  ];
  const events: CommittedEvent[] = [
    { id: 1, gen: 0, kind: "generate", tokens: ["k1"], at: t0 + 5 },
    { id: 2, gen: 0, kind: "generate", tokens: ["k2"], at: t0 + 3_105, lost: true },
    { id: 3, gen: 0, kind: "block", tokens: ["k1"], at: t0 + 3_205, lost: true },
  ];
  const check = (after: AuthOp[], more: CommittedEvent[] = [], moreOps: AdminOp[] = []) =>
    checkHistory([...ops(after), ...moreOps], [...events, ...more], [failover], DEFAULT_CHECKER_OPTIONS, [], [{ gen: 1, at: t0 + 5_000 }]);

  it("a lost change is no violation: its answers are right until the switch", () => {
    const r = check([auth(6, "C", t0 + 4_900, "k2", 200)]);
    expect(kinds(r)).toEqual([]);
    expect(r.result.lostChanges).toBe(2);
  });

  it("from the switch on, the surviving history is the truth within the hard bound", () => {
    // The lost key still accepted, the lost block still enforced, 1 s after the switch: within the bound.
    expect(kinds(check([auth(6, "C", t0 + 6_000, "k2", 200), auth(7, "C", t0 + 6_000, "k1", 401)]))).toEqual([]);
    // 3 s after: both wrong.
    expect(kinds(check([auth(6, "C", t0 + 8_000, "k2", 200), auth(7, "C", t0 + 8_000, "k1", 401)])).sort()).toEqual(["accepted a key that was not valid", "rejected a valid key"]);
  });

  it("an id issued again by the promoted standby is another event: the one that committed during the request", () => {
    const block = admin({ id: 8, kind: "block", invoke: t0 + 6_000, complete: t0 + 6_020, eventIds: [2], addressed: ["k1"] });
    const reissued: CommittedEvent = { id: 2, gen: 1, kind: "block", tokens: ["k1"], at: t0 + 6_010 };
    const r = check([auth(9, "B", t0 + 9_000, "k1", 401)], [reissued], [block]);
    expect(kinds(r)).toEqual([]);
    // Accepting k1 long after that block is a violation (the bug `lineage-blind` reinstates).
    expect(kinds(check([auth(9, "B", t0 + 9_000, "k1", 200)], [reissued], [block]))).toEqual(["accepted a key that was not valid"]);
  });

  it("a change lost with its primary and made again on the new one by the same request is one of its attempts", () => {
    // The block's COMMIT reached the old primary (heard, then lost); its connection died, and the replica, finding
    // it absent from the survivor, made it again there (event 2 of generation 1), then answered 200.
    const retried = admin({ id: 11, kind: "block", invoke: t0 + 4_600, complete: t0 + 5_300, eventIds: [2], addressed: ["k1"] });
    const attempt: CommittedEvent = { id: 4, gen: 0, kind: "block", tokens: ["k1"], at: t0 + 4_650, lost: true };
    const again: CommittedEvent = { id: 2, gen: 1, kind: "block", tokens: ["k1"], at: t0 + 5_250 };
    expect(kinds(check([auth(12, "B", t0 + 9_000, "k1", 401)], [attempt, again], [retried]))).toEqual([]);
  });

  it("a change lost with its primary whose re-run on the new one was refused (4xx) is an attempt of that request", () => {
    // An unblock of k2 (a key only the lost history had) committed on the old primary; its connection died during
    // COMMIT, the replica re-ran it on the survivor, which has no k2: 404. The lost event is that request's.
    const refused = admin({ id: 13, kind: "unblock", invoke: t0 + 4_600, complete: t0 + 5_300, status: 404, addressed: ["k2"] });
    const attempt: CommittedEvent = { id: 4, gen: 0, kind: "unblock", tokens: ["k2"], at: t0 + 4_650, lost: true };
    expect(kinds(check([], [attempt], [refused]))).toEqual([]);
    // Without such a request the lost change is unexplained (a change no client asked for).
    expect(kinds(check([], [attempt], []))).toEqual(["unexplained change"]);
  });

  it("an acknowledged change the failover lost unheard is not 'lost' by the gateway's fault", () => {
    const unheard = admin({ id: 10, kind: "block", invoke: t0 + 4_700, complete: t0 + 4_750, eventIds: [4], addressed: ["k1"] });
    expect(kinds(check([], [], [unheard]))).toEqual([]);
    const later = admin({ id: 10, kind: "block", invoke: t0 + 7_000, complete: t0 + 7_050, eventIds: [4], addressed: ["k1"] });
    expect(kinds(check([], [], [later]))).toEqual(["acknowledged change lost"]);
  });

  it("an id the promoted standby issued again belongs to a change of the request's own kind and tokens, not to an unheard lost one", () => {
    // A generate answered 200 with event 4 just before the crash (lost unheard); the promoted standby issued id 4
    // again, 700 ms later, to a block of k1. The block is the block's; the generate's key never existed there.
    const unheard = admin({ id: 10, kind: "generate", invoke: t0 + 4_700, complete: t0 + 4_750, eventIds: [4], newToken: "k10", keyId: "key-10", models: [] });
    const block = admin({ id: 11, kind: "block", invoke: t0 + 5_400, complete: t0 + 5_460, eventIds: [4], addressed: ["k1"] });
    const reissued: CommittedEvent = { id: 4, gen: 1, kind: "block", tokens: ["k1"], at: t0 + 5_450 };
    const r = check([auth(12, "B", t0 + 9_000, "k1", 401), auth(13, "B", t0 + 9_000, "k10", 401)], [reissued], [unheard, block]);
    expect(kinds(r)).toEqual([]);
    expect(r.model.keys.has("key-10")).toBe(false);
  });
});

describe("history checker: changes are dated by their commit", () => {
  // A block whose event row was written at t0+1000 but whose COMMIT reached Postgres 3 s later (its replica's
  // Postgres answers slowly): another replica accepting the key in between is right.
  const ops = (status: number, at: number) => [
    admin({ id: 1, kind: "generate", invoke: t0, complete: t0 + 10, eventIds: [1], newToken: "k1", keyId: "key-1", models: [] }),
    admin({ id: 2, kind: "block", replica: "C", invoke: t0 + 990, complete: t0 + 4_100, eventIds: [2], addressed: ["k1"] }),
    auth(3, "B", at, "k1", status),
  ];
  const events = (heardAt?: number): CommittedEvent[] => [
    { id: 1, kind: "generate", tokens: ["k1"], at: t0 + 5 },
    { id: 2, kind: "block", tokens: ["k1"], writtenAt: t0 + 1_000, at: commitTime(t0 + 1_000, heardAt), ...(heardAt ? { committedBy: heardAt } : {}) },
  ];

  it("an answer before the commit, seconds after the row was written, is right", () => {
    expect(kinds(checkHistory(ops(200, t0 + 3_500), events(t0 + 4_000), []))).toEqual([]);
    // Dated by the row alone, the same answer looked 2.5 s stale (the false violation a full run reported).
    expect(kinds(checkHistory(ops(200, t0 + 3_500), events(undefined), []))).toEqual(["accepted a key that was not valid"]);
  });

  it("a stale answer more than the bound after the commit is still caught", () => {
    expect(kinds(checkHistory(ops(200, t0 + 5_200), events(t0 + 4_000), []))).toEqual(["accepted a key that was not valid"]);
  });

  it("an answer that shows the change a moment before its NOTIFY arrived is right (delivery takes a moment)", () => {
    expect(kinds(checkHistory(ops(401, t0 + 3_960), events(t0 + 4_000), []))).toEqual([]);
  });
});

describe("history checker: budgets", () => {
  const cost = 0.01;
  const budgetKey = admin({ id: 1, kind: "generate", invoke: t0, complete: t0 + 10, eventIds: [1], newToken: "b1", keyId: "key-b", models: [], maxBudget: 30 * cost });
  const events: CommittedEvent[] = [{ id: 1, kind: "generate", tokens: ["b1"], at: t0 + 5 }];
  const charged = (n: number, from: number, every = 40) => Array.from({ length: n }, (_, i) => auth(100 + i, "A", from + i * every, "b1", 200, { model: "priced", cost }));
  const restart: FaultWindow = {
    name: "Redis restarted empty",
    start: t0 + 2_000,
    end: t0 + 2_400,
    postgresImpaired: false,
    partition: false,
    notificationsLost: false,
    spendMayBeForgotten: [{ from: t0 + 2_000, to: t0 + 2_000 }],
  };

  it("the budget plus one request per client is allowed", () => {
    const r = checkHistory([budgetKey, ...charged(33, t0 + 100)], events, []);
    expect(kinds(r)).toEqual([]);
    expect(kinds(checkHistory([budgetKey, ...charged(34, t0 + 100)], events, []))).toEqual(["budget overspent"]);
  });

  it("a budget on the priced model alone (model_max_budget) is held the same way", () => {
    const modelBudgetKey = admin({ ...budgetKey, maxBudget: undefined, modelBudget: 30 * cost });
    expect(kinds(checkHistory([modelBudgetKey, ...charged(33, t0 + 100)], events, []))).toEqual([]);
    const r = checkHistory([modelBudgetKey, ...charged(34, t0 + 100)], events, []);
    expect(kinds(r)).toEqual(["budget overspent"]);
    expect(r.result.violations[0]!.message).toContain("model_max_budget on priced");
  });

  it("after Redis lost its ledgers, so is what was charged in the last flush interval", () => {
    // 20 requests 100 ms apart up to the restart, of which those in its last flush interval (+ margin) are forgiven.
    const before = charged(20, t0 + 2_000 - 19 * 100, 100);
    const after = Array.from({ length: 16 }, (_, i) => auth(200 + i, "B", t0 + 3_000 + i * 40, "b1", 200, { model: "priced", cost }));
    expect(kinds(checkHistory([budgetKey, ...before, ...after], events, [restart]))).toEqual([]);
    // A ledger rewound by far more (a whole budget again) is not.
    const rewound = Array.from({ length: 30 }, (_, i) => auth(300 + i, "B", t0 + 3_000 + i * 40, "b1", 200, { model: "priced", cost }));
    expect(kinds(checkHistory([budgetKey, ...before, ...rewound], events, [restart]))).toEqual(["budget overspent"]);
  });
});

describe("history checker: soft budgets", () => {
  const cost = 0.01;
  const key = admin({
    id: 1,
    kind: "generate",
    invoke: t0,
    complete: t0 + 10,
    eventIds: [1],
    newToken: "s1",
    keyId: "key-s",
    models: [],
    maxBudget: 30 * cost,
    softBudget: 15 * cost,
  });
  const charges = Array.from({ length: 20 }, (_, i) => auth(100 + i, "A", t0 + 100 + i * 40, "s1", 200, { model: "priced", cost }));
  const alert = (at: number, spend = 16 * cost): SoftBudgetAlert => ({ keyId: "key-s", at, spend, softBudget: 15 * cost });
  const judge = (alerts: SoftBudgetAlert[], faults: FaultWindow[] = [], spent = 20 * cost) =>
    softBudgetsHold({ ops: [key, ...charges], faults, alerts, durable: new Map([["key-s", spent]]), flushIntervalMs: 1_000, tailMs: 3_000 }).violations.map((v) => v.kind);
  const window = (name: string, extra: Partial<FaultWindow> = {}): FaultWindow => ({
    name,
    start: t0 + 500,
    end: t0 + 900,
    postgresImpaired: true,
    partition: false,
    notificationsLost: false,
    ...extra,
  });

  it("a key spent past its soft budget is told once", () => {
    expect(judge([alert(t0 + 1_500)])).toEqual([]);
    expect(judge([alert(t0 + 1_500), alert(t0 + 2_500, 17 * cost)])).toEqual(["soft budget told twice"]);
    expect(judge([alert(t0 + 1_500, 14 * cost)])).toEqual(["soft budget told wrong"]);
  });
  it("twice only when a failover lost commits while it was spent", () => {
    const lossy = window("postgres failover losing commits", { lossFrom: t0 + 500, lossTo: t0 + 900 });
    expect(judge([alert(t0 + 700), alert(t0 + 2_500)], [lossy])).toEqual([]);
    expect(judge([alert(t0 + 700), alert(t0 + 2_500)], [window("connection dies during COMMIT")])).toEqual(["soft budget told twice"]);
  });
  it("never told is a violation, but for a replica killed while it was spent (an alert dies with its replica)", () => {
    expect(judge([])).toEqual(["soft budget crossing never told"]);
    expect(judge([], [window("connection dies during COMMIT")])).toEqual(["soft budget crossing never told"]);
    expect(judge([], [window("a replica SIGKILLed and restarted")])).toEqual([]);
    // Spend not durable past it: nothing owed yet.
    expect(judge([], [], 14 * cost)).toEqual([]);
  });
});

describe("history checker: a request with invalid input", () => {
  const kill: FaultWindow = { name: "a replica SIGKILLed and restarted", start: t0 + 1_000, end: t0 + 2_000, postgresImpaired: false, partition: false, notificationsLost: false };
  const invalid = (status: number, at: number) => admin({ id: 1, kind: "regenerate", invoke: at, complete: at + 5, status, invalid: true });
  const checkWith = (op: AdminOp) => kinds(checkHistory([op], [], [kill]));

  it("must be refused with a 400", () => {
    expect(checkWith(invalid(400, t0))).toEqual([]);
    expect(checkWith(invalid(500, t0 + 1_500))).toEqual(["invalid input not refused"]);
  });
  it("may go unanswered while a fault kills or cuts off its replica, not otherwise (that would be a crash)", () => {
    expect(checkWith(invalid(0, t0 + 1_500))).toEqual([]);
    expect(checkWith(invalid(0, t0 + 60_000))).toEqual(["invalid input not refused"]);
  });
});

describe("history checker: a grace that ended before its rotation committed", () => {
  // A regenerate with grace 2 s on a replica whose Postgres answers 3 s late: revoke_at is taken when the row is
  // written (t0+1000 → t0+3000), the COMMIT lands at t0+7000. Until then the old token is simply current.
  const ops = (status: number, at: number) => [
    admin({ id: 1, kind: "generate", invoke: t0, complete: t0 + 10, eventIds: [1], newToken: "k1", keyId: "key-1", models: [] }),
    admin({ id: 2, kind: "regenerate", invoke: t0 + 990, complete: t0 + 7_100, eventIds: [2], addressed: ["k1"], newToken: "k2", grace: "2s", revokeAt: t0 + 3_000 }),
    auth(3, "C", at, "k1", status),
  ];
  const events: CommittedEvent[] = [
    { id: 1, kind: "generate", tokens: ["k1"], at: t0 + 5 },
    { id: 2, kind: "regenerate", tokens: ["k1", "k2"], writtenAt: t0 + 1_000, at: commitTime(t0 + 1_000, t0 + 7_000), committedBy: t0 + 7_000 },
  ];
  it("the old token accepted between revoke_at and the commit is right; after the commit it must go", () => {
    expect(kinds(checkHistory(ops(200, t0 + 5_000), events, []))).toEqual([]);
    expect(kinds(checkHistory(ops(200, t0 + 9_000), events, []))).toEqual(["accepted a key that was not valid"]);
  });
});

describe("history checker: a change whose request waited for a rotation of its key", () => {
  // A block names k1 while a rotation (no grace) replaces it with k2: the block waits for the rotation's lock and
  // then blocks the key as it committed, under k2. Its answer is lost in a fault (503): the change is its.
  const ops = (blockStatus: number) => [
    admin({ id: 1, kind: "generate", invoke: t0, complete: t0 + 10, eventIds: [1], newToken: "k1", keyId: "key-1", models: [] }),
    admin({ id: 2, kind: "regenerate", invoke: t0 + 1_000, complete: t0 + 1_030, eventIds: [2], addressed: ["k1"], newToken: "k2", grace: "0s", revokeAt: t0 + 1_020 }),
    admin({ id: 3, kind: "block", invoke: t0 + 1_010, complete: t0 + 3_000, status: blockStatus, addressed: ["k1"] }),
    auth(4, "B", t0 + 5_000, "k2", 401),
  ];
  const events: CommittedEvent[] = [
    { id: 1, kind: "generate", tokens: ["k1"], at: t0 + 5 },
    { id: 2, kind: "regenerate", tokens: ["k1", "k2"], at: t0 + 1_020 },
    { id: 3, kind: "block", tokens: ["k2"], at: t0 + 1_025 },
  ];
  const blackhole: FaultWindow = { name: "Postgres blackholed 3 s", start: t0 + 1_026, end: t0 + 4_000, postgresImpaired: true, partition: false, notificationsLost: false };
  it("is explained by that request, named by the key's earlier token", () => {
    expect(kinds(checkHistory(ops(503), events, [blackhole]))).toEqual([]);
  });
  it("is not explained by a request that changed nothing (a 4xx)", () => {
    expect(kinds(checkHistory(ops(404), events, [blackhole]))).toContain("unexplained change");
  });
});
