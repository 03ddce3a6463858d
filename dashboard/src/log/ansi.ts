/**
 * ANSI escape sequences in log lines: SGR (ESC [ ... m) read into a style, everything else (cursor
 * moves, erase, OSC titles) dropped. Covers the 8/16 colours (classes themed by the stylesheet),
 * the 256-colour palette (38;5;n / 48;5;n) and truecolor (38;2;r;g;b / 48;2;r;g;b) as CSS colours,
 * bold, dim, italic, underline, strikethrough and inverse. A style is carried from line to line
 * (a colour set on one line and reset lines later colours the lines between): parseAnsi takes the
 * style a line starts with and returns the one it ends with. Pure: no DOM.
 */

export interface AnsiStyle {
  /** A class name ("ansi-red") for the 16 themed colours, or a CSS colour ("rgb(…)"). */
  fg?: string;
  bg?: string;
  bold?: boolean;
  dim?: boolean;
  italic?: boolean;
  underline?: boolean;
  strike?: boolean;
  inverse?: boolean;
}

export interface AnsiSpan {
  text: string;
  style: AnsiStyle;
}

const NAMES = ["black", "red", "green", "yellow", "blue", "magenta", "cyan", "white"];
/** CSI ... final byte, OSC ... BEL/ST, or a lone two-character escape. */
const ESCAPE = /\x1b(?:\[([0-9;:?]*)([@-~])|\][^\x07\x1b]*(?:\x07|\x1b\\)?|[@-Z\\-_])/g;

export const PLAIN: AnsiStyle = Object.freeze({});

export function isPlain(style: AnsiStyle): boolean {
  return Object.values(style).every((v) => v === undefined || v === false);
}

/** The spans of `text` (escapes removed) from style `start`, and the style at its end. */
export function parseAnsi(text: string, start: AnsiStyle = PLAIN): { spans: AnsiSpan[]; end: AnsiStyle } {
  const spans: AnsiSpan[] = [];
  let style = start;
  let at = 0;
  for (const m of text.matchAll(ESCAPE)) {
    if (m.index > at) spans.push({ text: text.slice(at, m.index), style });
    at = m.index + m[0].length;
    if (m[2] === "m") style = applySgr(style, m[1]);
  }
  if (at < text.length) spans.push({ text: text.slice(at), style });
  return { spans, end: style };
}

/** The style after one SGR sequence's parameters ("" is a reset). */
export function applySgr(from: AnsiStyle, params: string): AnsiStyle {
  const codes = params === "" ? [0] : params.split(/[;:]/).map((p) => (p === "" ? 0 : Number(p)));
  let s: AnsiStyle = { ...from };
  for (let i = 0; i < codes.length; i++) {
    const c = codes[i];
    if (c === 0) s = {};
    else if (c === 1) s.bold = true;
    else if (c === 2) s.dim = true;
    else if (c === 3) s.italic = true;
    else if (c === 4) s.underline = true;
    else if (c === 7) s.inverse = true;
    else if (c === 9) s.strike = true;
    else if (c === 22) s.bold = s.dim = undefined;
    else if (c === 23) s.italic = undefined;
    else if (c === 24) s.underline = undefined;
    else if (c === 27) s.inverse = undefined;
    else if (c === 29) s.strike = undefined;
    else if (c >= 30 && c <= 37) s.fg = `ansi-${NAMES[c - 30]}`;
    else if (c >= 90 && c <= 97) s.fg = `ansi-bright-${NAMES[c - 90]}`;
    else if (c >= 40 && c <= 47) s.bg = `ansi-${NAMES[c - 40]}`;
    else if (c >= 100 && c <= 107) s.bg = `ansi-bright-${NAMES[c - 100]}`;
    else if (c === 39) s.fg = undefined;
    else if (c === 49) s.bg = undefined;
    else if (c === 38 || c === 48) {
      // 38;5;n (palette) or 38;2;r;g;b (truecolor); a malformed one ends the sequence.
      let color: string | undefined;
      if (codes[i + 1] === 5 && i + 2 < codes.length) {
        color = paletteColor(codes[i + 2]);
        i += 2;
      } else if (codes[i + 1] === 2 && i + 4 < codes.length) {
        const [r, g, b] = codes.slice(i + 2, i + 5).map((v) => Math.max(0, Math.min(255, v)));
        color = `rgb(${r}, ${g}, ${b})`;
        i += 4;
      } else break;
      if (c === 38) s.fg = color;
      else s.bg = color;
    }
  }
  return isPlain(s) ? PLAIN : s;
}

/** xterm's 256-colour palette: 0-15 the themed colours, 16-231 a 6×6×6 cube, 232-255 grays. */
export function paletteColor(n: number): string | undefined {
  if (!Number.isInteger(n) || n < 0 || n > 255) return undefined;
  if (n < 8) return `ansi-${NAMES[n]}`;
  if (n < 16) return `ansi-bright-${NAMES[n - 8]}`;
  if (n < 232) {
    const level = (v: number) => (v === 0 ? 0 : 55 + v * 40);
    const i = n - 16;
    return `rgb(${level(Math.floor(i / 36))}, ${level(Math.floor(i / 6) % 6)}, ${level(i % 6)})`;
  }
  const gray = 8 + (n - 232) * 10;
  return `rgb(${gray}, ${gray}, ${gray})`;
}

/** Whether a colour is one of the themed classes rather than a CSS colour. */
export function isThemed(color: string): boolean {
  return color.startsWith("ansi-");
}
