import { spawn } from "node:child_process";
import { Writable } from "node:stream";
import { describe, expect, it, vi } from "vitest";
import { streamDestination } from "../src/logger.js";

/** A pipe whose reader reads only when told: each write waits for `read()`. */
function slowPipe() {
  const written: string[] = [];
  const waiting: Array<() => void> = [];
  const out = new Writable({
    highWaterMark: 16,
    write(chunk, _encoding, done) {
      written.push(String(chunk));
      waiting.push(done);
    },
  });
  const read = () => {
    for (const done of waiting.splice(0)) done();
  };
  return { out, written, read };
}

const flushed = (destination: ReturnType<typeof streamDestination>) => new Promise<void>((resolve) => destination.flush(() => resolve())).then(() => "flushed" as const);
const turn = () => new Promise((resolve) => setImmediate(resolve)).then(() => "still waiting" as const);

describe("the log's destination on a pipe", () => {
  it("flush waits until what is held is written, and answers at once when nothing is", async () => {
    const { out, written, read } = slowPipe();
    const destination = streamDestination(out);
    expect(await Promise.race([flushed(destination), turn()])).toBe("flushed");
    destination.write("one\n");
    destination.write("two\n");
    const flushing = flushed(destination);
    expect(await Promise.race([flushing, turn()])).toBe("still waiting");
    // The reader reads until nothing is held.
    while (out.writableLength > 0) {
      read();
      await turn();
    }
    expect(await flushing).toBe("flushed");
    expect(written.join("")).toBe("one\ntwo\n");
  });

  it("holds lines for at most 10 ms and hands them over together, in order, each write within PIPE_BUF", async () => {
    vi.useFakeTimers({ toFake: ["setTimeout", "setImmediate"] });
    try {
      const writes: string[] = [];
      const destination = streamDestination(
        new Writable({
          write(chunk, _encoding, done) {
            writes.push(String(chunk));
            done();
          },
        }),
      );
      const line = (i: number) => `${JSON.stringify({ level: 30, request_id: `req-${i}`, route: "/v1/chat/completions", msg: "request" })}\n`;
      destination.write(line(0));
      vi.advanceTimersByTime(4);
      destination.write(line(1));
      destination.write(line(2));
      vi.advanceTimersByTime(5);
      expect(writes).toEqual([]); // 9 ms after the first line: still held
      vi.advanceTimersByTime(1);
      expect(writes).toEqual([line(0) + line(1) + line(2)]);

      // A busy moment: more than a pipe takes whole in one write. What would pass it goes at once, every write stays
      // within it, only whole lines go, and the rest waits for its 10 ms.
      writes.length = 0;
      for (let i = 0; i < 100; i++) destination.write(line(i));
      expect(writes.length).toBeGreaterThan(1);
      const atOnce = writes.length;
      vi.advanceTimersByTime(10);
      expect(writes.length).toBe(atOnce + 1);
      for (const write of writes) {
        expect(Buffer.byteLength(write)).toBeLessThanOrEqual(4096);
        expect(write.endsWith("\n")).toBe(true);
      }
      expect(writes.join("")).toBe(Array.from({ length: 100 }, (_, i) => line(i)).join(""));

      // A flush writes what is held at once.
      writes.length = 0;
      destination.write(line(7));
      const flushing = flushed(destination);
      expect(writes).toEqual([line(7)]);
      vi.advanceTimersByTime(10); // the hold's own timer finds nothing left to write
      expect(writes).toEqual([line(7)]);
      expect(await flushing).toBe("flushed");
    } finally {
      vi.useRealTimers();
    }
  });

  it("flush answers when the reader is gone, though lines were held", async () => {
    const { out } = slowPipe();
    const destination = streamDestination(out);
    destination.write("held\n");
    destination.write("held too\n");
    const flushing = flushed(destination);
    out.destroy();
    expect(await flushing).toBe("flushed");
    // Writing after that neither throws nor waits.
    out.on("error", () => {});
    destination.write("lost\n");
    expect(await flushed(destination)).toBe("flushed");
  });

  it("a process that crashes writes the lines it still holds on its way out", async () => {
    // The built logger, in a process of its own whose stdout is a pipe: two lines held, then an uncaught throw.
    const logger = new URL("../dist/logger.js", import.meta.url).href;
    const script = `import { stdoutDestination } from ${JSON.stringify(logger)};
      const out = stdoutDestination();
      out.write("held one\\n");
      out.write("held two\\n");
      throw new Error("a crash");`;
    const child = spawn(process.execPath, ["--input-type=module", "-e", script], { stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.resume();
    const code = await new Promise((resolve) => child.once("close", resolve));
    expect(code).not.toBe(0);
    expect(stdout).toBe("held one\nheld two\n");
  });
});
