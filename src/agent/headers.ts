/**
 * A small Headers (the WHATWG class, as much of it as an RPC client uses) that the agent installs
 * as the global one before its first call. Why: Node 20's global Headers is undici's, and its first
 * use loads all of undici; Connect makes a Headers for every call, so the agent's first RPC paid
 * for that load (measured: `new Headers()` takes 80 to 140 ms in a fresh Node 20 on a busy 2-core
 * machine; bench/agent-boot.ts). The agent never uses fetch, so nothing else needs undici.
 *
 * Behaviour kept from the standard: names are case-insensitive and iterated lowercased and sorted;
 * append joins repeated values with ", " (set-cookie values stay apart, for getSetCookie); values
 * are trimmed; invalid names and values (CR, LF, NUL) throw a TypeError, like undici's.
 */
type Init = AgentHeaders | Iterable<[string, string]> | Record<string, string> | undefined;

const NAME = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

function normalizeName(name: string): string {
  const text = String(name);
  if (!NAME.test(text)) throw new TypeError(`Headers: invalid header name "${text}"`);
  return text.toLowerCase();
}

function normalizeValue(value: string): string {
  const text = String(value).replace(/^[\t\n\r ]+|[\t\n\r ]+$/g, "");
  if (/[\r\n\0]/.test(text)) throw new TypeError("Headers: invalid header value");
  return text;
}

export class AgentHeaders {
  private readonly map = new Map<string, string[]>();

  constructor(init?: Init) {
    if (init === undefined || init === null) return;
    if (typeof (init as Iterable<unknown>)[Symbol.iterator] === "function") {
      for (const pair of init as Iterable<[string, string]>) {
        if (pair.length !== 2) throw new TypeError("Headers: each header pair must have a name and a value");
        this.append(pair[0], pair[1]);
      }
    } else {
      for (const [name, value] of Object.entries(init as Record<string, string>)) this.append(name, value);
    }
  }

  append(name: string, value: string): void {
    const key = normalizeName(name);
    const values = this.map.get(key);
    if (values) values.push(normalizeValue(value));
    else this.map.set(key, [normalizeValue(value)]);
  }

  set(name: string, value: string): void {
    this.map.set(normalizeName(name), [normalizeValue(value)]);
  }

  delete(name: string): void {
    this.map.delete(normalizeName(name));
  }

  has(name: string): boolean {
    return this.map.has(normalizeName(name));
  }

  get(name: string): string | null {
    return this.map.get(normalizeName(name))?.join(", ") ?? null;
  }

  getSetCookie(): string[] {
    return [...(this.map.get("set-cookie") ?? [])];
  }

  forEach(callback: (value: string, name: string, headers: AgentHeaders) => void, thisArg?: unknown): void {
    for (const [name, value] of this.entries()) callback.call(thisArg, value, name, this);
  }

  *entries(): IterableIterator<[string, string]> {
    for (const name of [...this.map.keys()].sort()) {
      const values = this.map.get(name)!;
      if (name === "set-cookie") for (const value of values) yield [name, value];
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

/** Makes AgentHeaders the global Headers, without reading the old one (reading it loads undici). */
export function installAgentHeaders(): void {
  Object.defineProperty(globalThis, "Headers", { value: AgentHeaders, writable: true, configurable: true, enumerable: false });
}
