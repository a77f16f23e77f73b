// The conformance suite's Node runner (tests/conformance/README.md, "Playing a case"): reads the
// expanded cases (target/conformance/cases.json, from `bash scripts/conformance.sh expand`),
// plays each on the Node store `memory` (MapStorage) through the public API and the fault
// wrappers of src/faults.js, maps each op to an API call and each result to its WIT JSON, and
// writes one transcript per case to target/conformance/transcripts/node/memory/. Then it runs
// the testkit's checker on them (`scripts/conformance.sh check --host node`) and exits with its
// status. Matching expectations and comparing hosts are the checker's job, never this file's.
//
//   node node/test/conformance.mjs        (CKPT_CONFORMANCE_DIR moves target/conformance)

import { createHash } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { isAbsolute, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { CheckpointError, Checkpointer, Codec, MapStorage, RecordingConsumer } from '../src/index.js';
import { AckScript, FaultScript, FaultyConsumer, FaultyStorage } from '../src/faults.js';

const REPO = fileURLToPath(new URL('../../', import.meta.url));
export const FORMAT = 'pipeline-checkpoint-conformance-expanded/1';
const EXPAND = 'bash scripts/conformance.sh expand';

/** `$CKPT_CONFORMANCE_DIR` (relative to the repository), by default target/conformance. */
function conformanceDir(env = process.env) {
  const dir = env.CKPT_CONFORMANCE_DIR || 'target/conformance';
  return isAbsolute(dir) ? dir : join(REPO, dir);
}

// ---------------------------------------------------------------------------------------------
// WIT JSON <-> API values. Inputs: kebab-case keys become camelCase, the integer fields BigInts
// (the API takes them for u32 too), `state` bytes. Outputs: camelCase keys become kebab-case,
// every integer (BigInt or Number) a decimal string, bytes lowercase hex.

const INTEGERS = new Set([
  'sequence', 'epoch', 'offset', 'event-time-ms', 'position', 'at-ms', 'next-offset', 'now-ms',
  'max-retained', 'max-checkpoint-bytes', 'changelog-capacity', 'per-batch', 'max-in-flight', 'ticket',
  'after-sequence', 'max-checkpoints', 'max-bytes',
]);
const camel = (k) => k.replace(/-([a-z0-9])/g, (_, c) => c.toUpperCase());
const kebab = (k) => k.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
const hex = (bytes) => Buffer.from(bytes).toString('hex');
const LARGE_BYTES = 65536;

export function unhex(text) {
  const clean = String(text).replace(/\s+/g, '');
  if (clean.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(clean)) fail(`${JSON.stringify(text)} is not hex`);
  return Uint8Array.from(Buffer.from(clean, 'hex'));
}

/** An expanded input value as the API takes it. */
export function input(v, key = '') {
  if (v === null) return null; // an option's none (a message without offset, flush without state)
  if (Array.isArray(v)) return v.map((x) => input(x, key));
  if (v !== null && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [camel(k), input(x, k)]));
  if (INTEGERS.has(key)) return BigInt(v);
  return key === 'state' ? unhex(v) : v;
}

/** An API value as its WIT JSON. */
export function wit(v) {
  if (typeof v === 'bigint' || typeof v === 'number') return String(v);
  if (v instanceof Uint8Array) { // large bytes by their digest (README, "Transcripts")
    if (v.length > LARGE_BYTES) return { sha256: createHash('sha256').update(v).digest('hex'), length: String(v.length) };
    return hex(v);
  }
  if (Array.isArray(v)) return v.map(wit);
  if (v !== null && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [kebab(k), wit(x)]));
  return v;
}

const ack = (a) => (a.kind === 'acked' ? { acked: wit(a.count) } : { failed: a.message });
const receipt = (r) => ({ ...wit(r), acks: ack(r.acks) });
const resume = (r) => ({
  point: wit(r.point),
  origin: r.origin === 'fallback' ? { fallback: { skipped: wit(r.skipped) } } : r.origin,
  checkpoint: wit(r.checkpoint),
});
const PROGRESS = {
  pending: (p) => ({ pending: wit(p.pending) }),
  checkpointed: (p) => ({ checkpointed: receipt(p.receipt) }),
  covered: (p) => ({ covered: ack(p.acks) }),
};
const progress = (p) => PROGRESS[p.kind](p);
const batch = (b) => ({ checkpoints: b.checkpoints.map(receipt), pending: wit(b.pending), covered: wit(b.covered) });
const ADMISSION = {
  admitted: (a) => ({ admitted: wit(a.ticket) }),
  covered: (a) => ({ covered: ack(a.acks) }),
  backpressure: (a) => ({ backpressure: wit(a.inFlight) }),
};
const admission = (a) => ADMISSION[a.kind](a);

/** The WIT JSON of a `CheckpointError`: `{case: payload}`, or the bare case without one. */
export const errorJson = (e) => (e.payload === undefined ? e.code : { [e.code]: wit(e.payload) });

/** The runner could not carry out a step (recorded as `runner-error`; the case stops). */
export class RunnerError extends Error {}

/**
 * A call's result: `{ok}`; `{error, message}` for a refusal of the component (`message`: the
 * text people see, `error.message`); `{trap}` for anything else.
 */
function outcome(call, toJson = wit) {
  let value;
  try {
    value = call();
  } catch (e) {
    if (e instanceof CheckpointError) return { error: errorJson(e), message: e.message };
    if (e instanceof RunnerError) throw e;
    return { trap: `${e?.name ?? 'exception'}: ${e?.message ?? String(e)}` };
  }
  return { ok: toJson(value) };
}

// ---------------------------------------------------------------------------------------------
// Playing a case

/** The damage of a `corrupt` step (README "Ops"). */
export function damage(bytes, step) {
  const out = Uint8Array.from(bytes);
  if (step['flip-bit'] !== undefined) {
    const bit = Number(step['flip-bit']);
    if (Math.floor(bit / 8) >= out.length) fail('flip-bit past the end');
    out[Math.floor(bit / 8)] ^= 1 << bit % 8;
    return out;
  }
  if (step.replace !== undefined) {
    const [at, with_] = [Number(step.replace.offset), unhex(step.replace.hex)];
    if (at + with_.length > out.length) fail('replace past the end');
    out.set(with_, at);
    return out;
  }
  if (step.truncate !== undefined) return out.slice(0, Number(step.truncate));
  return fail('corrupt needs `flip-bit`, `replace` or `truncate`');
}

const CALLS = new Set(['get', 'commit', 'list-keys']);
const FAULTS = new Set(['unavailable', 'timeout', 'failed', 'conflict', 'time-out-after-apply', 'break-contract']);

class Player {
  store = new MapStorage();
  script = new FaultScript();
  acks = new AckScript();
  recording = new RecordingConsumer();
  codec = new Codec();
  /** @type {{checkpointer?: Checkpointer, driver?: import('../src/index.js').Driver} | null} */
  handle = null;
  /** The case's last successful `export-stage` (kept across `open` and `crash`), for `import-stage`. */
  exported = null;

  constructor(options) {
    this.options = input(options);
  }

  /** A checkpointer over a new connection to the store, through the fault wrappers. */
  connect(options) {
    const storage = new FaultyStorage(this.store, this.script);
    return Checkpointer.open(storage, new FaultyConsumer(this.recording, this.acks), options);
  }

  reopen(why) {
    try {
      this.handle = { checkpointer: this.connect(this.options) };
    } catch (e) {
      throw new RunnerError(`${why}: ${e.message}`);
    }
  }

  checkpointer() {
    const h = this.handle;
    return h?.checkpointer ?? h?.driver?.checkpointer ?? fail('no open checkpointer (the last open failed)');
  }

  driver() {
    return this.handle?.driver ?? fail('no open driver: run `open-driver` first');
  }

  /** Plays one step: its record, and whether the case stops there (trap, runner error). */
  play(step) {
    this.script.reset();
    this.acks.reset();
    let result;
    try {
      for (const f of step.storage ?? []) {
        if (!CALLS.has(f.call) || !FAULTS.has(f.fault)) fail(`unknown storage fault ${JSON.stringify(f)}`);
        this.script.inject(f.call, Number(f.nth), f.fault === 'conflict' ? { conflict: Number(f.index) } : f.fault);
      }
      for (const f of step.consumer ?? []) this.acks.failNth(Number(f.nth));
      result = this.op(step);
    } catch (e) {
      result = { 'runner-error': e instanceof RunnerError ? e.message : String(e?.stack ?? e) };
    }
    const record = { op: step.op };
    for (const field of step.record) record[field] = this.recorded(field, result);
    if (result?.['runner-error'] !== undefined) record.result = result;
    return [record, result?.['runner-error'] !== undefined || result?.trap !== undefined];
  }

  recorded(field, result) {
    switch (field) {
      case 'result': return result;
      case 'calls': return wit({ get: this.script.calls('get'), commit: this.script.calls('commit'), listKeys: this.script.calls('list-keys'), ack: this.acks.calls() });
      case 'acks': return structuredClone(this.recording.acks); // a copy: the logs grow
      case 'failed-acks': return structuredClone(this.acks.failed);
      default: return this.store.listKeys(''); // keys, through no fault wrapper
    }
  }

  /** Runs a step's op: its result, `undefined` for an op without one. */
  op(step) {
    const [run, stage] = [step['run-id'], step.stage];
    const cs = () => input(step.checkpoints);
    switch (step.op) {
      case 'open': {
        const options = input(step.options);
        this.handle = null;
        return outcome(() => {
          this.handle = { checkpointer: this.connect(options) };
          this.options = options;
        }, () => null);
      }
      case 'crash': // drop the instance without running guest code; the store keeps its commits
        this.handle = null;
        return this.reopen('reopening after the crash');
      case 'write': return outcome(() => this.checkpointer().write(input(step.checkpoint), step.batch), receipt);
      case 'get': return outcome(() => this.checkpointer().get(run, stage));
      case 'resume-point': return outcome(() => this.checkpointer().resumePoint(run, stage), resume);
      case 'history': return outcome(() => this.checkpointer().history(run, stage));
      case 'delete': return outcome(() => this.checkpointer().delete(run, stage));
      case 'recover-acks': return outcome(() => this.checkpointer().recoverAcks(run, stage), ack);
      case 'get-at': return outcome(() => this.checkpointer().getAt(run, stage, BigInt(step.sequence)));
      case 'history-page': return outcome(() => this.checkpointer().historyPage(run, stage, input(step.request)));
      case 'history-entries': return outcome(() => this.checkpointer().historyEntries(run, stage));
      case 'reset': return outcome(() => this.checkpointer().reset(input(step.request)));
      case 'create-savepoint': return outcome(() => this.checkpointer().createSavepoint(run, stage, step.name, input(step.sequence, 'sequence')));
      case 'list-savepoints': return outcome(() => this.checkpointer().listSavepoints(run, stage));
      case 'get-savepoint': return outcome(() => this.checkpointer().getSavepoint(run, stage, step.name));
      case 'restore-savepoint': {
        const at = { atMs: BigInt(step['at-ms']), epoch: input(step.epoch, 'epoch') };
        return outcome(() => this.checkpointer().restoreSavepoint(run, stage, step.name, at));
      }
      case 'delete-savepoint': return outcome(() => this.checkpointer().deleteSavepoint(run, stage, step.name));
      case 'list-stages': return outcome(() => this.checkpointer().listStages(step['run-id']));
      case 'export-stage': return outcome(() => {
        const exported = this.checkpointer().exportStage(run, stage);
        this.exported = exported;
        return exported;
      });
      case 'import-stage': {
        if (this.exported === null) fail('import-stage: no successful export-stage earlier in this case');
        const how = { replaceOlder: step['replace-older'], dryRun: step['dry-run'] };
        return outcome(() => this.checkpointer().importStage(this.exported, how));
      }
      case 'open-driver': {
        const options = input(step.driver);
        if (!this.handle?.checkpointer) this.reopen('reopening for the driver'); // closes any driver
        const { checkpointer } = this.handle;
        let driver;
        try {
          driver = checkpointer.openDriver(options);
        } catch (e) {
          this.reopen('reopening after a failed open-driver');
          return outcome(() => { throw e; });
        }
        this.handle = { driver };
        return outcome(() => driver.resumedFrom(), (r) => ({ 'resumed-from': resume(r) }));
      }
      case 'record-processed': return outcome(() => this.driver().recordProcessed(input(step.message), BigInt(step['now-ms'])), progress);
      case 'record-processed-batch': return outcome(() => this.driver().recordProcessedBatch(input(step.messages), BigInt(step['now-ms'])), batch);
      case 'begin': return outcome(() => this.driver().begin(input(step.message)), admission);
      case 'complete': return outcome(() => this.driver().complete(BigInt(step.ticket)));
      case 'flush': return outcome(() => this.driver().flush(BigInt(step['now-ms']), input(step.state)), progress);
      case 'recovered-acks': return outcome(() => this.driver().recoveredAcks(), ack);
      case 'changelog': return outcome(() => this.driver().changelog());
      case 'cursor': return outcome(() => this.driver().cursor());
      case 'resumed-from': return outcome(() => this.driver().resumedFrom(), resume);
      case 'encode': return outcome(() => this.codec.encode(input(step.checkpoint)));
      case 'decode': return outcome(() => this.codec.decode(unhex(step.hex)));
      case 'validate': return outcome(() => this.codec.validate(input(step.checkpoint)), () => null);
      case 'chain-signature': return outcome(() => this.codec.chainSignature(cs()));
      case 'resume-point-for-stage': return outcome(() => this.codec.resumePointForStage(cs(), stage));
      case 'watermark-label': return outcome(() => this.codec.watermarkLabel(input(step.watermark)));
      case 'checkpoint-label': return outcome(() => this.codec.checkpointLabel(input(step.checkpoint)));
      case 'resume-point-label': return outcome(() => this.codec.resumePointLabel(input(step.point)));
      case 'put-raw': return this.putRaw(step.key, unhex(step.hex));
      case 'delete-raw':
        this.store.commit([{ key: step.key, expectedVersion: null, op: 'delete' }]);
        return undefined;
      case 'corrupt': {
        const stored = this.store.get(step.key) ?? fail(`corrupt: nothing is stored under ${JSON.stringify(step.key)}`);
        return this.putRaw(step.key, damage(stored.value, step));
      }
      default:
        return fail(`unknown op ${JSON.stringify(step.op)}`);
    }
  }

  /** One unconditional put behind the component's back (no fault wrapper, not counted). */
  putRaw(key, value) {
    this.store.commit([{ key, expectedVersion: null, op: 'put', value }]);
  }
}

function fail(message) {
  throw new RunnerError(message);
}

/** Plays one expanded case on a fresh MapStorage: its step records, up to a trap or runner error. */
export function playCase(c) {
  const p = new Player(c.options);
  try {
    p.handle = { checkpointer: p.connect(p.options) };
  } catch {
    // Invalid options: no checkpointer until an `open` step succeeds; that step says so.
  }
  const records = [];
  for (const step of c.steps) {
    const [record, stop] = p.play(step);
    records.push(record);
    if (stop) break;
  }
  return records;
}

/** Reads the expanded cases; a missing file names the command that makes it. */
export function readExpanded(dir = conformanceDir()) {
  const file = join(dir, 'cases.json');
  if (!existsSync(file)) throw new Error(`${file} is missing: run \`${EXPAND}\` first (from the repository root)`);
  const doc = JSON.parse(readFileSync(file, 'utf8'));
  if (doc.format !== FORMAT) throw new Error(`${file}: format ${JSON.stringify(doc.format)}, expected ${FORMAT}: run \`${EXPAND}\``);
  return doc;
}

/** Plays every case and writes `transcripts/node/memory/<case>.json`, after deleting `transcripts/node`. */
export function writeTranscripts(expanded, dir = conformanceDir()) {
  const host = join(dir, 'transcripts', 'node');
  rmSync(host, { recursive: true, force: true });
  mkdirSync(join(host, 'memory'), { recursive: true });
  for (const c of expanded.cases) {
    const transcript = { case: c.name, host: 'node', backend: 'memory', steps: playCase(c) };
    writeFileSync(join(host, 'memory', `${c.name}.json`), `${JSON.stringify(transcript, null, 2)}\n`);
  }
  return expanded.cases.length;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  let played;
  try {
    played = writeTranscripts(readExpanded());
  } catch (e) {
    console.error(`conformance node: ${e.message}`);
    process.exit(1);
  }
  console.log(`conformance node: played ${played} cases on memory; checking (scripts/conformance.sh check --host node)`);
  const check = spawnSync('bash', [join(REPO, 'scripts/conformance.sh'), 'check', '--host', 'node'], { cwd: REPO, stdio: 'inherit' });
  process.exit(check.status ?? 1);
}
