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
