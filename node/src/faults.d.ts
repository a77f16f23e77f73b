// Declarations of faults.js (`pipeline-checkpoint/faults`): a store and a consumer that fail on
// cue, for testing a pipeline's handling of storage and ack failures. Counts are 1-based from
// the last `reset`. Fault texts as in tests/conformance/README.md ("Scripted faults"):
// `injected fault on commit` (`, after the call was applied` for `time-out-after-apply`) and
// `injected ack failure`.

import type { Consumer } from './consumer.js';
import type { CommitOutcome, Storage, StoredEntry, StorageWrite } from './storage.js';

/** The storage calls a script counts. */
export type StorageCall = 'get' | 'commit' | 'list-keys';

/**
 * `unavailable`, `timeout`, `failed`: the call throws that `BackendError`, nothing applied;
 * `{conflict: i}`: a commit answers `conflict(i)` (clamped to the batch's last write) and
 * applies nothing (on get/list-keys: `failed`); `time-out-after-apply`: the call is carried
 * out, then throws `timeout`; `break-contract`: the call is carried out, then answered outside
 * the storage contract (`get`: version 0; `commit`: one version too many; `list-keys`: an extra
 * key `!` outside the prefix), so the component answers `broken-store`.
 */
export type StorageFault =
  | 'unavailable'
  | 'timeout'
  | 'failed'
  | 'time-out-after-apply'
  | 'break-contract'
  | { conflict: number };

/** A script of storage faults, shared between a test and its {@link FaultyStorage}. */
export class FaultScript {
  constructor();
  /** Makes the `nth` call of `call` since the last reset do `fault`; a later injection wins. */
  inject(call: StorageCall, nth: number, fault: StorageFault): void;
  /** Forgets every fault and restarts the counts. */
  reset(): void;
  /** Calls of `call` since the last reset. */
  calls(call: StorageCall): number;
  /** Counts a call and returns its scripted fault, if any. */
  next(call: StorageCall): StorageFault | undefined;
}

/** A store that passes calls to `inner` except where its script says otherwise. */
export class FaultyStorage implements Storage {
  constructor(inner: Storage, script?: FaultScript);
  inner: Storage;
  script: FaultScript;
  get(key: string): StoredEntry | null | undefined;
  commit(writes: StorageWrite[]): CommitOutcome;
  listKeys(prefix: string): string[];
}

/** A script of ack failures, shared between a test and its {@link FaultyConsumer}. */
export class AckScript {
  constructor();
  /** Batches whose ack was made to fail, in order (never reset). */
  failed: string[][];
  /** Makes the `nth` ack since the last reset fail. */
  failNth(nth: number): void;
  /** Forgets the scripted failures and restarts the count (the failed log is kept). */
  reset(): void;
  /** Acks attempted since the last reset. */
  calls(): number;
  /** Counts an ack; its number when it must fail, else 0. */
  next(): number;
}

/** A consumer that passes acks to `inner` except those its script makes fail (`injected ack failure`). */
export class FaultyConsumer implements Consumer {
  constructor(inner: Consumer, script?: AckScript);
  inner: Consumer;
  script: AckScript;
  ack(messageIds: string[]): void;
}
