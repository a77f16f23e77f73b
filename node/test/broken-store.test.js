// A store that answers outside the storage contract (wit/storage.wit) gets `BrokenStoreError`,
// found by the component itself (the same answer in every host): never a trap
// (`ComponentFailure`), never a `StorageError`, and nothing is acked. One test per kind of
// breach.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import {
  BrokenStoreError,
  Checkpointer,
  Codec,
  MapStorage,
  RecordingConsumer,
} from '../src/index.js';

const OPTIONS = { namespace: 'test', maxRetained: 3, maxCheckpointBytes: 65536 };

function checkpoint(sequence) {
  return { runId: 'run', stage: 'stage', sequence, epoch: 1n, watermark: { offset: sequence * 10n, eventTimeMs: 0n }, atMs: 0n };
}

/**
 * A Map store that answers its `nth` call of `call` ('get', 'commit' or 'listKeys') with
 * `answer(argument)` instead of the truth. A lying commit is applied first, then answered
 * wrongly.
 */
function lying(call, answer, nth = 1) {
  const store = new MapStorage();
  const calls = { get: 0, commit: 0, listKeys: 0 };
  const lies = (c) => ++calls[c] === nth && c === call;
  return {
    get: (key) => (lies('get') ? answer(key) : store.get(key)),
    commit: (writes) => {
      const truth = store.commit(writes);
      return lies('commit') ? answer(writes) : truth;
    },
    listKeys: (prefix) => (lies('listKeys') ? answer(prefix) : store.listKeys(prefix)),
  };
}

// [call that lies, its nth call, the lie, what the component's message says]. The first write
// of a checkpointer with maxRetained 3 calls get (latest), listKeys (retained copies), then
// commits [history put, latest put]; the 4th write also deletes the oldest retained copy:
// [history put, delete, latest put].
const BREACHES = {
  'get: an entry with version 0': ['get', 1, () => ({ value: Uint8Array.of(0), version: 0n }), 'with version 0'],
  'commit: fewer versions than writes': ['commit', 1, () => ({ committed: [] }), 'answered 0 versions for a batch of 2 writes'],
  'commit: more versions than writes': ['commit', 1, () => ({ committed: [5n, 6n, 7n] }), '3 versions for a batch of 2 writes'],
  'commit: version 0 for a put': ['commit', 1, () => ({ committed: [0n, 9n] }), 'version 0 for write 0, a put'],
  'commit: a version for a delete': ['commit', 4, () => ({ committed: [11n, 7n, 12n] }), 'version 7 for write 1, a delete'],
  'commit: a conflict outside the batch': ['commit', 1, () => ({ conflict: 2 }), 'conflict at write 2 of a batch of 2'],
  'commit: a conflict at a write without condition': ['commit', 1, () => ({ conflict: 0 }), 'write 0, which has no condition'],
  'list-keys: a key outside the prefix': ['listKeys', 1, () => ['elsewhere/h/1'], 'lacks the prefix'],
  'list-keys: keys in descending order': ['listKeys', 1, (p) => [`${p}b`, `${p}a`], 'ascending byte order'],
  'list-keys: a key listed twice': ['listKeys', 1, (p) => [`${p}a`, `${p}a`], 'ascending byte order'],
};

describe('a store that breaks the storage contract', () => {
  for (const [breach, [call, nth, lie, says]] of Object.entries(BREACHES)) {
    test(`${breach}: BrokenStoreError, nothing acked`, () => {
      const consumer = new RecordingConsumer();
      const checkpointer = Checkpointer.open(lying(call, lie, nth), consumer, OPTIONS);
      const honest = [];
      for (let s = 1n; s < BigInt(nth); s++) {
        checkpointer.write(checkpoint(s), [`m-${s}`]);
        honest.push([`m-${s}`]);
      }
      assert.deepEqual(consumer.acks, honest);

      let error;
      assert.throws(() => checkpointer.write(checkpoint(BigInt(nth)), [`m-${nth}`]), (e) => {
        error = e;
        return e instanceof BrokenStoreError;
      });
      assert.equal(error.code, 'broken-store');
      assert.equal(error.payload, error.detail);
      assert.ok(error.detail.includes(says), error.detail);
      if (call === 'commit') assert.ok(error.detail.startsWith('committing checkpoint:'), error.detail);
      assert.equal(error.message, new Codec().describe(error));
      assert.ok(error.message.startsWith('broken store: '), error.message);
      assert.deepEqual(consumer.acks, honest, 'nothing acked after the broken answer');
      // An answer, not a trap: the instance keeps serving (the store tells the truth again).
      checkpointer.resumePoint('run', 'stage');
    });
  }

  test('get and history report it too', () => {
    const zero = Checkpointer.open(lying('get', () => ({ value: new Uint8Array(), version: 0 })), null, OPTIONS);
    assert.throws(() => zero.get('run', 'stage'), (e) => e instanceof BrokenStoreError && /with version 0/.test(e.detail));
    // History lists the retained copies only when a latest is stored: the first write lists
    // them once (honestly), then history's listing lies.
    const disordered = Checkpointer.open(lying('listKeys', (p) => [`${p}2`, `${p}1`], 2), null, OPTIONS);
    disordered.write(checkpoint(1n));
    assert.throws(() => disordered.history('run', 'stage'), (e) => e instanceof BrokenStoreError && /ascending byte order/.test(e.detail));
  });

  test('a delete answered with versions', () => {
    const checkpointer = Checkpointer.open(lying('commit', (writes) => ({ committed: writes.map(() => 1n) }), 2), null, OPTIONS);
    checkpointer.write(checkpoint(1n));
    assert.throws(() => checkpointer.delete('run', 'stage'), (e) => e instanceof BrokenStoreError && /a delete/.test(e.detail));
  });
});
