import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { InvalidInputError } from "./errors.js";
import { dueAtMs, type JobSpec, SPEC_LIMITS, type SpecDefaults, validateJobSpec } from "./job-spec.js";

const DEFAULTS: SpecDefaults = { provider: "local", timeoutSeconds: 3600, providers: ["local", "docker"] };

/** Asserts that validating `input` throws InvalidInputError naming `field` (in .field and in the message). */
function assertRejected(input: Partial<JobSpec>, field: string, messagePart?: RegExp): void {
  assert.throws(
    () => validateJobSpec(input, DEFAULTS),
    (err: unknown) => {
      assert.ok(err instanceof InvalidInputError, `expected InvalidInputError, got ${String(err)}`);
      assert.equal(err.field, field);
      assert.match(err.message, new RegExp(`\\b${field}\\b`), "the message names the field");
      if (messagePart) assert.match(err.message, messagePart);
      return true;
    },
  );
}

describe("validateJobSpec", () => {
  describe("accepts", () => {
    it("a complete good spec and returns it unchanged", () => {
      const input: JobSpec = {
        command: ["echo", "hi"],
        script: "",
        provider: "docker",
        env: { GREETING: "hello", _UNDERSCORE: "", lower_case9: "x" },
        timeoutSeconds: 90,
        labels: { team: "infra", "app.kubernetes.io/name": "hodei" },
        maxAttempts: 3,
        image: "alpine:3.20",
        idempotencyKey: "submit-42",
        cpuMillis: 500,
        memoryMb: 256,
        retryOnExitCodes: "3,4",
        secrets: { API_TOKEN: "s3cr3t-value" },
        priority: -7,
        queueTimeoutSeconds: 600,
        runAtMs: 1_900_000_000_000,
        delaySeconds: 0,
        pullPolicy: "always",
        nodeSelector: { "disktype": "ssd", "topology.kubernetes.io/zone": "eu-1a" },
        tolerations: [{ key: "dedicated", operator: "Equal", value: "hodei", effect: "NoSchedule" }],
        notify: ["https://hooks.example.com/hodei?token=abc", "http://203.0.114.9:8080/"],
      };
      assert.deepEqual(validateJobSpec(input, DEFAULTS), input);
    });

    it("a script alone", () => {
      const spec = validateJobSpec({ script: "set -e\necho one\necho two\n" }, DEFAULTS);
      assert.equal(spec.script, "set -e\necho one\necho two\n");
      assert.deepEqual(spec.command, []);
    });

    it("a bare command and fills every default", () => {
      assert.deepEqual(validateJobSpec({ command: ["true"] }, DEFAULTS), {
        command: ["true"],
        script: "",
        provider: "local",
        env: {},
        timeoutSeconds: 3600,
        labels: {},
        maxAttempts: 1,
        image: "",
        idempotencyKey: "",
        cpuMillis: 0,
        memoryMb: 0,
        retryOnExitCodes: "",
        secrets: {},
        priority: 0,
        queueTimeoutSeconds: 0,
        runAtMs: 0,
        delaySeconds: 0,
        pullPolicy: "if-not-present",
        nodeSelector: {},
        tolerations: [],
        notify: [],
      });
    });

    it("treats zero and empty values as unset (proto3 defaults)", () => {
      const spec = validateJobSpec({ command: ["true"], provider: "", timeoutSeconds: 0, maxAttempts: 0 }, DEFAULTS);
      assert.equal(spec.provider, "local");
      assert.equal(spec.timeoutSeconds, 3600);
      assert.equal(spec.maxAttempts, 1);
    });

    it("a timeout of exactly 7 days and the maximum number of attempts", () => {
      const spec = validateJobSpec(
        { command: ["true"], timeoutSeconds: SPEC_LIMITS.maxTimeoutSeconds, maxAttempts: SPEC_LIMITS.maxAttempts },
        DEFAULTS,
      );
      assert.equal(spec.timeoutSeconds, 7 * 24 * 3600);
      assert.equal(spec.maxAttempts, 10);
    });

    it("exactly the maximum number of env variables", () => {
      const env = Object.fromEntries(Array.from({ length: SPEC_LIMITS.envVars }, (_, i) => [`V${i}`, "x"]));
      assert.equal(Object.keys(validateJobSpec({ command: ["true"], env }, DEFAULTS).env).length, 256);
    });
  });

  describe("rejects, naming the field", () => {
    it("an empty command with no script", () => {
      assertRejected({}, "command", /must not be empty/);
      assertRejected({ command: [] }, "command");
      assertRejected({ command: [], script: "  \n\t" }, "command");
    });

    it("a command whose program is blank", () => {
      assertRejected({ command: ["", "arg"] }, "command");
      assertRejected({ command: ["   "] }, "command");
    });

    it("a command and a script together", () => {
      assertRejected({ command: ["echo", "hi"], script: "echo hi" }, "script", /either command or script/);
    });

    it("too many or too large command arguments, and NUL bytes", () => {
      assertRejected({ command: Array.from({ length: SPEC_LIMITS.commandArgs + 1 }, () => "a") }, "command");
      assertRejected({ command: ["echo", "x".repeat(SPEC_LIMITS.commandBytes)] }, "command");
      assertRejected({ command: ["echo", "a\0b"] }, "command");
    });

    it("one argument or one NAME=VALUE longer than Linux starts a program with (MAX_ARG_STRLEN), saying to use a script", () => {
      assertRejected({ command: ["echo", "x".repeat(SPEC_LIMITS.argBytes + 1)] }, "command", /argument 1 is 131072 bytes.*script/);
      assertRejected({ command: [`: ${"x".repeat(SPEC_LIMITS.argBytes)}`] }, "command", /argument 0/);
      assert.equal(validateJobSpec({ command: ["echo", "x".repeat(SPEC_LIMITS.argBytes)] }, DEFAULTS).command[1].length, SPEC_LIMITS.argBytes);
      assertRejected({ command: ["true"], env: { A: "x".repeat(SPEC_LIMITS.argBytes - 1) } }, "env", /"A" is too long/);
      assert.equal(validateJobSpec({ command: ["true"], env: { A: "x".repeat(SPEC_LIMITS.argBytes - 2) } }, DEFAULTS).env.A.length, SPEC_LIMITS.argBytes - 2);
    });

    it("a script larger than the limit", () => {
      assertRejected({ script: "x".repeat(SPEC_LIMITS.scriptBytes + 1) }, "script");
    });

    it("an unknown provider, listing the enabled ones", () => {
      assertRejected({ command: ["true"], provider: "kubernetes" }, "provider", /"kubernetes".*local, docker/);
    });

    it("a default provider that is not enabled", () => {
      assert.throws(
        () => validateJobSpec({ command: ["true"] }, { ...DEFAULTS, provider: "nomad" }),
        (err: unknown) => err instanceof InvalidInputError && err.field === "provider",
      );
    });

    it("a negative timeout", () => {
      assertRejected({ command: ["true"], timeoutSeconds: -1 }, "timeoutSeconds");
    });

    it("a fractional timeout", () => {
      assertRejected({ command: ["true"], timeoutSeconds: 1.5 }, "timeoutSeconds");
    });

    it("an absurd timeout longer than 7 days", () => {
      assertRejected({ command: ["true"], timeoutSeconds: SPEC_LIMITS.maxTimeoutSeconds + 1 }, "timeoutSeconds", /7 days/);
      assertRejected({ command: ["true"], timeoutSeconds: 10 ** 12 }, "timeoutSeconds");
    });

    it("too many env variables", () => {
      const env = Object.fromEntries(Array.from({ length: SPEC_LIMITS.envVars + 1 }, (_, i) => [`V${i}`, "x"]));
      assertRejected({ command: ["true"], env }, "env", /at most 256/);
    });

    it("env larger than the byte limit", () => {
      assertRejected({ command: ["true"], env: { BIG: "x".repeat(SPEC_LIMITS.envBytes) } }, "env", /"BIG" is too long/);
      const halves = { A: "x".repeat(SPEC_LIMITS.envBytes / 2), B: "x".repeat(SPEC_LIMITS.envBytes / 2) };
      assertRejected({ command: ["true"], env: halves }, "env", /too large/);
    });

    it("invalid env variable names", () => {
      for (const name of ["", "1ABC", "A-B", "A B", "A=B", "NAME\0", "ÉTÉ"]) {
        assertRejected({ command: ["true"], env: { [name]: "v" } }, "env", /not a valid variable name/);
      }
    });

    it("env names with the reserved HODEI_ prefix", () => {
      for (const name of ["HODEI_OTP_TOKEN", "HODEI_SERVER_URL", "HODEI_"]) {
        assertRejected({ command: ["true"], env: { [name]: "v" } }, "env", /reserved/);
      }
    });

    it("env values with NUL bytes", () => {
      assertRejected({ command: ["true"], env: { A: "x\0y" } }, "env");
    });

    it("a bad maxAttempts", () => {
      for (const maxAttempts of [-1, SPEC_LIMITS.maxAttempts + 1, 1.5, 1000]) {
        assertRejected({ command: ["true"], maxAttempts }, "maxAttempts", /between 1 and 10/);
      }
    });

    it("invalid label names and oversized label values", () => {
      assertRejected({ command: ["true"], labels: { "-dash": "v" } }, "labels");
      assertRejected({ command: ["true"], labels: { "has space": "v" } }, "labels");
      assertRejected({ command: ["true"], labels: { ok: "v".repeat(SPEC_LIMITS.labelBytes + 1) } }, "labels");
      const labels = Object.fromEntries(Array.from({ length: SPEC_LIMITS.labels + 1 }, (_, i) => [`l${i}`, "v"]));
      assertRejected({ command: ["true"], labels }, "labels");
    });

    it("an idempotency key longer than the limit", () => {
      assertRejected({ command: ["true"], idempotencyKey: "k".repeat(SPEC_LIMITS.idempotencyKeyBytes + 1) }, "idempotencyKey");
    });
  });

  describe("provider details (resources)", () => {
    it("defaults the pull policy to if-not-present and the placement to none", () => {
      const spec = validateJobSpec({ command: ["true"] }, DEFAULTS);
      assert.equal(spec.pullPolicy, "if-not-present");
      assert.deepEqual(spec.nodeSelector, {});
      assert.deepEqual(spec.tolerations, []);
    });

    it("refuses a pull policy that is not always, if-not-present or never", () => {
      assertRejected({ command: ["true"], pullPolicy: "Always" as JobSpec["pullPolicy"] }, "pullPolicy", /always, if-not-present, never/);
    });

    it("refuses node selector keys and values the API server would refuse, naming the entry", () => {
      assertRejected({ command: ["true"], nodeSelector: { "bad key": "x" } }, "nodeSelector", /key "bad key"/);
      assertRejected({ command: ["true"], nodeSelector: { "Example.com/x": "y" } }, "nodeSelector", /prefix/);
      assertRejected({ command: ["true"], nodeSelector: { zone: "-a" } }, "nodeSelector", /value of "zone"/);
      assertRejected({ command: ["true"], nodeSelector: { zone: "a".repeat(64) } }, "nodeSelector");
      assert.deepEqual(validateJobSpec({ command: ["true"], nodeSelector: { zone: "" } }, DEFAULTS).nodeSelector, { zone: "" });
    });

    it("completes tolerations (operator Equal, every effect) and refuses what Kubernetes refuses", () => {
      const partial = [{ key: "gpu" }, { key: "", operator: "Exists" }, { key: "spot", operator: "Exists", effect: "NoExecute", tolerationSeconds: 30 }];
      assert.deepEqual(validateJobSpec({ command: ["true"], tolerations: partial as JobSpec["tolerations"] }, DEFAULTS).tolerations, [
        { key: "gpu", operator: "Equal", value: "", effect: "" },
        { key: "", operator: "Exists", value: "", effect: "" },
        { key: "spot", operator: "Exists", value: "", effect: "NoExecute", tolerationSeconds: 30 },
      ]);
      const bad = (t: object, why: RegExp) => assertRejected({ command: ["true"], tolerations: [t] as JobSpec["tolerations"] }, "tolerations", why);
      bad({ key: "", operator: "Equal" }, /empty key .* Exists/);
      bad({ key: "a", operator: "Exists", value: "b" }, /takes no value/);
      bad({ key: "a", operator: "In" }, /Equal or Exists/);
      bad({ key: "a", effect: "NoRun" }, /effect "NoRun"/);
      bad({ key: "a", effect: "NoSchedule", tolerationSeconds: 5 }, /only with effect NoExecute/);
      bad({ key: "a b" }, /\[0\]: key "a b"/);
    });
  });
  describe("retryOnExitCodes", () => {
    const codes = (retryOnExitCodes: string) => validateJobSpec({ command: ["true"], maxAttempts: 3, retryOnExitCodes }, DEFAULTS).retryOnExitCodes;

    it("normalises a list of codes: trimmed, duplicates dropped, ascending", () => {
      assert.equal(codes("3"), "3");
      assert.equal(codes(" 4, 3 ,4,255,1 "), "1,3,4,255");
    });

    it("accepts any (in any case) and the empty list", () => {
      assert.equal(codes("any"), "any");
      assert.equal(codes(" ANY "), "any");
      assert.equal(codes(""), "");
      assert.equal(codes("   "), "");
      assert.equal(validateJobSpec({ command: ["true"] }, DEFAULTS).retryOnExitCodes, "");
    });

    it(`accepts exactly ${SPEC_LIMITS.retryExitCodes} codes`, () => {
      const list = Array.from({ length: SPEC_LIMITS.retryExitCodes }, (_, i) => String(i + 1)).join(",");
      assert.equal(codes(list).split(",").length, 32);
    });

    it("rejects codes outside 1..255, words, empty entries and any mixed with codes, naming the field", () => {
      for (const bad of ["0", "256", "-1", "3,0", "1.5", "3;4", "3,,4", "3,", "x", "any,3", "0x3", "1e2", " 7 7", "0003"]) {
        assertRejected({ command: ["true"], maxAttempts: 2, retryOnExitCodes: bad }, "retryOnExitCodes", /not an exit code from 1 to 255|exit codes/);
      }
    });

    it(`rejects more than ${SPEC_LIMITS.retryExitCodes} codes, and a huge list before splitting it`, () => {
      const list = Array.from({ length: SPEC_LIMITS.retryExitCodes + 1 }, (_, i) => String(i + 1)).join(",");
      assertRejected({ command: ["true"], maxAttempts: 2, retryOnExitCodes: list }, "retryOnExitCodes", /at most 32 exit codes/);
      assertRejected({ command: ["true"], maxAttempts: 2, retryOnExitCodes: "3,".repeat(1_000_000) }, "retryOnExitCodes", /at most 32 exit codes/);
    });

    it("does not echo all of a huge bad entry back", () => {
      assert.throws(
        () => validateJobSpec({ command: ["true"], maxAttempts: 2, retryOnExitCodes: "x".repeat(200) }, DEFAULTS),
        (err: unknown) => err instanceof InvalidInputError && err.message.length < 200,
      );
    });

    it("rejects codes to retry when only one attempt is allowed, saying to set maxAttempts", () => {
      assertRejected({ command: ["true"], retryOnExitCodes: "3" }, "retryOnExitCodes", /maxAttempts of 2 or more \(it is 1\)/);
      assertRejected({ command: ["true"], maxAttempts: 1, retryOnExitCodes: "any" }, "retryOnExitCodes", /set maxAttempts/);
    });
  });

  describe("secrets", () => {
    const VALUE = "hunter2-value";

    it("accepts secrets beside env, at the limits, and none by default", () => {
      assert.deepEqual(validateJobSpec({ command: ["true"] }, DEFAULTS).secrets, {});
      const secrets = Object.fromEntries(Array.from({ length: SPEC_LIMITS.secrets }, (_, i) => [`S${i}`, "v".repeat(1000)]));
      secrets.S0 = "v".repeat(SPEC_LIMITS.secretValueBytes);
      assert.deepEqual(validateJobSpec({ command: ["true"], env: { PLAIN: "x" }, secrets }, DEFAULTS).secrets, secrets);
    });

    it("rejects names that are not variable names, reserved, or also in env, naming the field", () => {
      assertRejected({ command: ["true"], secrets: { "1BAD": VALUE } }, "secrets", /not a valid variable name/);
      assertRejected({ command: ["true"], secrets: { "A-B": VALUE } }, "secrets");
      assertRejected({ command: ["true"], secrets: { HODEI_TOKEN: VALUE } }, "secrets", /reserved/);
      assertRejected({ command: ["true"], env: { TOKEN: "plain" }, secrets: { TOKEN: VALUE } }, "secrets", /also in env/);
    });

    it("rejects too many, too large or NUL-holding secrets without ever showing a value", () => {
      const many = Object.fromEntries(Array.from({ length: SPEC_LIMITS.secrets + 1 }, (_, i) => [`S${i}`, VALUE]));
      const big = Object.fromEntries(Array.from({ length: 9 }, (_, i) => [`S${i}`, "v".repeat(SPEC_LIMITS.secretValueBytes)]));
      for (const secrets of [many, big, { ONE: `${VALUE}${"v".repeat(SPEC_LIMITS.secretValueBytes)}` }, { NUL: `${VALUE}\0` }]) {
        assert.throws(
          () => validateJobSpec({ command: ["true"], secrets }, DEFAULTS),
          (err: unknown) => err instanceof InvalidInputError && err.field === "secrets" && !err.message.includes(VALUE) && !err.message.includes("vvvv"),
        );
      }
    });
  });
});

describe("validateJobSpec: queue fields (priority, queue timeout, run-at)", () => {
  const NOW = 1_700_000_000_000;
  const YEAR_MS = SPEC_LIMITS.maxRunAheadSeconds * 1000;

  it("accepts priorities from -100 to 100 and defaults to 0", () => {
    assert.equal(validateJobSpec({ command: ["true"] }, DEFAULTS).priority, 0);
    for (const priority of [-100, -1, 1, 100]) assert.equal(validateJobSpec({ command: ["true"], priority }, DEFAULTS).priority, priority);
  });

  it("refuses a priority out of range or fractional, naming the field", () => {
    for (const priority of [-101, 101, 1.5, 10 ** 9]) assertRejected({ command: ["true"], priority }, "priority", /between -100 and 100/);
  });

  it("takes the server's queue timeout when the job names none, and the job's own over it", () => {
    const defaults = { ...DEFAULTS, queueTimeoutSeconds: 600 };
    assert.equal(validateJobSpec({ command: ["true"] }, defaults).queueTimeoutSeconds, 600);
    assert.equal(validateJobSpec({ command: ["true"], queueTimeoutSeconds: 5 }, defaults).queueTimeoutSeconds, 5);
    assert.equal(validateJobSpec({ command: ["true"] }, DEFAULTS).queueTimeoutSeconds, 0, "no server default: wait for ever");
  });

  it("refuses a negative, fractional or longer-than-30-days queue timeout", () => {
    for (const queueTimeoutSeconds of [-1, 2.5, SPEC_LIMITS.maxQueueTimeoutSeconds + 1]) {
      assertRejected({ command: ["true"], queueTimeoutSeconds }, "queueTimeoutSeconds");
    }
  });

  it("accepts a run-at up to a year ahead, and one in the past", () => {
    const defaults = { ...DEFAULTS, nowMs: NOW };
    assert.equal(validateJobSpec({ command: ["true"], runAtMs: NOW + YEAR_MS }, defaults).runAtMs, NOW + YEAR_MS);
    assert.equal(validateJobSpec({ command: ["true"], runAtMs: NOW - 3_600_000 }, defaults).runAtMs, NOW - 3_600_000);
  });

  it("refuses a run-at more than a year ahead, and a run-at with a delay", () => {
    assert.throws(
      () => validateJobSpec({ command: ["true"], runAtMs: NOW + YEAR_MS + 1 }, { ...DEFAULTS, nowMs: NOW }),
      (err: unknown) => err instanceof InvalidInputError && err.field === "runAt" && /at most a year ahead/.test(err.message),
    );
    assertRejected({ command: ["true"], runAtMs: NOW, delaySeconds: 5 }, "runAt", /either runAt or delaySeconds/);
  });

  it("refuses a negative delay or one over a year", () => {
    for (const delaySeconds of [-1, SPEC_LIMITS.maxRunAheadSeconds + 1, 0.5]) assertRejected({ command: ["true"], delaySeconds }, "delaySeconds");
  });

  it("makes a job due at its run-at or after its delay, never before its submission", () => {
    assert.equal(dueAtMs({ runAtMs: 0, delaySeconds: 0 }, NOW), NOW);
    assert.equal(dueAtMs({ runAtMs: NOW + 5000, delaySeconds: 0 }, NOW), NOW + 5000);
    assert.equal(dueAtMs({ runAtMs: NOW - 5000, delaySeconds: 0 }, NOW), NOW, "a past run-at means now");
    assert.equal(dueAtMs({ runAtMs: 0, delaySeconds: 30 }, NOW), NOW + 30_000);
  });
});

describe("validateJobSpec: notify (webhook URLs)", () => {
  it("takes up to 4 http(s) URLs and drops duplicates", () => {
    const urls = ["https://a.example.com/x", "http://b.example.com:8080/", "https://a.example.com/x"];
    assert.deepEqual(validateJobSpec({ command: ["true"], notify: urls }, DEFAULTS).notify, ["https://a.example.com/x", "http://b.example.com:8080/"]);
    assert.deepEqual(validateJobSpec({ command: ["true"] }, DEFAULTS).notify, []);
  });

  it("refuses a fifth URL, a URL over 2048 characters, another scheme and no URL at all", () => {
    assertRejected({ command: ["true"], notify: ["a", "b", "c", "d", "e"].map((h) => `https://${h}.example.com/`) }, "notify", /at most 4 URLs/);
    assertRejected({ command: ["true"], notify: [`https://example.com/${"a".repeat(2048)}`] }, "notify", /longer than 2048/);
    assertRejected({ command: ["true"], notify: ["file:///etc/passwd"] }, "notify", /use http or https/);
    assertRejected({ command: ["true"], notify: ["gopher://example.com/"] }, "notify", /use http or https/);
    assertRejected({ command: ["true"], notify: ["not a url"] }, "notify", /not a URL/);
  });

  it("refuses private, loopback, link-local and metadata addresses, and localhost, unless the server allows them", () => {
    for (const url of ["http://127.0.0.1:9000/", "http://localhost/", "http://api.localhost/", "http://10.1.2.3/", "http://169.254.169.254/latest/meta-data/", "http://[::1]/", "http://[::ffff:127.0.0.1]/", "http://[fd00:ec2::254]/", "http://2130706433/", "http://0x7f.1/", "http://0.0.0.0/", "http://100.100.100.200/"]) {
      assertRejected({ command: ["true"], notify: [url] }, "notify", /HODEI_WEBHOOK_ALLOW_PRIVATE=1/);
      assert.deepEqual(validateJobSpec({ command: ["true"], notify: [url] }, { ...DEFAULTS, isWebhookPrivateAllowed: true }).notify, [url], url);
    }
  });
});
