import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import type { UnaryRequest, UnaryResponse } from "@connectrpc/connect";
import { adminKeyGuard, type ApiKeyChoice } from "./credentials.js";

const HEAD = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode";
/** /proc/net/tcp with one socket listening on 127.0.0.1:7070, owned by uid (none: nothing listens). */
function listenerOwnedBy(dir: string, uid: number | null): void {
  const row = `   0: 0100007F:1B9E 00000000:0000 0A 00000000:00000000 00:00000000 00000000 ${uid}        0 1001 1 0000000000000000 100 0 0 10 0`;
  writeFileSync(join(dir, "tcp"), [HEAD, ...(uid === null ? [] : [row]), ""].join("\n"));
}

describe("the admin key's guard, before each call", () => {
  it("sends the admin key only while its owner serves the port: a listener that changes mid-command gets none, and the refusal says why", async () => {
    const procNet = mkdtempSync(join(tmpdir(), "hodei-procnet-"));
    try {
      const choice: ApiKeyChoice = { key: "hodei_key_x", source: "/data/admin.key", adminKey: { path: "/data/admin.key", owner: 1000, host: "127.0.0.1", port: 7070 } };
      const sent: (string | null)[] = [];
      const call = adminKeyGuard(choice, procNet)(async (req) => {
        sent.push(req.header.get("authorization"));
        return {} as UnaryResponse;
      });
      const request = () => call({ header: new Headers({ authorization: "Bearer hodei_key_x" }) } as UnaryRequest);

      listenerOwnedBy(procNet, 1000);
      await request();
      listenerOwnedBy(procNet, 1001); // the server stopped and another user took its port
      await request();
      assert.match(choice.source, /^not \/data\/admin\.key: it belongs to uid 1000, but it is served by uid 1001/);
      listenerOwnedBy(procNet, null);
      await request();
      assert.match(choice.source, /nothing listens there/);
      listenerOwnedBy(procNet, 1000); // the server is back
      await request();
      assert.equal(choice.source, "/data/admin.key");
      assert.deepEqual(sent, ["Bearer hodei_key_x", null, null, "Bearer hodei_key_x"]);
    } finally {
      rmSync(procNet, { recursive: true });
    }
  });

  it("leaves a key given with --token or HODEI_TOKEN alone", async () => {
    const choice: ApiKeyChoice = { key: "hodei_key_y", source: "HODEI_TOKEN" };
    let sent: string | null = null;
    await adminKeyGuard(choice, "/nonexistent")(async (req) => {
      sent = req.header.get("authorization");
      return {} as UnaryResponse;
    })({ header: new Headers({ authorization: "Bearer hodei_key_y" }) } as UnaryRequest);
    assert.equal(sent, "Bearer hodei_key_y");
  });
});
