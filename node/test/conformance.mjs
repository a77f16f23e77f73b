// The conformance suite's Node runner: plays every case file of tests/conformance/cases against
// the real component through the public Node API, on every backend here (the Map store and the
// JSON-file store), with the fault wrappers of src/faults.js. It mirrors the Rust runner
// (host/tests/conformance.rs) op for op; the schema is tests/conformance/README.md.
//
// Prints `conformance (node): P of N passed (C cases x B backends, F files)` (then the count of
// bad inputs answered with a named error) and exits non-zero
// when any case fails or cannot be played, or a file is not a playable case file.
//
//   node node/test/conformance.mjs [--case NAME] [--cases DIR]

import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import {
  CheckpointError,
  Checkpointer,
  Codec,
  JsonFileStorage,
  MapStorage,
  RecordingConsumer,
} from '../src/index.js';
import { AckScript, FaultScript, FaultyConsumer, FaultyStorage } from '../src/faults.js';

const REPO = fileURLToPath(new URL('../../', import.meta.url));
/** The case files every host plays. */
export const CASES = join(REPO, 'tests/conformance/cases');
const GOLDEN = join(REPO, 'tests/golden');

/** A failure of the runner or of a case (not an answer of the component). */
class CaseFailure extends Error {}
const fail = (message) => {
  throw new CaseFailure(message);
};

// ---------------------------------------------------------------------------------------------
// Backends: each gives fresh connections over one shared store.

const BACKENDS = {
  map() {
    const store = new MapStorage();
    return { open: () => store, close() {} };
  },
  file() {
    const dir = mkdtempSync(join(tmpdir(), 'ckpt-node-conformance-'));
    const path = join(dir, 'store.json');
    return { open: () => new JsonFileStorage(path), close: () => rmSync(dir, { recursive: true, force: true }) };
  },
};

// ---------------------------------------------------------------------------------------------
// JSON -> API values (WIT kebab-case names in the files)

const field = (v, name) => (v !== null && typeof v === 'object' && !Array.isArray(v) ? v[name] : undefined);

function u64Of(v) {
  if (typeof v === 'number' && Number.isSafeInteger(v) && v >= 0) return BigInt(v);
  if (typeof v === 'string' && /^[0-9]+$/.test(v)) return BigInt(v);
  return fail(`${JSON.stringify(v)} is not a u64`);
}

function s64Of(v) {
  if (typeof v === 'number' && Number.isSafeInteger(v)) return BigInt(v);
  if (typeof v === 'string' && /^-?[0-9]+$/.test(v)) return BigInt(v);
  return fail(`${JSON.stringify(v)} is not an s64`);
}

function u32Of(v) {
  const n = u64Of(v);
  return n <= 0xffffffffn ? Number(n) : fail(`${v} is not a u32`);
}

function strOr(v, name, fallback) {
  const s = field(v, name);
  if (s === undefined) return fallback;
  return typeof s === 'string' ? s : fail(`\`${name}\` must be a string, not ${JSON.stringify(s)}`);
}

const u64Or = (v, name, fallback) => (field(v, name) === undefined ? fallback : u64Of(field(v, name)));

function list(v, name) {
  const l = field(v, name);
  if (l === undefined) return [];
  return Array.isArray(l) ? l : fail(`\`${name}\` must be a list, not ${JSON.stringify(l)}`);
}

function hexDecode(s) {
  const clean = s.replace(/\s+/g, '');
  if (clean.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(clean)) fail(`bad hex ${JSON.stringify(s)}`);
  return Uint8Array.from(Buffer.from(clean, 'hex'));
}

const hex = (bytes) => Buffer.from(bytes).toString('hex');

function vector(name) {
  if (name.includes('/') || name.includes('..')) fail(`vector ${JSON.stringify(name)} must be a file name in tests/golden`);
  return Uint8Array.from(readFileSync(join(GOLDEN, name)));
}

function watermarkOf(v) {
  if (v === undefined) return { offset: 0n, eventTimeMs: 0n };
  return { offset: u64Or(v, 'offset', 0n), eventTimeMs: field(v, 'event-time-ms') === undefined ? 0n : s64Of(v['event-time-ms']) };
}

function checkpointOf(v) {
  if (field(v, 'sequence') === undefined) fail('a checkpoint needs `sequence`');
  return {
    runId: strOr(v, 'run-id', 'run'),
    stage: strOr(v, 'stage', 'stage'),
    sequence: u64Of(v.sequence),
    epoch: u64Or(v, 'epoch', 1n),
    watermark: watermarkOf(field(v, 'watermark')),
    sources: list(v, 'sources').map((s) => ({
      name: strOr(s, 'name', ''),
      sequence: u64Or(s, 'sequence', 0n),
      watermark: watermarkOf(field(s, 'watermark')),
    })),
    sinks: list(v, 'sinks').map((s) => ({ name: strOr(s, 'name', ''), position: u64Or(s, 'position', 0n) })),
    operatorStates: list(v, 'operator-states').map((s) => ({ name: strOr(s, 'name', ''), state: hexDecode(strOr(s, 'state', '')) })),
    idempotencyKey: strOr(v, 'idempotency-key', ''),
    atMs: u64Or(v, 'at-ms', 0n),
  };
}

const checkpointsOf = (v, name) => list(v, name).map(checkpointOf);

function optionsOf(v = {}) {
  return {
    namespace: strOr(v, 'namespace', 'test'),
    maxRetained: u32Of(field(v, 'max-retained') ?? 1),
    maxCheckpointBytes: u32Of(field(v, 'max-checkpoint-bytes') ?? 65536),
  };
}

function policyOf(v) {
  if (v === undefined || v === 'per-message') return 'per-message';
  if (v === 'explicit-flush') return 'explicit-flush';
  if (field(v, 'per-batch') !== undefined) return { perBatch: u32Of(v['per-batch']) };
  return fail(`unknown policy ${JSON.stringify(v)}`);
}

function driverOptionsOf(v) {
  const overflow = strOr(v, 'overflow', 'drop-new');
  if (overflow !== 'drop-new' && overflow !== 'overwrite-oldest') fail(`unknown overflow ${overflow}`);
  return {
    runId: strOr(v, 'run-id', 'run'),
    stage: strOr(v, 'stage', 'stage'),
    epoch: u64Or(v, 'epoch', 1n),
    policy: policyOf(field(v, 'policy')),
    changelogCapacity: u32Of(field(v, 'changelog-capacity') ?? 0),
    overflow,
  };
}

function messageOf(v) {
  return {
    id: strOr(v, 'id', ''),
    nextOffset: u64Or(v, 'next-offset', 0n),
    eventTimeMs: field(v, 'event-time-ms') === undefined ? 0n : s64Of(v['event-time-ms']),
  };
}

function idsOf(v, name) {
  return list(v, name).map((s) => (typeof s === 'string' ? s : fail(`\`${name}\` must hold strings`)));
}

/** Bytes given as `hex` or `vector`. */
function bytesOf(step) {
  const [h, v] = [field(step, 'hex'), field(step, 'vector')];
  if (typeof h === 'string' && v === undefined) return hexDecode(h);
  if (h === undefined && typeof v === 'string') return vector(v);
  return fail('give exactly one of `hex` and `vector`');
}

// ---------------------------------------------------------------------------------------------
// API values -> JSON (WIT kebab-case names; variants as {"case": payload} or "case")

const wm = (w) => ({ offset: w.offset, 'event-time-ms': w.eventTimeMs });

function checkpointJson(c) {
  return {
    'run-id': c.runId,
    stage: c.stage,
    sequence: c.sequence,
    epoch: c.epoch,
    watermark: wm(c.watermark),
    sources: c.sources.map((s) => ({ name: s.name, sequence: s.sequence, watermark: wm(s.watermark) })),
    sinks: c.sinks.map((s) => ({ name: s.name, position: s.position })),
    'operator-states': c.operatorStates.map((s) => ({ name: s.name, state: hex(s.state) })),
    'idempotency-key': c.idempotencyKey,
    'at-ms': c.atMs,
  };
}

const pointJson = (p) => ({ 'run-id': p.runId, stage: p.stage, sequence: p.sequence, epoch: p.epoch, watermark: wm(p.watermark) });
const corruptionJson = (c) => ({ kind: c.kind, key: c.key, detail: c.detail });

function resumeJson(r) {
  const origin = r.origin === 'fallback' ? { fallback: { skipped: r.skipped.map(corruptionJson) } } : r.origin;
  return { point: pointJson(r.point), origin };
}

function receiptJson(r) {
  const acks = r.acks.kind === 'acked' ? { acked: r.acks.count } : { failed: r.acks.message };
  return { sequence: r.sequence, version: r.version, replayed: r.replayed, pruned: r.pruned, acks };
}

const progressJson = (p) => (p.kind === 'pending' ? { pending: p.pending } : { checkpointed: receiptJson(p.receipt) });
const batchJson = (b) => ({ checkpoints: b.checkpoints.map(receiptJson), pending: b.pending });
const changelogJson = (c) => ({
  events: c.events.map((e) => ({ kind: e.kind, sequence: e.sequence, watermark: wm(e.watermark) })),
  'overflow-count': c.overflowCount,
  capacity: c.capacity,
});

function errorJson(e) {
  const p = e.payload;
  switch (e.code) {
    case 'invalid':
      return { invalid: { field: p.field, reason: p.reason } };
    case 'regression':
      return {
        regression: {
          'stored-sequence': p.storedSequence,
          'stored-watermark': wm(p.storedWatermark),
          'attempted-sequence': p.attemptedSequence,
          'attempted-watermark': wm(p.attemptedWatermark),
          field: p.field,
        },
      };
    case 'fenced':
      return { fenced: { 'stored-epoch': p.storedEpoch, 'attempted-epoch': p.attemptedEpoch } };
    case 'not-found':
      return 'not-found';
    case 'corrupt':
      return { corrupt: corruptionJson(p) };
    case 'too-large':
      return { 'too-large': { size: p.size, limit: p.limit } };
    default: // conflict, storage: a message
      return { [e.code]: p };
  }
}

let badInputsNamed = 0;

/** `{ok: value}` or `{error: error}`; anything but a component answer fails the step. */
function outcome(run, toJson) {
  let value;
  try {
    value = run();
  } catch (e) {
    if (e instanceof CheckpointError) {
      if (['invalid', 'corrupt', 'too-large'].includes(e.code)) badInputsNamed += 1;
      return { error: errorJson(e) };
    }
    if (e instanceof CaseFailure) throw e;
    return fail(`runtime failure (${e?.name}): ${e?.message}`);
  }
  return { ok: toJson(value) };
}

// ---------------------------------------------------------------------------------------------
// Matching: `expected` is a pattern over the actual value (README "Matching").

const isObject = (v) => v !== null && typeof v === 'object' && !Array.isArray(v);
/** JSON text with BigInts written as plain numbers. */
const show = (v) =>
  JSON.stringify(v, (_, x) => (typeof x === 'bigint' ? `\u0000big${x}\u0000` : x)).replace(/"\\u0000big(-?\d+)\\u0000"/g, '$1');

function numeric(v) {
  if (typeof v === 'bigint') return v;
  if (typeof v === 'number' && Number.isInteger(v)) return BigInt(v);
  if (typeof v === 'string' && /^-?[0-9]+$/.test(v)) return BigInt(v);
  return undefined;
}

function matches(expected, actual, path) {
  const mismatch = () => fail(`at ${path}: expected ${show(expected)}, got ${show(actual)}`);
  if (isObject(expected) && Object.keys(expected).length === 1 && '$vector' in expected) {
    return matches(hex(vector(expected.$vector)), actual, path);
  }
  if (isObject(expected) && Object.keys(expected).length === 1 && '$contains' in expected) {
    return typeof actual === 'string' && actual.includes(expected.$contains) ? undefined : mismatch();
  }
  if (typeof expected === 'string' && isObject(actual) && Object.keys(actual).length === 1 && expected in actual) return undefined;
  if (isObject(expected) && isObject(actual)) {
    for (const [k, ev] of Object.entries(expected)) {
      if (!(k in actual)) fail(`at ${path}: no field \`${k}\` in ${show(actual)}`);
      matches(ev, actual[k], `${path}.${k}`);
    }
    return undefined;
  }
  if (Array.isArray(expected) && Array.isArray(actual)) {
    if (expected.length !== actual.length) fail(`at ${path}: expected ${expected.length} items, got ${actual.length}: ${show(actual)}`);
    expected.forEach((ev, i) => matches(ev, actual[i], `${path}[${i}]`));
    return undefined;
  }
  const [e, a] = [numeric(expected), typeof actual === 'string' ? undefined : numeric(actual)];
  if (e !== undefined && a !== undefined) return e === a ? undefined : mismatch();
  return expected === actual ? undefined : mismatch();
}

// ---------------------------------------------------------------------------------------------
// Playing a case

class Player {
  constructor(backend, options) {
    this.backend = backend;
    this.options = options;
    /** @type {{checkpointer: Checkpointer} | {driver: import('../src/index.js').Driver} | null} */
    this.handle = null;
    this.script = new FaultScript();
    this.acks = new AckScript();
    this.recording = new RecordingConsumer();
    this.codec = new Codec();
  }

  connect(options) {
    const storage = new FaultyStorage(this.backend.open(), this.script);
    const consumer = new FaultyConsumer(this.recording, this.acks);
    return Checkpointer.open(storage, consumer, options);
  }

  checkpointer() {
    if (this.handle?.checkpointer) return this.handle.checkpointer;
    if (this.handle?.driver) return this.handle.driver.checkpointer;
    return fail('no open checkpointer (the last open failed)');
  }

  driver() {
    return this.handle?.driver ?? fail('no open driver: run `open-driver` first');
  }

  raw() {
    return this.backend.open();
  }

  putRaw(key, value) {
    const outcome = this.raw().commit([{ key, expectedVersion: null, op: 'put', value }]);
    if (!outcome.committed) fail(`put-raw ${key}: ${show(outcome)}`);
  }

  stored(key) {
    const entry = this.raw().get(key);
    return entry ? Uint8Array.from(entry.value) : fail(`corrupt: ${key} holds nothing`);
  }

  decodeBytes(bytes) {
    return outcome(() => this.codec.decode(bytes), checkpointJson);
  }

  /** Runs one step's op: its outcome, or `undefined` for steps without a result. */
  runOp(op, step) {
    const run = strOr(step, 'run-id', 'run');
    const stage = strOr(step, 'stage', 'stage');
    switch (op) {
      case 'open': {
        const options = optionsOf(field(step, 'options'));
        this.handle = null;
        let opened;
        const result = outcome(() => {
          opened = this.connect(options);
        }, () => null);
        if (opened) {
          this.handle = { checkpointer: opened };
          this.options = options;
        }
        return result;
      }
      case 'crash': {
        // Drop the instance without running guest code; the store keeps what was committed.
        this.handle = null;
        try {
          this.handle = { checkpointer: this.connect(this.options) };
        } catch (e) {
          fail(`reopen after crash: ${e.message}`);
        }
        return undefined;
      }
      case 'write': {
        const checkpoint = checkpointOf(field(step, 'checkpoint') ?? fail('write needs `checkpoint`'));
        const batch = idsOf(step, 'batch');
        return outcome(() => this.checkpointer().write(checkpoint, batch), receiptJson);
      }
      case 'get':
        return outcome(() => this.checkpointer().get(run, stage), checkpointJson);
      case 'resume-point':
        return outcome(() => this.checkpointer().resumePoint(run, stage), resumeJson);
      case 'history':
        return outcome(() => this.checkpointer().history(run, stage), (h) => h.map(checkpointJson));
      case 'delete':
        return outcome(() => this.checkpointer().delete(run, stage), (n) => n);
      case 'open-driver': {
        const options = driverOptionsOf(field(step, 'driver') ?? {});
        // A checkpointer holds no state but its options: when a driver is open, a new instance
        // is the same (as the Rust runner does).
        let checkpointer = this.handle?.checkpointer;
        this.handle = null;
        if (!checkpointer) {
          try {
            checkpointer = this.connect(this.options);
          } catch (e) {
            fail(`reopen for driver: ${e.message}`);
          }
        }
        let driver;
        const result = outcome(() => {
          driver = checkpointer.openDriver(options);
          return driver.resumedFrom();
        }, (resumed) => ({ 'resumed-from': resumeJson(resumed) }));
        this.handle = driver ? { driver } : { checkpointer: this.connect(this.options) };
        return result;
      }
      case 'record-processed': {
        const message = messageOf(field(step, 'message') ?? fail('needs `message`'));
        const now = u64Or(step, 'now-ms', 0n);
        return outcome(() => this.driver().recordProcessed(message, now), progressJson);
      }
      case 'record-processed-batch': {
        const messages = list(step, 'messages').map(messageOf);
        const now = u64Or(step, 'now-ms', 0n);
        return outcome(() => this.driver().recordProcessedBatch(messages, now), batchJson);
      }
      case 'flush':
        return outcome(() => this.driver().flush(u64Or(step, 'now-ms', 0n)), progressJson);
      case 'changelog':
        return outcome(() => this.driver().changelog(), changelogJson);
      case 'cursor':
        return outcome(() => this.driver().cursor(), pointJson);
      case 'resumed-from':
        return outcome(() => this.driver().resumedFrom(), resumeJson);
      case 'encode': {
        const c = checkpointOf(field(step, 'checkpoint') ?? fail('encode needs `checkpoint`'));
        return outcome(() => this.codec.encode(c), hex);
      }
      case 'decode':
        return this.decodeBytes(bytesOf(step));
      case 'decode-encode': {
        const bytes = bytesOf(step);
        let decoded;
        try {
          decoded = this.codec.decode(bytes);
        } catch (e) {
          fail(`decode: ${e.message}`);
        }
        const again = hex(this.codec.encode(decoded));
        if (again !== hex(bytes)) fail(`re-encoding differs: ${again} vs ${hex(bytes)}`);
        return { ok: checkpointJson(decoded) };
      }
      case 'validate': {
        const c = checkpointOf(field(step, 'checkpoint') ?? fail('validate needs `checkpoint`'));
        return outcome(() => this.codec.validate(c), () => null);
      }
      case 'chain-signature': {
        const cs = checkpointsOf(step, 'checkpoints');
        return outcome(() => this.codec.chainSignature(cs), (s) => s);
      }
      case 'resume-point-for-stage': {
        const cs = checkpointsOf(step, 'checkpoints');
        return outcome(() => this.codec.resumePointForStage(cs, stage), pointJson);
      }
      case 'put-raw': {
        const key = strOr(step, 'key', '');
        const c = field(step, 'checkpoint');
        this.putRaw(key, c === undefined ? bytesOf(step) : this.codec.encode(checkpointOf(c)));
        return undefined;
      }
      case 'delete-raw': {
        const key = strOr(step, 'key', '');
        this.raw().commit([{ key, expectedVersion: null, op: 'delete' }]);
        return undefined;
      }
      case 'corrupt': {
        const key = strOr(step, 'key', '');
        let bytes = this.stored(key);
        if (field(step, 'flip-bit') !== undefined) {
          const bit = Number(u64Of(step['flip-bit']));
          if (Math.floor(bit / 8) >= bytes.length) fail('flip-bit past the end');
          bytes[Math.floor(bit / 8)] ^= 1 << bit % 8;
        } else if (field(step, 'replace') !== undefined) {
          const at = Number(u64Or(step.replace, 'offset', 0n));
          const replacement = hexDecode(strOr(step.replace, 'hex', ''));
          if (at + replacement.length > bytes.length) fail('replace past the end');
          bytes.set(replacement, at);
        } else if (field(step, 'truncate') !== undefined) {
          bytes = bytes.slice(0, Number(u64Of(step.truncate)));
        } else {
          fail('corrupt needs `flip-bit`, `replace` or `truncate`');
        }
        this.putRaw(key, bytes);
        return undefined;
      }
      case 'decode-truncations': {
        const bytes = bytesOf(step);
        const expect = field(step, 'expect') ?? fail('needs `expect`');
        for (let len = 0; len < bytes.length; len++) {
          try {
            matches(familyPattern(expect), this.decodeBytes(bytes.subarray(0, len)), '');
          } catch (e) {
            fail(`truncated to ${len} bytes: ${e.message}`);
          }
        }
        return undefined;
      }
      case 'decode-bit-flips': {
        const bytes = bytesOf(step);
        const range = list(step, 'bytes');
        if (range.length !== 2) fail('`bytes` is [from, to)');
        const [from, to] = range.map((b) => resolve(Number(u64Of(b)), bytes, step));
        for (let at = from; at < to; at++) {
          for (let bit = 0; bit < 8; bit++) {
            const flipped = Uint8Array.from(bytes);
            flipped[at] ^= 1 << bit;
            const set = (flipped[at] & (1 << bit)) !== 0;
            const specific = set ? field(step, 'expect-set') : field(step, 'expect-cleared');
            const expect = specific ?? field(step, 'expect') ?? fail('needs `expect`');
            try {
              matches(familyPattern(expect), this.decodeBytes(flipped), '');
            } catch (e) {
              fail(`bit ${bit} of byte ${at} flipped: ${e.message}`);
            }
          }
        }
        return undefined;
      }
      default:
        return fail(`unknown op ${JSON.stringify(op)}`);
    }
  }

  keys() {
    return this.raw().listKeys('');
  }
}

/** `bytes` bounds count from the end when the step says `"from-end": true`. */
function resolve(at, bytes, step) {
  const resolved = field(step, 'from-end') === true ? bytes.length - at : at;
  if (resolved < 0 || resolved > bytes.length) fail(`byte bound ${resolved} outside 0..=${bytes.length}`);
  return resolved;
}

/** A generated family's `expect` is a corruption kind: decode must fail with it. */
const familyPattern = (kind) => ({ error: { corrupt: { kind } } });

const STEP_KEYS = new Set([
  'op', 'note', 'storage', 'consumer', 'expect', 'acks', 'failed-acks', 'keys', 'storage-calls',
  'run-id', 'stage', 'checkpoint', 'checkpoints', 'batch', 'options', 'driver', 'message',
  'messages', 'now-ms', 'hex', 'vector', 'key', 'flip-bit', 'replace', 'truncate', 'bytes',
  'from-end', 'expect-set', 'expect-cleared',
]);

const CASE_KEYS = new Set(['name', 'description', 'covers', 'options', 'steps', 'acks', 'failed-acks', 'keys', 'skip']);

function storageFault(f) {
  const call = strOr(f, 'call', '');
  if (!['get', 'commit', 'list-keys'].includes(call)) fail(`unknown storage call ${JSON.stringify(call)}`);
  const nth = u32Of(field(f, 'nth') ?? 1);
  const kind = strOr(f, 'fault', '');
  if (kind === 'conflict') return [call, nth, { conflict: u32Of(field(f, 'index') ?? 0) }];
  if (!['unavailable', 'timeout', 'failed', 'time-out-after-apply'].includes(kind)) {
    fail(`unknown storage fault ${JSON.stringify(kind)}`);
  }
  return [call, nth, kind];
}

function playStep(p, step) {
  if (!isObject(step)) fail('a step is an object');
  for (const k of Object.keys(step)) if (!STEP_KEYS.has(k)) fail(`unknown step field \`${k}\``);
  const op = strOr(step, 'op', '');
  p.script.reset();
  p.acks.reset();
  for (const f of list(step, 'storage')) p.script.inject(...storageFault(f));
  for (const f of list(step, 'consumer')) {
    if (strOr(f, 'fault', 'fail') !== 'fail') fail('the only consumer fault is `fail`');
    p.acks.failNth(u32Of(field(f, 'nth') ?? 1));
  }
  const result = p.runOp(op, step);
  const calls = {
    get: p.script.calls('get'),
    commit: p.script.calls('commit'),
    'list-keys': p.script.calls('list-keys'),
    ack: p.acks.calls(),
  };
  p.script.reset();
  p.acks.reset();
  if (result !== undefined) {
    matches(field(step, 'expect') ?? 'ok', result, 'result');
  } else if (field(step, 'expect') !== undefined && !op.startsWith('decode-')) {
    fail(`\`${op}\` has no result to expect`);
  }
  if (field(step, 'storage-calls') !== undefined) matches(step['storage-calls'], calls, 'storage-calls');
  checkLogs(p, step);
}

function checkLogs(p, expected) {
  if (field(expected, 'acks') !== undefined) matches(expected.acks, p.recording.acks, 'acks');
  if (field(expected, 'failed-acks') !== undefined) matches(expected['failed-acks'], p.acks.failed, 'failed-acks');
  if (field(expected, 'keys') !== undefined) matches(expected.keys, p.keys(), 'keys');
}

function playCase(c, backend) {
  if (!isObject(c)) fail('a case is an object');
  for (const k of Object.keys(c)) if (!CASE_KEYS.has(k)) fail(`unknown case field \`${k}\``);
  const options = optionsOf(field(c, 'options'));
  const p = new Player(backend, options);
  // A case whose options are invalid starts with no checkpointer; its first step says so.
  try {
    p.handle = { checkpointer: p.connect(options) };
  } catch (e) {
    if (!(e instanceof CheckpointError)) throw e;
  }
  list(c, 'steps').forEach((step, i) => {
    try {
      playStep(p, step);
    } catch (e) {
      throw new CaseFailure(`step ${i} (${field(step, 'op') ?? '?'}): ${e.message}`);
    }
  });
  try {
    checkLogs(p, c);
  } catch (e) {
    throw new CaseFailure(`after the last step: ${e.message}`);
  }
}

/**
 * Plays every case file on every backend.
 * @param {{dir?: string, only?: string}} [choice] The case directory (default: the suite's) and
 *   one case name to play alone.
 * @returns {{passed: number, total: number, cases: number, backends: number, files: number, failures: string[]}}
 */
export function runConformance({ dir = CASES, only } = {}) {
  const backends = Object.keys(BACKENDS);
  const files = readdirSync(dir).sort();
  const names = new Set();
  const failures = [];
  let cases = 0;
  let passed = 0;
  let played = 0;
  for (const file of files) {
    if (!file.endsWith('.json')) {
      failures.push(`${file}: not a .json case file; no runner plays it`);
      continue;
    }
    let doc;
    try {
      doc = JSON.parse(readFileSync(join(dir, file), 'utf8'));
    } catch (e) {
      failures.push(`${file}: not JSON: ${e.message}`);
      continue;
    }
    const fileCases = field(doc, 'cases');
    if (!Array.isArray(fileCases) || fileCases.length === 0) {
      failures.push(`${file}: no \`cases\``);
      continue;
    }
    played += 1;
    for (const c of fileCases) {
      const name = strOr(c, 'name', '');
      if (name === '' || names.has(name)) {
        failures.push(`${file}: case name ${JSON.stringify(name)} empty or repeated`);
        continue;
      }
      names.add(name);
      if (only !== undefined && name !== only) continue;
      cases += 1;
      for (const b of backends) {
        const backend = BACKENDS[b]();
        try {
          playCase(c, backend);
          passed += 1;
        } catch (e) {
          failures.push(`${file} / ${name} / ${b}: ${e instanceof CaseFailure ? e.message : e.stack}`);
        } finally {
          backend.close();
        }
      }
    }
  }
  return { passed, total: cases * backends.length, cases, backends: backends.length, files: played, failures };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const arg = (flag) => (process.argv.includes(flag) ? process.argv[process.argv.indexOf(flag) + 1] : undefined);
  const r = runConformance({ dir: arg('--cases'), only: arg('--case') });
  for (const f of r.failures) console.error(`FAILED ${f}`);
  console.log(`conformance (node): ${r.passed} of ${r.total} passed (${r.cases} cases x ${r.backends} backends, ${r.files} files)`);
  console.log(`bad inputs (node): ${badInputsNamed} answered with a named error`);
  if (r.files === 0) console.error('no case files played');
  process.exitCode = r.failures.length === 0 && r.files > 0 && r.cases > 0 ? 0 : 1;
}
