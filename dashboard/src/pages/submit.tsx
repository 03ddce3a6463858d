/**
 * The submit form: every field of SubmitJob that a person types (command or script, provider, image,
 * env, secrets, labels, timeout, attempts, exit codes to retry, priority, queue timeout, delay,
 * resources, pull policy, node selector, idempotency key). The server validates; its message,
 * which names the field, is shown as it is.
 */
import { useMutation, useQuery } from "@tanstack/react-query";
import { type FormEvent, useState } from "react";
import type { SubmitJobRequest } from "../../../src/gen/hodei/v1/api_pb.js";
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { SubmitJobRequestSchema } from "../../../src/gen/hodei/v1/api_pb.js";
import { jobs } from "../api";
import { navigate } from "../router";
import { useCaller } from "../session";
import { ErrorBox, Page } from "../widgets";

/** "A=1\nB=2" (or comma-separated) → { A: "1", B: "2" }; a line without "=" is an error naming it. */
export function parsePairs(text: string, what: string, separator = /\n/): Record<string, string> {
  const out: Record<string, string> = {};
  for (const raw of text.split(separator)) {
    const line = raw.trim();
    if (!line) continue;
    const eq = line.indexOf("=");
    if (eq <= 0) throw new Error(`${what}: "${line}" is not NAME=VALUE`);
    out[line.slice(0, eq)] = line.slice(eq + 1);
  }
  return out;
}

const int = (v: FormDataEntryValue | null) => (v && String(v).trim() ? Number(String(v).trim()) : 0);

export function SubmitPage() {
  const { caller } = useCaller();
  const providers = useQuery({ queryKey: ["providers"], queryFn: () => jobs.listProviders({}), enabled: caller.canRead });
  const [mode, setMode] = useState<"command" | "script">("command");
  const [formError, setFormError] = useState("");
  const submit = useMutation({
    mutationFn: (req: MessageInitShape<typeof SubmitJobRequestSchema>) => jobs.submitJob(req),
    onSuccess: (res) => navigate(`/jobs/${res.job!.id}`),
  });

  if (!caller.canSubmit) return <Page title="New job"><p className="muted">This key has no "submit" scope.</p></Page>;

  const onSubmit = (e: FormEvent<HTMLFormElement>) => {
    e.preventDefault();
    setFormError("");
    const f = new FormData(e.currentTarget);
    const s = (name: string) => String(f.get(name) ?? "").trim();
    try {
      const req: Partial<SubmitJobRequest> = {
        command: mode === "command" && s("command") ? [s("command")] : [],
        script: mode === "script" ? String(f.get("script") ?? "") : "",
        provider: s("provider"),
        image: s("image"),
        env: parsePairs(String(f.get("env") ?? ""), "env"),
        secrets: parsePairs(String(f.get("secrets") ?? ""), "secrets"),
        labels: parsePairs(s("labels"), "labels", /[\n,]/),
        timeoutSeconds: int(f.get("timeout")),
        maxAttempts: int(f.get("maxAttempts")),
        retryOnExitCodes: s("retryOnExitCodes"),
        priority: int(f.get("priority")),
        queueTimeoutSeconds: int(f.get("queueTimeout")),
        delaySeconds: int(f.get("delay")),
        pullPolicy: s("pullPolicy"),
        idempotencyKey: s("idempotencyKey"),
        nodeSelector: parsePairs(s("nodeSelector"), "node selector", /[\n,]/),
      };
      const cpu = Number(s("cpu") || 0);
      const memoryMb = int(f.get("memoryMb"));
      submit.mutate({ ...req, resources: cpu || memoryMb ? { cpuMillis: Math.round(cpu * 1000), memoryMb } : undefined } as MessageInitShape<typeof SubmitJobRequestSchema>);
    } catch (err) {
      setFormError((err as Error).message);
    }
  };

  return (
    <Page title="New job" loaded>
      <form
        className="submit-form"
        onSubmit={onSubmit}
        aria-label="submit a job"
        onKeyDown={(e) => {
          if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) e.currentTarget.requestSubmit();
        }}
      >
        <div className="segmented" role="group" aria-label="command or script">
          <button type="button" className={mode === "command" ? "on" : ""} onClick={() => setMode("command")}>
            command
          </button>
          <button type="button" className={mode === "script" ? "on" : ""} onClick={() => setMode("script")}>
            script
          </button>
        </div>
        {mode === "command" ? (
          <label className="wide">
            command <span className="muted small">run with sh -c, so pipes work</span>
            <input name="command" className="mono" placeholder="echo hello | tr a-z A-Z" autoFocus required />
          </label>
        ) : (
          <label className="wide">
            script
            <textarea name="script" className="mono" rows={8} placeholder={"set -e\nmake test"} required />
          </label>
        )}
        <label>
          provider
          <select name="provider" defaultValue="">
            <option value="">default{providers.data ? ` (${providers.data.providers.find((p) => p.isDefault)?.name ?? ""})` : ""}</option>
            {providers.data?.providers.map((p) => (
              <option key={p.name} value={p.name}>
                {p.name}
                {p.healthy ? "" : " (unavailable)"}
              </option>
            ))}
          </select>
        </label>
        <label>
          image <span className="muted small">docker, kubernetes</span>
          <input name="image" placeholder="default image" />
        </label>
        <label>
          timeout, s
          <input name="timeout" type="number" min={0} placeholder="server default" />
        </label>
        <label>
          max attempts
          <input name="maxAttempts" type="number" min={0} max={10} placeholder="1" />
        </label>
        <label>
          retry on exit codes
          <input name="retryOnExitCodes" placeholder="3,4 or any" />
        </label>
        <label>
          priority
          <input name="priority" type="number" min={-100} max={100} placeholder="0" />
        </label>
        <label>
          queue timeout, s
          <input name="queueTimeout" type="number" min={0} placeholder="server default" />
        </label>
        <label>
          delay, s
          <input name="delay" type="number" min={0} placeholder="0" />
        </label>
        <label>
          cpu, cores
          <input name="cpu" type="number" min={0} step={0.1} placeholder="no limit" />
        </label>
        <label>
          memory, MiB
          <input name="memoryMb" type="number" min={0} placeholder="no limit" />
        </label>
        <label>
          pull policy
          <select name="pullPolicy" defaultValue="">
            <option value="">if-not-present</option>
            <option value="always">always</option>
            <option value="never">never</option>
          </select>
        </label>
        <label>
          idempotency key
          <input name="idempotencyKey" />
        </label>
        <label className="half">
          env <span className="muted small">NAME=VALUE, one a line</span>
          <textarea name="env" className="mono" rows={3} />
        </label>
        <label className="half">
          secrets <span className="muted small">NAME=VALUE; shown as *** in the log, never again here</span>
          <textarea name="secrets" className="mono" rows={3} autoComplete="off" />
        </label>
        <label className="half">
          labels <span className="muted small">k=v, comma or line separated</span>
          <input name="labels" className="mono" />
        </label>
        <label className="half">
          node selector <span className="muted small">kubernetes: k=v, …</span>
          <input name="nodeSelector" className="mono" />
        </label>
        {formError && <div className="error-box wide">{formError}</div>}
        {submit.error ? (
          <div className="wide">
            <ErrorBox error={submit.error} />
          </div>
        ) : null}
        <div className="wide">
          <button type="submit" className="primary" disabled={submit.isPending}>
            {submit.isPending ? "submitting…" : "Submit"}
          </button>
          <span className="muted small"> Ctrl+Enter submits</span>
        </div>
      </form>
    </Page>
  );
}
