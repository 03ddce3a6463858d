/**
 * Human output shapes: a borderless column table (cli-table3) and aligned "key  value" lines.
 * Headers are coloured with picocolors, not cli-table3's own colours, so NO_COLOR is respected.
 */
import Table from "cli-table3";
import pc from "picocolors";
import { stderrColors } from "./format.js";

const BORDERLESS = {
  top: "",
  "top-mid": "",
  "top-left": "",
  "top-right": "",
  bottom: "",
  "bottom-mid": "",
  "bottom-left": "",
  "bottom-right": "",
  left: "",
  "left-mid": "",
  mid: "",
  "mid-mid": "",
  right: "",
  "right-mid": "",
  middle: "  ",
};

/** Prints the table, or `none` on stderr when there are no rows (so stdout stays empty). */
export function printTable(head: string[], rows: string[][], none: string): void {
  if (rows.length === 0) {
    process.stderr.write(`${stderrColors().dim(none)}\n`);
    return;
  }
  const table = new Table({
    head: head.map((title) => pc.bold(title)),
    chars: BORDERLESS,
    style: { head: [], border: [], "padding-left": 0, "padding-right": 0 },
  });
  table.push(...rows);
  const lines = table
    .toString()
    .split("\n")
    .map((line) => line.trimEnd())
    .filter((line) => line.length > 0);
  process.stdout.write(`${lines.join("\n")}\n`);
}

/** Aligned "key  value" lines; an entry with value undefined is skipped. */
export function printFields(fields: [string, string | undefined][], indent = ""): void {
  const shown = fields.filter((entry): entry is [string, string] => entry[1] !== undefined);
  const width = Math.max(0, ...shown.map(([key]) => key.length));
  for (const [key, value] of shown) {
    process.stdout.write(`${indent}${pc.dim(key.padEnd(width))}  ${value}\n`);
  }
}
