import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { loopbackListenerUids } from "./loopback-listener.js";

const HEAD4 = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode";
const HEAD6 = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode";
const row = (sl: number, local: string, state: string, uid: number) => `   ${sl}: ${local} 00000000:0000 ${state} 00000000:00000000 00:00000000 00000000 ${String(uid).padStart(5)}        0 ${1000 + sl} 1 0000000000000000 100 0 0 10 0`;

/** A /proc/net directory with these tcp and tcp6 tables (null: that file is absent). */
function procNet(tcp: string[] | null, tcp6: string[] | null): string {
  const dir = mkdtempSync(join(tmpdir(), "hodei-procnet-"));
  if (tcp) writeFileSync(join(dir, "tcp"), [HEAD4, ...tcp, ""].join("\n"));
  if (tcp6) writeFileSync(join(dir, "tcp6"), [HEAD6, ...tcp6, ""].join("\n"));
  return dir;
}

describe("who listens on a loopback address (/proc/net/tcp, tcp6)", () => {
  it("finds the owner of a socket listening on 127.0.0.1 or on every address, not of other ports, addresses or states", () => {
    const dir = procNet(
      [
        row(0, "0100007F:1B9E", "0A", 1000), // 127.0.0.1:7070, listening
        row(1, "00000000:1B9F", "0A", 1001), // 0.0.0.0:7071
        row(2, "0100007F:1BA0", "01", 1002), // 127.0.0.1:7072, an established connection
        row(3, "0500007F:1BA1", "0A", 1003), // 127.0.0.5:7073
        row(4, "0100000A:1B9E", "0A", 1004), // 10.0.0.1:7070
      ],
      [],
    );
    try {
      assert.deepEqual(loopbackListenerUids("127.0.0.1", 7070, dir), [1000]);
      assert.deepEqual(loopbackListenerUids("127.0.0.1", 7071, dir), [1001], "0.0.0.0 takes loopback connections");
      assert.deepEqual(loopbackListenerUids("127.0.0.1", 7072, dir), [], "only listening sockets");
      assert.deepEqual(loopbackListenerUids("127.0.0.5", 7073, dir), [1003]);
      assert.deepEqual(loopbackListenerUids("127.0.0.1", 7073, dir), [], "another loopback address is another listener");
      assert.deepEqual(loopbackListenerUids("localhost", 7070, dir), [1000]);
    } finally {
      rmSync(dir, { recursive: true });
    }
  });

  it("counts IPv6 sockets: :: and ::ffff:127.0.0.1 for 127.0.0.1, :: and ::1 for [::1], and every owner found", () => {
    const dir = procNet(
      [row(0, "0100007F:1B9E", "0A", 1000)],
      [
        row(0, "00000000000000000000000000000000:1B9E", "0A", 2000), // [::]:7070
        row(1, "00000000000000000000000001000000:1B9F", "0A", 2001), // [::1]:7071
        row(2, "0000000000000000FFFF00000100007F:1BA0", "0A", 2002), // [::ffff:127.0.0.1]:7072
      ],
    );
    try {
      assert.deepEqual(loopbackListenerUids("127.0.0.1", 7070, dir)?.sort(), [1000, 2000], "two owners: both are reported");
      assert.deepEqual(loopbackListenerUids("[::1]", 7071, dir), [2001]);
      assert.deepEqual(loopbackListenerUids("::1", 7070, dir), [2000]);
      assert.deepEqual(loopbackListenerUids("127.0.0.1", 7071, dir), [], "::1 takes no IPv4 connection");
      assert.deepEqual(loopbackListenerUids("127.0.0.1", 7072, dir), [2002]);
      assert.deepEqual(loopbackListenerUids("localhost", 7071, dir), [2001], "localhost is 127.0.0.1 and ::1");
    } finally {
      rmSync(dir, { recursive: true });
    }
  });

  it("says it cannot tell (null) without /proc/net/tcp, and reads IPv4 alone without tcp6", () => {
    const none = procNet(null, null);
    const v4only = procNet([row(0, "0100007F:1B9E", "0A", 1000)], null);
    try {
      assert.equal(loopbackListenerUids("127.0.0.1", 7070, none), null);
      assert.deepEqual(loopbackListenerUids("127.0.0.1", 7070, v4only), [1000]);
    } finally {
      rmSync(none, { recursive: true });
      rmSync(v4only, { recursive: true });
    }
  });
});
