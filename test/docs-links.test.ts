import { existsSync, readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

/**
 * The repository is all a user has: every relative link and every file path named in README.md and docs/
 * resolves inside it.
 */
const root = path.resolve(fileURLToPath(new URL("..", import.meta.url)));
const documents = [
  "README.md",
  "chaos/README.md",
  ...readdirSync(path.join(root, "docs"))
    .filter((f) => f.endsWith(".md"))
    .map((f) => `docs/${f}`),
];
const TOP = ["src", "docs", "bench", "test", "chaos", "sql", ".ci"];

/**
 * The anchors GitHub gives a markdown file's headings: the heading's text as rendered (code spans, links and
 * emphasis marks gone), lower-cased, every character but letters, digits, spaces, `-` and `_` dropped, each space
 * a `-`; a repeated slug gets `-1`, `-2`, … Headings inside fenced code blocks are not headings. HTML anchors
 * (`<a id="…">`, `name="…"`) count too.
 */
function anchorsOf(markdown: string): Set<string> {
  const anchors = new Set<string>();
  const seen = new Map<string, number>();
  let fence: string | null = null;
  for (const line of markdown.split("\n")) {
    const fenceMark = /^\s{0,3}(`{3,}|~{3,})/.exec(line)?.[1];
    if (fenceMark && (fence === null || fenceMark.startsWith(fence))) {
      fence = fence === null ? fenceMark : null;
      continue;
    }
    if (fence !== null) continue;
    for (const m of line.matchAll(/<a\s+(?:id|name)="([^"]+)"/g)) anchors.add(m[1]!);
    const heading = /^\s{0,3}#{1,6}\s+(.*?)(?:\s+#+)?\s*$/.exec(line)?.[1];
    if (heading === undefined) continue;
    const rendered = heading
      .replace(/!?\[([^\]]*)\]\([^)]*\)/g, "$1")
      .replace(/`([^`]*)`/g, "$1")
      .replace(/\*+/g, "");
    const base = rendered
      .toLowerCase()
      .replace(/[^\p{L}\p{M}\p{N}\p{Pc} -]/gu, "")
      .replace(/ /g, "-");
    const n = seen.get(base) ?? 0;
    seen.set(base, n + 1);
    anchors.add(n === 0 ? base : `${base}-${n}`);
  }
  return anchors;
}

const anchorCache = new Map<string, Set<string>>();
function anchorsOfFile(file: string): Set<string> {
  let anchors = anchorCache.get(file);
  if (!anchors) {
    anchors = anchorsOf(readFileSync(file, "utf8"));
    anchorCache.set(file, anchors);
  }
  return anchors;
}

/** What is wrong with `target` (a link or a named path, `file#anchor`) from `doc`, or null. */
function brokenTarget(doc: string, target: string, relativeTo: string): string | null {
  const hash = target.indexOf("#");
  const file = hash === -1 ? target : target.slice(0, hash);
  const resolved = file === "" ? path.join(root, doc) : path.resolve(relativeTo, file);
  if (!existsSync(resolved)) return "no such file";
  if (hash === -1 || !resolved.endsWith(".md")) return null;
  const anchor = decodeURIComponent(target.slice(hash + 1));
  return anchorsOfFile(resolved).has(anchor) ? null : "no such heading";
}

function problems(doc: string): string[] {
  const text = readFileSync(path.join(root, doc), "utf8");
  const found: string[] = [];
  for (const m of text.matchAll(/\[[^\]]*\]\(([^)\s]+)\)/g)) {
    const target = m[1]!;
    if (/^(https?:|mailto:)/.test(target)) continue;
    const broken = brokenTarget(doc, target, path.resolve(root, path.dirname(doc)));
    if (broken) found.push(`link ${target}: ${broken}`);
  }
  for (const m of text.matchAll(/`([^`\s]+)`/g)) {
    const named = m[1]!.replace(/[.,:;)]+$/, "");
    if (!TOP.some((t) => named.startsWith(`${t}/`)) || /[*<>{}]/.test(named)) continue;
    const broken = brokenTarget(doc, named.replace(/:\d+$/, ""), root);
    if (broken) found.push(`path ${named}: ${broken}`);
  }
  if (/\.\.\/shared|DEVELOPERS[.]md|COHERENCE[.]md/.test(text)) found.push("points at files outside the repository");
  return found;
}

describe("README.md and docs/ name only what the repository has", () => {
  for (const doc of documents) {
    it(`${doc}: every relative link and named file exists, and every #anchor is a heading of its file`, () => {
      expect(problems(doc)).toEqual([]);
    });
  }
});

describe("anchors as GitHub makes them", () => {
  it("lower-cases, drops punctuation but - and _, turns spaces into -, and numbers repeats", () => {
    const markdown = [
      "# Security model",
      "## L2 never rewinds (invariant 9)",
      "## `model_list` (LiteLLM's format)",
      "## Where the [upstream key](models.md) goes — and *why*",
      "### Limits",
      "### Limits",
      "```",
      "# not a heading",
      "```",
      '<a id="custom-anchor"></a>',
    ].join("\n");
    expect([...anchorsOf(markdown)].sort()).toEqual(
      ["security-model", "l2-never-rewinds-invariant-9", "model_list-litellms-format", "where-the-upstream-key-goes--and-why", "limits", "limits-1", "custom-anchor"].sort(),
    );
  });
});
