/**
 * A job's log, live: GetLogs with follow (history, then new lines as they arrive, until the job
 * ended: the stream's last entry carries the ended job, handed to onEnded), resumed after its last
 * cursor when the stream breaks. Only the visible lines are in the
 * DOM (@tanstack/react-virtual, fixed 16 px rows), and the buffer is re-rendered at most every
 * 100 ms, so a million lines neither freeze the tab nor a fast writer the page. ANSI colours (SGR)
 * are drawn per line; stderr lines are marked; following keeps the end in view until the reader
 * scrolls up ("End" or the button takes them back).
 */
import { useVirtualizer } from "@tanstack/react-virtual";
import { memo, useCallback, useEffect, useLayoutEffect, useRef, useState } from "react";
import type { Job } from "../../../src/gen/hodei/v1/api_pb.js";
import { Code, codeOf, jobs, messageOf } from "../api";
import { type AnsiStyle, isPlain, isThemed, parseAnsi } from "./ansi";
import { LogBuffer, STDERR, STDOUT, SYSTEM } from "./log-buffer";

const ROW_PX = 16;
const RENDER_EVERY_MS = 100;
const RESUME_AFTER_MS = 1000;

type Filter = "all" | "stdout" | "stderr";

/** onEnded: the job as it ended, from the stream's last entry (the page need not wait for its next read). */
export function LogView({ jobId, isFinished, onEnded }: { jobId: string; isFinished: boolean; onEnded?: (job: Job) => void }) {
  const buffer = useRef(new LogBuffer());
  const [, setVersion] = useState(0);
  const [status, setStatus] = useState<"loading" | "live" | "ended" | "error">("loading");
  const [error, setError] = useState("");
  const [filter, setFilter] = useState<Filter>("all");
  const [isFollowing, setFollowing] = useState(true);
  const scroller = useRef<HTMLDivElement>(null);
  const isFinishedRef = useRef(isFinished);
  isFinishedRef.current = isFinished;
  const onEndedRef = useRef(onEnded);
  onEndedRef.current = onEnded;

  useEffect(() => {
    buffer.current = new LogBuffer();
    const abort = new AbortController();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const render = () => {
      if (timer === undefined) timer = setTimeout(() => ((timer = undefined), setVersion((v) => v + 1)), RENDER_EVERY_MS);
    };
    (async () => {
      for (;;) {
        try {
          setStatus((s) => (s === "error" ? "live" : s));
          for await (const entry of jobs.getLogs({ jobId, follow: true, endWithJob: true, afterCursor: buffer.current.lastCursor }, { signal: abort.signal })) {
            if (entry.job) {
              onEndedRef.current?.(entry.job);
              continue;
            }
            buffer.current.append(entry);
            setStatus("live");
            render();
          }
          buffer.current.finish();
          setStatus("ended");
          render();
          return;
        } catch (err) {
          if (abort.signal.aborted) return;
          if (codeOf(err) === Code.NotFound || codeOf(err) === Code.PermissionDenied || codeOf(err) === Code.Unauthenticated) {
            setError(messageOf(err));
            setStatus("error");
            return;
          }
          setError(`${messageOf(err)}; resuming…`);
          setStatus("error");
          await new Promise((r) => setTimeout(r, RESUME_AFTER_MS));
          if (abort.signal.aborted) return;
        }
      }
    })();
    return () => {
      abort.abort();
      clearTimeout(timer);
    };
  }, [jobId]);

  const buf = buffer.current;
  const view = filter === "all" ? null : buf.view(filter === "stdout" ? STDOUT : STDERR);
  const count = view ? view.length : buf.length;
  const lineAt = useCallback((row: number) => (view ? view.indexes[row] : row), [view]);

  const virtualizer = useVirtualizer({ count, getScrollElement: () => scroller.current, estimateSize: () => ROW_PX, overscan: 40 });

  useLayoutEffect(() => {
    if (isFollowing && count > 0) virtualizer.scrollToIndex(count - 1, { align: "end" });
  });

  const onScroll = () => {
    const el = scroller.current;
    if (!el) return;
    const atEnd = el.scrollTop + el.clientHeight >= el.scrollHeight - ROW_PX * 2;
    if (atEnd !== isFollowing) setFollowing(atEnd);
  };

  const jumpToEnd = useCallback(() => {
    setFollowing(true);
    virtualizer.scrollToIndex(count - 1, { align: "end" });
  }, [virtualizer, count]);

  useEffect(() => {
    const onKey = (e: KeyboardEvent) => {
      if (isTyping(e)) return;
      if (e.key === "End" || (e.key === "G" && e.shiftKey)) {
        e.preventDefault();
        jumpToEnd();
      } else if (e.key === "Home" || e.key === "g") {
        setFollowing(false);
        virtualizer.scrollToIndex(0);
      }
    };
    window.addEventListener("keydown", onKey);
    return () => window.removeEventListener("keydown", onKey);
  }, [jumpToEnd, virtualizer]);

  const download = () => {
    const url = URL.createObjectURL(buf.blob());
    const a = document.createElement("a");
    a.href = url;
    a.download = `hodei-${jobId}.log`;
    a.click();
    setTimeout(() => URL.revokeObjectURL(url), 10_000);
  };

  const digits = String(buf.length).length;
  return (
    <div className="log">
      <div className="toolbar log-bar">
        <div className="segmented" role="group" aria-label="streams">
          {(["all", "stdout", "stderr"] as const).map((f) => (
            <button key={f} type="button" className={filter === f ? "on" : ""} onClick={() => setFilter(f)}>
              {f}
            </button>
          ))}
        </div>
        <span className="muted small" data-testid="log-count" data-lines={buf.length}>
          {buf.length.toLocaleString("en")} lines · {formatBytes(buf.bytes)} ·{" "}
          {status === "loading" ? "loading…" : status === "live" ? (isFinishedRef.current ? "reading…" : "live") : status === "ended" ? "complete" : ""}
        </span>
        {status === "error" && <span className="error small">{error}</span>}
        <span className="spacer" />
        <button type="button" onClick={jumpToEnd} disabled={isFollowing} title="End">
          ↓ jump to end
        </button>
        <button type="button" onClick={download} disabled={buf.bytes === 0}>
          download
        </button>
      </div>
      <div className="log-scroll" ref={scroller} onScroll={onScroll} data-testid="log-scroll" tabIndex={0}>
        <div style={{ height: virtualizer.getTotalSize(), position: "relative", minWidth: "100%" }}>
          {virtualizer.getVirtualItems().map((item) => {
            const i = lineAt(item.index);
            return <LogLine key={item.index} top={item.start} number={i + 1} digits={digits} kind={buf.kind(i)} text={buf.text(i)} start={buf.style(i)} />;
          })}
        </div>
        {count === 0 && <div className="empty">{status === "loading" ? "loading…" : status === "ended" ? "no output" : "waiting for output…"}</div>}
      </div>
    </div>
  );
}

const KIND_CLASS = ["out", "err", "sys"];

const LogLine = memo(function LogLine({ top, number, digits, kind, text, start }: { top: number; number: number; digits: number; kind: number; text: string; start: AnsiStyle }) {
  return (
    <div className={`line ${KIND_CLASS[kind]}`} style={{ transform: `translateY(${top}px)` }} data-line={number}>
      <span className="ln" style={{ width: `${digits + 1}ch` }}>
        {number}
      </span>
      <span className="tx">{text.includes("\x1b") || !isPlain(start) ? <Ansi text={text} start={start} /> : text}</span>
    </div>
  );
});

function Ansi({ text, start }: { text: string; start: AnsiStyle }) {
  return (
    <>
      {parseAnsi(text, start).spans.map((span, i) => {
        const st = span.style;
        const [fg, bg] = st.inverse ? [st.bg ?? "var(--bg)", st.fg ?? "var(--text)"] : [st.fg, st.bg];
        const classes: string[] = [];
        const css: Record<string, string> = {};
        if (fg) {
          if (isThemed(fg)) classes.push(`${fg}-fg`);
          else css.color = fg;
        }
        if (bg) {
          if (isThemed(bg)) classes.push(`${bg}-bg`);
          else css.background = bg;
        }
        for (const d of ["bold", "dim", "italic", "underline", "strike"] as const) if (st[d]) classes.push(`ansi-${d}`);
        return classes.length || fg || bg ? (
          <span key={i} className={classes.join(" ") || undefined} style={css}>
            {span.text}
          </span>
        ) : (
          span.text
        );
      })}
    </>
  );
}

export function isTyping(e: KeyboardEvent): boolean {
  const t = e.target as HTMLElement | null;
  return e.metaKey || e.ctrlKey || e.altKey || (t !== null && (t.tagName === "INPUT" || t.tagName === "TEXTAREA" || t.tagName === "SELECT" || t.isContentEditable));
}

function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

export { SYSTEM };
