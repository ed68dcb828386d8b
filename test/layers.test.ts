import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { describeUnfollowed, moduleCycles, moduleGraph, readSources, unitCycles, unlayeredUnits, upwardImports } from "./support/layer-rules.js";

/**
 * The dependency direction of src/ (docs/architecture.md "Layers"): cli.ts → gateway.ts/workers.ts → http →
 * domain → store/redis/faults → errors/config/logger.ts/paths.ts. A module imports from its own folder or a lower
 * layer, never a higher one; no modules import each other in a circle, in one folder or across; and no folders
 * (or top-level modules) do either. Every kind of import counts, `import type` too (test/support/layer-rules.ts).
 */
const LAYER: Record<string, number> = {
  errors: 0,
  config: 0,
  "logger.ts": 0,
  "paths.ts": 0,
  "listeners.ts": 0,
  testing: 0,
  store: 1,
  redis: 1,
  faults: 1,
  timers: 1,
  auth: 2,
  keys: 2,
  teams: 2,
  users: 2,
  models: 2,
  litellm: 2,
  spendlogs: 2,
  limits: 2,
  coherence: 2,
  proxy: 2,
  upkeep: 2,
  "reinstated-bugs": 2,
  metrics: 2,
  http: 3,
  "gateway.ts": 4,
  "workers.ts": 4,
  "cli.ts": 5,
};

const src = fileURLToPath(new URL("../src", import.meta.url));

/**
 * Circles there were when this test began to see circles inside a folder and to count `import type`, not yet
 * untied. The list may only shrink: a new circle fails the test, and so does one of these once it is gone.
 */
/** Circles the tree still has (none): the list can only shrink, so a new circle fails and a fixed one must leave it. */
const UNTIED_CYCLES: string[] = [];

describe("src/ depends one way", () => {
  const { graph, unfollowed } = moduleGraph(readSources(src));

  it("the scanner sees src/, its top-level modules included", () => {
    expect(graph.get("store/db.ts")).toBeDefined();
    expect(graph.get("cli.ts")?.map((i) => i.to)).toEqual(expect.arrayContaining(["gateway.ts", "workers.ts"]));
    expect([...graph.values()].some((imports) => imports.some((i) => i.to === "logger.ts"))).toBe(true);
  });

  it("every entry of src/ has a layer", () => {
    expect(unlayeredUnits(graph, LAYER)).toEqual([]);
  });

  it("no module imports from a higher layer", () => {
    expect(upwardImports(graph, LAYER)).toEqual([]);
  });

  it("every dynamic import names its module", () => {
    expect(describeUnfollowed(unfollowed)).toEqual([]);
  });

  it("no modules import each other in a circle, in one folder or across folders", () => {
    expect(moduleCycles(graph)).toEqual(UNTIED_CYCLES);
  });

  it("no folders or top-level modules import each other in a circle", () => {
    expect(unitCycles(graph)).toEqual([]);
  });
});

describe("the layer rules find each way of breaking them", () => {
  /** The rules' findings for a few modules, by path under src/, each with its text. */
  const findings = (files: Record<string, string>) => {
    const { graph, unfollowed } = moduleGraph(files);
    return {
      unlayered: unlayeredUnits(graph, LAYER),
      upward: upwardImports(graph, LAYER),
      unfollowed: describeUnfollowed(unfollowed),
      cycles: moduleCycles(graph),
      unitCycles: unitCycles(graph),
    };
  };
  const none = { unlayered: [], upward: [], unfollowed: [], cycles: [], unitCycles: [] };

  it("a tree that keeps every rule has no findings: same folder, downward, packages, type-only downward", () => {
    expect(
      findings({
        "logger.ts": 'import { pino } from "pino";',
        "paths.ts": 'import path from "node:path";',
        "store/db.ts": 'import type { Logger } from "../logger.js";\nimport { packageRoot } from "../paths.js";\nimport { retry } from "../faults/retry.js";',
        "faults/retry.ts": 'import "../errors/errors.js";',
        "errors/errors.ts": "export class GatewayError extends Error {}",
        "http/app.ts": 'export { openDatabase } from "../store/db.js";\nconst later = () => import("../store/db.js");',
        "gateway.ts": 'import "./http/app.js";\nimport type { WorkerLink } from "./workers.js";',
        "workers.ts": 'import type { Logger } from "./logger.js";',
        "cli.ts": 'import { startGateway } from "./gateway.js";\nimport { superviseWorkers } from "./workers.js";',
      }),
    ).toEqual(none);
  });

  it("an upward import of a top-level module: store/ importing gateway.ts", () => {
    const { upward } = findings({ "store/db.ts": 'import { startGateway } from "../gateway.js";', "gateway.ts": "" });
    expect(upward).toEqual(['store/db.ts:1 imports "../gateway.js": layer 4 (gateway.ts) from layer 1']);
  });

  it("a top-level module importing the one above it: workers.ts importing cli.ts", () => {
    const { upward } = findings({ "workers.ts": 'import type { Command } from "./cli.js";', "cli.ts": "" });
    expect(upward).toEqual(['workers.ts:1 imports "./cli.js" (type only): layer 5 (cli.ts) from layer 4']);
  });

  it("an import for its side effects only", () => {
    const { upward } = findings({ "store/db.ts": 'import "../http/app.js";', "http/app.ts": "" });
    expect(upward).toEqual(['store/db.ts:1 imports for its side effects "../http/app.js": layer 3 (http) from layer 1']);
  });

  it("a re-export, named or whole", () => {
    const { upward } = findings({
      "config/settings.ts": 'export { openDatabase } from "../store/db.js";\nexport * from "../store/pool.js";\nexport type { Row } from "../store/rows.js";',
      "store/db.ts": "",
      "store/pool.ts": "",
      "store/rows.ts": "",
    });
    expect(upward).toEqual([
      'config/settings.ts:1 re-exports from "../store/db.js": layer 1 (store) from layer 0',
      'config/settings.ts:2 re-exports from "../store/pool.js": layer 1 (store) from layer 0',
      'config/settings.ts:3 re-exports from "../store/rows.js" (type only): layer 1 (store) from layer 0',
    ]);
  });

  it("a dynamic import, and an import() in a type", () => {
    const { upward } = findings({
      "store/db.ts": 'export async function late() {\n  const { app } = await import("../http/app.js");\n  return app;\n}\nlet g: typeof import("../gateway.js") | undefined;',
      "http/app.ts": "",
      "gateway.ts": "",
    });
    expect(upward).toEqual([
      'store/db.ts:2 imports dynamically "../http/app.js": layer 3 (http) from layer 1',
      'store/db.ts:5 names in a type "../gateway.js" (type only): layer 4 (gateway.ts) from layer 1',
    ]);
  });

  it("a dynamic import of a name it computes", () => {
    const { unfollowed } = findings({ "store/db.ts": 'const where = "../http/app.js";\nawait import(where);' });
    expect(unfollowed).toEqual(["store/db.ts:2 import(where): an import of something not written out, which no rule can follow"]);
  });

  it("an import of something that is no module of src/, or of an entry with no layer", () => {
    const { upward, unlayered } = findings({
      "store/db.ts": 'import { fixture } from "../../test/helpers/services.js";\nimport { x } from "./missing.js";\nimport { y } from "../plugins/y.js";',
      "plugins/y.ts": "",
    });
    expect(upward).toEqual([
      'store/db.ts:1 imports "../../test/helpers/services.js", which is no module of src/',
      'store/db.ts:2 imports "./missing.js", which is no module of src/',
      'store/db.ts:3 imports "../plugins/y.js": plugins has no layer',
    ]);
    expect(unlayered).toEqual(["plugins"]);
  });

  it("a circle inside one folder, type-only imports included", () => {
    const { cycles, upward, unitCycles } = findings({
      "store/spend-log-copy.ts": 'import type { SpendLogRow } from "./spend-log-store.js";',
      "store/spend-log-store.ts": 'import { SpendLogBatch } from "./spend-log-copy.js";',
    });
    expect(cycles).toEqual(["store/spend-log-copy.ts → store/spend-log-store.ts → store/spend-log-copy.ts"]);
    expect([upward, unitCycles]).toEqual([[], []]);
  });

  it("a longer circle, a module importing itself, and a knot of more than one loop", () => {
    const { cycles } = findings({
      "keys/a.ts": 'import "./b.js";',
      "keys/b.ts": 'import "../models/c.js";',
      "models/c.ts": 'import "../keys/a.js";\nimport "./d.js";',
      "models/d.ts": 'import "./c.js";',
      "teams/self.ts": 'export * from "./self.js";',
    });
    expect(cycles).toEqual(["keys/a.ts → keys/b.ts → models/c.ts → keys/a.ts (the same knot holds models/d.ts)", "teams/self.ts → teams/self.ts"]);
  });

  it("a circle of type-only imports, said to be one", () => {
    const { cycles } = findings({
      "keys/key-service.ts": 'import type { KeyStandings } from "./key-standing.js";\nexport interface LiveSpend {}',
      "keys/key-standing.ts": 'import { type LiveSpend } from "./key-service.js";\nexport class KeyStandings {}',
    });
    expect(cycles).toEqual(["keys/key-service.ts → keys/key-standing.ts → keys/key-service.ts (type-only imports all the way)"]);
  });

  it("folders of one layer in a circle, though no two modules are", () => {
    const { cycles, unitCycles, upward } = findings({
      "keys/a.ts": 'import "../models/b.js";',
      "models/b.ts": "",
      "models/c.ts": 'import type { D } from "../keys/d.js";',
      "keys/d.ts": "",
    });
    expect(unitCycles).toEqual(["keys → models → keys"]);
    expect([cycles, upward]).toEqual([[], []]);
  });
});
