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

function problems(doc: string): string[] {
  const text = readFileSync(path.join(root, doc), "utf8");
  const found: string[] = [];
  for (const m of text.matchAll(/\[[^\]]*\]\(([^)\s]+)\)/g)) {
    const target = m[1]!;
    if (/^(https?:|mailto:|#)/.test(target)) continue;
    const file = target.split("#")[0]!;
    if (!existsSync(path.resolve(root, path.dirname(doc), file))) found.push(`link ${target}`);
  }
  for (const m of text.matchAll(/`([^`\s]+)`/g)) {
    const named = m[1]!.replace(/[.,:;)]+$/, "");
    if (!TOP.some((t) => named.startsWith(`${t}/`)) || /[*<>{}]/.test(named)) continue;
    const file = named.split("#")[0]!.replace(/:\d+$/, "");
    if (!existsSync(path.resolve(root, file))) found.push(`path ${named}`);
  }
  if (/\.\.\/shared|DEVELOPERS[.]md|COHERENCE[.]md/.test(text)) found.push("points at files outside the repository");
  return found;
}

describe("README.md and docs/ name only what the repository has", () => {
  for (const doc of documents) {
    it(`${doc}: every relative link and named file exists`, () => {
      expect(problems(doc)).toEqual([]);
    });
  }
});
