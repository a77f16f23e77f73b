// The bindings in use are the patched ones (tools/patch-generated.mjs): jco's per-call read of
// JCO_DEBUG is gone and instantiation does not throw V8's costly "not a function" errors.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';

import { Checkpointer, MapStorage, RecordingConsumer } from '../src/index.js';

test('component calls never read process.env', () => {
  const checkpointer = Checkpointer.open(new MapStorage(), new RecordingConsumer(), {
    namespace: 'env', maxRetained: 2, maxCheckpointBytes: 4096,
  });
  const original = process.env;
  const reads = [];
  process.env = new Proxy(original, {
    get(target, key) {
      reads.push(String(key));
      return target[key];
    },
  });
  try {
    for (let sequence = 1n; sequence <= 5n; sequence++) {
      checkpointer.write({ runId: 'r', stage: 's', sequence, epoch: 1n, watermark: { offset: sequence, eventTimeMs: 0n }, atMs: 0n }, ['m']);
      checkpointer.get('r', 's');
    }
    checkpointer.resumePoint('r', 's');
  } finally {
    process.env = original;
  }
  assert.deepEqual(reads, [], 'environment reads during component calls');
});

test('the generated code carries both patches', () => {
  const code = readFileSync(new URL('../generated/checkpoint.js', import.meta.url), 'utf8');
  assert.equal(code.split('process?.env').length - 1, 1, 'only the read at load is left');
  assert.ok(code.includes('const JCO_DEBUG_AT_LOAD = Boolean('));
  assert.ok(!code.includes('WebAssembly.promising(exports'), 'promising calls go through jcoPromising');
  assert.ok(code.includes('jcoPromising(exports1'));
});
