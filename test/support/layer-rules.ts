import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import ts from "typescript";

/**
 * The rules of docs/architecture.md "Layers" as functions over a module graph, so that test/layers.test.ts can
 * run them on src/ and, to prove they can fail, on small graphs made to break each one.
 *
 * Imports are read by TypeScript's own parser, not by a pattern: every form that makes one module depend on another
 * is seen — `import … from`, `import "…"` (for its side effects), `export … from`, `import("…")`, `import x =
 * require("…")`, and `import("…")` in a type. A module is named by its path under src/ (`store/db.ts`, `gateway.ts`),
 * and an import's `.js` is the `.ts` it is compiled from.
 */

export type ImportKind = "import" | "side effect" | "re-export" | "dynamic" | "require" | "in a type";

const VERB: Record<ImportKind, string> = {
  import: "imports",
  "side effect": "imports for its side effects",
  "re-export": "re-exports from",
  dynamic: "imports dynamically",
  require: "requires",
  "in a type": "names in a type",
};

export interface Import {
  /** The module imported, by its path under src/ (`../gateway.js` from `store/db.ts` is `gateway.ts`). */
  to: string;
  /** As written. */
  specifier: string;
  kind: ImportKind;
  /** Erased by the compiler: `import type`, `export type`, every name marked `type`, or `import("…")` in a type. */
  typeOnly: boolean;
  line: number;
}

/** Each module's path under src/, with what it imports from src/; packages and node: modules are left out. */
export type ModuleGraph = Map<string, Import[]>;

/** A dynamic import of something other than a literal: no test can tell what it loads. */
export interface UnfollowedImport {
  file: string;
  line: number;
  text: string;
}

export interface ScannedModules {
  graph: ModuleGraph;
  unfollowed: UnfollowedImport[];
}

/** The `.ts` a relative import of `from` is compiled from, by its path under src/ (may lie outside it: `../…`). */
function resolve(from: string, specifier: string): string {
  const target = path.posix.normalize(path.posix.join(path.posix.dirname(from), specifier));
  return target
    .replace(/\.js$/, ".ts")
    .replace(/\.mjs$/, ".mts")
    .replace(/\.cjs$/, ".cts");
}

const isRelative = (specifier: string) => specifier.startsWith("./") || specifier.startsWith("../");

/** Every relative import of one module, and the dynamic imports whose target is not written out. */
export function scanImports(file: string, text: string): { imports: Import[]; unfollowed: UnfollowedImport[] } {
  const source = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, true, ts.ScriptKind.TS);
  const imports: Import[] = [];
  const unfollowed: UnfollowedImport[] = [];
  const lineOf = (node: ts.Node) => source.getLineAndCharacterOfPosition(node.getStart(source)).line + 1;
  const add = (node: ts.Node, specifier: ts.Expression | undefined, kind: ImportKind, typeOnly: boolean) => {
    if (specifier === undefined || !ts.isStringLiteralLike(specifier)) {
      if (kind === "dynamic" || kind === "require") unfollowed.push({ file, line: lineOf(node), text: node.getText(source) });
      return;
    }
    if (isRelative(specifier.text)) imports.push({ to: resolve(file, specifier.text), specifier: specifier.text, kind, typeOnly, line: lineOf(node) });
  };
  const visit = (node: ts.Node): void => {
    if (ts.isImportDeclaration(node)) {
      const clause = node.importClause;
      if (clause === undefined) add(node, node.moduleSpecifier, "side effect", false);
      else {
        const bindings = clause.namedBindings;
        const namesOnlyTypes =
          clause.name === undefined && bindings !== undefined && ts.isNamedImports(bindings) && bindings.elements.length > 0 && bindings.elements.every((e) => e.isTypeOnly);
        add(node, node.moduleSpecifier, "import", clause.isTypeOnly || namesOnlyTypes);
      }
    } else if (ts.isExportDeclaration(node)) {
      if (node.moduleSpecifier !== undefined) {
        const clause = node.exportClause;
        const namesOnlyTypes = clause !== undefined && ts.isNamedExports(clause) && clause.elements.length > 0 && clause.elements.every((e) => e.isTypeOnly);
        add(node, node.moduleSpecifier, "re-export", node.isTypeOnly || namesOnlyTypes);
      }
    } else if (ts.isImportEqualsDeclaration(node)) {
      if (ts.isExternalModuleReference(node.moduleReference)) add(node, node.moduleReference.expression, "require", node.isTypeOnly);
    } else if (ts.isCallExpression(node)) {
      if (node.expression.kind === ts.SyntaxKind.ImportKeyword) add(node, node.arguments[0], "dynamic", false);
      else if (ts.isIdentifier(node.expression) && node.expression.text === "require" && node.arguments.length === 1) add(node, node.arguments[0], "require", false);
    } else if (ts.isImportTypeNode(node)) {
      const argument = node.argument;
      if (ts.isLiteralTypeNode(argument)) add(node, argument.literal as ts.Expression, "in a type", true);
    }
    ts.forEachChild(node, visit);
  };
  visit(source);
  return { imports, unfollowed };
}

/** The graph of modules given by their path under src/ and their text. */
export function moduleGraph(files: Record<string, string>): ScannedModules {
  const graph: ModuleGraph = new Map();
  const unfollowed: UnfollowedImport[] = [];
  for (const [file, text] of Object.entries(files)) {
    const scanned = scanImports(file, text);
    graph.set(file, scanned.imports);
    unfollowed.push(...scanned.unfollowed);
  }
  return { graph, unfollowed };
}

/** Every .ts file under `dir`, by its path under it (with /), and its text. */
export function readSources(dir: string): Record<string, string> {
  const files: Record<string, string> = {};
  for (const entry of readdirSync(dir, { recursive: true, withFileTypes: true })) {
    if (!entry.isFile() || !/\.[mc]?ts$/.test(entry.name) || entry.name.endsWith(".d.ts")) continue;
    const full = path.join(entry.parentPath, entry.name);
    files[path.relative(dir, full).split(path.sep).join("/")] = readFileSync(full, "utf8");
  }
  return files;
}

/** The entry of src/ a module belongs to: its folder (`store`), or, at the top, the file itself (`gateway.ts`). */
export const unitOf = (file: string) => file.split("/")[0]!;

const describeImport = (file: string, i: Import) => `${file}:${i.line} ${VERB[i.kind]} "${i.specifier}"${i.typeOnly ? " (type only)" : ""}`;

/** Entries of src/ (folders and top-level modules) that the layer table leaves out. */
export function unlayeredUnits(graph: ModuleGraph, layers: Readonly<Record<string, number>>): string[] {
  return [...new Set([...graph.keys()].map(unitOf))].filter((u) => layers[u] === undefined).sort();
}

/**
 * Imports that go up: to a module of a higher layer, to one with no layer, or to something that is no module of
 * the graph (outside src/, or a path that names nothing), which no layer can be checked for.
 */
export function upwardImports(graph: ModuleGraph, layers: Readonly<Record<string, number>>): string[] {
  const found: string[] = [];
  for (const [file, imports] of graph) {
    const from = layers[unitOf(file)];
    for (const i of imports) {
      const to = unitOf(i.to);
      if (!graph.has(i.to)) found.push(`${describeImport(file, i)}, which is no module of src/`);
      else if (unitOf(file) === to) continue;
      else if (from === undefined || layers[to] === undefined) found.push(`${describeImport(file, i)}: ${layers[to] === undefined ? to : unitOf(file)} has no layer`);
      else if (layers[to]! > from) found.push(`${describeImport(file, i)}: layer ${layers[to]} (${to}) from layer ${from}`);
    }
  }
  return found;
}

/**
 * The strongly connected components of a graph given as node → nodes it points to, with more than one node or a
 * node that points to itself: each is a knot of nodes that depend on each other, in a path or a longer loop.
 * Tarjan's algorithm, iterative, so a long chain does not overflow the stack.
 */
function knots(edges: Map<string, Set<string>>): string[][] {
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const onStack = new Set<string>();
  const stack: string[] = [];
  const found: string[][] = [];
  let next = 0;
  for (const root of [...edges.keys()].sort()) {
    if (index.has(root)) continue;
    const work: Array<{ node: string; targets: string[]; at: number }> = [];
    const enter = (node: string) => {
      index.set(node, next);
      low.set(node, next);
      next++;
      stack.push(node);
      onStack.add(node);
      work.push({ node, targets: [...(edges.get(node) ?? [])].sort(), at: 0 });
    };
    enter(root);
    while (work.length > 0) {
      const top = work[work.length - 1]!;
      if (top.at < top.targets.length) {
        const target = top.targets[top.at++]!;
        if (!index.has(target)) enter(target);
        else if (onStack.has(target)) low.set(top.node, Math.min(low.get(top.node)!, index.get(target)!));
        continue;
      }
      work.pop();
      if (work.length > 0) {
        const parent = work[work.length - 1]!.node;
        low.set(parent, Math.min(low.get(parent)!, low.get(top.node)!));
      }
      if (low.get(top.node) === index.get(top.node)) {
        const component: string[] = [];
        let member: string;
        do {
          member = stack.pop()!;
          onStack.delete(member);
          component.push(member);
        } while (member !== top.node);
        if (component.length > 1 || edges.get(top.node)?.has(top.node)) found.push(component.sort());
      }
    }
  }
  return found.sort((a, b) => a[0]!.localeCompare(b[0]!));
}

/** One loop through a knot, from its first node back to it (the shortest, by breadth-first search inside the knot). */
function loopThrough(knot: string[], edges: Map<string, Set<string>>): string[] {
  const members = new Set(knot);
  const start = knot[0]!;
  const cameFrom = new Map<string, string>();
  const queue = [start];
  while (queue.length > 0) {
    const node = queue.shift()!;
    for (const target of [...(edges.get(node) ?? [])].sort()) {
      if (!members.has(target)) continue;
      if (target === start) {
        const loop = [node];
        while (loop[0] !== start) loop.unshift(cameFrom.get(loop[0]!)!);
        return [...loop, start];
      }
      if (!cameFrom.has(target)) {
        cameFrom.set(target, node);
        queue.push(target);
      }
    }
  }
  return [start, start];
}

/** Each knot as one loop through it, with the rest of its members, and what `note` says of the loop. */
function report(edges: Map<string, Set<string>>, note: (loop: string[]) => string = () => ""): string[] {
  return knots(edges).map((knot) => {
    const loop = loopThrough(knot, edges);
    const rest = knot.filter((m) => !loop.includes(m));
    return loop.join(" → ") + (rest.length > 0 ? ` (the same knot holds ${rest.join(", ")})` : "") + note(loop);
  });
}

/**
 * Modules that import each other in a circle, in one folder or across folders. Type-only imports count: they
 * vanish at run time, but a reader still has two modules neither of which can be understood first.
 */
export function moduleCycles(graph: ModuleGraph): string[] {
  const edges = new Map<string, Set<string>>();
  for (const [file, imports] of graph) edges.set(file, new Set(imports.map((i) => i.to).filter((to) => graph.has(to))));
  const typeOnly = (from: string, to: string) => graph.get(from)!.every((i) => i.to !== to || i.typeOnly);
  return report(edges, (loop) => (loop.slice(1).every((to, n) => typeOnly(loop[n]!, to)) ? " (type-only imports all the way)" : ""));
}

/**
 * Entries of src/ (folders, top-level modules) that import each other in a circle, though no two of their modules
 * do: `keys/a.ts` → `models/b.ts` and `models/c.ts` → `keys/d.ts` is one. Between layers such a circle is also an
 * upward import; within one layer only this finds it.
 */
export function unitCycles(graph: ModuleGraph): string[] {
  const edges = new Map<string, Set<string>>();
  for (const [file, imports] of graph) {
    const from = unitOf(file);
    const targets = edges.get(from) ?? edges.set(from, new Set()).get(from)!;
    for (const i of imports) if (graph.has(i.to) && unitOf(i.to) !== from) targets.add(unitOf(i.to));
  }
  return report(edges);
}

export function describeUnfollowed(unfollowed: readonly UnfollowedImport[]): string[] {
  return unfollowed.map((u) => `${u.file}:${u.line} ${u.text}: an import of something not written out, which no rule can follow`);
}
