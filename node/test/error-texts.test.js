// The words people read for each error are the component's (`codec.describe`): `err.message` of
// every CheckpointError equals it, whether the error came from a call, from the range checks
// before one, or was made by hand. The Rust host's Display and Python's str(exc) say the same.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import {
  BackendError,
  BrokenStoreError,
  CheckpointError,
  Checkpointer,
  Codec,
  ConflictError,
  CorruptError,
  FencedError,
  InvalidInputError,
  MapStorage,
  NotFoundError,
  RegressionError,
  StorageError,
  TooLargeError,
} from '../src/index.js';

const OPTIONS = { namespace: 'test', maxRetained: 3, maxCheckpointBytes: 65536 };
const LATEST = 'ckpt/test/run/stage/latest';
const CASES = ['invalid', 'regression', 'fenced', 'conflict', 'not-found', 'corrupt', 'storage', 'too-large', 'broken-store'];

function checkpoint(fields = {}) {
  return { runId: 'run', stage: 'stage', sequence: 1n, epoch: 1n, watermark: { offset: 0n, eventTimeMs: 0n }, atMs: 0n, ...fields };
}

/** One of each case, made by hand (the same values as host/tests/error_texts.rs). */
function everyCase() {
  const wm = (offset, eventTimeMs) => ({ offset, eventTimeMs });
  return [
    new InvalidInputError({ field: 'run-id', reason: 'must not be empty' }),
    new RegressionError({ storedSequence: 7n, storedWatermark: wm(70n, -5n), attemptedSequence: 6n, attemptedWatermark: wm(60n, 1n), field: 'sequence' }),
    new FencedError({ storedEpoch: 3n, attemptedEpoch: 2n }),
    new ConflictError('ckpt/ns/run/stage/latest changed'),
    new NotFoundError(),
    new CorruptError({ kind: 'crc-mismatch', key: 'ckpt/ns/r\u00e9n/"s"/latest', detail: 'stored 0x1, computed 0x2' }),
    new CorruptError({ kind: 'truncated', key: '', detail: '' }),
    new StorageError('reading latest: storage unavailable: down'),
    new TooLargeError({ size: 70_000n, limit: 65_536n }),
    new BrokenStoreError('listing: the storage broke its contract: order'),
  ];
}

test('the message of an error made by hand is the component\'s describe', () => {
  const codec = new Codec();
  const errors = everyCase();
  assert.deepEqual(new Set(errors.map((e) => e.code)), new Set(CASES));
  for (const error of errors) {
    assert.equal(error.message, codec.describe(error), error.code);
    assert.ok(error.message.length > 0 && !error.message.includes('\n'));
  }
  // A few words of the component's texts, so that an empty or foreign text cannot pass.
  assert.equal(errors[0].message, 'invalid input: `run-id`: must not be empty');
  assert.equal(errors[4].message, 'not found: nothing is stored for this run and stage');
  assert.equal(
    errors[9].message,
    'broken store: listing: the storage broke its contract: order; nothing was acked: fix or replace the store, then resume',
  );
});

test('the message of every error a call raises is the component\'s describe', () => {
  const errors = [];
  const caught = (fn) => {
    assert.throws(fn, (e) => {
      errors.push(e);
      return e instanceof CheckpointError;
    });
  };
  const store = new MapStorage();
  const checkpointer = Checkpointer.open(store, null, OPTIONS);
  caught(() => checkpointer.write(checkpoint({ sequence: 0n }))); // invalid, from the component
  caught(() => checkpointer.write(checkpoint({ sequence: -1n }))); // invalid, from the range checks
  checkpointer.write(checkpoint({ sequence: 2n, epoch: 5n, watermark: { offset: 10n, eventTimeMs: 0n } }));
  caught(() => checkpointer.write(checkpoint({ sequence: 3n, epoch: 5n, watermark: { offset: 9n, eventTimeMs: 0n } })));
  caught(() => checkpointer.write(checkpoint({ sequence: 3n, epoch: 4n, watermark: { offset: 11n, eventTimeMs: 0n } })));
  caught(() => checkpointer.get('run', 'other'));
  const damaged = Uint8Array.from(store.get(LATEST).value);
  damaged[damaged.length - 1] ^= 1;
  store.commit([{ key: LATEST, expectedVersion: null, op: 'put', value: damaged }]);
  caught(() => checkpointer.get('run', 'stage')); // corrupt, at a key
  caught(() => new Codec().decode(Uint8Array.of(1, 2, 3))); // corrupt, in given bytes
  const small = Checkpointer.open(new MapStorage(), null, { ...OPTIONS, maxCheckpointBytes: 100 });
  caught(() => small.write(checkpoint({ operatorStates: [{ name: 's', state: new Uint8Array(200) }] })));
  const down = { get() { throw new BackendError('unavailable', 'server down'); }, commit: () => ({ committed: [] }), listKeys: () => [] };
  caught(() => Checkpointer.open(down, null, OPTIONS).get('run', 'stage'));
  const other = new MapStorage();
  const conflicting = { get: (k) => other.get(k), listKeys: (p) => other.listKeys(p), commit: (w) => ({ conflict: w.length - 1 }) };
  caught(() => Checkpointer.open(conflicting, null, OPTIONS).write(checkpoint()));
  const breaking = { get: (k) => other.get(k), listKeys: () => ['elsewhere'], commit: (w) => other.commit(w) };
  caught(() => Checkpointer.open(breaking, null, OPTIONS).write(checkpoint()));

  assert.deepEqual(new Set(errors.map((e) => e.code)), new Set(CASES));
  const codec = new Codec();
  for (const error of errors) assert.equal(error.message, codec.describe(error), error.code);
});
