import { pino } from "pino";
import { describe, expect, it } from "vitest";
import { Listeners } from "../src/listeners.js";

/** A logger whose lines are kept, parsed. */
function capturingLogger() {
  const lines: Array<Record<string, unknown>> = [];
  const logger = pino({ level: "debug" }, { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) });
  return { logger, lines };
}

describe("a hook's subscribers (src/listeners.ts)", () => {
  it("tells every subscriber, in the order they subscribed, with the emitted arguments", () => {
    const hook = new Listeners<[ledger: string, generation: string]>("budget resets");
    const told: string[] = [];
    hook.subscribe((ledger, generation) => void told.push(`first ${ledger} ${generation}`));
    hook.subscribe((ledger, generation) => void told.push(`second ${ledger} ${generation}`));
    hook.emit("key:1", "g2");
    expect(told).toEqual(["first key:1 g2", "second key:1 g2"]);
    expect(hook.size).toBe(2);
  });

  it("a second subscriber does not replace the first (what a single callback slot did)", () => {
    const hook = new Listeners<[]>("heartbeat");
    let a = 0;
    let b = 0;
    hook.subscribe(() => a++);
    hook.subscribe(() => b++);
    hook.emit();
    hook.emit();
    expect([a, b]).toEqual([2, 2]);
  });

  it("unsubscribing removes only that subscription, and a second call does nothing", () => {
    const hook = new Listeners<[n: number]>("lag");
    const told: string[] = [];
    const f = (n: number) => void told.push(`f${n}`);
    const first = hook.subscribe(f);
    hook.subscribe(f); // the same function twice: two subscriptions
    hook.subscribe((n) => void told.push(`g${n}`));
    first();
    first();
    hook.emit(1);
    expect(told).toEqual(["f1", "g1"]);
    expect(hook.size).toBe(2);
  });

  it("a subscriber that throws is logged, and the others are still told", () => {
    const { logger, lines } = capturingLogger();
    const hook = new Listeners<[]>("the coherence heartbeat", logger);
    const told: string[] = [];
    hook.subscribe(() => void told.push("before"));
    hook.subscribe(() => {
      throw new Error("models could not be read");
    });
    hook.subscribe(() => void told.push("after"));
    expect(() => hook.emit()).not.toThrow();
    expect(told).toEqual(["before", "after"]);
    expect(lines).toEqual([expect.objectContaining({ level: 40, err: "models could not be read", hook: "the coherence heartbeat" })]);
  });

  it("a subscriber whose promise rejects is logged too, without an unhandled rejection", async () => {
    const { logger, lines } = capturingLogger();
    const hook = new Listeners<[string]>("budget resets", logger);
    let after = 0;
    hook.subscribe(async () => {
      throw new Error("Redis unreachable");
    });
    hook.subscribe(() => after++);
    hook.emit("key:1");
    expect(after).toBe(1);
    await new Promise<void>((resolve) => setImmediate(resolve)); // the rejection is handled on a later microtask
    expect(lines).toEqual([expect.objectContaining({ err: "Redis unreachable", hook: "budget resets" })]);
  });

  it("one subscribing or leaving during an emit takes effect from the next emit", () => {
    const hook = new Listeners<[]>("changes");
    const told: string[] = [];
    let leave = () => {};
    hook.subscribe(() => {
      told.push("a");
      leave();
      hook.subscribe(() => void told.push("late"));
    });
    leave = hook.subscribe(() => void told.push("b"));
    hook.emit();
    expect(told).toEqual(["a", "b"]);
    told.length = 0;
    leave = () => {};
    hook.emit();
    expect(told).toEqual(["a", "late"]);
  });
});
