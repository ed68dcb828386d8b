import { describe, expect, it } from "vitest";
import { duplicateTopLevelKey } from "../src/proxy/request-shape.js";

// Bodies whose top-level keys repeat, or only seem to: a repeat inside a nested object or a string is not one.
const BODIES: Array<[body: string, duplicate: string | null]> = [
  ['{"model":"a","messages":[]}', null],
  ['{"model":"a","model":"b"}', "model"],
  ['{"model":"a","mod\\u0065l":"b"}', "model"],
  ['{"model":"a","messages":[{"role":"user","role":"x"}]}', null],
  ['{"model":"a","metadata":{"model":"b","model":"c"}}', null],
  ['{"model":"a","note":"\\"model\\":\\"b\\""}', null],
  ['{"model":"a", "stream" : true ,\n\t"stream":false}', "stream"],
  ['{"__proto__":1,"model":"a","__proto__":2}', "__proto__"],
  ['{"a\\\\":1,"a\\\\":2}', "a\\"],
  ['{"é":1,"\\u00e9":2}', "é"],
  ["{}", null],
  ['{"model":"a","messages":[],"tools":[{"type":"function"}],"tools":[]}', "tools"],
];

describe("a body's repeated top-level key", () => {
  it.each(BODIES)("%s: %s", (body, duplicate) => {
    const raw = Buffer.from(body);
    expect(duplicateTopLevelKey(raw)).toBe(duplicate);
  });

  it.each(BODIES)("is found the same when the parsed body's key count is given: %s", (body, duplicate) => {
    const raw = Buffer.from(body);
    const distinct = Object.keys(JSON.parse(body) as object).length;
    expect(duplicateTopLevelKey(raw, distinct)).toBe(duplicate);
  });
});
