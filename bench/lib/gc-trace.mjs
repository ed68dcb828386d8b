// Bytes a process allocates per second, from V8's --trace-gc lines: each collection prints its time and the heap
// before and after it ("  8123 ms: Scavenge 45.2 (60.1) -> 13.1 (61.1) MB"), so what was allocated between two
// collections is the heap before the second minus the heap after the first. Taken from the first collection of a
// window to its last (allocation outside them is not seen), then divided by the requests served per second.
const LINE = /(\d+) ms: (Scavenge|Mark-Compact|Mark-sweep|Minor Mark-Compact|Minor Mark-Sweep)\D*?([\d.]+) \(([\d.]+)\) -> ([\d.]+) \(([\d.]+)\) MB/;

/** Bytes allocated per second and collections by kind over `lines` (the --trace-gc lines of one window, in order). */
export function allocationRate(lines) {
  let allocatedMb = 0;
  let first;
  let last;
  let previousAfter;
  const collections = { minor: 0, major: 0 };
  for (const line of lines) {
    const m = LINE.exec(line);
    if (!m) continue;
    const at = Number(m[1]);
    collections[m[2].startsWith("Scavenge") || m[2].startsWith("Minor") ? "minor" : "major"]++;
    if (previousAfter !== undefined) allocatedMb += Math.max(0, Number(m[3]) - previousAfter);
    previousAfter = Number(m[5]);
    first ??= at;
    last = at;
  }
  const seconds = first === undefined ? 0 : (last - first) / 1000;
  return { bytesPerSecond: seconds > 0 ? (allocatedMb * 2 ** 20) / seconds : NaN, collections };
}
