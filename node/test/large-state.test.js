// Same limits in every host: a checkpoint the options and the sandbox allow is writable and
// readable. 1, 4 and 16 MiB of operator state under a 20 MiB `maxCheckpointBytes`, on the Map
// store; the time of each write and read is printed.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { Checkpointer, MapStorage, Runtime } from '../src/index.js';

const MiB = 1 << 20;
const OPTIONS = { namespace: 'large', maxRetained: 1, maxCheckpointBytes: 20 * MiB };
// A write needs up to 6 x 20 MiB + 2 MiB of guest memory: the component refuses this limit in
// the default 64 MiB sandbox.
const RUNTIME = new Runtime({ maxMemoryBytes: 128 * MiB });

for (const mib of [1, 4, 16]) {
  test(`${mib} MiB of operator state is written and read back`, () => {
    const state = new Uint8Array(mib * MiB).map((_, i) => i & 0xff);
    const checkpoint = {
      runId: 'run', stage: 'stage', sequence: 1n, epoch: 1n,
      watermark: { offset: 1n, eventTimeMs: 0n }, atMs: 0n,
      operatorStates: [{ name: 'window', state }],
    };
    const checkpointer = Checkpointer.open(new MapStorage(), null, OPTIONS, { runtime: RUNTIME });
    const start = performance.now();
    const receipt = checkpointer.write(checkpoint);
    const wrote = performance.now();
    const back = checkpointer.get('run', 'stage');
    const read = performance.now();
    assert.equal(receipt.sequence, 1n);
    const got = back.operatorStates[0].state;
    assert.equal(got.length, state.length);
    assert.ok(Buffer.from(got.buffer, got.byteOffset, got.length).equals(state), 'the state comes back byte for byte');
    console.log(`  node: ${String(mib).padStart(2)} MiB of operator state: write ${((wrote - start) / 1000).toFixed(2)} s, read ${((read - wrote) / 1000).toFixed(2)} s`);
  });
}
