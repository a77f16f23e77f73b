// Conversions between the public JS values and the shapes jco's bindings take and give.
//
// jco lowers integers without range checks (a u64 wraps with BigInt.asUintN, a u32 with
// `>>> 0`) and replaces lone surrogates in strings silently, so every value from the caller is
// checked here first: a bad one is refused with `InvalidInputError` naming the field (WIT
// spelling, as the component names fields), before the component is called.

import { InvalidInputError } from './errors.js';

const U64_MAX = (1n << 64n) - 1n;
const S64_MIN = -(1n << 63n);
const S64_MAX = (1n << 63n) - 1n;
const U32_MAX = 2 ** 32 - 1;

function invalid(field, reason) {
  return new InvalidInputError({ field, reason });
}

/** An integer given as a BigInt, or as a Number that is a safe integer. */
function integer(value, field, min, max, what) {
  let big;
  if (typeof value === 'bigint') {
    big = value;
  } else if (typeof value === 'number' && Number.isSafeInteger(value)) {
    big = BigInt(value);
  } else {
    throw invalid(field, `must be ${what} (a BigInt, or a safe-integer Number), not ${describe(value)}`);
  }
  if (big < min || big > max) {
    throw invalid(field, `must be ${what}, not ${big}`);
  }
  return big;
}

function describe(value) {
  if (value === null) return 'null';
  if (typeof value === 'string') return `the string ${JSON.stringify(value)}`;
  if (typeof value === 'number' || typeof value === 'bigint') return `${typeof value} ${value}`;
  return typeof value;
}

/** @returns {bigint} */
export function u64(value, field) {
  return integer(value, field, 0n, U64_MAX, 'an integer from 0 to 18446744073709551615');
}

/** @returns {bigint} */
export function s64(value, field) {
  return integer(value, field, S64_MIN, S64_MAX, 'an integer from -9223372036854775808 to 9223372036854775807');
}

/** @returns {number} */
export function u32(value, field) {
  return Number(integer(value, field, 0n, BigInt(U32_MAX), 'an integer from 0 to 4294967295'));
}

/** A WIT string: a JS string of well-formed Unicode (no lone surrogates). */
export function string(value, field) {
  if (typeof value !== 'string') {
    throw invalid(field, `must be a string, not ${describe(value)}`);
  }
  if (!value.isWellFormed()) {
    throw invalid(field, 'must be well-formed Unicode (it holds a lone surrogate)');
  }
  return value;
}

/** @returns {Uint8Array} */
export function bytes(value, field) {
  if (!(value instanceof Uint8Array)) {
    throw invalid(field, `must be a Uint8Array (or Buffer), not ${describe(value)}`);
  }
  return value;
}

function record(value, field) {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw invalid(field, `must be an object, not ${Array.isArray(value) ? 'an array' : describe(value)}`);
  }
  return value;
}

function array(value, field) {
  if (!Array.isArray(value)) {
    throw invalid(field, `must be an array, not ${describe(value)}`);
  }
  return value;
}

/** An optional list: absent (`undefined`) is empty. */
function listOr(value, field, each) {
  return value === undefined ? [] : array(value, field).map((item, i) => each(item, `${field}[${i}]`));
}

function watermark(value, field) {
  const w = record(value, field);
  return { offset: u64(w.offset, `${field}.offset`), eventTimeMs: s64(w.eventTimeMs, `${field}.event-time-ms`) };
}

/**
 * A checkpoint as jco lowers it. `sources`, `sinks`, `operatorStates` default to `[]` and
 * `idempotencyKey` to `''`; everything else is required.
 * @param {import('./checkpointer.js').Checkpoint} value
 * @param {string} [field] Path prefix for error messages.
 */
export function checkpointIn(value, field = 'checkpoint') {
  const c = record(value, field);
  const at = (name) => (field === 'checkpoint' ? name : `${field}.${name}`);
  return {
    runId: string(c.runId, at('run-id')),
    stage: string(c.stage, at('stage')),
    sequence: u64(c.sequence, at('sequence')),
    epoch: u64(c.epoch, at('epoch')),
    watermark: watermark(c.watermark, at('watermark')),
    sources: listOr(c.sources, at('sources'), (s, f) => {
      record(s, f);
      return { name: string(s.name, `${f}.name`), sequence: u64(s.sequence, `${f}.sequence`), watermark: watermark(s.watermark, `${f}.watermark`) };
    }),
    sinks: listOr(c.sinks, at('sinks'), (s, f) => {
      record(s, f);
      return { name: string(s.name, `${f}.name`), position: u64(s.position, `${f}.position`) };
    }),
    operatorStates: listOr(c.operatorStates, at('operator-states'), (s, f) => {
      record(s, f);
      return { name: string(s.name, `${f}.name`), state: bytes(s.state, `${f}.state`) };
    }),
    idempotencyKey: c.idempotencyKey === undefined ? '' : string(c.idempotencyKey, at('idempotency-key')),
    atMs: u64(c.atMs, at('at-ms')),
  };
}

/** A list of checkpoints as jco lowers it. */
export function checkpointsIn(value, field = 'checkpoints') {
  return array(value, field).map((c, i) => checkpointIn(c, `${field}[${i}]`));
}

/** Message ids to ack. */
export function idsIn(value, field = 'batch') {
  return array(value, field).map((id, i) => string(id, `${field}[${i}]`));
}

/** @param {import('./checkpointer.js').Options} value */
export function optionsIn(value) {
  const o = record(value, 'options');
  return {
    namespace: string(o.namespace, 'namespace'),
    maxRetained: u32(o.maxRetained, 'max-retained'),
    maxCheckpointBytes: u32(o.maxCheckpointBytes, 'max-checkpoint-bytes'),
  };
}

function policyIn(value) {
  if (value === 'per-message' || value === 'explicit-flush') return { tag: value };
  if (value !== null && typeof value === 'object' && 'perBatch' in value) {
    return { tag: 'per-batch', val: u32(value.perBatch, 'policy.per-batch') };
  }
  throw invalid('policy', `must be 'per-message', 'explicit-flush' or {perBatch: n}, not ${describe(value)}`);
}

/**
 * Driver options as jco lowers them. `changelogCapacity` defaults to 0, `overflow` to
 * `'drop-new'`, `maxInFlight` to 1024.
 * @param {import('./checkpointer.js').DriverOptions} value
 */
export function driverOptionsIn(value) {
  const o = record(value, 'driver-options');
  const overflow = o.overflow === undefined ? 'drop-new' : o.overflow;
  if (overflow !== 'drop-new' && overflow !== 'overwrite-oldest') {
    throw invalid('overflow', `must be 'drop-new' or 'overwrite-oldest', not ${describe(overflow)}`);
  }
  return {
    runId: string(o.runId, 'run-id'),
    stage: string(o.stage, 'stage'),
    epoch: u64(o.epoch, 'epoch'),
    policy: policyIn(o.policy),
    changelogCapacity: o.changelogCapacity === undefined ? 0 : u32(o.changelogCapacity, 'changelog-capacity'),
    overflow,
    maxInFlight: o.maxInFlight === undefined ? DEFAULT_MAX_IN_FLIGHT : u32(o.maxInFlight, 'max-in-flight'),
  };
}

/** The default `maxInFlight` of a driver, as in the Python host. */
export const DEFAULT_MAX_IN_FLIGHT = 1024;

/**
 * A message from a source (what `begin` takes); `source` defaults to `''`, `offset` to none
 * (`undefined` or `null`), `eventTimeMs` to 0.
 * @param {import('./checkpointer.js').Message} value
 */
export function sourceMessageIn(value, field = 'message') {
  const m = record(value, field);
  const out = {
    id: string(m.id, `${field}.id`),
    source: m.source === undefined ? '' : string(m.source, `${field}.source`),
    eventTimeMs: m.eventTimeMs === undefined ? 0n : s64(m.eventTimeMs, `${field}.event-time-ms`),
  };
  // jco lowers `option<u64>` from `undefined` (none) or the value.
  if (m.offset !== undefined && m.offset !== null) out.offset = u64(m.offset, `${field}.offset`);
  return out;
}

/**
 * An `option<stage-state>` as jco lowers it: `undefined` for none. `sinks` and
 * `operatorStates` default to `[]`.
 * @param {import('./checkpointer.js').StageStateInput | null | undefined} value
 */
export function stageStateIn(value, field = 'state') {
  if (value === undefined || value === null) return undefined;
  const s = record(value, field);
  return {
    sinks: listOr(s.sinks, `${field}.sinks`, (x, f) => {
      record(x, f);
      return { name: string(x.name, `${f}.name`), position: u64(x.position, `${f}.position`) };
    }),
    operatorStates: listOr(s.operatorStates, `${field}.operator-states`, (x, f) => {
      record(x, f);
      return { name: string(x.name, `${f}.name`), state: bytes(x.state, `${f}.state`) };
    }),
  };
}

/** An `option<u64>` as jco lowers it: `undefined` for none (`undefined` or `null`). */
export function optionU64(value, field) {
  return value === undefined || value === null ? undefined : u64(value, field);
}

/** An `option<string>` as jco lowers it: `undefined` for none (`undefined` or `null`). */
export function optionString(value, field) {
  return value === undefined || value === null ? undefined : string(value, field);
}

/**
 * A resume point (what `codec.resume-point-label` takes); every field required.
 * @param {import('./checkpointer.js').ResumePoint} value
 */
export function pointIn(value, field = 'point') {
  const p = record(value, field);
  return {
    runId: string(p.runId, `${field}.run-id`),
    stage: string(p.stage, `${field}.stage`),
    sequence: u64(p.sequence, `${field}.sequence`),
    epoch: u64(p.epoch, `${field}.epoch`),
    watermark: watermark(p.watermark, `${field}.watermark`),
  };
}

/** A watermark as jco lowers it. */
export function watermarkIn(value, field = 'watermark') {
  return watermark(value, field);
}

/**
 * A reset request as jco lowers it. `sources` defaults to `[]`, `state` and `epoch` to none
 * (`undefined` or `null`); `runId`, `stage`, `watermark` and `atMs` are required.
 * @param {import('./checkpointer.js').ResetRequestInput} value
 */
export function resetRequestIn(value, field = 'request') {
  const r = record(value, field);
  const out = {
    runId: string(r.runId, `${field}.run-id`),
    stage: string(r.stage, `${field}.stage`),
    watermark: watermark(r.watermark, `${field}.watermark`),
    sources: listOr(r.sources, `${field}.sources`, (s, f) => {
      record(s, f);
      return { name: string(s.name, `${f}.name`), sequence: u64(s.sequence, `${f}.sequence`), watermark: watermark(s.watermark, `${f}.watermark`) };
    }),
    atMs: u64(r.atMs, `${field}.at-ms`),
  };
  const state = stageStateIn(r.state, `${field}.state`);
  if (state !== undefined) out.state = state;
  const epoch = optionU64(r.epoch, `${field}.epoch`);
  if (epoch !== undefined) out.epoch = epoch;
  return out;
}

/**
 * A history request as jco lowers it: `maxCheckpoints` required (at least 1, or the component
 * refuses it), `afterSequence` and `maxBytes` default to 0.
 * @param {import('./checkpointer.js').HistoryRequestInput} value
 */
export function historyRequestIn(value, field = 'request') {
  const r = record(value, field);
  return {
    afterSequence: r.afterSequence === undefined ? 0n : u64(r.afterSequence, `${field}.after-sequence`),
    maxCheckpoints: u32(r.maxCheckpoints, `${field}.max-checkpoints`),
    maxBytes: r.maxBytes === undefined ? 0n : u64(r.maxBytes, `${field}.max-bytes`),
  };
}

/** A WIT bool: exactly `true` or `false` (nothing else is truth-tested). */
export function boolean(value, field) {
  if (typeof value !== 'boolean') {
    throw invalid(field, `must be a boolean, not ${describe(value)}`);
  }
  return value;
}

/**
 * A stage export (what `import-stage` takes) as jco lowers it: `runId` and `stage` required,
 * `latest` none when `undefined` or `null`, `retained` and `savepoints` default to `[]`.
 * @param {import('./checkpointer.js').StageExportInput} value
 */
export function stageExportIn(value, field = 'exported') {
  const e = record(value, field);
  const out = {
    runId: string(e.runId, `${field}.run-id`),
    stage: string(e.stage, `${field}.stage`),
    retained: listOr(e.retained, `${field}.retained`, (c, f) => {
      record(c, f);
      return { sequence: u64(c.sequence, `${f}.sequence`), bytes: bytes(c.bytes, `${f}.bytes`) };
    }),
    savepoints: listOr(e.savepoints, `${field}.savepoints`, (s, f) => {
      record(s, f);
      return { name: string(s.name, `${f}.name`), bytes: bytes(s.bytes, `${f}.bytes`) };
    }),
  };
  if (e.latest !== undefined && e.latest !== null) out.latest = bytes(e.latest, `${field}.latest`);
  return out;
}

/** A processed message; `eventTimeMs` defaults to 0. */
export function messageIn(value, field = 'message') {
  const m = record(value, field);
  return {
    id: string(m.id, `${field}.id`),
    nextOffset: u64(m.nextOffset, `${field}.next-offset`),
    eventTimeMs: m.eventTimeMs === undefined ? 0n : s64(m.eventTimeMs, `${field}.event-time-ms`),
  };
}

export function messagesIn(value) {
  return array(value, 'messages').map((m, i) => messageIn(m, `messages[${i}]`));
}

// ---- component -> caller

/** @returns {import('./checkpointer.js').AckOutcome} */
export function ackOut(a) {
  return a.tag === 'acked' ? { kind: 'acked', count: a.val } : { kind: 'failed', message: a.val };
}

/** @returns {import('./checkpointer.js').Receipt} */
export function receiptOut(r) {
  return { sequence: r.sequence, version: r.version, replayed: r.replayed, pruned: r.pruned, acks: ackOut(r.acks) };
}

/** @returns {import('./checkpointer.js').Resume} */
export function resumeOut(r) {
  return {
    point: r.point,
    origin: r.origin.tag,
    skipped: r.origin.tag === 'fallback' ? r.origin.val.skipped : [],
    checkpoint: r.checkpoint ?? null,
  };
}

/** @returns {import('./checkpointer.js').Progress} */
export function progressOut(p) {
  switch (p.tag) {
    case 'pending': return { kind: 'pending', pending: p.val };
    case 'checkpointed': return { kind: 'checkpointed', receipt: receiptOut(p.val) };
    case 'covered': return { kind: 'covered', acks: ackOut(p.val) };
    default: throw new TypeError(`unknown progress case ${p.tag}`);
  }
}

/** @returns {import('./checkpointer.js').Admission} */
export function admissionOut(a) {
  switch (a.tag) {
    case 'admitted': return { kind: 'admitted', ticket: a.val };
    case 'covered': return { kind: 'covered', acks: ackOut(a.val) };
    case 'backpressure': return { kind: 'backpressure', inFlight: a.val };
    default: throw new TypeError(`unknown admission case ${a.tag}`);
  }
}

/** @returns {import('./checkpointer.js').Completion} */
export function completionOut(c) {
  return { released: Array.from(c.released), due: c.due };
}

/** @returns {import('./checkpointer.js').BatchProgress} */
export function batchProgressOut(b) {
  return { checkpoints: b.checkpoints.map(receiptOut), pending: b.pending, covered: b.covered };
}

/** @returns {import('./checkpointer.js').ResetOrigin} */
export function resetOriginOut(r) {
  return {
    fromSequence: r.fromSequence,
    fromEpoch: r.fromEpoch,
    fromWatermark: r.fromWatermark,
    savepoint: r.savepoint ?? null,
  };
}

/** @returns {import('./checkpointer.js').ResetReceipt} */
export function resetReceiptOut(r) {
  return { checkpoint: r.checkpoint, version: r.version, pruned: r.pruned, origin: resetOriginOut(r.origin) };
}

/** @returns {import('./checkpointer.js').HistoryPage} */
export function historyPageOut(p) {
  return {
    entries: p.entries.map((e) => ({
      checkpoint: e.checkpoint,
      encodedBytes: e.encodedBytes,
      reset: e.reset == null ? null : resetOriginOut(e.reset),
    })),
    nextAfter: p.nextAfter ?? null,
  };
}

/** @returns {import('./checkpointer.js').SavepointInfo} */
export function savepointOut(s) {
  return { name: s.name, point: s.point, atMs: s.atMs, encodedBytes: s.encodedBytes };
}

/** @returns {import('./checkpointer.js').StageSummary} */
export function stageSummaryOut(s) {
  return {
    runId: s.runId,
    stage: s.stage,
    latest: s.latest ?? null,
    atMs: s.atMs,
    encodedBytes: s.encodedBytes,
    reset: s.reset == null ? null : resetOriginOut(s.reset),
    damage: s.damage ?? null,
    retained: s.retained,
    savepoints: s.savepoints,
  };
}

/** @returns {import('./checkpointer.js').StageExport} */
export function stageExportOut(e) {
  return {
    runId: e.runId,
    stage: e.stage,
    latest: e.latest ?? null,
    retained: e.retained.map((c) => ({ sequence: c.sequence, bytes: c.bytes })),
    savepoints: e.savepoints.map((s) => ({ name: s.name, bytes: s.bytes })),
  };
}

/** @returns {import('./checkpointer.js').ImportReceipt} */
export function importReceiptOut(r) {
  return { action: r.action, keysWritten: r.keysWritten, keysRemoved: r.keysRemoved, bytesWritten: r.bytesWritten };
}
