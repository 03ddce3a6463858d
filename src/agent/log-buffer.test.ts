import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ManualClock } from "../core/clock.js";
import { type Chunk, LogBuffer, type LogBufferOptions } from "./log-buffer.js";
import { Redactor } from "./redact.js";

/** A LogBuffer the tests feed text as well as bytes (the agent feeds it the job's bytes). */
class TestLogBuffer extends LogBuffer {
  override append(stream: string, data: string | Buffer): boolean {
    return super.append(stream, typeof data === "string" ? Buffer.from(data) : data);
  }
}

function buffer(options: Partial<LogBufferOptions> = {}): TestLogBuffer {
  return new TestLogBuffer({ limitBytes: 1_000_000, chunkBytes: 1_000_000, windowBytes: 1_000_000, now: () => 0, ...options });
}

const seqs = (chunks: readonly Chunk[]) => chunks.map((c) => c.seq);
const bytes = (text: string) => Buffer.byteLength(text, "utf8");
const texts = (chunks: readonly Chunk[]) => chunks.map((c) => c.data.toString());
/** Bytes of the job's own output that were cut into chunks (system chunks are the agent's, not the job's). */
const outputBytes = (chunks: readonly Chunk[]) => chunks.filter((c) => c.stream !== "system").reduce((n, c) => n + c.data.length, 0);

describe("LogBuffer", () => {
  describe("sequence numbers", () => {
    it("numbers chunks 1..n without gaps, across streams, flushes and system messages", () => {
      const logs = buffer({ chunkBytes: 4 });
      logs.append("stdout", "ab");
      logs.append("stderr", "cd"); // switch: cuts "ab"
      logs.append("stderr", "efgh"); // reaches chunkBytes: cuts "cdef", "gh" stays pending
      logs.system("hello from the agent"); // cuts "gh" first
      logs.append("stdout", "x");
      logs.flush();
      logs.flush(); // nothing pending: no empty chunk
      assert.deepEqual(seqs(logs.unacknowledged()), [1, 2, 3, 4, 5]);
      assert.deepEqual(texts(logs.unacknowledged()), ["ab", "cdef", "gh", "hello from the agent", "x"]);
      assert.equal(logs.lastSeq, 5);
    });

    it("starts at 1 and reports lastSeq 0 before any chunk", () => {
      const logs = buffer();
      assert.equal(logs.lastSeq, 0);
      logs.append("stdout", "a");
      assert.equal(logs.lastSeq, 0, "pending text is not a chunk yet");
      logs.flush();
      assert.equal(logs.unacknowledged()[0].seq, 1);
    });

    it("keeps numbering after acknowledgements (the seq is per attempt, not per buffer content)", () => {
      const logs = buffer();
      logs.append("stdout", "a");
      logs.flush();
      logs.acknowledge(1);
      logs.append("stdout", "b");
      logs.flush();
      assert.deepEqual(seqs(logs.unacknowledged()), [2]);
    });

    it("stamps every chunk with the injected clock", () => {
      const clock = new ManualClock(5_000);
      const logs = buffer({ now: () => clock.nowMs() });
      logs.append("stdout", "a");
      logs.flush();
      clock.advance(250);
      logs.system("b");
      assert.deepEqual(
        logs.unacknowledged().map((c) => c.timeMs),
        [5_000, 5_250],
      );
    });
  });

  describe("chunking", () => {
    it("cuts a chunk whenever the output switches stream, keeping the order", () => {
      const logs = buffer();
      logs.append("stdout", "out1 ");
      logs.append("stdout", "out2 ");
      logs.append("stderr", "err1 ");
      logs.append("stdout", "out3");
      logs.flush();
      assert.deepEqual(
        logs.unacknowledged().map((c) => [c.seq, c.stream, c.data.toString()]),
        [
          [1, "stdout", "out1 out2 "],
          [2, "stderr", "err1 "],
          [3, "stdout", "out3"],
        ],
      );
    });

    it("cuts chunks of exactly chunkBytes, keeping every byte in order", () => {
      const logs = buffer({ chunkBytes: 4 });
      const written = Buffer.from([0x00, 0xff, 0x01, 0xfe, 0x02, 0xfd, 0x03, 0xfc, 0x04, 0xfb]);
      assert.equal(logs.append("stdout", written.subarray(0, 3)), false);
      assert.equal(logs.append("stdout", written.subarray(3)), true, "two full chunks are ready");
      assert.deepEqual(logs.unacknowledged().map((c) => c.data.length), [4, 4]);
      logs.flush();
      assert.deepEqual(logs.unacknowledged().map((c) => c.data.length), [4, 4, 2]);
      assert.deepEqual(Buffer.concat(logs.unacknowledged().map((c) => c.data)), written);
    });

    it("holds small output back until flush and says when a full chunk is ready", () => {
      const logs = buffer({ chunkBytes: 10 });
      assert.equal(logs.append("stdout", "12345"), false);
      assert.equal(logs.unacknowledged().length, 0);
      assert.equal(logs.append("stdout", "67890"), true);
      assert.deepEqual(texts(logs.unacknowledged()), ["1234567890"]);
    });

    it("ignores empty output", () => {
      const logs = buffer();
      assert.equal(logs.append("stdout", ""), false);
      logs.flush();
      assert.equal(logs.unacknowledged().length, 0);
      assert.equal(logs.isFullyAcknowledged(), true);
    });
  });

  describe("acknowledge and chunksAfter", () => {
    function threeChunks(): LogBuffer {
      const logs = buffer();
      for (const text of ["a", "b", "c"]) {
        logs.append("stdout", text);
        logs.flush();
      }
      return logs;
    }

    it("drops every chunk up to and including the acknowledged seq", () => {
      const logs = threeChunks();
      logs.acknowledge(2);
      assert.deepEqual(seqs(logs.unacknowledged()), [3]);
      logs.acknowledge(3);
      assert.deepEqual(seqs(logs.unacknowledged()), []);
    });

    it("treats an old or repeated acknowledgement as a no-op", () => {
      const logs = threeChunks();
      logs.acknowledge(2);
      logs.acknowledge(1);
      logs.acknowledge(2);
      logs.acknowledge(0);
      assert.deepEqual(seqs(logs.unacknowledged()), [3]);
    });

    it("acknowledging past the last chunk empties the buffer", () => {
      const logs = threeChunks();
      logs.acknowledge(99);
      assert.deepEqual(seqs(logs.unacknowledged()), []);
    });

    it("chunksAfter returns the unacknowledged chunks with a higher seq, oldest first", () => {
      const logs = threeChunks();
      assert.deepEqual(seqs(logs.chunksAfter(0)), [1, 2, 3]);
      assert.deepEqual(seqs(logs.chunksAfter(1)), [2, 3]);
      assert.deepEqual(seqs(logs.chunksAfter(3)), []);
      logs.acknowledge(2);
      assert.deepEqual(seqs(logs.chunksAfter(0)), [3], "acknowledged chunks are never resent");
    });

    it("bytesAfter counts the bytes of exactly the chunks chunksAfter returns", () => {
      const logs = buffer();
      for (const text of ["a", "bbb", "ccccc"]) {
        logs.append("stdout", text);
        logs.flush();
      }
      assert.deepEqual([0, 1, 2, 3].map((after) => logs.bytesAfter(after)), [9, 8, 5, 0]);
      logs.acknowledge(1);
      assert.deepEqual([0, 1, 2].map((after) => logs.bytesAfter(after)), [8, 8, 5], "acknowledged chunks are not counted");
    });
  });

  describe("log limit", () => {
    it("keeps output up to the limit, then emits exactly one visible truncation chunk", () => {
      const logs = buffer({ limitBytes: 100 });
      logs.append("stdout", "a".repeat(60));
      assert.equal(logs.append("stdout", "b".repeat(60)), true, "the truncation marker is ready to send");
      for (let i = 0; i < 10; i++) logs.append(i % 2 ? "stdout" : "stderr", "c".repeat(50));
      logs.flush();
      const chunks = logs.unacknowledged();
      assert.deepEqual(
        chunks.map((c) => [c.seq, c.stream]),
        [
          [1, "stdout"],
          [2, "system"],
        ],
      );
      assert.equal(chunks[0].data.toString(), "a".repeat(60) + "b".repeat(40));
      assert.match(chunks[1].data.toString(), /output truncated/);
      assert.match(chunks[1].data.toString(), /100 bytes/);
      assert.equal(chunks.filter((c) => /output truncated/.test(c.data.toString())).length, 1);
      assert.equal(logs.isTruncated, true);
    });

    it("counts every discarded byte in droppedBytes", () => {
      const logs = buffer({ limitBytes: 100 });
      logs.append("stdout", "a".repeat(60));
      logs.append("stdout", "b".repeat(60)); // 40 kept, 20 dropped
      logs.append("stderr", "c".repeat(30)); // dropped
      logs.append("stdout", "d".repeat(7)); // dropped
      assert.equal(logs.droppedBytes, 20 + 30 + 7);
      assert.equal(outputBytes(logs.unacknowledged()) + logs.droppedBytes, 60 + 60 + 30 + 7);
    });

    it("never sends more output bytes than the limit, whatever the pattern of writes", () => {
      for (const limitBytes of [1, 7, 64, 100, 1000]) {
        const logs = buffer({ limitBytes, chunkBytes: 16 });
        let written = 0;
        for (let i = 0; i < 200; i++) {
          const text = `${i % 3 === 0 ? "é" : "x"}`.repeat((i % 13) + 1);
          written += bytes(text);
          logs.append(i % 4 === 0 ? "stderr" : "stdout", text);
        }
        logs.flush();
        const sent = outputBytes(logs.unacknowledged());
        assert.ok(sent <= limitBytes, `limit ${limitBytes}: sent ${sent}`);
        assert.equal(sent + logs.droppedBytes, written, `limit ${limitBytes}: every byte is sent or counted`);
        assert.equal(logs.isTruncated, true);
      }
    });

    it("cuts at exactly the limit in bytes, whatever the bytes are", () => {
      const logs = buffer({ limitBytes: 5 });
      logs.append("stdout", Buffer.from([0x41, 0xff, 0xfe, 0xc3, 0xa9, 0xc3, 0xa9, 0x42])); // not UTF-8 as a whole
      const [output, marker] = logs.unacknowledged();
      assert.deepEqual([...output.data], [0x41, 0xff, 0xfe, 0xc3, 0xa9]);
      assert.equal(logs.droppedBytes, 3);
      assert.equal(marker.stream, "system");
    });

    it("does not truncate output that exactly reaches the limit", () => {
      const logs = buffer({ limitBytes: 10 });
      logs.append("stdout", "0123456789");
      logs.flush();
      assert.equal(logs.isTruncated, false);
      assert.equal(logs.droppedBytes, 0);
      assert.deepEqual(texts(logs.unacknowledged()), ["0123456789"]);
    });

    it("does not count the agent's own system messages against the limit", () => {
      const logs = buffer({ limitBytes: 10 });
      logs.system("x".repeat(100));
      logs.append("stdout", "0123456789");
      logs.flush();
      assert.equal(logs.isTruncated, false);
      assert.deepEqual(logs.unacknowledged().map((c) => c.stream), ["system", "stdout"]);
    });
  });

  describe("backpressure", () => {
    it("asks to pause when unacknowledged bytes exceed the window, and clears after acknowledgements", () => {
      const logs = buffer({ windowBytes: 10 });
      logs.append("stdout", "0123456789");
      logs.flush();
      assert.equal(logs.shouldPause(), false, "exactly the window is still fine");
      logs.append("stdout", "a");
      logs.flush();
      assert.equal(logs.shouldPause(), true);
      logs.acknowledge(1);
      assert.equal(logs.shouldPause(), false);
    });

    it("keeps asking to pause until enough is acknowledged", () => {
      const logs = buffer({ windowBytes: 10 });
      for (const text of ["0123456789", "0123456789", "0123456789"]) {
        logs.append("stdout", text);
        logs.flush();
      }
      assert.equal(logs.shouldPause(), true);
      logs.acknowledge(1);
      assert.equal(logs.shouldPause(), true, "20 bytes still unacknowledged");
      logs.acknowledge(2);
      assert.equal(logs.shouldPause(), false);
    });
  });

  describe("isFullyAcknowledged", () => {
    it("is true only when nothing is pending and every chunk is acknowledged", () => {
      const logs = buffer();
      assert.equal(logs.isFullyAcknowledged(), true);
      logs.append("stdout", "a");
      assert.equal(logs.isFullyAcknowledged(), false, "pending text is not acknowledged");
      logs.flush();
      assert.equal(logs.isFullyAcknowledged(), false);
      logs.system("done");
      logs.acknowledge(1);
      assert.equal(logs.isFullyAcknowledged(), false, "the system chunk is still unacknowledged");
      logs.acknowledge(2);
      assert.equal(logs.isFullyAcknowledged(), true);
    });
  });

  describe("secrets", () => {
    const SECRET = "hunter2-Zq9!";
    const withSecret = (options: Partial<LogBufferOptions> = {}) => buffer({ redactor: new Redactor([SECRET]), ...options });
    const all = (chunks: readonly Chunk[]) => Buffer.concat(chunks.map((c) => c.data)).toString();
    /** No chunk holds the value, or any 4-byte piece of it. */
    const assertNoPieceOfSecret = (chunks: readonly Chunk[]) => {
      for (const c of chunks) {
        for (let at = 0; at + 4 <= SECRET.length; at++) assert.ok(!c.data.toString().includes(SECRET.slice(at, at + 4)), `chunk ${c.seq} holds "${SECRET.slice(at, at + 4)}": ${c.data}`);
      }
    };

    it("redacts a secret split across a forced chunk boundary (a flush between its two halves)", () => {
      const logs = withSecret({ chunkBytes: 8 });
      logs.append("stdout", "key=hunter");
      logs.flush(); // the flush timer fires with half the secret written
      logs.append("stdout", "2-Zq9! done\n");
      logs.end();
      assert.equal(all(logs.unacknowledged()), "key=*** done\n");
      assert.ok(logs.unacknowledged().length > 1, "the output was cut into several chunks");
      assertNoPieceOfSecret(logs.unacknowledged());
    });

    it("redacts a secret across the 64 KiB chunk size in one write", () => {
      const logs = withSecret({ chunkBytes: 64 * 1024 });
      const before = "a".repeat(64 * 1024 - 2); // the value straddles byte 65536 of the raw output
      logs.append("stdout", `${before}${SECRET}\n`);
      logs.end();
      assert.equal(all(logs.unacknowledged()), `${before}***\n`);
      assert.equal(logs.unacknowledged()[0].data.length, 64 * 1024, "the first chunk is full");
      assertNoPieceOfSecret(logs.unacknowledged());
    });

    it("holds back only an end that may begin a secret, through flushes, until more output or end() decides", () => {
      const logs = withSecret();
      logs.append("stdout", "progress: hun");
      logs.flush();
      assert.equal(all(logs.unacknowledged()), "progress: ");
      assert.equal(logs.isFullyAcknowledged(), false, "held bytes are not acknowledged");
      logs.append("stdout", "dreds done\n");
      logs.flush();
      assert.equal(all(logs.unacknowledged()), "progress: hundreds done\n");
      logs.append("stdout", "tail hunter2");
      logs.end();
      assert.equal(all(logs.unacknowledged()), "progress: hundreds done\ntail hunter2", "end() releases what was held");
    });

    it("keeps each stream's held end apart", () => {
      const logs = withSecret();
      logs.append("stdout", "out: hunter2-");
      logs.append("stderr", "err: hunter2-Zq9!\n");
      logs.append("stdout", "Zq9!\n");
      logs.end();
      assert.deepEqual(
        logs.unacknowledged().map((c) => [c.stream, c.data.toString()]),
        [
          ["stdout", "out: "],
          ["stderr", "err: ***\n"],
          ["stdout", "***\n"],
        ],
      );
    });

    it("redacts the agent's system lines", () => {
      const logs = withSecret();
      logs.system(`\n[hodei] could not start the command: ${SECRET}\n`);
      assert.equal(all(logs.unacknowledged()), "\n[hodei] could not start the command: ***\n");
    });

    it("counts what is held back past the log limit as dropped", () => {
      const logs = withSecret({ limitBytes: 10 });
      logs.append("stdout", "0123456789x");
      logs.append("stdout", "hunter2");
      logs.end();
      assert.equal(logs.droppedBytes, 1 + 7);
      assert.equal(outputBytes(logs.unacknowledged()), 10);
    });

    it("changes nothing without a secret long enough to redact", () => {
      const logs = buffer({ redactor: new Redactor(["abc"]), chunkBytes: 4 });
      logs.append("stdout", "abcabc");
      assert.deepEqual(texts(logs.unacknowledged()), ["abca"], "not held back: a short value has no forms");
    });
  });
});
