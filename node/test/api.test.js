// The public Node API over the real component: values, typed errors, host-side range checks,
// failing and misbehaving stores, drivers, the codec, and instance isolation.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, test } from 'node:test';

import {
  BackendError,
  CheckpointError,
  Checkpointer,
  Codec,
  ComponentFailure,
  ConflictError,
  CorruptError,
  FencedError,
  InvalidInputError,
  MapStorage,
  NotFoundError,
  RecordingConsumer,
  RegressionError,
  StorageError,
  TooLargeError,
  compiledModuleCount,
} from '../src/index.js';
import { FaultScript, FaultyStorage } from '../src/faults.js';

const OPTIONS = { namespace: 'test', maxRetained: 3, maxCheckpointBytes: 65536 };

function checkpoint(fields = {}) {
  return { runId: 'run', stage: 'stage', sequence: 1n, epoch: 1n, watermark: { offset: 10n, eventTimeMs: 5n }, atMs: 7n, ...fields };
}

/** A checkpointer over a Map store whose calls are counted and can be failed. */
function setup(options = OPTIONS) {
  const store = new MapStorage();
  const script = new FaultScript();
  const consumer = new RecordingConsumer();
  const checkpointer = Checkpointer.open(new FaultyStorage(store, script), consumer, options);
  const totalCalls = () => script.calls('get') + script.calls('commit') + script.calls('list-keys');
  return { store, script, consumer, checkpointer, totalCalls };
}

describe('Checkpointer', () => {
  test('write, get, resumePoint, history and delete round-trip with BigInt values', () => {
    const { checkpointer, consumer } = setup();
    const sources = [{ name: 'topic-0', sequence: 3n, watermark: { offset: 4n, eventTimeMs: -2n } }];
    const operatorStates = [{ name: 'window', state: Uint8Array.of(1, 2, 255) }];
    const first = checkpoint({ sources, operatorStates, idempotencyKey: 'idem-1' });
    const receipt = checkpointer.write(first, ['m-1', 'm-2']);
    assert.equal(receipt.sequence, 1n);
    assert.equal(typeof receipt.version, 'bigint');
    assert.deepEqual(receipt.acks, { kind: 'acked', count: 2 });
    assert.equal(receipt.replayed, false);
    assert.deepEqual(consumer.acks, [['m-1', 'm-2']]);

    const stored = checkpointer.get('run', 'stage');
    assert.deepEqual(stored, { ...first, sinks: [] });

    // The same write again is a replay: nothing written, the batch acked again.
    assert.equal(checkpointer.write(first, ['m-1', 'm-2']).replayed, true);

    checkpointer.write(checkpoint({ sequence: 2n, watermark: { offset: 20n, eventTimeMs: 6n } }));
    const resume = checkpointer.resumePoint('run', 'stage');
    assert.equal(resume.origin, 'latest');
    assert.deepEqual(resume.skipped, []);
    assert.deepEqual(resume.point, { runId: 'run', stage: 'stage', sequence: 2n, epoch: 1n, watermark: { offset: 20n, eventTimeMs: 6n } });
    assert.deepEqual(checkpointer.history('run', 'stage').map((c) => c.sequence), [1n, 2n]);

    // latest + two retained copies
    assert.equal(checkpointer.delete('run', 'stage'), 3);
    assert.equal(checkpointer.resumePoint('run', 'stage').origin, 'fresh');
    assert.deepEqual(checkpointer.history('run', 'stage'), []);
  });

  test('u64 values beyond 2^53 survive the trip', () => {
    const { checkpointer } = setup();
    const max = (1n << 64n) - 1n;
    checkpointer.write(checkpoint({ sequence: max - 1n, epoch: max, atMs: max, watermark: { offset: max, eventTimeMs: -(1n << 63n) } }));
    const got = checkpointer.get('run', 'stage');
    assert.equal(got.sequence, max - 1n);
    assert.equal(got.watermark.offset, max);
    assert.equal(got.watermark.eventTimeMs, -(1n << 63n));
  });

  test('each component error case is its own class with the WIT payload', () => {
    const { checkpointer, store } = setup({ ...OPTIONS, maxCheckpointBytes: 256 });
    assert.throws(() => checkpointer.get('run', 'stage'), (e) => e instanceof NotFoundError && e instanceof CheckpointError && e.code === 'not-found');

    assert.throws(
      () => checkpointer.write(checkpoint({ operatorStates: [{ name: 'big', state: new Uint8Array(300) }] })),
      (e) => e instanceof TooLargeError && e.code === 'too-large' && e.limit === 256n && e.size > 256n,
    );

    checkpointer.write(checkpoint({ sequence: 5n, epoch: 3n }));
    assert.throws(
      () => checkpointer.write(checkpoint({ sequence: 4n, epoch: 3n })),
      (e) => e instanceof RegressionError && e.field === 'sequence' && e.storedSequence === 5n && e.attemptedSequence === 4n &&
        e.payload.storedWatermark.offset === 10n,
    );
    assert.throws(
      () => checkpointer.write(checkpoint({ sequence: 6n, epoch: 2n })),
      (e) => e instanceof FencedError && e.storedEpoch === 3n && e.attemptedEpoch === 2n,
    );

    // Damage the latest: reads refuse it, and the resume point falls back to a retained copy.
    const latest = store.listKeys('').find((k) => k.endsWith('/latest'));
    const damaged = Uint8Array.from(store.get(latest).value);
    damaged[damaged.length - 1] ^= 1;
    store.commit([{ key: latest, expectedVersion: null, op: 'put', value: damaged }]);
    assert.throws(
      () => checkpointer.get('run', 'stage'),
      (e) => e instanceof CorruptError && e.kind === 'crc-mismatch' && e.key === latest && /corrupt data: crc-mismatch/.test(e.message),
    );
    const resume = checkpointer.resumePoint('run', 'stage');
    assert.equal(resume.origin, 'fallback');
    assert.equal(resume.skipped[0].kind, 'crc-mismatch');
    assert.equal(resume.point.sequence, 5n);
  });

  test('the component refuses bad options with InvalidInputError', () => {
    assert.throws(
      () => Checkpointer.open(new MapStorage(), null, { ...OPTIONS, namespace: 'no spaces' }),
      (e) => e instanceof InvalidInputError && e.field === 'namespace',
    );
    assert.throws(() => Checkpointer.open(new MapStorage(), null, { ...OPTIONS, maxRetained: 0 }), InvalidInputError);
  });

  test('out-of-range or mistyped numbers are InvalidInputError before any I/O, never wrapped', () => {
    const { checkpointer, totalCalls } = setup();
    const bad = [
      [{ sequence: -1n }, 'sequence'],
      [{ sequence: 1n << 64n }, 'sequence'],
      [{ epoch: 1.5 }, 'epoch'],
      [{ atMs: '7' }, 'at-ms'],
      [{ sequence: 2 ** 60 }, 'sequence'], // an unsafe Number would have lost digits
      [{ watermark: { offset: 1n, eventTimeMs: 1n << 63n } }, 'watermark.event-time-ms'],
      [{ runId: 42 }, 'run-id'],
      [{ stage: 'lone \ud800 surrogate' }, 'stage'],
      [{ sinks: [{ name: 's', position: -3n }] }, 'sinks[0].position'],
      [{ operatorStates: [{ name: 'o', state: [1, 2] }] }, 'operator-states[0].state'],
    ];
    for (const [fields, field] of bad) {
      assert.throws(
        () => checkpointer.write(checkpoint(fields)),
        (e) => e instanceof InvalidInputError && e.field === field,
        `expected InvalidInputError on ${field}`,
      );
    }
    assert.throws(() => checkpointer.write(checkpoint(), ['ok', 7]), (e) => e instanceof InvalidInputError && e.field === 'batch[1]');
    assert.throws(() => Checkpointer.open(new MapStorage(), null, { ...OPTIONS, maxRetained: 2 ** 32 }), (e) => e.field === 'max-retained');
    assert.throws(() => Checkpointer.open(new MapStorage(), null, { ...OPTIONS, maxRetained: -1 }), (e) => e.field === 'max-retained');
    assert.equal(totalCalls(), 0, 'nothing reached the store');
    // Safe-integer Numbers are accepted, and the checkpointer is still usable.
    assert.equal(checkpointer.write(checkpoint({ sequence: 3, epoch: 1, atMs: 0 })).sequence, 3n);
  });

  test('a store that throws gives StorageError for that call, and the checkpointer stays usable', () => {
    const store = new MapStorage();
    let failures = 1;
    const flaky = {
      get: (key) => store.get(key),
      listKeys: (prefix) => store.listKeys(prefix),
      commit(writes) {
        if (failures-- > 0) throw new Error('disk on fire');
        return store.commit(writes);
      },
    };
    const consumer = new RecordingConsumer();
    const checkpointer = Checkpointer.open(flaky, consumer, OPTIONS);
    assert.throws(
      () => checkpointer.write(checkpoint(), ['m-1']),
      (e) => e instanceof StorageError && /commit threw Error: disk on fire/.test(e.detail),
    );
    assert.deepEqual(consumer.acks, [], 'nothing acked after a failed commit');
    assert.equal(checkpointer.write(checkpoint(), ['m-1']).sequence, 1n);
    assert.deepEqual(consumer.acks, [['m-1']]);
  });

  test('BackendError kinds reach the component as the matching storage-error', () => {
    const store = new MapStorage();
    let kind = 'unavailable';
    const failing = { get() { throw new BackendError(kind, 'server gone'); }, commit: (w) => store.commit(w), listKeys: (p) => store.listKeys(p) };
    const checkpointer = Checkpointer.open(failing, null, OPTIONS);
    for (kind of ['unavailable', 'timeout', 'failed']) {
      assert.throws(() => checkpointer.get('run', 'stage'), (e) => e instanceof StorageError && e.detail.includes('server gone'));
    }
  });

  test('an async store is refused as a storage error, not awaited', () => {
    const store = new MapStorage();
    const asyncStore = { get: async (k) => store.get(k), commit: async (w) => store.commit(w), listKeys: async (p) => store.listKeys(p) };
    const checkpointer = Checkpointer.open(asyncStore, null, OPTIONS);
    assert.throws(() => checkpointer.get('run', 'stage'), (e) => e instanceof StorageError && /synchronous store/.test(e.detail));
  });

  test('an answer the WIT types cannot carry is a failed storage error, not a trap', () => {
    const answers = [
      ['commit', () => ({ committed: [-1n, 1n] }), /version 0 is bigint -1, not a u64/],
      ['commit', () => ({ committed: [1.5, 1n] }), /version 0 is number 1.5, not a u64/],
      ['commit', () => ({ conflict: -1 }), /conflict index -1 is not a u32/],
      ['commit', () => 'committed', /neither \{committed: \[...\]\} nor \{conflict: i\}/],
      ['get', () => ({ value: 'text', version: 1n }), /without a Uint8Array value/],
      ['listKeys', () => 'ckpt/', /not an array/],
      ['listKeys', (p) => [`${p}\udc80`], /not well-formed Unicode/],
    ];
    for (const [call, answer, says] of answers) {
      const store = new MapStorage();
      let lie = true;
      const liar = {
        get: (k) => (call === 'get' && lie ? ((lie = false), answer(k)) : store.get(k)),
        commit: (w) => {
          const truth = store.commit(w);
          return call === 'commit' && lie ? ((lie = false), answer(w)) : truth;
        },
        listKeys: (p) => (call === 'listKeys' && lie ? ((lie = false), answer(p)) : store.listKeys(p)),
      };
      const consumer = new RecordingConsumer();
      const checkpointer = Checkpointer.open(liar, consumer, OPTIONS);
      assert.throws(
        () => checkpointer.write(checkpoint(), ['m']),
        (e) => e instanceof StorageError && /cannot be passed to the component/.test(e.detail) && says.test(e.detail),
        `${call}: ${says}`,
      );
      assert.deepEqual(consumer.acks, []);
      assert.equal(checkpointer.write(checkpoint(), ['m']).sequence, 1n, 'the instance still serves');
    }
  });

  test('a store calling back into its own checkpointer is refused as a storage error', () => {
    const store = new MapStorage();
    let checkpointer;
    let reenter = true;
    const reentrant = {
      get(key) {
        if (reenter) {
          reenter = false;
          checkpointer.history('run', 'stage');
        }
        return store.get(key);
      },
      commit: (w) => store.commit(w),
      listKeys: (p) => store.listKeys(p),
    };
    checkpointer = Checkpointer.open(reentrant, null, OPTIONS);
    assert.throws(() => checkpointer.get('run', 'stage'), (e) => e instanceof StorageError && /`checkpointer.history-page` was called from inside `checkpointer.get`/.test(e.detail));
    // The outer call ended cleanly: the checkpointer still serves calls that avoid the loop.
    assert.deepEqual(checkpointer.history('run', 'stage'), []);
  });

  test('a consumer that throws fails the acks, not the durable write', () => {
    const rejecting = Checkpointer.open(new MapStorage(), { ack() { throw new Error('broker down'); } }, OPTIONS);
    const receipt = rejecting.write(checkpoint(), ['m-1']);
    assert.deepEqual(receipt.acks, { kind: 'failed', message: 'broker down' });
    assert.equal(rejecting.get('run', 'stage').sequence, 1n);
  });

  test('conflicts and storage faults injected at commit map to ConflictError and StorageError', () => {
    const { checkpointer, script, consumer } = setup();
    // Clamped to the batch's last write: the latest, the one with a condition (a conflict at a
    // write without one would be a broken store).
    script.inject('commit', 1, { conflict: 99 });
    assert.throws(() => checkpointer.write(checkpoint(), ['m']), ConflictError);
    script.reset();
    script.inject('commit', 1, 'timeout');
    assert.throws(() => checkpointer.write(checkpoint(), ['m']), (e) => e instanceof StorageError && /injected fault/.test(e.detail));
    script.reset();
    assert.equal(checkpointer.write(checkpoint(), ['m']).sequence, 1n);
    assert.deepEqual(consumer.acks, [['m']]);
  });

  test('checkpointers are isolated: each has its own instance and store', () => {
    const a = setup();
    const b = setup();
    a.checkpointer.write(checkpoint());
    assert.throws(() => b.checkpointer.get('run', 'stage'), NotFoundError);
    assert.equal(compiledModuleCount(), 3, 'the core modules are compiled once per process');
  });

  test('close releases the handle; later calls fail with ComponentFailure', () => {
    const { checkpointer } = setup();
    checkpointer.close();
    assert.throws(() => checkpointer.get('run', 'stage'), (e) => e instanceof ComponentFailure && /closed/.test(e.message));
    checkpointer.close(); // idempotent
  });
});

describe('Driver', () => {
  test('checkpoints per batch, acks only covered messages, keeps a changelog', () => {
    const { checkpointer, consumer } = setup();
    checkpointer.write(checkpoint({ sequence: 1n, watermark: { offset: 42n, eventTimeMs: 0n } }));
    const driver = checkpointer.openDriver({
      runId: 'run', stage: 'stage', epoch: 1n, policy: { perBatch: 2 }, changelogCapacity: 16, overflow: 'overwrite-oldest',
    });
    assert.equal(driver.checkpointer, checkpointer);
    assert.equal(driver.resumedFrom().point.watermark.offset, 42n);
    assert.deepEqual(driver.recordProcessed({ id: 'm-42', nextOffset: 43n, eventTimeMs: 100n }, 1000n), { kind: 'pending', pending: 1 });
    const progress = driver.recordProcessed({ id: 'm-43', nextOffset: 44n }, 1001n);
    assert.equal(progress.kind, 'checkpointed');
    assert.equal(progress.receipt.sequence, 2n);
    assert.deepEqual(consumer.acks, [['m-42', 'm-43']]);

    const batch = driver.recordProcessedBatch(
      [44n, 45n, 46n].map((o) => ({ id: `m-${o}`, nextOffset: o + 1n })),
      1002n,
    );
    assert.deepEqual(batch.checkpoints.map((r) => r.sequence), [3n]);
    assert.equal(batch.pending, 1);
    assert.equal(driver.flush(1003n).receipt.sequence, 4n);
    assert.deepEqual(driver.flush(1004n), { kind: 'pending', pending: 0 });
    assert.deepEqual(driver.cursor().watermark, { offset: 47n, eventTimeMs: 100n });
    assert.equal(checkpointer.get('run', 'stage').atMs, 1003n);

    const changelog = driver.changelog();
    assert.equal(changelog.capacity, 16);
    assert.equal(changelog.overflowCount, 0n);
    assert.ok(changelog.events.some((e) => e.kind === 'checkpoint' && e.sequence === 4n));
    // At or below the durable offset: a redelivery, acked and skipped. Below a pending message
    // (not yet durable): a regression.
    assert.deepEqual(driver.recordProcessed({ id: 'old', nextOffset: 1n }, 0n), { kind: 'covered', acks: { kind: 'acked', count: 1 } });
    assert.deepEqual(driver.recordProcessed({ id: 'm-49', nextOffset: 50n }, 0n), { kind: 'pending', pending: 1 });
    assert.throws(() => driver.recordProcessed({ id: 'm-47', nextOffset: 48n }, 0n), (e) => e instanceof RegressionError && e.field === 'offset');
  });

  test('close drops pending messages without a write; the checkpointer stays open', () => {
    const { checkpointer, script } = setup();
    const driver = checkpointer.openDriver({ runId: 'run', stage: 'stage', epoch: 1n, policy: 'explicit-flush' });
    driver.recordProcessed({ id: 'm-0', nextOffset: 1n }, 0n);
    script.reset();
    driver.close();
    assert.equal(script.calls('commit'), 0, 'closing flushes nothing');
    assert.throws(() => driver.flush(0n), (e) => e instanceof ComponentFailure && /driver was closed/.test(e.message));
    assert.equal(checkpointer.resumePoint('run', 'stage').origin, 'fresh');
    const second = checkpointer.openDriver({ runId: 'run', stage: 'stage', epoch: 1n, policy: 'explicit-flush' });
    checkpointer.close();
    second.close(); // nothing left to free: no error
    assert.throws(() => second.cursor(), ComponentFailure);
  });

  test('a stale epoch is fenced at open; bad options are refused', () => {
    const { checkpointer } = setup();
    checkpointer.write(checkpoint({ epoch: 5n }));
    assert.throws(() => checkpointer.openDriver({ runId: 'run', stage: 'stage', epoch: 4n, policy: 'per-message' }), FencedError);
    assert.throws(() => checkpointer.openDriver({ runId: 'run', stage: 'stage', epoch: 5n, policy: 'sometimes' }), (e) => e instanceof InvalidInputError && e.field === 'policy');
    assert.throws(() => checkpointer.openDriver({ runId: 'run', stage: 'stage', epoch: 5n, policy: { perBatch: 0 } }), InvalidInputError);
  });
});

describe('Codec', () => {
  const golden = (name) => Uint8Array.from(readFileSync(new URL(`../../tests/golden/${name}`, import.meta.url)));

  test('decode then encode gives the golden bytes back', () => {
    const codec = new Codec();
    for (const name of ['v1-minimal.bin', 'v1-full.bin']) {
      const bytes = golden(name);
      assert.deepEqual(codec.encode(codec.decode(bytes)), bytes, name);
    }
  });

  test('damage is a CorruptError naming its kind; validate names the broken rule', () => {
    const codec = new Codec();
    const bytes = golden('v1-minimal.bin');
    assert.throws(() => codec.decode(bytes.subarray(0, 3)), (e) => e instanceof CorruptError && e.kind === 'truncated' && e.key === '');
    assert.throws(() => codec.validate(checkpoint({ sequence: 0n })), (e) => e instanceof InvalidInputError && e.field === 'sequence');
    assert.throws(() => codec.decode('not bytes'), (e) => e instanceof InvalidInputError && e.field === 'bytes');
  });

  test('chain signatures are stable and order-sensitive; resumePointForStage picks the highest sequence', () => {
    const codec = new Codec();
    const chain = [checkpoint({ sequence: 1n }), checkpoint({ sequence: 2n, stage: 'other' }), checkpoint({ sequence: 3n })];
    const signature = codec.chainSignature(chain);
    assert.match(signature, /^[0-9a-f]{64}$/);
    assert.equal(new Codec().chainSignature(chain), signature);
    assert.notEqual(codec.chainSignature([...chain].reverse()), signature);
    assert.equal(codec.resumePointForStage(chain, 'stage').sequence, 3n);
    assert.throws(() => codec.resumePointForStage(chain, 'missing'), NotFoundError);
  });
});
