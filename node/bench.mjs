// Per-call cost of `write` and `get` through the component in the Node host, on the Map store
// (a benchmark, not a test: scripts/bench.sh runs it after the Rust benchmarks; run-tests.sh
// does not). Same workload as the Rust host's P2 (host/benches/checkpoint.rs): max-retained 3,
// the same small checkpoint (two sources, a sink, 64 bytes of operator state), one message id
// acked per write, a consumer that does nothing.
//
// Each figure is the mean wall time of one call after a warm-up, so it holds the whole path:
// argument checks and conversion in JS, jco's lowering, the guest's work, the store and
// consumer calls back into JS, and the lifting of the answer.
//
// Runs node/build.sh first (npm packages and jco bindings; quick when up to date), with its
// output on stderr. Prints exactly one line on stdout:
//
//   per-call node write_us=<float> get_us=<float> calls=<n>
//
//   node node/bench.mjs [--calls N] [--warmup N]

import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

function option(name, fallback) {
  const at = process.argv.indexOf(name);
  if (at < 0) return fallback;
  const value = Number(process.argv[at + 1]);
  if (!Number.isSafeInteger(value) || value < 1) {
    console.error(`bench: ${name} needs a positive integer`);
    process.exit(2);
  }
  return value;
}

const calls = option('--calls', 20000);
const warmup = option('--warmup', 2000);

const build = spawnSync('bash', [fileURLToPath(new URL('build.sh', import.meta.url))], { stdio: ['ignore', 2, 2] });
if (build.status !== 0) {
  console.error('bench: node/build.sh failed');
  process.exit(1);
}
const { Checkpointer, MapStorage, NullConsumer } = await import('./src/index.js');

function smallCheckpoint(sequence) {
  return {
    runId: 'bench-run',
    stage: 'p2',
    sequence,
    epoch: 1n,
    watermark: { offset: sequence * 100n, eventTimeMs: 1_700_000_000_000n + sequence },
    sources: [
      { name: 'orders', sequence, watermark: { offset: sequence * 60n, eventTimeMs: 1_700_000_000_000n } },
      { name: 'payments', sequence, watermark: { offset: sequence * 40n, eventTimeMs: 1_700_000_000_000n } },
    ],
    sinks: [{ name: 'enriched', position: sequence * 100n }],
    operatorStates: [{ name: 'window', state: new Uint8Array(64).fill(7) }],
    idempotencyKey: `1-${sequence}`,
    atMs: 1_700_000_000_500n + sequence,
  };
}

const checkpointer = Checkpointer.open(new MapStorage(), new NullConsumer(), {
  namespace: 'bench',
  maxRetained: 3,
  maxCheckpointBytes: 4 << 20,
});

// Inputs are built before timing; every write needs a growing sequence.
const total = warmup + calls;
const checkpoints = Array.from({ length: total }, (_, i) => smallCheckpoint(BigInt(i + 1)));
const batches = checkpoints.map((c) => [`m-${c.sequence}`]);

for (let i = 0; i < warmup; i++) {
  checkpointer.write(checkpoints[i], batches[i]);
  checkpointer.get('bench-run', 'p2');
}

let start = process.hrtime.bigint();
for (let i = warmup; i < total; i++) checkpointer.write(checkpoints[i], batches[i]);
const writeNs = Number(process.hrtime.bigint() - start);

let last;
start = process.hrtime.bigint();
for (let i = 0; i < calls; i++) last = checkpointer.get('bench-run', 'p2');
const getNs = Number(process.hrtime.bigint() - start);

if (last.sequence !== BigInt(total)) {
  console.error(`bench: the latest is sequence ${last.sequence}, expected ${total}: the writes did not all land`);
  process.exit(1);
}
const us = (ns) => (ns / calls / 1000).toFixed(3);
console.log(`per-call node write_us=${us(writeNs)} get_us=${us(getNs)} calls=${calls}`);
