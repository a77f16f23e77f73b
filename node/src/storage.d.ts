// Declarations of storage.js: the storage contract (what the component's `storage` import
// needs), the two stores of this package, BackendError and compareKeys. The contract in full is
// the JSDoc of `Storage` in storage.js.

/**
 * A stored value as a store answers it.
 */
export interface StoredEntry {
  /** The bytes exactly as committed. */
  value: Uint8Array;
  /** Current version, at least 1 (a safe-integer Number is accepted too). */
  version: bigint | number;
}

/** One write of a batch, as the component hands it to {@link Storage.commit}. */
export type StorageWrite =
  | {
      key: string;
      /** `null`: unconditional; `v`: the key's current version must be `v` (`0n`: absent). */
      expectedVersion: bigint | null;
      /** Store `value`, replacing any value. */
      op: 'put';
      value: Uint8Array;
    }
  | {
      key: string;
      expectedVersion: bigint | null;
      /** Remove the key; removing an absent key is not an error. */
      op: 'delete';
    };

/**
 * The answer to a batch: `committed` holds one version per write, in order (the new version of
 * a put, `0n` for a delete); `conflict` the index of the first write whose condition failed
 * (nothing applied).
 */
export type CommitOutcome = { committed: Array<bigint | number> } | { conflict: number };

/**
 * Durable key-value storage with conditional, atomic batches: what the component's `storage`
 * import needs. Any object with these three synchronous methods is a store.
 *
 * - Keys are opaque strings: store them as data, never as paths. Values are bytes.
 * - Versions: positive, changed on every write of a key, never reused for it (not even after a
 *   delete). 0 means absent.
 * - To fail, throw (best a {@link BackendError}); the component sees a `storage` error and the
 *   checkpointer stays usable. Never throw for "missing" or "conflict": those are answers.
 * - Synchronous only: a Promise is answered as a storage failure (Node 20 has no JSPI).
 * - An answer outside the contract (a found version 0, a wrong count or kind of versions, a
 *   conflict at a write without condition or outside the batch, keys outside the prefix or out
 *   of order) is found by the component: the call fails with `BrokenStoreError`. An answer of
 *   the wrong type (a version that is not an integer, a value that is not a Uint8Array) fails
 *   it with a `failed` storage error (`StorageError`).
 */
export interface Storage {
  /**
   * Reads one key: its value and current version, or `null` (or `undefined`) when absent.
   * Sees every commit that returned before it began.
   */
  get(key: string): StoredEntry | null | undefined;
  /**
   * Applies `writes` all-or-nothing and returns once they are durable. Keys in one batch are
   * distinct (throw on a repeated one). An empty batch commits nothing. A thrown
   * `BackendError('timeout')` means the outcome is unknown; other failures mean not applied.
   */
  commit(writes: StorageWrite[]): CommitOutcome;
  /** Every key that starts with `prefix`, in ascending order of their UTF-8 bytes ({@link compareKeys}). */
  listKeys(prefix: string): string[];
}

/** The kinds of backend failure, as the WIT `storage-error` names them. */
export type BackendErrorKind = 'unavailable' | 'timeout' | 'failed';

/** The kinds of backend failure, in WIT order. */
export const BACKEND_ERROR_KINDS: readonly BackendErrorKind[];

/**
 * A failure of the backend itself, thrown by a store: `unavailable` (cannot be reached; retrying
 * later may work), `timeout` (a commit may or may not have been applied) or `failed`.
 * Throws `TypeError` for another kind.
 */
export class BackendError extends Error {
  constructor(kind: BackendErrorKind, message: string);
  kind: BackendErrorKind;
}

/**
 * Orders keys by their UTF-8 bytes, the order `listKeys` must use (JS's `<` compares UTF-16
 * code units, which differs above U+FFFF).
 */
export function compareKeys(a: string, b: string): number;

/**
 * An in-memory store on a `Map`, for tests and demos; nothing survives the process. Share one
 * object between checkpointers as you would share a database.
 */
export class MapStorage implements Storage {
  constructor();
  get(key: string): { value: Uint8Array; version: bigint } | null;
  commit(writes: StorageWrite[]): { committed: bigint[] } | { conflict: number };
  listKeys(prefix: string): string[];
  /** Number of stored keys. */
  readonly size: number;
}

/**
 * A store in one JSON file, rewritten whole (temporary file, fsync, rename) on every commit.
 * For small data (tests, tools); one process at a time.
 */
export class JsonFileStorage implements Storage {
  /** @param path The file; created at the first commit. */
  constructor(path: string);
  path: string;
  get(key: string): { value: Uint8Array; version: bigint } | null;
  commit(writes: StorageWrite[]): { committed: bigint[] } | { conflict: number };
  listKeys(prefix: string): string[];
}
