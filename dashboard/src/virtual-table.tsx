/**
 * A table whose rows are rendered only while visible (@tanstack/react-virtual), so a page of 500
 * jobs or a long token list costs what the screen shows. Columns are a CSS grid template.
 */
import { useVirtualizer } from "@tanstack/react-virtual";
import { type ReactNode, useRef } from "react";

export interface Column<T> {
  header: string;
  /** A CSS grid track: "90px", "minmax(200px, 1fr)". */
  width: string;
  cell: (row: T) => ReactNode;
  className?: string;
}

const ROW_HEIGHT_PX = 30;

export function VirtualTable<T>({
  rows,
  columns,
  rowKey,
  rowProps,
  empty,
  label,
  stale = false,
}: {
  rows: readonly T[];
  columns: Column<T>[];
  rowKey: (row: T) => string;
  rowProps?: (row: T) => Record<string, string | undefined>;
  empty: ReactNode;
  label: string;
  /** The rows are the previous query's while the next one loads: dimmed, and aria-busy. */
  stale?: boolean;
}) {
  const scroller = useRef<HTMLDivElement>(null);
  const virtualizer = useVirtualizer({ count: rows.length, getScrollElement: () => scroller.current, estimateSize: () => ROW_HEIGHT_PX, overscan: 12 });
  const template = columns.map((c) => c.width).join(" ");
  return (
    <div className={stale ? "vtable stale" : "vtable"} role="table" aria-label={label} aria-busy={stale}>
      <div className="vrow vhead" role="row" style={{ gridTemplateColumns: template }}>
        {columns.map((c) => (
          <div key={c.header} role="columnheader" className={c.className}>
            {c.header}
          </div>
        ))}
      </div>
      <div className="vbody" ref={scroller}>
        {rows.length === 0 ? (
          <div className="empty">{empty}</div>
        ) : (
          <div style={{ height: virtualizer.getTotalSize(), position: "relative" }}>
            {virtualizer.getVirtualItems().map((item) => {
              const row = rows[item.index];
              return (
                <div
                  key={rowKey(row)}
                  role="row"
                  className="vrow"
                  {...rowProps?.(row)}
                  style={{ gridTemplateColumns: template, transform: `translateY(${item.start}px)`, height: ROW_HEIGHT_PX }}
                >
                  {columns.map((c) => (
                    <div key={c.header} role="cell" className={c.className}>
                      {c.cell(row)}
                    </div>
                  ))}
                </div>
              );
            })}
          </div>
        )}
      </div>
    </div>
  );
}
