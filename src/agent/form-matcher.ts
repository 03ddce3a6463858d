/**
 * Finds many byte strings (the forms of a job's secrets) in output in one pass: an Aho-Corasick
 * automaton, so the cost per byte of output does not grow with the number of forms, and output
 * made to match a form again and again (`aaaa...` against a secret `aaaa...`) costs no more than
 * any other (a search per form would be quadratic there).
 *
 * The same pass tells how long the end of the output is that may still begin a form (the deepest
 * state on the current state's failure chain that has a way further down): the part of the output
 * a streaming redactor must hold back.
 *
 * Memory: a few typed-array entries per trie node (at most one node per byte of the forms), and a
 * 256-entry table only for the few nodes with more than one child (each form adds at most one);
 * a chain node holds its one child inline.
 *
 * Pure: no I/O.
 */
const NO_CHILD = -1;
/** oneByte value of a node whose children are in a table. */
const BRANCH = -2;

export interface Scan {
  /** Every occurrence of every form, merged into sorted, disjoint [start, end) ranges (touching ones join). */
  ranges: [number, number][];
  /** Length of the longest end of the data that is a proper prefix of some form (0: none). */
  openEndBytes: number;
}

export class FormMatcher {
  /** Per node: the byte of its only child, NO_CHILD, or BRANCH (children at tables[oneChild[node] + byte]). */
  private readonly oneByte: Int16Array;
  /** Per node: its only child, or for a BRANCH node the offset of its 256 entries in tables. */
  private readonly oneChild: Int32Array;
  /** The branch nodes' child tables, 256 entries each, one flat array (a sparse JS array of them is slow). */
  private tables = new Int32Array(0);
  private tablesUsed = 0;
  private readonly fail: Int32Array;
  /** Per node: the longest form that ends here (the node's own, or one on its failure chain); 0: none. */
  private readonly matchLength: Int32Array;
  /** Per node: how far it is from the root, for the open end. */
  private readonly depth: Int32Array;
  readonly isEmpty: boolean;

  constructor(forms: readonly Buffer[]) {
    // At most one node per byte of the forms, plus the root.
    const capacity = forms.reduce((n, f) => n + f.length, 1);
    this.oneByte = new Int16Array(capacity).fill(NO_CHILD);
    this.oneChild = new Int32Array(capacity).fill(NO_CHILD);
    this.fail = new Int32Array(capacity);
    this.matchLength = new Int32Array(capacity);
    this.depth = new Int32Array(capacity);
    const terminal = new Int32Array(capacity);
    let count = 1;
    for (const form of forms) {
      let node = 0;
      for (const byte of form) {
        let next = this.child(node, byte);
        if (next === NO_CHILD) {
          next = count++;
          this.depth[next] = this.depth[node] + 1;
          this.addChild(node, byte, next);
        }
        node = next;
      }
      if (form.length > 0) terminal[node] = form.length;
    }
    this.isEmpty = count === 1;
    // Failure links, breadth first: a node's link is the longest proper suffix of its path that is
    // also a path of the trie; its match length, the longest form ending there.
    const queue = new Int32Array(count);
    let tail = 0;
    for (const [, child] of this.childrenOf(0)) {
      this.matchLength[child] = terminal[child];
      queue[tail++] = child;
    }
    for (let head = 0; head < tail; head++) {
      const node = queue[head];
      for (const [byte, child] of this.childrenOf(node)) {
        const link = this.step(this.fail[node], byte);
        this.fail[child] = link;
        this.matchLength[child] = terminal[child] || this.matchLength[link];
        queue[tail++] = child;
      }
    }
  }

  scan(data: Buffer): Scan {
    const { oneByte, oneChild, tables, fail, matchLength } = this;
    const ranges: [number, number][] = [];
    let state = 0;
    for (let i = 0; i < data.length; i++) {
      const byte = data[i];
      // step(), inlined: this loop runs once per byte of output.
      for (;;) {
        const one = oneByte[state];
        const next = one === byte ? oneChild[state] : one === BRANCH ? tables[oneChild[state] + byte] : NO_CHILD;
        if (next !== NO_CHILD) {
          state = next;
          break;
        }
        if (state === 0) break;
        state = fail[state];
      }
      const length = matchLength[state];
      if (length === 0) continue;
      // Ends only grow; a start may reach back over earlier ranges: merge them.
      let start = i + 1 - length;
      while (ranges.length > 0 && start <= ranges[ranges.length - 1][1]) start = Math.min(start, ranges.pop()![0]);
      ranges.push([start, i + 1]);
    }
    // The deepest state on the chain that can still go further: the end that may begin a form.
    let open = state;
    while (open !== 0 && oneByte[open] === NO_CHILD) open = fail[open];
    return { ranges, openEndBytes: this.depth[open] };
  }

  /** The state after `byte` from `state` (following failure links). */
  private step(state: number, byte: number): number {
    for (;;) {
      const next = this.child(state, byte);
      if (next !== NO_CHILD) return next;
      if (state === 0) return 0;
      state = this.fail[state];
    }
  }

  private child(node: number, byte: number): number {
    const one = this.oneByte[node];
    return one === byte ? this.oneChild[node] : one === BRANCH ? this.tables[this.oneChild[node] + byte] : NO_CHILD;
  }

  private addChild(node: number, byte: number, child: number): void {
    const one = this.oneByte[node];
    if (one === NO_CHILD) {
      this.oneByte[node] = byte;
      this.oneChild[node] = child;
      return;
    }
    if (one !== BRANCH) {
      // A second child: the node becomes a branch, with a table of its own at the end of tables.
      const offset = this.tablesUsed;
      this.tablesUsed += 256;
      if (this.tablesUsed > this.tables.length) {
        const grown = new Int32Array(Math.max(1024, 2 * this.tables.length)).fill(NO_CHILD);
        grown.set(this.tables);
        this.tables = grown;
      }
      this.tables[offset + one] = this.oneChild[node];
      this.oneByte[node] = BRANCH;
      this.oneChild[node] = offset;
    }
    this.tables[this.oneChild[node] + byte] = child;
  }

  private *childrenOf(node: number): Generator<[number, number]> {
    const one = this.oneByte[node];
    if (one === BRANCH) {
      const offset = this.oneChild[node];
      for (let byte = 0; byte < 256; byte++) if (this.tables[offset + byte] !== NO_CHILD) yield [byte, this.tables[offset + byte]];
    } else if (one !== NO_CHILD) {
      yield [one, this.oneChild[node]];
    }
  }
}
