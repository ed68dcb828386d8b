import { describe, expect, it } from "vitest";
import { LagHistory } from "../src/coherence/lag-history.js";

describe("the propagation lag history", () => {
  it("keeps the last entries in the order they were applied, across its wrap-around", () => {
    const history = new LagHistory(4);
    for (let id = 1; id <= 6; id++) history.record(id, id * 10, 1000 + id, id / 2);
    expect(history.since(0).map((l) => l.id)).toEqual([3, 4, 5, 6]);
    expect(history.since(4)).toEqual([
      { id: 5, lagMs: 50, appliedAt: 1005, applyUs: 2.5 },
      { id: 6, lagMs: 60, appliedAt: 1006, applyUs: 3 },
    ]);
    expect(history.lastLags(3)).toEqual([40, 50, 60]);
    expect(history.lastLags(100)).toEqual([30, 40, 50, 60]);
  });

  it("counts an event applied twice once, and starts over when cleared", () => {
    const history = new LagHistory(10);
    expect(history.record(7, 1, 0, 0)).toBe(true);
    expect(history.record(8, 2, 0, 0)).toBe(true);
    expect(history.record(7, 3, 0, 0)).toBe(false);
    expect(history.lastLags(10)).toEqual([1, 2]);

    history.clear();
    expect(history.since(0)).toEqual([]);
    // A new database history issues the same ids again: they are new measurements.
    expect(history.record(7, 4, 0, 0)).toBe(true);
    expect(history.lastLags(10)).toEqual([4]);
  });

  it("knows an id applied again thousands of events later (the catch-up re-applying what was applied ahead of a gap)", () => {
    const history = new LagHistory(4_000);
    history.record(7, 1, 0, 0);
    for (let id = 8; id < 7_000; id++) history.record(id, 0, 0, 0);
    expect(history.record(7, 2, 0, 0)).toBe(false);
    expect(history.since(6_998).map((l) => l.id)).toEqual([6_999]);
  });
});
