/**
 * A request path without anything that may be a key: routes such as /key/{key}/regenerate carry one, and a
 * client may put one anywhere. The query string is never logged (/key/info?key=…): callers pass the path only.
 */
export function loggablePath(path: string): string {
  // A path that does not decode is not logged at all: what it holds cannot be inspected for keys.
  try {
    decodeURIComponent(path);
  } catch {
    return "[path not validly percent-encoded]";
  }
  if (!path.includes("sk-") && !path.includes("/key/")) return path;
  const segments = path.split("/");
  for (let i = 1; i < segments.length; i++) {
    if (segments[i]!.includes("sk-") || (segments[i - 1] === "key" && i < segments.length - 1)) segments[i] = "[redacted]";
  }
  return segments.join("/");
}

/** The path part of a request target (`/v1/models?x=1` → `/v1/models`). */
export function pathOf(url: string | undefined): string {
  if (url === undefined) return "/";
  const query = url.indexOf("?");
  return query === -1 ? url : url.slice(0, query);
}
