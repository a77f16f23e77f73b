// The driver for real sources over the real component: begin / complete / flush with state
// (out-of-order completion, the in-flight cap, partitions, redeliveries of covered and
// uncovered messages), ack recovery (recoverAcks, openDriver + recoveredAcks) and the whole
// checkpoint a resume comes from (resume.checkpoint), also after a fallback.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { Checkpointer, InvalidInputError, MapStorage, RecordingConsumer, RegressionError } from '../src/index.js';
import { AckScript, FaultyConsumer } from '../src/faults.js';

const OPTIONS = { namespace: 'test', maxRetained: 3, maxCheckpointBytes: 65536 };
const LATEST = 'ckpt/test/run/stage/latest';
const RETAINED_2 = 'ckpt/test/run/stage/h/00000000000000000002';

/** A checkpointer and a driver (explicit-flush unless `policy` says otherwise) over `store`. */
function driverOn(store, consumer = null, { policy = 'explicit-flush', ...options } = {}) {
  const checkpointer = Checkpointer.open(store, consumer, OPTIONS);
  const driver = checkpointer.openDriver({ runId: 'run', stage: 'stage', epoch: 1n, policy, ...options });
  return { checkpointer, driver };
}

function admitted(driver, message) {
  const admission = driver.begin(message);
  assert.equal(admission.kind, 'admitted', JSON.stringify(admission, (_, v) => (typeof v === 'bigint' ? `${v}` : v)));
  return admission.ticket;
}

const STATE = { sinks: [{ name: 'out', position: 2n }], operatorStates: [{ name: 'sum', state: Uint8Array.of(3) }] };

describe('out-of-order completion', () => {
  test('releases in begin order, checkpoints only the completed prefix, acks after the write', () => {
    const consumer = new RecordingConsumer();
    const { checkpointer, driver } = driverOn(new MapStorage(), consumer);
    const tickets = [0, 1, 2].map((i) => admitted(driver, { id: `m${i}`, offset: i, eventTimeMs: i }));
    assert.deepEqual(tickets, [1n, 2n, 3n]); // deterministic per driver
    assert.deepEqual(driver.complete(3n), { released: [], due: false });
    assert.deepEqual(driver.complete(1), { released: [1n], due: false });
    assert.deepEqual(consumer.acks, []);
    const first = driver.flush(10n);
    assert.equal(first.kind, 'checkpointed');
    assert.deepEqual(first.receipt.acks, { kind: 'acked', count: 1 });
    assert.deepEqual(consumer.acks, [['m0']]);
    assert.deepEqual(checkpointer.get('run', 'stage').watermark, { offset: 1n, eventTimeMs: 0n });
    assert.deepEqual(driver.complete(2n), { released: [2n, 3n], due: false });
    assert.deepEqual(driver.flush(11n).receipt.acks, { kind: 'acked', count: 2 });
    assert.deepEqual(consumer.acks, [['m0'], ['m1', 'm2']]);
    assert.deepEqual(driver.flush(12n), { kind: 'pending', pending: 0 });
  });

  test('per-message says due at each release; complete never writes', () => {
    const consumer = new RecordingConsumer();
    const { driver } = driverOn(new MapStorage(), consumer, { policy: 'per-message' });
    const ticket = admitted(driver, { id: 'a', offset: 7n });
    assert.deepEqual(driver.complete(ticket), { released: [ticket], due: true });
    assert.deepEqual(consumer.acks, []);
    assert.equal(driver.flush(1n).kind, 'checkpointed');
    assert.deepEqual(consumer.acks, [['a']]);
  });

  test('an unknown or completed ticket is invalid', () => {
    const { driver } = driverOn(new MapStorage());
    const ticket = admitted(driver, { id: 'a', offset: 0 });
    driver.complete(ticket);
    for (const bad of [ticket, 99n]) {
      assert.throws(() => driver.complete(bad), (e) => e instanceof InvalidInputError && e.field === 'ticket');
    }
    assert.throws(() => driver.complete(-1), (e) => e instanceof InvalidInputError && e.field === 'ticket');
  });
});

describe('the in-flight cap', () => {
  test('begin answers backpressure at the cap; a checkpoint is due', () => {
    const consumer = new RecordingConsumer();
    const { driver } = driverOn(new MapStorage(), consumer, { maxInFlight: 2 });
    const first = admitted(driver, { id: 'a', offset: 0 });
    const second = admitted(driver, { id: 'b', offset: 1 });
    assert.deepEqual(driver.begin({ id: 'c', offset: 2 }), { kind: 'backpressure', inFlight: 2 });
    assert.deepEqual(driver.complete(first), { released: [first], due: true });
    assert.deepEqual(driver.complete(second), { released: [second], due: true });
    assert.equal(driver.begin({ id: 'c', offset: 2 }).kind, 'backpressure'); // released is not durable
    assert.equal(driver.flush(1n).kind, 'checkpointed');
    assert.equal(driver.begin({ id: 'c', offset: 2 }).kind, 'admitted');
    assert.deepEqual(consumer.acks, [['a', 'b']]);
  });

  test('options out of their bounds are refused', () => {
    const checkpointer = Checkpointer.open(new MapStorage(), null, OPTIONS);
    const open = (options) => () => checkpointer.openDriver({ runId: 'run', stage: 'stage', epoch: 1n, policy: 'per-message', ...options });
    for (const [options, field] of [
      [{ maxInFlight: 0 }, 'max-in-flight'],
      [{ maxInFlight: 4097 }, 'max-in-flight'],
      [{ maxInFlight: -1 }, 'max-in-flight'], // refused before the component: not a u32
      [{ maxInFlight: 4, policy: { perBatch: 5 } }, 'policy'],
    ]) {
      assert.throws(open(options), (e) => e instanceof InvalidInputError && e.field === field, JSON.stringify(options));
    }
    const driver = open({})();
    assert.throws(() => driver.begin({ id: 'a', offset: '7' }), (e) => e instanceof InvalidInputError && e.field === 'message.offset');
    assert.throws(() => driver.begin({ id: 'a', source: 3 }), (e) => e instanceof InvalidInputError && e.field === 'message.source');
    assert.throws(() => driver.flush(0n, { sinks: {} }), (e) => e instanceof InvalidInputError && e.field === 'state.sinks');
    assert.throws(() => driver.flush(0n, 'state'), (e) => e instanceof InvalidInputError && e.field === 'state');
  });
});

describe('redeliveries', () => {
  test('a covered redelivery is acked and skipped, by offset and by id', () => {
    const consumer = new RecordingConsumer();
    const { driver } = driverOn(new MapStorage(), consumer);
    for (const message of [{ id: 'm0', offset: 0 }, { id: 'q1' }]) driver.complete(admitted(driver, message));
    driver.flush(1n);
    assert.deepEqual(consumer.acks, [['m0', 'q1']]);
    assert.deepEqual(driver.begin({ id: 'm0', offset: 0 }), { kind: 'covered', acks: { kind: 'acked', count: 1 } });
    assert.deepEqual(driver.begin({ id: 'q1', offset: null }), { kind: 'covered', acks: { kind: 'acked', count: 1 } });
    assert.deepEqual(consumer.acks, [['m0', 'q1'], ['m0'], ['q1']]);
    assert.deepEqual(driver.flush(2n), { kind: 'pending', pending: 0 });
    assert.deepEqual(driver.recordProcessed({ id: 'm0', nextOffset: 1n }, 3n), { kind: 'covered', acks: { kind: 'acked', count: 1 } });
    const batch = driver.recordProcessedBatch([{ id: 'm0', nextOffset: 1n }, { id: 'm1', nextOffset: 2n }], 4n);
    assert.deepEqual(batch, { checkpoints: [], pending: 1, covered: 1 });
  });

  test('moving back inside the window not yet checkpointed is a regression', () => {
    const { driver } = driverOn(new MapStorage());
    admitted(driver, { id: 'm5', offset: 5 });
    assert.throws(() => driver.begin({ id: 'm3', offset: 3 }), (e) => e instanceof RegressionError && e.field === 'offset');
    assert.throws(() => driver.begin({ id: 'm5', offset: 5 }), RegressionError);
    admitted(driver, { id: 'q' });
    assert.throws(() => driver.begin({ id: 'q' }), (e) => e instanceof RegressionError && e.field === 'id');
  });

  test('a failed ack is sent again with the next checkpoint', () => {
    const consumer = new RecordingConsumer();
    const script = new AckScript();
    const { driver } = driverOn(new MapStorage(), new FaultyConsumer(consumer, script), { policy: 'per-message' });
    script.failNth(1);
    const progress = driver.recordProcessed({ id: 'm0', nextOffset: 1n }, 0n);
    assert.deepEqual(progress.receipt.acks, { kind: 'failed', message: 'injected ack failure' });
    driver.recordProcessed({ id: 'm1', nextOffset: 2n }, 0n);
    assert.deepEqual(consumer.acks, [['m0', 'm1']]);
  });
});

describe('ack recovery and crashes', () => {
  test('a crash between commit and ack is repaired by recoverAcks and by the next driver', () => {
    const store = new MapStorage();
    const consumer = new RecordingConsumer();
    const script = new AckScript();
    const { checkpointer, driver } = driverOn(store, new FaultyConsumer(consumer, script));
    for (const i of [0, 1]) driver.complete(admitted(driver, { id: `m${i}`, offset: i }));
    script.failNth(1);
    assert.equal(driver.flush(5n).receipt.acks.kind, 'failed');
    checkpointer.close(); // the process dies before anything acks them
    assert.deepEqual(consumer.acks, []);

    assert.deepEqual(Checkpointer.open(store, consumer, OPTIONS).recoverAcks('run', 'stage'), { kind: 'acked', count: 2 });
    assert.deepEqual(consumer.acks, [['m0', 'm1']]);
    const next = driverOn(store, consumer).driver;
    assert.deepEqual(next.recoveredAcks(), { kind: 'acked', count: 2 });
    assert.deepEqual(consumer.acks, [['m0', 'm1'], ['m0', 'm1']]);
  });

  test('recovery with nothing stored acks nothing', () => {
    const consumer = new RecordingConsumer();
    const { checkpointer, driver } = driverOn(new MapStorage(), consumer);
    assert.deepEqual(checkpointer.recoverAcks('run', 'stage'), { kind: 'acked', count: 0 });
    assert.deepEqual(driver.recoveredAcks(), { kind: 'acked', count: 0 });
    assert.deepEqual(consumer.acks, []);
  });

  test('work in flight at a crash is admitted again; covered work is skipped', () => {
    const store = new MapStorage();
    const consumer = new RecordingConsumer();
    const { checkpointer, driver } = driverOn(store, consumer);
    const tickets = [0, 1, 2, 3].map((i) => admitted(driver, { id: `m${i}`, offset: i }));
    driver.complete(tickets[0]);
    driver.flush(1n);
    driver.complete(tickets[2]);
    checkpointer.close();
    assert.deepEqual(consumer.acks, [['m0']]);

    const next = driverOn(store, consumer).driver;
    assert.equal(next.resumedFrom().point.watermark.offset, 1n);
    assert.equal(next.begin({ id: 'm0', offset: 0 }).kind, 'covered');
    assert.deepEqual([1, 2, 3].map((i) => admitted(next, { id: `m${i}`, offset: i })), [1n, 2n, 3n]);
  });
});

describe('partitions and state', () => {
  test('partitions are kept in sources and come back at resume', () => {
    const store = new MapStorage();
    const consumer = new RecordingConsumer();
    const { checkpointer, driver } = driverOn(store, consumer);
    const p0 = admitted(driver, { id: 'p0-4', source: 'p0', offset: 4, eventTimeMs: 40 });
    const p1 = admitted(driver, { id: 'p1-9', source: 'p1', offset: 9, eventTimeMs: 90 });
    assert.deepEqual(driver.complete(p1).released, [p1]);
    assert.deepEqual(driver.complete(p0).released, [p0]);
    driver.flush(1n);
    const stored = checkpointer.get('run', 'stage');
    assert.deepEqual(stored.sources, [
      { name: 'p0', sequence: 1n, watermark: { offset: 5n, eventTimeMs: 40n } },
      { name: 'p1', sequence: 1n, watermark: { offset: 10n, eventTimeMs: 90n } },
    ]);
    const next = driverOn(store, consumer).driver;
    assert.deepEqual(next.resumedFrom().checkpoint, stored);
    assert.equal(next.begin({ id: 'p1-9', source: 'p1', offset: 9 }).kind, 'covered');
    assert.equal(next.begin({ id: 'p0-9', source: 'p0', offset: 9 }).kind, 'admitted');
  });

  test('state given to flush is carried, returned at resume, and kept by the next driver', () => {
    const store = new MapStorage();
    const { checkpointer, driver } = driverOn(store);
    driver.complete(admitted(driver, { id: 'm0', offset: 0 }));
    driver.flush(1n, STATE);
    const resume = checkpointer.resumePoint('run', 'stage');
    assert.equal(resume.origin, 'latest');
    assert.deepEqual(resume.checkpoint.sinks, [{ name: 'out', position: 2n }]);
    assert.deepEqual(resume.checkpoint.operatorStates, [{ name: 'sum', state: Uint8Array.of(3) }]);
    assert.deepEqual(driver.flush(2n, STATE), { kind: 'pending', pending: 0 });

    const next = driverOn(store).driver;
    assert.deepEqual(next.resumedFrom().checkpoint, resume.checkpoint);
    next.complete(admitted(next, { id: 'm1', offset: 1 }));
    next.flush(3n);
    assert.deepEqual(checkpointer.get('run', 'stage').operatorStates, resume.checkpoint.operatorStates);
    assert.equal(next.flush(4n, { operatorStates: [{ name: 'sum', state: Uint8Array.of(4) }] }).kind, 'checkpointed');
    const stored = checkpointer.get('run', 'stage');
    assert.deepEqual([stored.sequence, stored.sinks, stored.operatorStates], [3n, [], [{ name: 'sum', state: Uint8Array.of(4) }]]);
  });

  test('after a fallback the resume carries the older checkpoint whole; fresh has none', () => {
    const store = new MapStorage();
    const { checkpointer, driver } = driverOn(store);
    assert.equal(checkpointer.resumePoint('run', 'stage').checkpoint, null);
    driver.complete(admitted(driver, { id: 'm0', offset: 0 }));
    driver.flush(1n, STATE);
    const older = checkpointer.get('run', 'stage');
    driver.complete(admitted(driver, { id: 'm1', offset: 1 }));
    driver.flush(2n, { operatorStates: [{ name: 'sum', state: Uint8Array.of(9) }] });
    for (const key of [LATEST, RETAINED_2]) {
      store.commit([{ key, expectedVersion: null, op: 'put', value: Uint8Array.of(1, 2, 3) }]);
    }
    const resume = checkpointer.resumePoint('run', 'stage');
    assert.equal(resume.origin, 'fallback');
    assert.deepEqual(resume.checkpoint, older);
    assert.deepEqual(driverOn(store).driver.resumedFrom().checkpoint, older);
  });

  test('a write batch past its bound is invalid and writes nothing', () => {
    const store = new MapStorage();
    const checkpointer = Checkpointer.open(store, new RecordingConsumer(), OPTIONS);
    const checkpoint = { runId: 'run', stage: 'stage', sequence: 1n, epoch: 1n, watermark: { offset: 1n, eventTimeMs: 0n }, atMs: 0n };
    const ids = (n) => Array.from({ length: n }, (_, i) => `m${i}`);
    assert.throws(() => checkpointer.write(checkpoint, ids(4097)), (e) => e instanceof InvalidInputError && e.field === 'batch');
    assert.deepEqual(store.listKeys(''), []);
    assert.deepEqual(checkpointer.write(checkpoint, ids(4096)).acks, { kind: 'acked', count: 4096 });
  });
});
