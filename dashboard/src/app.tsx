/**
 * The frame: navigation, who is signed in, light/dark theme, keyboard shortcuts, and the page of the
 * current route.
 */
import { useEffect, useState } from "react";
import { isTyping } from "./log/log-view";
import { JobPage } from "./pages/job";
import { JobsPage } from "./pages/jobs";
import { ProvidersPage, TokensPage, WorkersPage } from "./pages/fleet";
import { SchedulesPage } from "./pages/schedules";
import { SubmitPage } from "./pages/submit";
import { Link, navigate, useLocation } from "./router";
import { useCaller } from "./session";

const THEME_ITEM = "hodei.theme";

const SHORTCUTS: [string, string][] = [
  ["g j", "jobs"],
  ["g w", "workers"],
  ["g t", "tokens"],
  ["g p", "providers"],
  ["g c", "schedules (cron)"],
  ["n", "new job"],
  ["/", "search jobs"],
  ["End / G", "log: jump to end"],
  ["Home / g", "log: top"],
  ["d", "dark / light"],
  ["?", "this help"],
];

function useTheme(): [string, () => void] {
  const [theme, setTheme] = useState(() => localStorage.getItem(THEME_ITEM) ?? (matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light"));
  useEffect(() => {
    document.documentElement.dataset.theme = theme;
    localStorage.setItem(THEME_ITEM, theme);
  }, [theme]);
  return [theme, () => setTheme((t) => (t === "dark" ? "light" : "dark"))];
}

export function App() {
  const { path, search } = useLocation();
  const { caller, signOut } = useCaller();
  const [theme, toggleTheme] = useTheme();
  const [isHelpOpen, setHelpOpen] = useState(false);

  useEffect(() => {
    let pendingG = 0;
    const onKey = (e: KeyboardEvent) => {
      if (isTyping(e)) {
        if (e.key === "Escape") (e.target as HTMLElement).blur();
        return;
      }
      const now = Date.now();
      if (now - pendingG < 1000) {
        pendingG = 0;
        const to = { j: "/", w: "/workers", t: "/tokens", p: "/providers", c: "/schedules", s: "/submit" }[e.key];
        if (to) {
          e.preventDefault();
          navigate(to);
          return;
        }
      }
      if (e.key === "g" && !path.startsWith("/jobs/")) pendingG = now;
      else if (e.key === "g") pendingG = now; // also "top" on a log page (log-view.tsx)
      if (e.key === "n" && caller.canSubmit) navigate("/submit");
      else if (e.key === "/") {
        const search = document.querySelector<HTMLInputElement>("[data-shortcut=search]");
        if (search) {
          e.preventDefault();
          search.focus();
        } else if (path !== "/") {
          e.preventDefault();
          navigate("/");
        }
      } else if (e.key === "d") toggleTheme();
      else if (e.key === "?") setHelpOpen((o) => !o);
      else if (e.key === "Escape") setHelpOpen(false);
    };
    window.addEventListener("keydown", onKey);
    return () => window.removeEventListener("keydown", onKey);
  }, [path, caller.canSubmit, toggleTheme]);

  const jobMatch = /^\/jobs\/([A-Za-z0-9_-]+)$/.exec(path);
  let page;
  if (path === "/" || path === "/jobs") page = <JobsPage />;
  else if (jobMatch) page = <JobPage key={jobMatch[1]} id={jobMatch[1]} />;
  else if (path === "/workers") page = <WorkersPage />;
  else if (path === "/tokens") page = <TokensPage />;
  else if (path === "/providers") page = <ProvidersPage />;
  else if (path === "/schedules") page = <SchedulesPage key={search.toString()} name={search.get("name") ?? ""} limit={Math.min(1000, Math.max(0, Math.trunc(Number(search.get("limit"))) || 0))} />;
  else if (path === "/submit") page = <SubmitPage />;
  else page = <p className="muted">No page here. <Link to="/">Jobs</Link></p>;

  const nav = (to: string, label: string) => (
    <Link to={to} className={(to === "/" ? path === "/" || path.startsWith("/jobs") : path === to) ? "active" : ""}>
      {label}
    </Link>
  );
  return (
    <div className="app">
      <nav className="top">
        <Link to="/" className="brand">
          <span className="logo">▲</span> Hodei
        </Link>
        {caller.canRead && nav("/", "Jobs")}
        {caller.canRead && nav("/workers", "Workers")}
        {caller.canRead && nav("/tokens", "Tokens")}
        {caller.canRead && nav("/providers", "Providers")}
        {caller.canRead && nav("/schedules", "Schedules")}
        {caller.canSubmit && nav("/submit", "Submit")}
        <span className="spacer" />
        <span className="muted small who" data-testid="who">
          {caller.isAuthOff ? "auth off" : `${caller.keyName ?? "key"} · ${caller.isAdmin ? "admin" : (caller.scopes ?? [caller.canRead && "read", caller.canSubmit && "submit"].filter(Boolean)).join(", ")}`}
        </span>
        <button type="button" className="ghost" onClick={toggleTheme} title="dark / light (d)" aria-label="toggle theme">
          {theme === "dark" ? "☀" : "☾"}
        </button>
        <button type="button" className="ghost" onClick={() => setHelpOpen(true)} title="keyboard shortcuts (?)" aria-label="keyboard shortcuts">
          ?
        </button>
        {!caller.isAuthOff && (
          <button type="button" className="ghost" onClick={() => signOut()}>
            sign out
          </button>
        )}
      </nav>
      <main>{page}</main>
      {isHelpOpen && (
        <div className="overlay" onClick={() => setHelpOpen(false)}>
          <div className="dialog" role="dialog" aria-label="keyboard shortcuts">
            <h3>Keyboard shortcuts</h3>
            <table className="table">
              <tbody>
                {SHORTCUTS.map(([k, v]) => (
                  <tr key={k}>
                    <td>
                      <kbd>{k}</kbd>
                    </td>
                    <td>{v}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        </div>
      )}
    </div>
  );
}
