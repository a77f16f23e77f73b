// Storage backends for the component's `storage` import, and the contract they meet.

import { closeSync, fsyncSync, openSync, readFileSync, renameSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';

/**
 * Durable key-value storage with conditional, atomic batches: what the component's `storage`
 * import needs. The same contract as the Rust host's `Storage` trait
 * (host/src/storage/mod.rs). Any object with these three methods is a store.
 *
 * Keys are opaque strings built by the component: store them as data, never as paths (every
 * string is a valid key, `%`, `/`, `..`, NUL and any Unicode included). Values are bytes,
 * returned exactly as committed.
 *
 * Versions: every stored value has a version, a positive integer that changes on every write
 * of its key and is never reused for it, not even after a delete (one counter per store,
 * advanced in the same atomic step as the write). Version 0 means "absent". Versions are
 * BigInts (a safe-integer Number is accepted too).
 *
 * Failures: a backend failure is thrown, best as a {@link BackendError} naming its kind. Any
 * other exception is reported to the component as `failed` with its message; the checkpointer
 * stays usable. Never throw for "missing" or "conflict": those are answers.
 *
 * Calls are synchronous (Node 20 has no JSPI, so the component cannot wait for a Promise); a
 * store that returns a Promise is reported as failed (a commit as timed out: it may still
 * apply).
 *
 * An answer outside the contract (a `committed` list of the wrong length, a version 0 for a
 * put, keys out of order) is a bug of the store, found by the component: the call fails with
 * `BrokenStoreError`, nothing is acked, and the checkpointer stays usable (the same answer as
 * in the Rust and Python hosts). An answer of the wrong type (a version that is not an
 * integer, a value that is not a Uint8Array) fails the call as a `failed` storage error.
 *
 * @typedef {object} Storage
 * @property {(key: string) => (StoredEntry | null)} get Reads one key: its value and current
 *   version, or `null` when absent. Sees every commit that returned before it began.
 * @property {(writes: StorageWrite[]) => CommitOutcome} commit Applies `writes`
 *   all-or-nothing and returns once they are durable: `{committed: versions}` (one per write,
 *   in order: the new version of a put, `0n` for a delete), or `{conflict: i}` when the
 *   condition of write `i` (the first failing, in batch order) does not hold and nothing was
 *   applied. Conditions: `expectedVersion` `null` writes unconditionally; `v` requires the
 *   current version to be `v` (`0n`: absent). Keys in one batch are distinct: a batch that
 *   repeats one is refused (throw; nothing applied). An empty batch commits nothing. A thrown
 *   `BackendError('timeout')` means the outcome is unknown; other failures mean not applied.
 * @property {(prefix: string) => string[]} listKeys Every key that starts with `prefix`
 *   (exactly, no patterns), in ascending order of their UTF-8 bytes (see {@link compareKeys});
 *   `''` lists every key.
 */

/**
 * @typedef {object} StoredEntry
 * @property {Uint8Array} value The bytes exactly as committed.
 * @property {bigint} version Current version, at least 1.
 */

/**
 * One write of a batch: `op` `'put'` stores `value`, `'delete'` removes the key (removing an
 * absent key is not an error).
 * @typedef {object} StorageWrite
 * @property {string} key
 * @property {bigint | null} expectedVersion `null`: unconditional; `v`: the key's version must be `v`.
 * @property {'put' | 'delete'} op
 * @property {Uint8Array} [value] The bytes of a put.
 */

/** @typedef {{committed: bigint[]} | {conflict: number}} CommitOutcome */

/** The kinds of backend failure, as the WIT `storage-error` names them. */
export const BACKEND_ERROR_KINDS = Object.freeze(['unavailable', 'timeout', 'failed']);

/**
 * A failure of the backend itself, thrown by a store. `kind`: `unavailable` (cannot be
 * reached; retrying later may work), `timeout` (did not finish in time; a commit may or may not
 * have been applied) or `failed` (refused or failed otherwise).
 */
export class BackendError extends Error {
  /**
   * @param {'unavailable' | 'timeout' | 'failed'} kind
   * @param {string} message
   */
  constructor(kind, message) {
    if (!BACKEND_ERROR_KINDS.includes(kind)) {
      throw new TypeError(`BackendError kind must be one of ${BACKEND_ERROR_KINDS.join(', ')}, not ${kind}`);
    }
    super(message);
    this.name = 'BackendError';
    this.kind = kind;
  }
}

// A surrogate stands for a code point above U+FFFF, so it ranks above every other unit; among
// surrogates (keys hold no lone ones) code unit order is code point order.
const unitRank = (u) => (u >= 0xd800 && u <= 0xdfff ? u + 0x10000 : u);

/**
 * Orders keys by their UTF-8 bytes, the order `listKeys` must use. JS's `<` compares UTF-16
 * code units, which puts U+E000..U+FFFF after astral characters; comparing code points agrees
 * with UTF-8 byte order.
 * @param {string} a
 * @param {string} b
 * @returns {number}
 */
export function compareKeys(a, b) {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a.charCodeAt(i);
    const y = b.charCodeAt(i);
    if (x !== y) return unitRank(x) - unitRank(y);
  }
  return a.length - b.length;
}

function checkDistinctKeys(writes) {
  const seen = new Set();
  for (const w of writes) {
    if (seen.has(w.key)) {
      throw new BackendError('failed', `batch writes key ${JSON.stringify(w.key)} more than once`);
    }
    seen.add(w.key);
  }
}

/**
 * The commit rules shared by the stores: conditions first (nothing applied on a conflict),
 * then every write, numbering puts from `nextVersion`.
 * @param {Map<string, StoredEntry>} entries
 * @param {StorageWrite[]} writes
 * @param {() => bigint} nextVersion
 * @returns {CommitOutcome}
 */
function applyBatch(entries, writes, nextVersion) {
  checkDistinctKeys(writes);
  for (let i = 0; i < writes.length; i++) {
    const { key, expectedVersion } = writes[i];
    if (expectedVersion !== null && (entries.get(key)?.version ?? 0n) !== BigInt(expectedVersion)) {
      return { conflict: i };
    }
  }
  const committed = [];
  for (const w of writes) {
    if (w.op === 'put') {
      const version = nextVersion();
      entries.set(w.key, { value: w.value, version });
      committed.push(version);
    } else {
      entries.delete(w.key);
      committed.push(0n);
    }
  }
  return { committed };
}

function keysWithPrefix(keys, prefix) {
  const found = [];
  for (const key of keys) if (key.startsWith(prefix)) found.push(key);
  return found.sort(compareKeys);
}

/**
 * An in-memory store on a `Map`, for tests and demos. "Durable" means visible to every user of
 * this object; nothing survives the process. Share one object between checkpointers (and a
 * test that inspects it) as the Rust host shares handles of its `MemoryStorage`.
 * @implements {Storage}
 */
export class MapStorage {
  /** @type {Map<string, StoredEntry>} */
  #entries = new Map();
  /** Last version handed out: versions come from here so none is ever reused. */
  #lastVersion = 0n;

  /** @param {string} key @returns {StoredEntry | null} */
  get(key) {
    return this.#entries.get(key) ?? null;
  }

  /** @param {StorageWrite[]} writes @returns {CommitOutcome} */
  commit(writes) {
    return applyBatch(this.#entries, writes, () => ++this.#lastVersion);
  }

  /** @param {string} prefix @returns {string[]} */
  listKeys(prefix) {
    return keysWithPrefix(this.#entries.keys(), prefix);
  }

  /** Number of stored keys. */
  get size() {
    return this.#entries.size;
  }
}

/**
 * A store in one JSON file, rewritten whole on every commit (temporary file, fsync, rename,
 * directory fsync), so a commit is durable when it returns and a crash leaves the old or the
 * new file. Every call reads the file, so several objects on one path see each other's
 * commits, as connections would. For small data (tests, tools): each commit costs a full
 * rewrite. One process at a time: there is no lock between processes.
 * @implements {Storage}
 */
export class JsonFileStorage {
  /** @param {string} path The file; created at the first commit. */
  constructor(path) {
    this.path = path;
  }

  #load() {
    let text;
    try {
      text = readFileSync(this.path, 'utf8');
    } catch (e) {
      if (e.code === 'ENOENT') return { lastVersion: 0n, entries: new Map() };
      throw new BackendError('unavailable', `cannot read ${this.path}: ${e.message}`);
    }
    const doc = JSON.parse(text);
    const entries = new Map(
      doc.entries.map(([key, hex, version]) => [key, { value: Uint8Array.from(Buffer.from(hex, 'hex')), version: BigInt(version) }]),
    );
    return { lastVersion: BigInt(doc.lastVersion), entries };
  }

  #save(state) {
    const doc = {
      lastVersion: state.lastVersion.toString(),
      entries: [...state.entries].map(([key, e]) => [key, Buffer.from(e.value).toString('hex'), e.version.toString()]),
    };
    const tmp = `${this.path}.tmp`;
    const fd = openSync(tmp, 'w');
    try {
      writeSync(fd, JSON.stringify(doc));
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, this.path);
    const dir = openSync(dirname(this.path), 'r');
    try {
      fsyncSync(dir);
    } finally {
      closeSync(dir);
    }
  }

  /** @param {string} key @returns {StoredEntry | null} */
  get(key) {
    return this.#load().entries.get(key) ?? null;
  }

  /** @param {StorageWrite[]} writes @returns {CommitOutcome} */
  commit(writes) {
    const state = this.#load();
    const outcome = applyBatch(state.entries, writes, () => ++state.lastVersion);
    if ('committed' in outcome && writes.length > 0) this.#save(state);
    return outcome;
  }

  /** @param {string} prefix @returns {string[]} */
  listKeys(prefix) {
    return keysWithPrefix(this.#load().entries.keys(), prefix);
  }
}
