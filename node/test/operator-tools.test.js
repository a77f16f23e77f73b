// The operator tools' wrappers (reset, savepoints, getAt, paged history, listStages, labels,
// exportStage and importStage)
// where they do more than pass a value on: historyEntries and history page through a history too
// large for one answer, values are range-checked before the component is called, and options
// come back as null. The behaviour itself is the conformance cases'
// (tests/conformance/cases/operator-tools.json).

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { Checkpointer, Codec, InvalidInputError, MapStorage, RegressionError, Runtime } from '../src/index.js';

const MiB = 1024 * 1024;
const OPTIONS = { namespace: 'test', maxRetained: 5, maxCheckpointBytes: 65536 };

function checkpoint(sequence, offset, { state = new Uint8Array(0), epoch = 1n } = {}) {
  return {
    runId: 'run', stage: 'stage', sequence: BigInt(sequence), epoch,
    watermark: { offset: BigInt(offset), eventTimeMs: BigInt(offset) },
    sources: [], sinks: [], operatorStates: [{ name: 'count', state }], idempotencyKey: '', atMs: BigInt(sequence),
  };
}

test('history and historyEntries read a history larger than one answer whole', () => {
  // 16 MiB of memory serves answers of 4 MiB (a quarter): ten checkpoints of 600 kB need two pages.
  const runtime = new Runtime({ maxMemoryBytes: 16 * MiB });
  const options = { namespace: 'test', maxRetained: 10, maxCheckpointBytes: 1_000_000 };
  const c = Checkpointer.open(new MapStorage(), null, options, { runtime });
  const written = [];
  for (let s = 1; s <= 10; s += 1) {
    written.push(checkpoint(s, s, { state: new Uint8Array(600_000).fill(s) }));
    c.write(written.at(-1));
  }
  // The component's own limit: a page of the largest size (maxBytes 0) holds fewer than all.
  const first = c.historyPage('run', 'stage', { maxCheckpoints: 100 });
  assert.equal(typeof first.nextAfter, 'bigint');
  assert.ok(first.entries.length > 0 && first.entries.length < 10);
  // The host reads it whole all the same, page by page, as the Rust host does.
  const entries = c.historyEntries('run', 'stage');
  assert.deepEqual(entries.map((e) => e.checkpoint), written);
  assert.ok(entries.every((e) => e.reset === null && e.encodedBytes > 600_000n));
  const history = c.history('run', 'stage');
  assert.deepEqual(history, written);
  assert.deepEqual(history.at(-1), c.get('run', 'stage'));
  assert.deepEqual(history, entries.map((e) => e.checkpoint));
});

test('small pages concatenate to the history; nothing stored is empty', () => {
  const c = Checkpointer.open(new MapStorage(), null, OPTIONS);
  assert.deepEqual(c.historyEntries('run', 'stage'), []);
  for (let s = 1; s <= 5; s += 1) c.write(checkpoint(s, s * 10));
  const pages = [];
  let request = { maxCheckpoints: 2 };
  for (;;) {
    const page = c.historyPage('run', 'stage', request);
    pages.push(page.entries.map((e) => e.checkpoint.sequence));
    if (page.nextAfter === null) break;
    request = { afterSequence: page.nextAfter, maxCheckpoints: 2 };
  }
  assert.deepEqual(pages, [[1n, 2n], [3n, 4n], [5n]]);
  assert.deepEqual(c.historyEntries('run', 'stage').map((e) => e.checkpoint), c.history('run', 'stage'));
});

test('resets, savepoints and stage summaries come back with null for none', () => {
  const c = Checkpointer.open(new MapStorage(), null, OPTIONS);
  c.write(checkpoint(1, 10, { state: Uint8Array.of(10), epoch: 2n }));
  const info = c.createSavepoint('run', 'stage', 'keep');
  assert.deepEqual({ ...info, encodedBytes: 0n }, {
    name: 'keep', point: { runId: 'run', stage: 'stage', sequence: 1n, epoch: 2n, watermark: { offset: 10n, eventTimeMs: 10n } },
    atMs: 1n, encodedBytes: 0n,
  });
  const reset = c.reset({ runId: 'run', stage: 'stage', watermark: { offset: 3, eventTimeMs: 0 }, atMs: 7 });
  assert.deepEqual([reset.checkpoint.sequence, reset.checkpoint.epoch], [2n, 3n]);
  assert.deepEqual(reset.origin, { fromSequence: 1n, fromEpoch: 2n, fromWatermark: { offset: 10n, eventTimeMs: 10n }, savepoint: null });
  const restored = c.restoreSavepoint('run', 'stage', 'keep', { atMs: 8, epoch: 9 });
  assert.equal(restored.origin.savepoint, 'keep');
  assert.deepEqual(restored.checkpoint.operatorStates, [{ name: 'count', state: Uint8Array.of(10) }]);
  assert.deepEqual(c.getAt('run', 'stage', 3), restored.checkpoint);
  const [summary, ...more] = c.listStages();
  assert.equal(more.length, 0);
  assert.equal(summary.latest.epoch, 9n);
  assert.deepEqual(summary.reset, restored.origin);
  assert.equal(summary.damage, null);
  assert.equal(summary.savepoints, 1);
  assert.deepEqual(c.listStages('other'), []);
  assert.deepEqual(c.listStages(null), c.listStages());
  assert.equal(c.deleteSavepoint('run', 'stage', 'keep'), true);
  assert.equal(c.deleteSavepoint('run', 'stage', 'keep'), false);
  const page = c.historyPage('run', 'stage', { maxCheckpoints: 10 });
  assert.equal(page.nextAfter, null);
  assert.deepEqual(page.entries.map((e) => e.reset?.savepoint ?? null), [null, null, 'keep']);
});

test('exportStage and importStage copy a stage byte for byte', () => {
  const [source, target] = [new MapStorage(), new MapStorage()];
  const options = { namespace: 'test', maxRetained: 3, maxCheckpointBytes: 65536 };
  const exporter = Checkpointer.open(source, null, options);
  for (let s = 1; s <= 5; s += 1) exporter.write(checkpoint(s, s * 10, { state: Uint8Array.of(s) }));
  exporter.createSavepoint('run', 'stage', 'keep', 4n);
  const exported = exporter.exportStage('run', 'stage');
  assert.deepEqual([exported.runId, exported.stage], ['run', 'stage']);
  assert.ok(exported.latest instanceof Uint8Array);
  assert.deepEqual(exported.retained.map((c) => c.sequence), [3n, 4n, 5n]);
  assert.ok(exported.retained.every((c) => c.bytes instanceof Uint8Array));
  assert.deepEqual(exported.savepoints.map((p) => p.name), ['keep']);
  assert.ok(exported.savepoints[0].bytes instanceof Uint8Array);

  const importer = Checkpointer.open(target, null, options);
  const dry = importer.importStage(exported, { dryRun: true });
  assert.equal(dry.action, 'created');
  assert.deepEqual(target.listKeys(''), []);
  const receipt = importer.importStage(exported);
  const size = [exported.latest, ...exported.retained.map((c) => c.bytes), ...exported.savepoints.map((p) => p.bytes)]
    .reduce((n, b) => n + b.length, 0);
  assert.deepEqual(receipt, { action: 'created', keysWritten: 5, keysRemoved: 0, bytesWritten: BigInt(size) });
  assert.deepEqual(dry, receipt);
  assert.deepEqual(target.listKeys('').sort(), source.listKeys('').sort());
  for (const key of source.listKeys('')) assert.deepEqual(target.get(key).value, source.get(key).value, key);
  assert.deepEqual(importer.history('run', 'stage'), exporter.history('run', 'stage'));
  assert.deepEqual(importer.exportStage('run', 'stage'), exported);
  // Again: every entry is there with the same bytes, nothing is written.
  assert.deepEqual(importer.importStage(exported), { action: 'identical', keysWritten: 0, keysRemoved: 0, bytesWritten: 0n });
  // Into another namespace of the same store.
  const other = Checkpointer.open(source, null, { ...options, namespace: 'other' });
  assert.equal(other.importStage(exported).action, 'created');
  assert.deepEqual(other.get('run', 'stage'), exporter.get('run', 'stage'));
});

test('importing over an older stage needs replaceOlder', () => {
  const options = { namespace: 'test', maxRetained: 2, maxCheckpointBytes: 65536 };
  const older = Checkpointer.open(new MapStorage(), null, options);
  for (const s of [1, 2]) older.write(checkpoint(s, s));
  const newer = Checkpointer.open(new MapStorage(), null, options);
  for (const s of [1, 2, 3, 4]) newer.write(checkpoint(s, s + 100));
  const [exported, before] = [newer.exportStage('run', 'stage'), older.exportStage('run', 'stage')];

  assert.throws(() => older.importStage(exported), (e) => e instanceof InvalidInputError && e.field === 'replace-older');
  assert.deepEqual(older.get('run', 'stage'), checkpoint(2, 2));
  const dry = older.importStage(exported, { replaceOlder: true, dryRun: true });
  assert.equal(dry.action, 'replaced');
  assert.deepEqual(older.get('run', 'stage'), checkpoint(2, 2));
  const receipt = older.importStage(exported, { replaceOlder: true });
  assert.deepEqual(receipt, dry);
  assert.deepEqual([receipt.keysWritten, receipt.keysRemoved], [3, 2]);
  assert.deepEqual(older.history('run', 'stage'), newer.history('run', 'stage'));
  assert.equal(older.importStage(exported).action, 'identical');
  // The newer store refuses the older chain, even with replaceOlder: it is newer.
  assert.throws(() => newer.importStage(before, { replaceOlder: true }), RegressionError);
});

test('values are checked before the component is called', () => {
  const c = Checkpointer.open(new MapStorage(), null, OPTIONS);
  const wm = { offset: 0n, eventTimeMs: 0n };
  const refusals = [
    [() => c.reset({ runId: 'run', stage: 'stage', watermark: wm, epoch: -1n, atMs: 0n }), 'request.epoch'],
    [() => c.reset({ runId: 'run', stage: 'stage', watermark: wm }), 'request.at-ms'],
    [() => c.historyPage('run', 'stage', { maxCheckpoints: 2 ** 32 }), 'request.max-checkpoints'],
    [() => c.historyPage('run', 'stage', { afterSequence: -1, maxCheckpoints: 1 }), 'request.after-sequence'],
    [() => c.historyPage('run', 'stage', null), 'request'],
    [() => c.getAt('run', 'stage', 1.5), 'sequence'],
    [() => c.createSavepoint('run', 'stage', 'n', '1'), 'sequence'],
    [() => c.restoreSavepoint('run', 'stage', 'n', {}), 'at-ms'],
    [() => c.restoreSavepoint('run', 'stage', 5, { atMs: 0 }), 'name'],
    [() => c.listStages(7), 'run-id'],
    [() => c.exportStage('run', 5), 'stage'],
    [() => c.importStage(null), 'exported'],
    [() => c.importStage({ runId: 'run', stage: 'stage', latest: [0] }), 'exported.latest'],
    [() => c.importStage({ runId: 'run', stage: 'stage', retained: [{ sequence: -1n, bytes: new Uint8Array(0) }] }), 'exported.retained[0].sequence'],
    [() => c.importStage({ runId: 'run', stage: 'stage', savepoints: [{ name: 'n' }] }), 'exported.savepoints[0].bytes'],
    [() => c.importStage({ runId: 'run', stage: 'stage' }, { replaceOlder: 1 }), 'replace-older'],
    [() => c.importStage({ runId: 'run', stage: 'stage' }, { dryRun: 'yes' }), 'dry-run'],
  ];
  for (const [call, field] of refusals) {
    assert.throws(call, (e) => e instanceof InvalidInputError && e.field === field, field);
  }
});

test('labels are the component\'s lines', () => {
  const codec = new Codec();
  assert.equal(codec.watermarkLabel({ offset: 42n, eventTimeMs: 1733238983000n }), 'offset 42, event time 2024-12-03T15:16:23.000Z');
  const fresh = { runId: 'r', stage: 's', sequence: 0n, epoch: 0n, watermark: { offset: 0n, eventTimeMs: 0n } };
  assert.equal(codec.resumePointLabel(fresh), 'run "r" stage "s" starts fresh at offset 0 (nothing stored)');
  const label = codec.checkpointLabel(checkpoint(1, 0));
  assert.ok(label.startsWith('run "run" stage "stage" #1 epoch 1 at offset 0'), label);
  assert.ok(label.endsWith(`; ${codec.encode(checkpoint(1, 0)).length} bytes)`), label);
  assert.throws(() => codec.watermarkLabel({ offset: -1n, eventTimeMs: 0n }), (e) => e instanceof InvalidInputError && e.field === 'watermark.offset');
});
