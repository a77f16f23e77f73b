// The conformance runner itself: it must fail on a wrong expectation, a file it cannot play and
// a repeated case name, or a green run would prove nothing. (The suite is played by
// test/conformance.mjs, which run-tests.sh runs.)

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';

import { runConformance } from './conformance.mjs';

function withCases(files, fn) {
  const dir = mkdtempSync(join(tmpdir(), 'ckpt-node-cases-'));
  try {
    for (const [name, content] of Object.entries(files)) writeFileSync(join(dir, name), content);
    return fn(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const write = { op: 'write', checkpoint: { sequence: 1, watermark: { offset: 5 } }, batch: ['m-1'] };

test('a right case passes on every backend and a wrong one fails on each', () => {
  const doc = {
    description: 'runner self-test',
    cases: [
      { name: 'right', steps: [write, { op: 'get', expect: { ok: { sequence: 1, watermark: { offset: '5' } } } }], acks: [['m-1']] },
      { name: 'wrong-value', steps: [write, { op: 'get', expect: { ok: { sequence: 2 } } }] },
      { name: 'wrong-acks', steps: [write], acks: [] },
      { name: 'typo-field', steps: [{ ...write, expec: 'ok' }] },
    ],
  };
  withCases({ 'a.json': JSON.stringify(doc) }, (dir) => {
    const r = runConformance({ dir });
    assert.equal(r.cases, 4);
    assert.equal(r.total, 4 * r.backends);
    assert.equal(r.passed, r.backends, 'only the right case passes');
    assert.equal(r.failures.length, 3 * r.backends);
    assert.ok(r.failures.some((f) => f.includes('wrong-value') && f.includes('step 1 (get)') && f.includes('expected 2, got 1')));
    assert.ok(r.failures.some((f) => f.includes('wrong-acks') && f.includes('after the last step')));
    assert.ok(r.failures.some((f) => f.includes('unknown step field `expec`')));
  });
});

test('files it cannot play and repeated names are failures', () => {
  const one = JSON.stringify({ cases: [{ name: 'same', steps: [{ op: 'resume-point' }] }] });
  withCases({ 'a.json': one, 'b.json': one, 'c.json': '{ nope', 'd.json': '{"cases": []}', 'notes.txt': 'x' }, (dir) => {
    const r = runConformance({ dir });
    assert.equal(r.files, 2);
    assert.equal(r.cases, 1);
    const text = r.failures.join('\n');
    assert.match(text, /b\.json: case name "same" empty or repeated/);
    assert.match(text, /c\.json: not JSON/);
    assert.match(text, /d\.json: no `cases`/);
    assert.match(text, /notes\.txt: not a \.json case file/);
  });
});
