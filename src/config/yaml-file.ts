import { readFileSync } from "node:fs";
import path from "node:path";
import { LineCounter, parseDocument } from "yaml";
import { ConfigError, type SettingsContext } from "./context.js";

export interface ConfigFileText {
  raw: unknown;
  /** The file's absolute path, as problems name it. */
  source: string;
  locate: NonNullable<SettingsContext["locate"]>;
}

/** Reads a YAML config and keeps its line numbers, so a problem names the line of the field at fault. */
export function readConfigFile(file: string): ConfigFileText {
  const source = path.resolve(file);
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    throw new ConfigError(`config ${source}: cannot read: ${(err as Error).message}`);
  }
  try {
    const lineCounter = new LineCounter();
    const doc = parseDocument(text, { lineCounter });
    if (doc.errors.length > 0) throw doc.errors[0];
    // The nearest line for a path: the field's value, else its key; a field that is missing (a required one)
    // is placed at the line of the nearest enclosing field that exists.
    const locate = (at: Array<string | number>) => {
      for (let n = at.length; n > 0; n--) {
        const node = doc.getIn(at.slice(0, n), true) as { range?: [number, number, number] } | undefined;
        if (node?.range) return lineCounter.linePos(node.range[0]).line;
        const parent = doc.getIn(at.slice(0, n - 1), true) as { items?: Array<{ key?: { value?: unknown; range?: [number, number, number] } }> } | undefined;
        const key = parent?.items?.find((i) => i.key?.value === at[n - 1])?.key;
        if (key?.range) return lineCounter.linePos(key.range[0]).line;
      }
      return undefined;
    };
    return { raw: doc.toJS() ?? {}, source, locate };
  } catch (err) {
    throw new ConfigError(`config ${source}: not valid YAML: ${(err as Error).message}`);
  }
}
