// The conformance runner itself (test/conformance.mjs, which run-tests.sh runs on the expanded
// cases): it must map ops and results to the README's WIT JSON with the fixed fault texts,
// record only what a step asks for, stop a case at a step it cannot play, and leave no stale
// transcript. Matching is the checker's job, so nothing here matches expectations.

import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';

import { FORMAT, damage, input, playCase, readExpanded, wit, writeTranscripts } from './conformance.mjs';

const C = (sequence) => ({
  'run-id': 'run', stage: 'stage', sequence: String(sequence), epoch: '1',
  watermark: { offset: String(sequence * 10), 'event-time-ms': '-5' },
  sources: [], sinks: [], 'operator-states': [{ name: 'op', state: 'ABff' }], 'idempotency-key': '', 'at-ms': '0',
});
const step = (op, fields = {}, record = ['result', 'calls']) => ({ op, storage: [], consumer: [], record, ...fields });
const OPTIONS = { namespace: 'test', 'max-retained': '1', 'max-checkpoint-bytes': '65536' };

test('values go to the API typed and come back as WIT JSON', () => {
  const c = input(C(3));
  assert.equal(c.sequence, 3n);
  assert.equal(c.watermark.eventTimeMs, -5n);
  assert.deepEqual(c.operatorStates[0].state, Uint8Array.of(0xab, 0xff));
  assert.deepEqual(wit(c), { ...C(3), 'operator-states': [{ name: 'op', state: 'abff' }] });
  assert.deepEqual(wit({ pruned: 0, overflowCount: 18446744073709551615n }), { pruned: '0', 'overflow-count': '18446744073709551615' });
  assert.deepEqual(damage(Uint8Array.of(1, 2, 3), { 'flip-bit': '9' }), Uint8Array.of(1, 0, 3));
  assert.deepEqual(damage(Uint8Array.of(1, 2, 3), { truncate: '1' }), Uint8Array.of(1));
});

test('a case records results, fault texts, calls and logs as the README says', () => {
  const records = playCase({
    name: 'x', options: OPTIONS, steps: [
      step('write', { checkpoint: C(1), batch: ['m1'], storage: [{ call: 'get', nth: '1', fault: 'unavailable', index: '0' }] }),
      step('write', { checkpoint: C(1), batch: ['m1'], consumer: [{ nth: '1', fault: 'fail' }] }, ['result', 'calls', 'acks', 'failed-acks', 'keys']),
      step('get', { 'run-id': 'run', stage: 'stage' }, ['result']),
    ],
  });
  assert.deepEqual(records[0], {
    op: 'write',
    result: {
      error: { storage: 'reading latest: storage unavailable: injected fault on get' },
      message: 'storage failure: reading latest: storage unavailable: injected fault on get; nothing was acked: ' +
        'retry the same write (a committed one is accepted as a replay)',
    },
    calls: { get: '1', commit: '0', 'list-keys': '0', ack: '0' },
  });
  assert.deepEqual(records[1].result, { ok: { sequence: '1', version: '1', replayed: false, pruned: '0', acks: { failed: 'injected ack failure' } } });
  assert.deepEqual(records[1].acks, []);
  assert.deepEqual(records[1]['failed-acks'], [['m1']]);
  assert.deepEqual(records[1].keys, ['ckpt/test/run/stage/latest']);
  assert.deepEqual(Object.keys(records[2]), ['op', 'result'], 'only what the step asks for');
  assert.equal(records[2].result.ok.watermark['event-time-ms'], '-5');
});

test('source ops map admissions, completions, state and recovery', () => {
  const driver = { 'run-id': 'run', stage: 'stage', epoch: '1', policy: 'explicit-flush', 'changelog-capacity': '0', overflow: 'drop-new', 'max-in-flight': '2' };
  const message = (id, offset, source = '') => ({ id, source, offset, 'event-time-ms': '0' });
  const state = { sinks: [{ name: 'out', position: '1' }], 'operator-states': [] };
  const records = playCase({
    name: 'x', options: OPTIONS, steps: [
      step('open-driver', { driver }),
      step('recovered-acks'),
      step('begin', { message: message('a', '0') }),
      step('begin', { message: message('q', null, 'p1') }),
      step('begin', { message: message('c', '1') }),
      step('complete', { ticket: '2' }),
      step('complete', { ticket: '1' }),
      step('flush', { 'now-ms': '3', state }),
      step('begin', { message: message('a', '0') }),
      step('resume-point', { 'run-id': 'run', stage: 'stage' }),
      step('recover-acks', { 'run-id': 'run', stage: 'stage' }),
      step('record-processed-batch', { messages: [{ id: 'a', 'next-offset': '1', 'event-time-ms': '0' }], 'now-ms': '4' }),
      step('flush', { 'now-ms': '5', state: null }),
    ],
  });
  const results = records.map((r) => r.result);
  assert.equal(results[0].ok['resumed-from'].checkpoint, null);
  assert.deepEqual(results.slice(1, 9), [
    { ok: { acked: '0' } },
    { ok: { admitted: '1' } },
    { ok: { admitted: '2' } },
    { ok: { backpressure: '2' } },
    { ok: { released: ['2'], due: true } },
    { ok: { released: ['1'], due: true } },
    { ok: { checkpointed: { sequence: '1', version: '1', replayed: false, pruned: '0', acks: { acked: '2' } } } },
    { ok: { covered: { acked: '1' } } },
  ]);
  const { checkpoint } = results[9].ok;
  assert.deepEqual([checkpoint.sinks, checkpoint.sources.map((s) => s.name)], [state.sinks, ['p1']]);
  assert.deepEqual(results.slice(10), [
    { ok: { acked: '2' } },
    { ok: { checkpoints: [], pending: '0', covered: '1' } },
    { ok: { pending: '0' } },
  ]);
});

test('a step it cannot play is a runner-error and ends the case', () => {
  const records = playCase({ name: 'x', options: OPTIONS, steps: [step('flush', { 'now-ms': '0' }), step('cursor')] });
  assert.equal(records.length, 1);
  assert.match(records[0].result['runner-error'], /no open driver/);
});

test('transcripts replace the old ones; a missing or foreign cases file names the command', () => {
  const dir = mkdtempSync(join(tmpdir(), 'ckpt-node-conformance-'));
  try {
    assert.throws(() => readExpanded(dir), /cases\.json is missing: run `bash scripts\/conformance\.sh expand`/);
    writeFileSync(join(dir, 'cases.json'), JSON.stringify({ format: 'other', cases: [] }));
    assert.throws(() => readExpanded(dir), /expected pipeline-checkpoint-conformance-expanded\/1/);
    mkdirSync(join(dir, 'transcripts/node/memory'), { recursive: true });
    writeFileSync(join(dir, 'transcripts/node/memory/stale.json'), '{}');
    const expanded = { format: FORMAT, cases: [{ name: 'one', options: OPTIONS, steps: [step('resume-point', { 'run-id': 'r', stage: 's' }, ['result'])] }] };
    assert.equal(writeTranscripts(expanded, dir), 1);
    assert.ok(!existsSync(join(dir, 'transcripts/node/memory/stale.json')));
    const t = JSON.parse(readFileSync(join(dir, 'transcripts/node/memory/one.json'), 'utf8'));
    assert.deepEqual([t.case, t.host, t.backend, t.steps[0].result.ok.origin], ['one', 'node', 'memory', 'fresh']);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
