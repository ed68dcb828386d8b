import { readFileSync, writeFileSync } from "node:fs";
import { STATUS_CODES } from "node:http";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { ERROR_CODES, type ErrorCodeRow, RELAYED_CODES, type RelayedCodeRow } from "../src/errors/error-codes.js";
import { BadRequestError, DependencyUnavailableError, NotFoundError, UpstreamError } from "../src/errors/errors.js";

/**
 * docs/errors.md shows the table of error codes (src/errors/error-codes.ts) as it is: the part between its markers is
 * rendered from the table, and this test fails while the two disagree. `npm run docs:errors` (WRITE_ERRORS_DOC=1)
 * writes the rendering instead of comparing.
 */
const DOC = fileURLToPath(new URL("../docs/errors.md", import.meta.url));
const START = "<!-- codes: rendered from src/errors/error-codes.ts by `npm run docs:errors`; do not edit by hand -->";
const END = "<!-- end of codes -->";

/** A table cell: its text on one line, with nothing that would end the cell. */
const cell = (text: string) => text.replace(/\|/g, "\\|").replace(/\s*\n\s*/g, " ");

/** The codes sent with one status: the rows whose own status it is, then the codes also sent with it. */
function statusSection(status: number | "4xx", rows: Array<[string, ErrorCodeRow]>, alsoHere: string[]): string {
  const title = typeof status === "number" ? `${status} ${STATUS_CODES[status]}` : "4xx, the refusing library's";
  const lines = [`### ${title}`, "", "| code | type | meaning |", "|---|---|---|"];
  for (const [code, row] of rows) {
    const also = row.alsoSentAs ? ` Also sent as ${row.alsoSentAs.status} \`${row.alsoSentAs.type}\` when ${row.alsoSentAs.when}.` : "";
    lines.push(`| \`${code}\` | \`${row.type}\` | ${cell(row.meaning + also)} |`);
  }
  if (alsoHere.length > 0) lines.push("", `Also sent with ${status}, as their rows say: ${alsoHere.map((c) => `\`${c}\``).join(", ")}.`);
  return lines.join("\n");
}

function relayedSection(rows: Array<[string, RelayedCodeRow]>): string {
  const lines = ["| code | status | type | meaning |", "|---|---|---|---|"];
  for (const [code, row] of rows) lines.push(`| \`${code}\` | ${cell(row.status)} | ${cell(row.type)} | ${cell(row.meaning)} |`);
  return lines.join("\n");
}

/** The part of docs/errors.md the table owns: one section per status, in order, then the upstream's codes. */
function renderCodes(): string {
  const rows = Object.entries(ERROR_CODES) as Array<[string, ErrorCodeRow]>;
  const order = (s: number | "4xx") => (s === "4xx" ? 499.5 : s);
  const statuses = [...new Set(rows.map(([, row]) => row.status))].sort((a, b) => order(a) - order(b));
  const sections = statuses.map((status) =>
    statusSection(
      status,
      rows.filter(([, row]) => row.status === status),
      rows.filter(([, row]) => row.alsoSentAs?.status === status).map(([code]) => code),
    ),
  );
  const relayed = [
    "### Answers passed on from the upstream provider",
    "",
    "When the upstream refuses the request itself, its answer is passed on: status, type and code are the provider's (the code is Gatehouse's only when the provider gave none), so they are listed by kind.",
    "",
    relayedSection(Object.entries(RELAYED_CODES)),
  ].join("\n");
  return ["## The codes", ...sections, relayed].join("\n\n");
}

function renderedDoc(current: string): string {
  const start = current.indexOf(START);
  const end = current.indexOf(END);
  if (start === -1 || end < start) throw new Error(`docs/errors.md has lost its markers: put back ${START} and ${END}`);
  return `${current.slice(0, start + START.length)}\n\n${renderCodes()}\n\n${current.slice(end)}`;
}

describe("docs/errors.md", () => {
  it("shows every code of the table, as the table has it", () => {
    const current = readFileSync(DOC, "utf8");
    const rendered = renderedDoc(current);
    if (process.env.WRITE_ERRORS_DOC) writeFileSync(DOC, rendered);
    // If a code left the page, it left the wire too, and clients branch on it: put it back unless that is meant.
    else expect(current, "docs/errors.md is not the table's rendering: run npm run docs:errors").toBe(rendered);
  });
});

describe("the table of error codes", () => {
  it("lists each code once: none is both the gateway's and the upstream's", () => {
    const ours = Object.keys(ERROR_CODES).filter((code) => code in RELAYED_CODES);
    expect(ours).toEqual([]);
  });

  it("names codes in snake_case and says each in one line", () => {
    for (const [code, row] of Object.entries(ERROR_CODES) as Array<[string, ErrorCodeRow]>) {
      expect(code).toMatch(/^[a-z][a-z0-9]*(_[a-z0-9]+)*$/);
      expect(row.meaning).not.toMatch(/\n/);
      if (row.alsoSentAs) expect(row.alsoSentAs.status).not.toBe(row.status);
    }
  });

  it("gives an error its status and type", () => {
    expect(new NotFoundError("key not found", { code: "key_not_found", param: "key" }).toBody()).toEqual({
      error: { message: "key not found", type: "not_found_error", param: "key", code: "key_not_found" },
    });
    const twoWays = new BadRequestError("no such model", { code: "model_not_found", param: "models" });
    expect([twoWays.status, twoWays.type]).toEqual([400, "invalid_request_error"]);
    const upstream = new UpstreamError("slow", { code: "upstream_timeout" });
    expect([upstream.status, upstream.type]).toEqual([504, "timeout_error"]);
    expect(new DependencyUnavailableError("redis", 2).code).toBe("redis_unavailable");
  });

  it("refuses, when compiled, a code it does not list or a status it does not give", () => {
    // Never run: tsconfig.test.json (npm test) fails if one of these lines stops being a type error.
    const neverRun = () => [
      // @ts-expect-error: a misspelt code is not in the table
      new NotFoundError("key not found", { code: "key_not_fonud" }),
      // @ts-expect-error: key_not_found is sent with 404, never 400
      new BadRequestError("key not found", { code: "key_not_found" }),
      // @ts-expect-error: an upstream failure of ours needs a code of the table
      new UpstreamError("it broke", { code: "upstream_exploded" }),
      // @ts-expect-error: a relayed answer names its row of the upstream's codes
      new UpstreamError("it broke", { relayed: "upstream_500", status: 500, type: "upstream_error", code: "upstream_500" }),
      // @ts-expect-error: only postgres and redis have a code for being unavailable
      new DependencyUnavailableError("mysql", 1),
    ];
    expect(typeof neverRun).toBe("function");
  });
});
