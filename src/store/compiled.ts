/**
 * Statements of the hot path (every job runs each of them once or more) built and compiled once per
 * dialect, then run with new parameters. Kysely builds and compiles every query anew, which costs
 * about 40 µs here: several times SQLite's own cost for a lookup by key, and about a tenth of the
 * control plane's CPU per job (bench/control-plane.ts, BENCH_CP_PROFILE).
 *
 * Invariants:
 *  - the SQL is exactly what the builder makes (the same text, so SQLite's prepared statement and
 *    the query-plan audit see the same statement); only the parameters differ;
 *  - a key names one shape of statement: callers put everything that changes the SQL text (patch
 *    columns, optional clauses) in the key, and every value in `params`, read by `p(i)`;
 *  - compiled per dialect: the cache hangs on the dialect's adapter, shared by a Kysely instance and
 *    its transactions, and goes with it.
 */
import type { Compilable, CompiledQuery, Kysely, QueryResult } from "kysely";
import type { Database } from "./schema.js";

/** A value no caller passes: it marks where parameter i goes in the compiled statement. */
const SLOT_PREFIX = "\u0000hodei-slot:";

interface Entry {
  compiled: CompiledQuery;
  /** For each parameter of the compiled statement: the index into params, or -1 for a constant of the builder. */
  slots: number[];
}

const cacheByAdapter = new WeakMap<object, Map<string, Entry>>();

/** The placeholder for params[i] in a builder. */
// biome-ignore lint/suspicious/noExplicitAny: a placeholder stands for a value of any column's type
export type Slot = (i: number) => any;
const slot: Slot = (i) => `${SLOT_PREFIX}${i}`;

/** Runs the statement `key` with `params`, building and compiling it with `build` the first time on this dialect. */
export async function runCompiled<R>(db: Kysely<Database>, key: string, params: readonly unknown[], build: (p: Slot) => Compilable<R>): Promise<QueryResult<R>> {
  // The adapter is one object per Kysely instance and its transactions (Kysely's own internal
  // accessor; there is no public one for the dialect).
  const adapter = db.getExecutor().adapter;
  let cache = cacheByAdapter.get(adapter);
  if (!cache) cacheByAdapter.set(adapter, (cache = new Map()));
  let entry = cache.get(key);
  if (!entry) {
    const compiled = build(slot).compile();
    const slots = compiled.parameters.map((value) => (typeof value === "string" && value.startsWith(SLOT_PREFIX) ? Number(value.slice(SLOT_PREFIX.length)) : -1));
    entry = { compiled, slots };
    cache.set(key, entry);
  }
  const { compiled, slots } = entry;
  const parameters = slots.map((index, i) => (index === -1 ? compiled.parameters[i] : params[index]));
  return db.executeQuery<R>({ ...compiled, parameters } as CompiledQuery<R>);
}

/** The first row of a run (a `returning` statement or a select by key), or undefined. */
export async function firstRow<R>(db: Kysely<Database>, key: string, params: readonly unknown[], build: (p: Slot) => Compilable<R>): Promise<R | undefined> {
  return (await runCompiled(db, key, params, build)).rows[0];
}
