import { Writable } from "node:stream";
import { describe, expect, it } from "vitest";
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

  it("hands the lines of one turn of the event loop over together, in order, each write within PIPE_BUF", async () => {
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
    for (let i = 0; i < 3; i++) destination.write(line(i));
    expect(writes).toEqual([]); // nothing before the turn's end
    await turn();
    expect(writes).toEqual([line(0) + line(1) + line(2)]);

    // A busy turn: more than a pipe takes whole in one write. Every write stays within it, and only whole lines go.
    writes.length = 0;
    for (let i = 0; i < 100; i++) destination.write(line(i));
    await turn();
    expect(writes.length).toBeGreaterThan(1);
    for (const write of writes) {
      expect(Buffer.byteLength(write)).toBeLessThanOrEqual(4096);
      expect(write.endsWith("\n")).toBe(true);
    }
    expect(writes.join("")).toBe(Array.from({ length: 100 }, (_, i) => line(i)).join(""));

    // A flush within the turn writes what it holds at once.
    writes.length = 0;
    destination.write(line(7));
    expect(await flushed(destination)).toBe("flushed");
    expect(writes).toEqual([line(7)]);
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
});
