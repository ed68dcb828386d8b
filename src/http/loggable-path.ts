/**
 * A request path without anything that may be a key: routes such as /key/{key}/regenerate carry one, and a
 * client may put one anywhere. The query string is never logged (/key/info?key=…): callers pass the path only.
 *
 * A segment is judged as the router reads it, not as it is written: routes match in any case (`/KEY/…` is
 * `/key/…`) and segments are percent-decoded (`%73k-…` is `sk-…`), so a segment is decoded, and compared without
 * case, before it is kept. Decoding repeats until nothing changes (`%2573k-…` is one decode away from `%73k-…`).
 */
export function loggablePath(path: string): string {
  // Most paths (/v1/chat/completions) hold neither a key, nor the route that carries one, nor an escape (so they
  // decode, too).
  if (!MAY_HOLD_KEY.test(path)) return path;
  // A path that does not decode is not logged at all: what it holds cannot be inspected for keys.
  try {
    decodeURIComponent(path);
  } catch {
    return "[path not validly percent-encoded]";
  }
  const segments = path.split("/");
  const last = segments.length - 1;
  let previous = "";
  let redacting = false;
  for (let i = 1; i <= last; i++) {
    const segment = decodedFully(segments[i]!).toLowerCase();
    // Under /key/ the segment after it is a key unless it is the operation itself (/key/generate).
    if (segment.includes("sk-") || (previous === "key" && i < last)) redacting = true;
    // A custom key may hold "/": once one starts, every later segment may be part of it, except the operation
    // that ends a key's route (/key/{key}/regenerate).
    if (redacting && !(i === last && KEY_OPERATIONS.has(segment))) segments[i] = "[redacted]";
    previous = segment;
  }
  return segments.join("/");
}

const MAY_HOLD_KEY = /sk-|\/key\/|%/i;
/** What follows the key in the routes that carry one in their path (/key/{key}/regenerate). */
const KEY_OPERATIONS = new Set(["regenerate", "reset_spend", "end_grace"]);
// Enough for any double or triple encoding a client or proxy may apply; a segment still changing after that is
// judged as it is then.
const MAX_DECODES = 4;

function decodedFully(segment: string): string {
  let text = segment;
  for (let i = 0; i < MAX_DECODES && text.includes("%"); i++) {
    try {
      const next = decodeURIComponent(text);
      if (next === text) break;
      text = next;
    } catch {
      // A later layer that does not decode: what decoded so far is what a reader would see.
      break;
    }
  }
  return text;
}

/** The path part of a request target (`/v1/models?x=1` → `/v1/models`). */
export function pathOf(url: string | undefined): string {
  if (url === undefined) return "/";
  const query = url.indexOf("?");
  return query === -1 ? url : url.slice(0, query);
}
