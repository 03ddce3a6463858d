/**
 * Sign-in and what the signed-in key may do. The API has no "who am I" call, so the key's rights are
 * learned from how the server answers three harmless calls: ListProviders (read), ListKeys (admin)
 * and SubmitJob with an empty request (submit: a key with the scope gets invalid_argument, since the
 * request is checked after the key; one without it gets permission_denied; nothing is submitted). The
 * key's name and exact scopes are read, when present, from ListKeys' permission_denied message.
 * When the server asks for no key (HODEI_AUTH=off) the first call succeeds without one: no form.
 */
import { createContext, type FormEvent, type ReactNode, useCallback, useContext, useEffect, useState } from "react";
import { Code, codeOf, jobs, keys, messageOf, storedKey, storeKey } from "./api";

export interface Caller {
  /** The key's name when known (learned from the server's answer); null with auth off or unknown. */
  keyName: string | null;
  isAuthOff: boolean;
  isAdmin: boolean;
  canRead: boolean;
  canSubmit: boolean;
  /** Exact scopes when the server named them; null when unknown. */
  scopes: string[] | null;
}

const CallerContext = createContext<{ caller: Caller; signOut: (why?: string) => void } | null>(null);

export function useCaller() {
  const value = useContext(CallerContext);
  if (!value) throw new Error("useCaller outside SignedIn");
  return value;
}

/** May this caller cancel (or rerun) this job? Cancel: admin, or submit on its own job. */
export function canCancel(caller: Caller, job: { submittedBy: string }): boolean {
  return caller.isAdmin || (caller.canSubmit && caller.keyName !== null && job.submittedBy === caller.keyName);
}

export function canRerun(caller: Caller, job: { submittedBy: string }): boolean {
  return caller.canSubmit && (caller.canRead || (caller.keyName !== null && job.submittedBy === caller.keyName));
}

/**
 * May this caller pause, resume or remove this schedule? Admin, or submit on a schedule its key
 * created (server/access.ts requireScheduleChange). With auth off the caller is admin.
 */
export function canChangeSchedule(caller: Caller, schedule: { createdBy: string }): boolean {
  return caller.isAdmin || (caller.canSubmit && caller.keyName !== null && schedule.createdBy === caller.keyName);
}

async function learnCaller(): Promise<Caller | "refused"> {
  const read = await jobs.listProviders({}).then(
    () => true,
    (err: unknown) => {
      if (codeOf(err) === Code.Unauthenticated) return "refused" as const;
      if (codeOf(err) === Code.PermissionDenied) return false;
      throw err;
    },
  );
  if (read === "refused") return "refused";
  const admin = await keys.listKeys({}).then(
    () => ({ isAdmin: true, message: "" }),
    (err: unknown) => ({ isAdmin: false, message: messageOf(err) }),
  );
  const isAuthOff = storedKey() === null;
  if (admin.isAdmin) return { keyName: null, isAuthOff, isAdmin: true, canRead: true, canSubmit: true, scopes: null };
  const canSubmit = await jobs.submitJob({}).then(
    () => true,
    (err: unknown) => codeOf(err) !== Code.PermissionDenied,
  );
  // e.g. API key "ci" lacks the scope "admin" to call ListKeys; its scopes: read,submit,provider:local. ...
  const named = /API key "([^"]*)" lacks .*?; its scopes: ([^ .]+)/.exec(admin.message);
  return {
    keyName: named?.[1] || null,
    isAuthOff: false,
    isAdmin: false,
    canRead: read,
    canSubmit,
    scopes: named && named[2] !== "none" ? named[2].split(",") : null,
  };
}

/** Renders children once a key works (or none is needed); else the one-field sign-in form, on the page asked for. */
export function SignedIn({ children }: { children: ReactNode }) {
  const [caller, setCaller] = useState<Caller | null>(null);
  const [state, setState] = useState<"checking" | "form">("checking");
  const [error, setError] = useState("");
  const [busy, setBusy] = useState(false);

  const check = useCallback(async () => {
    try {
      const learned = await learnCaller();
      if (learned === "refused") {
        if (storedKey()) setError("this key was refused: it is unknown or revoked");
        storeKey(null);
        setCaller(null);
        setState("form");
      } else {
        setError("");
        setCaller(learned);
      }
    } catch (err) {
      setError(`the server did not answer: ${messageOf(err)}`);
      setState("form");
    }
  }, []);

  useEffect(() => {
    void check();
  }, [check]);

  const signOut = useCallback((why?: string) => {
    storeKey(null);
    setCaller(null);
    setError(why ?? "");
    setState("form");
  }, []);

  const onSubmit = async (e: FormEvent<HTMLFormElement>) => {
    e.preventDefault();
    const key = String(new FormData(e.currentTarget).get("key") ?? "").trim();
    if (!key) return;
    setBusy(true);
    storeKey(key);
    await check();
    setBusy(false);
  };

  if (caller) return <CallerContext.Provider value={{ caller, signOut }}>{children}</CallerContext.Provider>;
  if (state === "checking") return <div className="center muted">connecting…</div>;
  return (
    <div className="center">
      <form className="sign-in" onSubmit={onSubmit} aria-label="sign in">
        <h1>
          <span className="logo">▲</span> Hodei
        </h1>
        <label htmlFor="api-key">API key</label>
        <input id="api-key" name="key" type="password" autoComplete="current-password" autoFocus placeholder="hodei_key_…" disabled={busy} />
        {error && <p className="error" role="alert">{error}</p>}
        <p className="muted small">
          Press Enter to sign in. The key is kept in this tab only (session storage). An admin makes keys with <code>hodei keys create</code>; the first
          admin key is <code>admin.key</code> in the server's data directory.
        </p>
      </form>
    </div>
  );
}
