/**
 * The Fetch standard's Headers, for the agent's and the CLI's bundles (scripts/build.mjs injects it
 * where their code names the global `Headers`). Node 20 defines the global lazily: its first use
 * compiles Node's whole bundled fetch implementation (undici), 15-40 ms, and Connect makes a Headers
 * for every call, so each agent paid it before its first Register and each CLI command before its
 * first request. This is the same class without fetch: names are compared in lower case, values are
 * trimmed of HTTP whitespace, appended values are joined with ", " (Set-Cookie values stay apart),
 * iteration is sorted by name, and an invalid name or value is a TypeError, as Node's own does (the
 * tests run the same operations on both and compare).
 */

type HeadersInput = Iterable<Iterable<string>> | Record<string, string>;

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
// A value may not hold NUL, CR or LF (after leading and trailing HTTP whitespace is removed).
const INVALID_VALUE = /[\0\r\n]/;
const SET_COOKIE = "set-cookie";

function checkedName(name: unknown): string {
  const text = String(name);
  if (!TOKEN.test(text)) throw new TypeError(`Headers: "${text}" is an invalid header name`);
  return text.toLowerCase();
}

function checkedValue(value: unknown, name: string): string {
  const text = String(value).replace(/^[\t\n\r ]+|[\t\n\r ]+$/g, "");
  if (INVALID_VALUE.test(text)) throw new TypeError(`Headers: the value of ${name} is invalid (it holds NUL, CR or LF)`);
  return text;
}

export class Headers {
  /** Lower-cased name -> its values in the order they were appended. */
  private readonly map = new Map<string, string[]>();

  constructor(init?: HeadersInput) {
    if (init === undefined || init === null) return;
    if (typeof init !== "object") throw new TypeError("Headers: init must be an object, an array of pairs or a Headers");
    if (Symbol.iterator in init) {
      for (const pair of init as Iterable<Iterable<string>>) {
        const entry = [...pair];
        if (entry.length !== 2) throw new TypeError("Headers: each header pair must be [name, value]");
        this.append(entry[0], entry[1]);
      }
      return;
    }
    for (const name of Object.keys(init)) this.append(name, (init as Record<string, string>)[name]);
  }

  append(name: string, value: string): void {
    const key = checkedName(name);
    const text = checkedValue(value, key);
    const values = this.map.get(key);
    if (values) values.push(text);
    else this.map.set(key, [text]);
  }

  set(name: string, value: string): void {
    const key = checkedName(name);
    this.map.set(key, [checkedValue(value, key)]);
  }

  delete(name: string): void {
    this.map.delete(checkedName(name));
  }

  has(name: string): boolean {
    return this.map.has(checkedName(name));
  }

  get(name: string): string | null {
    return this.map.get(checkedName(name))?.join(", ") ?? null;
  }

  getSetCookie(): string[] {
    return [...(this.map.get(SET_COOKIE) ?? [])];
  }

  forEach(callback: (value: string, name: string, parent: Headers) => void, thisArg?: unknown): void {
    for (const [name, value] of this.entries()) callback.call(thisArg, value, name, this);
  }

  *entries(): IterableIterator<[string, string]> {
    for (const name of [...this.map.keys()].sort()) {
      const values = this.map.get(name);
      if (!values) continue; // deleted while iterating
      if (name === SET_COOKIE) for (const value of values) yield [name, value];
      else yield [name, values.join(", ")];
    }
  }

  *keys(): IterableIterator<string> {
    for (const [name] of this.entries()) yield name;
  }

  *values(): IterableIterator<string> {
    for (const [, value] of this.entries()) yield value;
  }

  [Symbol.iterator](): IterableIterator<[string, string]> {
    return this.entries();
  }

  get [Symbol.toStringTag](): string {
    return "Headers";
  }
}
