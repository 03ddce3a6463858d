import type { Script } from "node:vm";

export const CLI_FILE: string;
export const CACHE_FILE: string;
export const LAZY_FILE: string;
export function compileCli(options?: { useCache?: boolean }): Script;
export function loadCli(options?: { useCache?: boolean }): Script;
export function lazyKeys(): { node: string; keys: Record<string, string[]> };
export function standIn(load: () => object, keys: string[]): object;
