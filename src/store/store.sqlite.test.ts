// Runs the store contract on SQLite in memory: a fresh, migrated database for every test.
import { openDatabase } from "./database.js";
import { Store } from "./store.js";
import { describeStore } from "./store.contract.js";

describeStore("sqlite :memory:", async () => {
  const { db, kind } = await openDatabase("sqlite::memory:");
  return new Store(db, kind);
});
