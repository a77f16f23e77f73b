// Fault-injecting wrappers for tests, as in the Rust testkit's `faults` module: a store and a
// consumer that fail on cue. Counts are 1-based from the last `reset`, so a test can script
// "the 2nd commit of this step" without knowing what ran before. The fault texts are fixed by
// tests/conformance/README.md ("Scripted faults"), the same in every host:
// `injected fault on commit`, `injected fault on get, after the call was applied`,
// `injected ack failure`.

import { BackendError } from './storage.js';

/** @typedef {'get' | 'commit' | 'list-keys'} StorageCall */
/**
 * `unavailable`, `timeout`, `failed`: the call answers that error, nothing applied;
 * `{conflict: i}`: a commit answers `conflict(i)` (clamped to the batch's last write) and
 * applies nothing (on get/list-keys: `failed`); `time-out-after-apply`: the call is carried out,
 * then answers `timeout`; `break-contract`: the call is carried out, then answered outside the
 * storage contract as a buggy store would (`get`: the value, empty when missing, with version 0;
 * `commit`: one version more than the batch has writes; `list-keys`: the keys plus `!`, which
 * lacks the prefix), so the component answers `broken-store`.
 * @typedef {'unavailable' | 'timeout' | 'failed' | 'time-out-after-apply' | 'break-contract' | {conflict: number}} StorageFault
 */

/** A script of storage faults, shared between a test and its {@link FaultyStorage}. */
export class FaultScript {
  #counts = { get: 0, commit: 0, 'list-keys': 0 };
  /** @type {{call: StorageCall, nth: number, fault: StorageFault}[]} */
  #faults = [];

  /**
   * Makes the `nth` call of `call` since the last reset do `fault`; a later injection for the
   * same call and nth wins.
   * @param {StorageCall} call
   * @param {number} nth
   * @param {StorageFault} fault
   */
  inject(call, nth, fault) {
    this.#faults = this.#faults.filter((f) => !(f.call === call && f.nth === nth));
    this.#faults.push({ call, nth, fault });
  }

  /** Forgets every fault and restarts the counts. */
  reset() {
    this.#faults = [];
    this.#counts = { get: 0, commit: 0, 'list-keys': 0 };
  }

  /** Calls of `call` since the last reset. @param {StorageCall} call */
  calls(call) {
    return this.#counts[call];
  }

  /** Counts a call and returns its scripted fault, if any. */
  next(call) {
    const nth = ++this.#counts[call];
    return this.#faults.find((f) => f.call === call && f.nth === nth)?.fault;
  }
}

function injected(call, fault) {
  const what = `injected fault on ${call}`;
  if (fault === 'unavailable') return new BackendError('unavailable', what);
  if (fault === 'timeout') return new BackendError('timeout', what);
  if (fault === 'time-out-after-apply') return new BackendError('timeout', `${what}, after the call was applied`);
  return new BackendError('failed', what);
}

/**
 * A store that passes calls to `inner` except where its script says otherwise.
 * @implements {import('./storage.js').Storage}
 */
export class FaultyStorage {
  /**
   * @param {import('./storage.js').Storage} inner
   * @param {FaultScript} [script]
   */
  constructor(inner, script = new FaultScript()) {
    this.inner = inner;
    this.script = script;
  }

  get(key) {
    const fault = this.script.next('get');
    if (fault === undefined) return this.inner.get(key);
    if (fault === 'break-contract') return { value: this.inner.get(key)?.value ?? new Uint8Array(), version: 0n };
    if (fault === 'time-out-after-apply') this.inner.get(key);
    throw injected('get', fault);
  }

  commit(writes) {
    const fault = this.script.next('commit');
    if (fault === undefined) return this.inner.commit(writes);
    if (typeof fault === 'object') return { conflict: Math.min(fault.conflict, Math.max(writes.length - 1, 0)) };
    if (fault === 'break-contract') {
      const outcome = this.inner.commit(writes);
      if (!('committed' in outcome)) return outcome;
      const versions = outcome.committed.map(BigInt);
      return { committed: [...versions, versions.reduce((a, b) => (b > a ? b : a), 0n) + 1n] };
    }
    if (fault === 'time-out-after-apply') this.inner.commit(writes);
    throw injected('commit', fault);
  }

  listKeys(prefix) {
    const fault = this.script.next('list-keys');
    if (fault === undefined) return this.inner.listKeys(prefix);
    if (fault === 'break-contract') return [...this.inner.listKeys(prefix), '!'];
    if (fault === 'time-out-after-apply') this.inner.listKeys(prefix);
    throw injected('list-keys', fault);
  }
}

/** A script of ack failures, shared between a test and its {@link FaultyConsumer}. */
export class AckScript {
  #count = 0;
  /** @type {number[]} */
  #fail = [];
  /** @type {string[][]} Batches whose ack was made to fail, in order (never reset). */
  failed = [];

  /** Makes the `nth` ack since the last reset fail. @param {number} nth */
  failNth(nth) {
    this.#fail.push(nth);
  }

  /** Forgets the scripted failures and restarts the count (the failed log is kept). */
  reset() {
    this.#count = 0;
    this.#fail = [];
  }

  /** Acks attempted since the last reset. */
  calls() {
    return this.#count;
  }

  /** Counts an ack; its number when it must fail, else 0. */
  next() {
    this.#count += 1;
    return this.#fail.includes(this.#count) ? this.#count : 0;
  }
}

/**
 * A consumer that passes acks to `inner` except those its script makes fail (which `inner`
 * never sees): they throw `injected ack failure`.
 * @implements {import('./consumer.js').Consumer}
 */
export class FaultyConsumer {
  /**
   * @param {import('./consumer.js').Consumer} inner
   * @param {AckScript} [script]
   */
  constructor(inner, script = new AckScript()) {
    this.inner = inner;
    this.script = script;
  }

  ack(messageIds) {
    const failing = this.script.next();
    if (failing) {
      this.script.failed.push([...messageIds]);
      throw new Error('injected ack failure');
    }
    this.inner.ack(messageIds);
  }
}
