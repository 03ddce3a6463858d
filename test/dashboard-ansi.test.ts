/**
 * The dashboard's ANSI reading (dashboard/src/log/ansi.ts) and its carrying of a style from line to
 * line in a log (log-buffer.ts): pure code, tested here without a browser.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { applySgr, paletteColor, parseAnsi, PLAIN } from "../dashboard/src/log/ansi.js";
import { LogBuffer } from "../dashboard/src/log/log-buffer.js";

const ESC = "\x1b";

describe("parseAnsi", () => {
  it("reads the 16 colours, attributes and resets, and drops the escapes", () => {
    const { spans, end } = parseAnsi(`a${ESC}[1;31mb${ESC}[22;42mc${ESC}[0md${ESC}[94me${ESC}[39mf`);
    assert.deepEqual(
      spans.map((s) => [s.text, s.style]),
      [
        ["a", {}],
        ["b", { bold: true, fg: "ansi-red" }],
        ["c", { bold: undefined, dim: undefined, fg: "ansi-red", bg: "ansi-green" }],
        ["d", {}],
        ["e", { fg: "ansi-bright-blue" }],
        ["f", {}],
      ],
    );
    assert.equal(end, PLAIN);
  });

  it("reads 256-colour and truecolor codes, foreground and background", () => {
    assert.deepEqual(applySgr(PLAIN, "38;5;196"), { fg: "rgb(255, 0, 0)" });
    assert.deepEqual(applySgr(PLAIN, "38;5;1"), { fg: "ansi-red" }, "0-15 are the themed colours");
    assert.deepEqual(applySgr(PLAIN, "38;5;9"), { fg: "ansi-bright-red" });
    assert.deepEqual(applySgr(PLAIN, "48;5;244"), { bg: "rgb(128, 128, 128)" }, "232-255 grays");
    assert.deepEqual(applySgr(PLAIN, "38;2;10;20;300"), { fg: "rgb(10, 20, 255)" }, "truecolor, clamped");
    assert.deepEqual(applySgr(PLAIN, "1;48;2;1;2;3;4"), { bold: true, bg: "rgb(1, 2, 3)", underline: true }, "codes after a truecolor one still apply");
    assert.deepEqual(applySgr(PLAIN, "38:5:208"), { fg: "rgb(255, 135, 0)" }, "colon-separated");
    assert.equal(paletteColor(16), "rgb(0, 0, 0)");
    assert.equal(paletteColor(231), "rgb(255, 255, 255)");
    assert.equal(paletteColor(256), undefined);
  });

  it("drops other escapes (erase line, cursor moves, OSC titles) without styling", () => {
    const { spans } = parseAnsi(`${ESC}[2K${ESC}[1Gdone${ESC}]0;title${ESC}\\ ok`);
    assert.equal(spans.map((s) => s.text).join(""), "done ok");
    assert.ok(spans.every((s) => Object.keys(s.style).length === 0));
  });
});

describe("a log's ANSI state", () => {
  const entry = (cursor: number, stream: string, text: string, attempt = 1) => ({ attempt, cursor: BigInt(cursor), stream, data: new TextEncoder().encode(text) });

  it("carries a style across lines of one stream until it is reset, apart from the other stream", () => {
    const buf = new LogBuffer();
    buf.append(entry(1, "stdout", `${ESC}[31mred\nstill red\n`));
    buf.append(entry(2, "stderr", "plain stderr\n"));
    buf.append(entry(3, "stdout", `red again${ESC}[0m plain\nplain\n`));
    buf.finish();
    const styles = Array.from({ length: buf.length }, (_, i) => [buf.text(i), buf.style(i).fg ?? ""]);
    assert.deepEqual(styles, [
      [`${ESC}[31mred`, ""],
      ["still red", "ansi-red"],
      ["plain stderr", ""],
      [`red again${ESC}[0m plain`, "ansi-red"],
      ["plain", ""],
    ]);
  });

  it("starts each attempt plain", () => {
    const buf = new LogBuffer();
    buf.append(entry(1, "stdout", `${ESC}[38;2;1;2;3mcolour\n`));
    buf.append(entry(2, "stdout", "next attempt\n", 2));
    buf.finish();
    assert.deepEqual(Array.from({ length: buf.length }, (_, i) => buf.style(i)), [{}, {}, {}]);
  });
});
