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
// Then, on a new Map store, a checkpoint with one large operator state (1 and 16 MiB) is written
// and read back, best of a few rounds (the same rows as python/bench.py, to compare MB/s, in
// 10^6 bytes per second).
//
// Runs node/build.sh first (npm packages and jco bindings; quick when up to date), with its
// output on stderr. Prints on stdout, the per-call line first:
//
//   per-call node write_us=<float> get_us=<float> calls=<n>
//   floor node write_us=<float> get_us=<float> floor_write_us=<float> floor_get_us=<float> noop_us=<float> calls=<n>
//   large-state node mib=<n> write_ms=<float> get_ms=<float> write_mb_s=<float> get_mb_s=<float>
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

// The floor (tests/floor-guest, built to target/floor.wasm by `make floor`): the same import
// calls as `write` and `get` with the same payloads, and nothing else. Transpiled here by jco
// (`--instantiation sync`, with tools/patch-generated.mjs, which only removes jco's own per-call
// costs) into target/node-floor, without the sandbox's metering (its cost is the host's), and
// given the least a JS import can do on the same kind of store. The per-call workload above runs
// through a new checkpointer and through the floor, interleaved group by group; each figure is
// the median of the group means. Prints:
//
//   floor node write_us=<float> get_us=<float> floor_write_us=<float> floor_get_us=<float> noop_us=<float> calls=<n>
{
  const { existsSync, readFileSync } = await import('node:fs');
  const { pathToFileURL } = await import('node:url');
  const repo = fileURLToPath(new URL('..', import.meta.url));
  const floorWasm = `${repo}target/floor.wasm`;
  const floorDir = `${repo}target/node-floor`;
  if (!existsSync(floorWasm)) {
    console.error(`bench: no floor component at ${floorWasm}: build it with \`make floor\``);
    process.exit(1);
  }
  const nodeDir = fileURLToPath(new URL('.', import.meta.url));
  for (const [cmd, args] of [
    ['npx', ['--no-install', 'jco', 'transpile', floorWasm, '-o', floorDir, '--instantiation', 'sync', '--name', 'floor', '--quiet']],
    [process.execPath, ['tools/patch-generated.mjs', `${floorDir}/floor.js`]],
  ]) {
    const r = spawnSync(cmd, args, { cwd: nodeDir, stdio: ['ignore', 2, 2] });
    if (r.status !== 0) {
      console.error(`bench: ${cmd} ${args.join(' ')} failed`);
      process.exit(1);
    }
  }
  const { instantiate } = await import(pathToFileURL(`${floorDir}/floor.js`).href);
  const floorStore = new MapStorage();
  const floorConsumer = new NullConsumer();
  const root = instantiate((name) => new WebAssembly.Module(readFileSync(`${floorDir}/${name}`)), {
    'pipeline:checkpoint/storage': {
      get(key) {
        const found = floorStore.get(key);
        return found === null ? { tag: 'missing' } : { tag: 'found', val: found };
      },
      commit(writes) {
        const outcome = floorStore.commit(writes.map((w) => (w.op.tag === 'put'
          ? { key: w.key, expectedVersion: w.expectedVersion ?? null, op: 'put', value: w.op.val }
          : { key: w.key, expectedVersion: w.expectedVersion ?? null, op: 'delete' })));
        return Array.isArray(outcome.committed)
          ? { tag: 'committed', val: outcome.committed }
          : { tag: 'conflict', val: outcome.conflict };
      },
    },
    'pipeline:checkpoint/consumer': {
      ack(ids) {
        floorConsumer.ack(ids);
      },
    },
  });
  const floor = root.floor;

  const realStore = new MapStorage();
  const real = Checkpointer.open(realStore, new NullConsumer(), {
    namespace: 'bench',
    maxRetained: 3,
    maxCheckpointBytes: 4 << 20,
  });
  const group = 50;
  const groups = Math.max(1, Math.floor(calls / group));
  const skip = Math.max(1, Math.floor(warmup / group));
  const inputs = Array.from({ length: (skip + groups) * group + 1 }, (_, i) => smallCheckpoint(BigInt(i + 1)));
  const ids = inputs.map((c) => [`m-${c.sequence}`]);
  real.write(inputs[0], ids[0]);
  const key = realStore.listKeys('').find((k) => k.endsWith('/latest'));
  const payload = realStore.get(key).value;

  const timed = (body, first) => {
    const t0 = process.hrtime.bigint();
    for (let i = first; i < first + group; i++) body(i);
    return Number(process.hrtime.bigint() - t0) / group / 1000;
  };
  const figures = { write: [], fwrite: [], get: [], fget: [], noop: [] };
  let next = 1;
  for (let g = 0; g < skip + groups; g++) {
    const w = timed((i) => real.write(inputs[i], ids[i]), next);
    const f = timed((i) => floor.writeFloor(key, payload, 3, ids[i]), next);
    next += group;
    if (g >= skip) {
      figures.write.push(w);
      figures.fwrite.push(f);
    }
  }
  for (let g = 0; g < skip + groups; g++) {
    const r = timed(() => real.get('bench-run', 'p2'), 0);
    const f = timed(() => floor.getFloor(key), 0);
    const e = timed(() => floor.noop(), 0);
    if (g >= skip) {
      figures.get.push(r);
      figures.fget.push(f);
      figures.noop.push(e);
    }
  }
  if (real.get('bench-run', 'p2').sequence !== BigInt(next) || floorStore.get(key) === null) {
    console.error('bench: the floor\'s or the real writes did not all land');
    process.exit(1);
  }
  const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  const m = Object.fromEntries(Object.entries(figures).map(([k, v]) => [k, median(v).toFixed(3)]));
  console.log(
    `floor node write_us=${m.write} get_us=${m.get} floor_write_us=${m.fwrite} ` +
      `floor_get_us=${m.fget} noop_us=${m.noop} calls=${groups * group}`,
  );
}

// Large operator state: best of `rounds` writes and gets of one checkpoint holding `mib` MiB,
// each round on a new checkpointer and store (a 16 MiB state written over another does not fit
// the 64 MiB sandbox: the guest holds both encodings at once).
const MiB = 1 << 20;
for (const [mib, rounds] of [[1, 5], [16, 3]]) {
  const state = new Uint8Array(mib * MiB).map((_, i) => i & 0xff);
  let bestWrite = Infinity;
  let bestGet = Infinity;
  for (let sequence = 1n; sequence <= BigInt(rounds); sequence++) {
    const large = Checkpointer.open(new MapStorage(), new NullConsumer(), {
      namespace: 'bench',
      maxRetained: 1,
      maxCheckpointBytes: (mib + 1) * MiB,
    });
    const c = {
      runId: 'bench-run',
      stage: 'large',
      sequence,
      epoch: 1n,
      watermark: { offset: sequence, eventTimeMs: 0n },
      sources: [],
      sinks: [],
      operatorStates: [{ name: 'window', state }],
      idempotencyKey: undefined,
      atMs: sequence,
    };
    const t0 = process.hrtime.bigint();
    large.write(c, []);
    const t1 = process.hrtime.bigint();
    const back = large.get('bench-run', 'large');
    const t2 = process.hrtime.bigint();
    const got = back.operatorStates[0].state;
    if (back.sequence !== sequence || got.length !== state.length || got[12345] !== state[12345]) {
      console.error(`bench: the ${mib} MiB state did not come back`);
      process.exit(1);
    }
    bestWrite = Math.min(bestWrite, Number(t1 - t0));
    bestGet = Math.min(bestGet, Number(t2 - t1));
  }
  const mb = (mib * MiB) / 1e6;
  console.log(
    `large-state node mib=${mib} write_ms=${(bestWrite / 1e6).toFixed(1)} get_ms=${(bestGet / 1e6).toFixed(1)} ` +
      `write_mb_s=${(mb / (bestWrite / 1e9)).toFixed(1)} get_mb_s=${(mb / (bestGet / 1e9)).toFixed(1)}`,
  );
}
