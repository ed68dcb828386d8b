import { readdirSync, readFileSync, statSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

/**
 * The dependency direction of src/ (docs/architecture.md): cli → gateway → http → domain → store/redis/faults →
 * errors/config/logger. A module may import from its own layer's folder or from a lower layer, never from a
 * higher one, and the folders of one layer never import each other in a circle.
 */
const src = path.resolve(fileURLToPath(new URL("../src", import.meta.url)));

const LAYER: Record<string, number> = {
  errors: 0,
  config: 0,
  "logger.ts": 0,
  "paths.ts": 0,
  testing: 0,
  store: 1,
  redis: 1,
  faults: 1,
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
  metrics: 2,
  http: 3,
  "gateway.ts": 4,
  "workers.ts": 4,
  "cli.ts": 5,
};

/** The top-level entry of src/ a file belongs to: its folder, or the file itself at the top. */
const unit = (file: string) => path.relative(src, file).split(path.sep)[0]!;

function imports(): Array<{ from: string; to: string; file: string }> {
  const edges: Array<{ from: string; to: string; file: string }> = [];
  const walk = (dir: string) => {
    for (const name of readdirSync(dir)) {
      const full = path.join(dir, name);
      if (statSync(full).isDirectory()) walk(full);
      else if (full.endsWith(".ts")) {
        for (const m of readFileSync(full, "utf8").matchAll(/(?:from|import\()\s*"(\.{1,2}\/[^"]+)"/g)) {
          const target = path.resolve(path.dirname(full), m[1]!);
          if (unit(full) !== unit(target)) edges.push({ from: unit(full), to: unit(target), file: path.relative(src, full) });
        }
      }
    }
  };
  walk(src);
  return edges;
}

describe("src/ depends one way", () => {
  const edges = imports();

  it("every top-level entry of src/ has a layer", () => {
    const units = new Set(readdirSync(src).filter((n) => n.endsWith(".ts") || statSync(path.join(src, n)).isDirectory()));
    expect([...units].filter((u) => LAYER[u] === undefined)).toEqual([]);
  });

  it("no module imports from a higher layer", () => {
    const upward = edges.filter((e) => LAYER[e.to]! > LAYER[e.from]!).map((e) => `${e.file} imports ${e.to} (layer ${LAYER[e.to]}) from layer ${LAYER[e.from]}`);
    expect(upward).toEqual([]);
  });

  it("the folders of one layer import each other in no circle", () => {
    const graph = new Map<string, Set<string>>();
    for (const e of edges) if (LAYER[e.to] === LAYER[e.from]) (graph.get(e.from) ?? graph.set(e.from, new Set()).get(e.from)!).add(e.to);
    const cycles: string[] = [];
    const visit = (node: string, trail: string[]) => {
      for (const next of graph.get(node) ?? []) {
        if (trail.includes(next)) cycles.push([...trail.slice(trail.indexOf(next)), next].join(" → "));
        else visit(next, [...trail, next]);
      }
    };
    for (const node of graph.keys()) visit(node, [node]);
    expect([...new Set(cycles)]).toEqual([]);
  });
});
