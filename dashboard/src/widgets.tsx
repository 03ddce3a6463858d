/** Small pieces shared by the pages. */
import type { ReactNode } from "react";
import { messageOf } from "./api";

export function StateBadge({ state }: { state: string }) {
  return <span className={`badge state-${state}`}>{state.replace("_", " ")}</span>;
}

export function ErrorBox({ error }: { error: unknown }) {
  return (
    <div className="error-box" role="alert">
      {messageOf(error)}
    </div>
  );
}

export function Page({ title, actions, children, loaded }: { title: ReactNode; actions?: ReactNode; children: ReactNode; loaded?: boolean }) {
  return (
    <section className="page" data-loaded={loaded ? "true" : undefined}>
      <header className="page-head">
        <h2>{title}</h2>
        <div className="actions">{actions}</div>
      </header>
      {children}
    </section>
  );
}

export function ShortId({ id }: { id: string }) {
  return (
    <code className="id" title={id}>
      {id.slice(0, 8)}
    </code>
  );
}
