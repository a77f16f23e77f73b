// Typed handles on the component's exports: Checkpointer, Driver and Codec. Each Checkpointer
// and Codec owns its own instance of the component.

import { CheckpointError, ComponentFailure, errorToWit } from './errors.js';
import { Instance } from './component.js';
import { NullConsumer } from './consumer.js';
import {
  ackOut,
  admissionOut,
  batchProgressOut,
  checkpointIn,
  checkpointsIn,
  driverOptionsIn,
  idsIn,
  messageIn,
  messagesIn,
  optionsIn,
  progressOut,
  receiptOut,
  resumeOut,
  completionOut,
  sourceMessageIn,
  stageStateIn,
  string,
  bytes,
  u64,
  historyPageOut,
  historyRequestIn,
  optionString,
  optionU64,
  pointIn,
  resetReceiptOut,
  resetRequestIn,
  savepointOut,
  stageSummaryOut,
  watermarkIn,
  boolean,
  importReceiptOut,
  stageExportIn,
  stageExportOut,
} from './values.js';

/** The largest u32: a history page bounded by bytes only. */
const U32_MAX = 2 ** 32 - 1;

const dispose = Symbol.dispose ?? Symbol.for('dispose');

/**
 * Writes and reads the checkpoints of one namespace of a store, through its own instance of
 * the component. Every method is synchronous and throws a {@link CheckpointError} subclass for
 * a refusal, or {@link ComponentFailure} when the component could not run the call (after
 * which this checkpointer refuses every call).
 */
export class Checkpointer {
  #instance;
  #handle;

  /** Use {@link Checkpointer.open}. */
  constructor(instance, handle) {
    this.#instance = instance;
    this.#handle = handle;
  }

  /**
   * Opens a checkpointer in a new instance of the component over `storage` and `consumer`.
   * Does no storage I/O.
   * @param {import('./storage.js').Storage} storage Where checkpoints go (for example a
   *   {@link MapStorage}); shared with other checkpointers as the caller sees fit.
   * @param {import('./consumer.js').Consumer | null} consumer Receives acks once they are
   *   durable; `null` for none.
   * @param {Options} options
   * @param {{runtime?: import('./component.js').Runtime}} [sandbox] The runtime whose limits
   *   (deadline, memory) the instance runs under; `Runtime.shared()` by default.
   * @returns {Checkpointer}
   * @throws {InvalidInputError} for bad options.
   */
  static open(storage, consumer, options, { runtime } = {}) {
    const wit = optionsIn(options);
    const instance = new Instance(storage, consumer ?? new NullConsumer(), runtime);
    // The component checks the options against this instance's memory limit.
    const limit = BigInt(instance.maxMemoryBytes);
    const handle = instance.call('checkpointer.open', () => instance.checkpointer.Checkpointer.open(wit, limit));
    return new Checkpointer(instance, handle);
  }

  /**
   * Makes `checkpoint` the durable latest of its (runId, stage), then acks `batch`.
   * Refuses, before any write: invalid or too large input, damaged stored data, a move
   * backwards, a stale epoch; `ConflictError` when the stage changed meanwhile. An ack failure
   * does not fail the call: see `receipt.acks`.
   * @param {Checkpoint} checkpoint
   * @param {string[]} [batch] Message ids to ack once the checkpoint is durable.
   * @returns {Receipt}
   */
  write(checkpoint, batch = []) {
    const c = checkpointIn(checkpoint);
    const ids = idsIn(batch);
    return receiptOut(this.#call('checkpointer.write', (h) => h.write(c, ids)));
  }

  /**
   * Acks again the ids stored with the checkpoint `resumePoint` would resume from (the batch of
   * the write that made it): repairs a crash between a commit and its acks. Acks are
   * idempotent, so this is harmless when they went through. `{kind: 'acked', count: 0}` when
   * nothing is stored. Fails like `resumePoint`; never writes.
   * @param {string} runId
   * @param {string} stage
   * @returns {AckOutcome}
   */
  recoverAcks(runId, stage) {
    const [r, s] = [string(runId, 'run-id'), string(stage, 'stage')];
    return ackOut(this.#call('checkpointer.recover-acks', (h) => h.recoverAcks(r, s)));
  }

  /**
   * The latest checkpoint of (runId, stage). Never writes.
   * @param {string} runId
   * @param {string} stage
   * @returns {Checkpoint}
   * @throws {NotFoundError} when nothing is stored; {@link CorruptError} when it is damaged.
   */
  get(runId, stage) {
    const [r, s] = [string(runId, 'run-id'), string(stage, 'stage')];
    return this.#call('checkpointer.get', (h) => h.get(r, s));
  }

  /**
   * Where (runId, stage) should restart: the latest checkpoint, else the newest intact
   * retained one (`origin: 'fallback'`, with what was `skipped`), else offset 0
   * (`origin: 'fresh'`). Never writes.
   * @param {string} runId
   * @param {string} stage
   * @returns {Resume}
   */
  resumePoint(runId, stage) {
    const [r, s] = [string(runId, 'run-id'), string(stage, 'stage')];
    return resumeOut(this.#call('checkpointer.resume-point', (h) => h.resumePoint(r, s)));
  }

  /**
   * Retained checkpoints of (runId, stage), oldest first, ending with the latest; empty when
   * nothing is stored. `CorruptError` when one is damaged. Read page by page (the checkpoints
   * of `historyEntries`, as the Rust host's `history`), so a history larger than the largest
   * answer the checkpointer serves (a quarter of its memory limit) is read all the same; each
   * page reads the latest again, so a writer committing meanwhile may add its checkpoints to
   * the end. Never writes.
   * @param {string} runId
   * @param {string} stage
   * @returns {Checkpoint[]}
   */
  history(runId, stage) {
    return this.historyEntries(runId, stage).map((entry) => entry.checkpoint);
  }

  /**
   * One page of the retained checkpoints of (runId, stage), oldest first: those after
   * `request.afterSequence`, at most `request.maxCheckpoints` (at least 1, else an
   * `InvalidInputError`) and `request.maxBytes` (0: the largest page served). The last page
   * ends with the latest and has `nextAfter` null; else ask again from `nextAfter`. Each entry
   * says which checkpoint was a reset, and from where. Never writes.
   * @param {string} runId
   * @param {string} stage
   * @param {HistoryRequestInput} request
   * @returns {HistoryPage}
   */
  historyPage(runId, stage, request) {
    const [r, s] = [string(runId, 'run-id'), string(stage, 'stage')];
    const q = historyRequestIn(request);
    return historyPageOut(this.#call('checkpointer.history-page', (h) => h.historyPage(r, s, q)));
  }

  /**
   * Every retained checkpoint of (runId, stage) with what is stored beside it, oldest first,
   * read page by page (as the Rust host's `history_entries`), so a history larger than one
   * answer is read all the same. Each page reads the latest again, so a writer committing
   * meanwhile may add its checkpoints to the end. Never writes.
   * @param {string} runId
   * @param {string} stage
   * @returns {HistoryEntry[]}
   */
  historyEntries(runId, stage) {
    const entries = [];
    let afterSequence = 0n;
    for (;;) {
      const page = this.historyPage(runId, stage, { afterSequence, maxCheckpoints: U32_MAX });
      entries.push(...page.entries);
      if (page.nextAfter === null) return entries;
      afterSequence = page.nextAfter;
    }
  }

  /**
   * The retained checkpoint of (runId, stage) with `sequence` (the latest included, even when
   * its retained copy is gone). Never writes.
   * @param {string} runId
   * @param {string} stage
   * @param {bigint | number} sequence
   * @returns {Checkpoint}
   * @throws {NotFoundError} when that sequence is not retained; {@link CorruptError} when its
   *   bytes are damaged.
   */
  getAt(runId, stage, sequence) {
    const [r, s] = [string(runId, 'run-id'), string(stage, 'stage')];
    const n = u64(sequence, 'sequence');
    return this.#call('checkpointer.get-at', (h) => h.getAt(r, s, n));
  }

  /**
   * Moves (runId, stage) to `request.watermark`, backwards or forwards, and takes the stage
   * over: the reset checkpoint has the next sequence and an epoch above the stored one, so
   * every writer of an older epoch is fenced from then on. One conditional commit; retention
   * prunes as a write does, savepoints are never touched, nothing is acked.
   * `InvalidInputError` (field `epoch`) for an epoch not above the stored one; `CorruptError`
   * when the stored latest is damaged (restore or delete it first); `ConflictError` when a
   * writer committed meanwhile (retry).
   * @param {ResetRequestInput} request
   * @returns {ResetReceipt}
   */
  reset(request) {
    const q = resetRequestIn(request);
    return resetReceiptOut(this.#call('checkpointer.reset', (h) => h.reset(q)));
  }

  /**
   * Pins a checkpoint of (runId, stage) under `name` (1 to 128 bytes): the latest, or the
   * retained one with `sequence`. Retention, writes, resets and `delete` never remove it.
   * Creating the same savepoint again is harmless; another checkpoint under a taken name is an
   * `InvalidInputError` (field `name`). `NotFoundError` when the stage (or that sequence) is
   * not stored.
   * @param {string} runId
   * @param {string} stage
   * @param {string} name
   * @param {bigint | number | null} [sequence] None (the default): the latest.
   * @returns {SavepointInfo}
   */
  createSavepoint(runId, stage, name, sequence) {
    const [r, s, n] = [string(runId, 'run-id'), string(stage, 'stage'), string(name, 'name')];
    const q = optionU64(sequence, 'sequence');
    return savepointOut(this.#call('checkpointer.create-savepoint', (h) => h.createSavepoint(r, s, n, q)));
  }

  /**
   * The savepoints of (runId, stage), by name. `CorruptError` when one is damaged.
   * @param {string} runId
   * @param {string} stage
   * @returns {SavepointInfo[]}
   */
  listSavepoints(runId, stage) {
    const [r, s] = [string(runId, 'run-id'), string(stage, 'stage')];
    return this.#call('checkpointer.list-savepoints', (h) => h.listSavepoints(r, s)).map(savepointOut);
  }

  /**
   * The checkpoint the savepoint `name` pins.
   * @param {string} runId
   * @param {string} stage
   * @param {string} name
   * @returns {Checkpoint}
   * @throws {NotFoundError} when there is no such savepoint.
   */
  getSavepoint(runId, stage, name) {
    const [r, s, n] = [string(runId, 'run-id'), string(stage, 'stage'), string(name, 'name')];
    return this.#call('checkpointer.get-savepoint', (h) => h.getSavepoint(r, s, n));
  }

  /**
   * Resets (runId, stage) to the savepoint `name`: its watermark, sources, sinks and operator
   * states, as `reset` does (same fencing and errors; `epoch` none: the stored one + 1),
   * recording the savepoint's name in the reset's origin.
   * @param {string} runId
   * @param {string} stage
   * @param {string} name
   * @param {{atMs: bigint | number, epoch?: bigint | number | null}} at `atMs` becomes the
   *   reset checkpoint's `atMs`.
   * @returns {ResetReceipt}
   */
  restoreSavepoint(runId, stage, name, { atMs, epoch } = {}) {
    const [r, s, n] = [string(runId, 'run-id'), string(stage, 'stage'), string(name, 'name')];
    const [e, at] = [optionU64(epoch, 'epoch'), u64(atMs, 'at-ms')];
    return resetReceiptOut(this.#call('checkpointer.restore-savepoint', (h) => h.restoreSavepoint(r, s, n, e, at)));
  }

  /**
   * Removes a savepoint: `true` when it existed (`false`: nothing to do, safe to repeat).
   * @param {string} runId
   * @param {string} stage
   * @param {string} name
   * @returns {boolean}
   */
  deleteSavepoint(runId, stage, name) {
    const [r, s, n] = [string(runId, 'run-id'), string(stage, 'stage'), string(name, 'name')];
    return this.#call('checkpointer.delete-savepoint', (h) => h.deleteSavepoint(r, s, n));
  }

  /**
   * Every stage stored in this namespace (of one run, when given), ordered by run and stage,
   * with its latest position. A damaged latest is reported in its summary (`damage`), not
   * thrown, so that an operator sees every stage. Never writes.
   * @param {string | null} [runId] None (the default): every run.
   * @returns {StageSummary[]}
   */
  listStages(runId) {
    const r = optionString(runId, 'run-id');
    return this.#call('checkpointer.list-stages', (h) => h.listStages(r)).map(stageSummaryOut);
  }

  /**
   * Everything stored for (runId, stage), as stored: the latest, the retained copies and the
   * savepoints (`importStage` recreates it in another store or namespace; `ckpt copy` does
   * both). Checks every entry first, so that damage is not copied: `CorruptError` when one is
   * damaged or misplaced. `NotFoundError` when nothing is stored; `InvalidInputError` (field
   * `stage`) when the stage's bytes exceed the largest answer (a quarter of the memory limit):
   * open with a larger `maxMemoryBytes`. Never writes.
   * @param {string} runId
   * @param {string} stage
   * @returns {StageExport}
   */
  exportStage(runId, stage) {
    const [r, s] = [string(runId, 'run-id'), string(stage, 'stage')];
    return stageExportOut(this.#call('checkpointer.export-stage', (h) => h.exportStage(r, s)));
  }

  /**
   * Recreates an exported stage in this checkpointer's store and namespace, byte for byte, as
   * one conditional commit: puts every entry not already here with the same bytes and, when
   * the export has a latest, removes retained copies it does not hold. Savepoints here under
   * other names stay. Importing the same export again is `'identical'` and writes nothing.
   *
   * Refuses, writing nothing: an export too large or with an entry twice (`InvalidInputError`,
   * field `exported`); an entry that does not decode or belong to the export (`CorruptError`);
   * a latest here of a later epoch (`FencedError`) or, if different, of the same or a later
   * sequence (`RegressionError`); a damaged latest here (`CorruptError`); a savepoint here with
   * the same name and other bytes (`InvalidInputError`, field `savepoints`); an older latest
   * here without `replaceOlder` (`InvalidInputError`, field `replace-older`). `ConflictError`
   * when a writer changed the stage meanwhile (export and import again). With `dryRun` it
   * refuses the same way and answers what it would do, writing nothing. Acks nothing.
   * @param {StageExportInput} exported What `exportStage` answered (here or in another store).
   * @param {{replaceOlder?: boolean, dryRun?: boolean}} [how] `replaceOlder`: replace an older
   *   chain stored here (default `false`); `dryRun`: write nothing (default `false`).
   * @returns {ImportReceipt}
   */
  importStage(exported, { replaceOlder = false, dryRun = false } = {}) {
    const e = stageExportIn(exported);
    const [replace, dry] = [boolean(replaceOlder, 'replace-older'), boolean(dryRun, 'dry-run')];
    return importReceiptOut(this.#call('checkpointer.import-stage', (h) => h.importStage(e, replace, dry)));
  }

  /**
   * Removes every checkpoint of (runId, stage) in one commit; returns how many entries were
   * removed. This also forgets the stage's epoch: only delete a stage no writer uses (to move a
   * live stage, `reset` it). Savepoints are kept: remove them with `deleteSavepoint`.
   * @param {string} runId
   * @param {string} stage
   * @returns {number}
   */
  delete(runId, stage) {
    const [r, s] = [string(runId, 'run-id'), string(stage, 'stage')];
    return this.#call('checkpointer.delete', (h) => h.delete(r, s));
  }

  /**
   * Opens a driver for one (runId, stage), which checkpoints processed messages by policy and
   * acks each message once a checkpoint covers it. Reads the resume point (so it fails as
   * `resumePoint` does) and is fenced at once if `options.epoch` is below the stored one.
   * Then acks again the ids stored with the checkpoint it resumes from (`recoveredAcks` tells
   * how that went; a failure does not fail the open: they are re-sent with the next
   * checkpoint). The driver shares this checkpointer's instance.
   * @param {DriverOptions} options
   * @returns {Driver}
   */
  openDriver(options) {
    const o = driverOptionsIn(options);
    const handle = this.#call('checkpointer.open-driver', (h) => h.openDriver(o));
    return new Driver(this, this.#instance, handle);
  }

  /**
   * Releases the component's handle. The checkpointer (and its drivers) refuse further calls.
   * Dropping every reference has the same effect, later.
   */
  close() {
    if (this.#handle === null) return;
    const handle = this.#handle;
    this.#handle = null;
    try {
      // The guest's destructor runs under the deadline like any call.
      this.#instance.call('checkpointer.drop', () => handle[dispose]?.());
    } catch (e) {
      // A trapped instance refuses calls; the handle goes with the instance.
      if (!(e instanceof ComponentFailure)) throw e;
    }
    this.#instance.close('the checkpointer was closed');
  }

  [dispose]() {
    this.close();
  }

  #call(name, fn) {
    const handle = this.#handle;
    if (handle === null) throw new ComponentFailure(`\`${name}\`: the checkpointer was closed`);
    return this.#instance.call(name, () => fn(handle));
  }
}

/**
 * Turns processed messages into checkpoints by policy (`per-message`, `{perBatch: n}`,
 * `explicit-flush`) and acks each message once a checkpoint covers it. Open one with
 * {@link Checkpointer#openDriver}. Two ways to feed it: `recordProcessed` for a log read in
 * order by one worker with no state; `begin` / `complete` / `flush(nowMs, state)` for
 * everything else (queues that redeliver, partitions, out-of-order work, operator state and
 * sinks). Pending and in-flight messages live in the instance: dropping the driver without
 * `flush` loses them; they were never acked, so the source delivers them again.
 */
export class Driver {
  #instance;
  #handle;

  /** Use {@link Checkpointer#openDriver}. */
  constructor(checkpointer, instance, handle) {
    /** The checkpointer this driver writes through. @type {Checkpointer} */
    this.checkpointer = checkpointer;
    this.#instance = instance;
    this.#handle = handle;
  }

  /**
   * Where this driver resumed: read `point.watermark.offset` to know where to read input from.
   * @returns {Resume}
   */
  resumedFrom() {
    return resumeOut(this.#call('driver.resumed-from', (h) => h.resumedFrom()));
  }

  /**
   * What became of the acks that opening this driver sent again for the checkpoint it resumed
   * from (`{kind: 'acked', count: 0}` when it stored no ids).
   * @returns {AckOutcome}
   */
  recoveredAcks() {
    return ackOut(this.#call('driver.recovered-acks', (h) => h.recoveredAcks()));
  }

  /**
   * The sequence, epoch and watermark of the last durable checkpoint this driver knows.
   * @returns {ResumePoint}
   */
  cursor() {
    return this.#call('driver.cursor', (h) => h.cursor());
  }

  /**
   * Records one processed message; writes a checkpoint when the policy says so. On a failed
   * write the messages stay pending: call `flush` to retry.
   * @param {ProcessedMessage} message
   * @param {bigint | number} nowMs Becomes the checkpoint's `atMs`.
   * @returns {Progress}
   */
  recordProcessed(message, nowMs) {
    const m = messageIn(message);
    const now = u64(nowMs, 'now-ms');
    return progressOut(this.#call('driver.record-processed', (h) => h.recordProcessed(m, now)));
  }

  /**
   * Records messages in order, as `recordProcessed` would, in one call. Stops at the first
   * error; messages before it keep their effect.
   * @param {ProcessedMessage[]} messages
   * @param {bigint | number} nowMs
   * @returns {BatchProgress}
   */
  recordProcessedBatch(messages, nowMs) {
    const ms = messagesIn(messages);
    const now = u64(nowMs, 'now-ms');
    return batchProgressOut(
      this.#call('driver.record-processed-batch', (h) => h.recordProcessedBatch(ms, now)),
    );
  }

  /**
   * Takes a message before it is processed: `{kind: 'admitted', ticket}` (process it, then
   * `complete(ticket)`), `{kind: 'covered', acks}` (a durable checkpoint covers it already:
   * skip it; it was acked now) or `{kind: 'backpressure', inFlight}` (the `maxInFlight` cap:
   * complete and flush earlier work, then offer it again). `RegressionError` for a message at
   * or below the position of one taken and not yet durable, or with the id of one in flight.
   * @param {Message} message
   * @returns {Admission}
   */
  begin(message) {
    const m = sourceMessageIn(message);
    return admissionOut(this.#call('driver.begin', (h) => h.begin(m)));
  }

  /**
   * Marks a taken message done, in any order: the tickets released with this call (their
   * input's completed prefix, oldest first: apply their effects in that order before the next
   * `flush`) and whether a checkpoint is `due`. Never does I/O; an unknown or already
   * completed ticket is an `InvalidInputError` (field `ticket`).
   * @param {bigint | number} ticket
   * @returns {Completion}
   */
  complete(ticket) {
    const t = u64(ticket, 'ticket');
    return completionOut(this.#call('driver.complete', (h) => h.complete(t)));
  }

  /**
   * Writes a checkpoint covering every released message (and the pending ones of
   * `recordProcessed`), then acks them. With `state`, the checkpoint carries it (and later
   * ones too, until the next state); without, the last one given (or the resumed checkpoint's).
   * `{kind: 'pending', pending: 0}` and no storage call when nothing is released and the state
   * is unchanged. On a failed write nothing is lost from the driver: flush again.
   * @param {bigint | number} nowMs
   * @param {StageStateInput | null} [state]
   * @returns {Progress}
   */
  flush(nowMs, state) {
    const now = u64(nowMs, 'now-ms');
    const st = stageStateIn(state);
    return progressOut(this.#call('driver.flush', (h) => h.flush(st, now)));
  }

  /**
   * A copy of the recent events (`changelogCapacity` of them at most).
   * @returns {Changelog}
   */
  changelog() {
    return this.#call('driver.changelog', (h) => h.changelog());
  }

  /**
   * Frees the driver in the component; pending messages are dropped, not flushed (their input is
   * redelivered from the resume point). The checkpointer stays open. Later calls on this
   * driver fail with `ComponentFailure`.
   */
  close() {
    if (this.#handle === null) return;
    const handle = this.#handle;
    this.#handle = null;
    try {
      this.#instance.call('driver.drop', () => handle[dispose]?.());
    } catch (e) {
      // A closed or trapped instance refuses calls; the driver goes with the instance.
      if (!(e instanceof ComponentFailure)) throw e;
    }
  }

  [dispose]() {
    this.close();
  }

  #call(name, fn) {
    const handle = this.#handle;
    if (handle === null) throw new ComponentFailure(`\`${name}\`: the driver was closed`);
    return this.#instance.call(name, () => fn(handle));
  }
}

/**
 * The checkpoint binary format (FORMAT.md), from the component: encode, decode, validate,
 * chain signatures and resume points of lists. Owns an instance with no storage.
 */
export class Codec {
  #instance;

  /**
   * @param {{runtime?: import('./component.js').Runtime}} [sandbox] The runtime whose limits
   *   the instance runs under; `Runtime.shared()` by default.
   */
  constructor({ runtime } = {}) {
    const refuse = () => {
      throw new Error('the codec instance has no storage');
    };
    this.#instance = new Instance({ get: refuse, commit: refuse, listKeys: refuse }, new NullConsumer(), runtime);
  }

  /**
   * Canonical bytes of a checkpoint (named lists sorted).
   * @param {Checkpoint} checkpoint
   * @returns {Uint8Array}
   * @throws {InvalidInputError} when `validate` would.
   */
  encode(checkpoint) {
    const c = checkpointIn(checkpoint);
    return this.#instance.call('codec.encode', () => this.#instance.codec.encode(c));
  }

  /**
   * Decodes bytes made by `encode`.
   * @param {Uint8Array} data
   * @returns {Checkpoint}
   * @throws {CorruptError} naming the damage.
   */
  decode(data) {
    const b = bytes(data, 'bytes');
    return this.#instance.call('codec.decode', () => this.#instance.codec.decode(b));
  }

  /**
   * Checks the rules of a checkpoint without any I/O.
   * @param {Checkpoint} checkpoint
   * @throws {InvalidInputError} naming the first broken rule.
   */
  validate(checkpoint) {
    const c = checkpointIn(checkpoint);
    this.#instance.call('codec.validate', () => this.#instance.codec.validate(c));
  }

  /**
   * Lowercase hex SHA-256 over the chain, in order (see codec.wit): equal on every host.
   * @param {Checkpoint[]} checkpoints
   * @returns {string}
   */
  chainSignature(checkpoints) {
    const cs = checkpointsIn(checkpoints);
    return this.#instance.call('codec.chain-signature', () => this.#instance.codec.chainSignature(cs));
  }

  /**
   * The resume point of `stage` from a list: the checkpoint of that stage with the highest
   * sequence.
   * @param {Checkpoint[]} checkpoints
   * @param {string} stage
   * @returns {ResumePoint}
   * @throws {NotFoundError} when the list has no checkpoint of `stage`.
   */
  resumePointForStage(checkpoints, stage) {
    const cs = checkpointsIn(checkpoints);
    const s = string(stage, 'stage');
    return this.#instance.call('codec.resume-point-for-stage', () => this.#instance.codec.resumePointForStage(cs, s));
  }

  /**
   * The component's one line for people about an error (`codec.describe`): what happened and
   * what to do. The `message` every `CheckpointError` carries, the same in every host.
   * @param {CheckpointError} error
   * @returns {string}
   */
  describe(error) {
    if (!(error instanceof CheckpointError)) {
      throw new TypeError(`error must be a CheckpointError, not ${error?.constructor?.name ?? typeof error}`);
    }
    return this.#instance.describe(errorToWit(error));
  }

  /**
   * One stable line about a watermark (FORMAT.md "Labels"), the same in every host:
   * `offset 42, event time 2024-12-03T15:16:23.000Z` (milliseconds outside years 0 to 9999).
   * @param {Watermark} watermark
   * @returns {string}
   */
  watermarkLabel(watermark) {
    const w = watermarkIn(watermark);
    return this.#instance.call('codec.watermark-label', () => this.#instance.codec.watermarkLabel(w));
  }

  /**
   * One stable line about a checkpoint: run and stage quoted (escaped like JSON strings),
   * sequence, epoch, watermark, the counts of sources, sinks and operator states, and the
   * encoded size.
   * @param {Checkpoint} checkpoint
   * @returns {string}
   */
  checkpointLabel(checkpoint) {
    const c = checkpointIn(checkpoint);
    return this.#instance.call('codec.checkpoint-label', () => this.#instance.codec.checkpointLabel(c));
  }

  /**
   * One stable line about a resume point: where the stage restarts and from which checkpoint,
   * or that it starts fresh (sequence 0).
   * @param {ResumePoint} point
   * @returns {string}
   */
  resumePointLabel(point) {
    const p = pointIn(point);
    return this.#instance.call('codec.resume-point-label', () => this.#instance.codec.resumePointLabel(p));
  }
}

/**
 * @typedef {object} Watermark
 * @property {bigint} offset Next offset to read.
 * @property {bigint} eventTimeMs Event time reached, ms since the Unix epoch (may be negative).
 */
/**
 * A checkpoint (WIT `checkpoint`). Integers are BigInts on output; on input a safe-integer
 * Number is accepted too. `sources`, `sinks`, `operatorStates` (default `[]`) and
 * `idempotencyKey` (default `''`) may be omitted.
 * @typedef {object} Checkpoint
 * @property {string} runId
 * @property {string} stage
 * @property {bigint} sequence At least 1, strictly growing per (runId, stage).
 * @property {bigint} epoch Ownership epoch of the writer.
 * @property {Watermark} watermark
 * @property {{name: string, sequence: bigint, watermark: Watermark}[]} [sources]
 * @property {{name: string, position: bigint}[]} [sinks]
 * @property {{name: string, state: Uint8Array}[]} [operatorStates]
 * @property {string} [idempotencyKey]
 * @property {bigint} atMs Wall-clock time of the checkpoint (the caller's clock).
 */
/**
 * @typedef {object} Options
 * @property {string} namespace 1 to 64 bytes of `A-Z a-z 0-9 _ - .`.
 * @property {number} maxRetained Checkpoints kept per (runId, stage), at least 1.
 * @property {number} maxCheckpointBytes Largest encoding accepted, at least 64.
 */
/**
 * @typedef {object} Receipt
 * @property {bigint} sequence
 * @property {bigint} version Storage version of the latest after this write.
 * @property {boolean} replayed The stored latest was already this checkpoint.
 * @property {number} pruned Older checkpoints removed.
 * @property {{kind: 'acked', count: number} | {kind: 'failed', message: string}} acks
 */
/**
 * @typedef {object} ResumePoint
 * @property {string} runId
 * @property {string} stage
 * @property {bigint} sequence 0 when nothing was stored.
 * @property {bigint} epoch 0 when nothing was stored.
 * @property {Watermark} watermark Restart reading at `watermark.offset`.
 */
/**
 * @typedef {object} Resume
 * @property {ResumePoint} point
 * @property {'latest' | 'fallback' | 'fresh'} origin
 * @property {{kind: string, key: string, detail: string}[]} skipped What was wrong with the
 *   newer checkpoints a fallback skipped (empty unless `origin` is `'fallback'`).
 * @property {Checkpoint | null} checkpoint The whole checkpoint the point comes from (the
 *   fallback one after a fallback); `null` when `'fresh'`.
 */
/**
 * @typedef {{kind: 'acked', count: number} | {kind: 'failed', message: string}} AckOutcome
 */
/**
 * @typedef {object} DriverOptions
 * @property {string} runId
 * @property {string} stage
 * @property {bigint} epoch
 * @property {'per-message' | 'explicit-flush' | {perBatch: number}} policy
 * @property {number} [changelogCapacity] Default 0 (no changelog).
 * @property {'drop-new' | 'overwrite-oldest'} [overflow] Default `'drop-new'`.
 * @property {number} [maxInFlight] Default 1024; 1 to 4096.
 */
/**
 * @typedef {object} Message
 * @property {string} id Id to ack once a durable checkpoint covers it.
 * @property {string} [source] The input (partition); default `''`, the stage's own input.
 * @property {bigint | number | null} [offset] The message's own position; none (default) for
 *   queues without positions.
 * @property {bigint | number} [eventTimeMs] Default 0.
 */
/**
 * @typedef {{kind: 'admitted', ticket: bigint} | {kind: 'covered', acks: AckOutcome} | {kind: 'backpressure', inFlight: number}} Admission
 */
/**
 * @typedef {object} Completion
 * @property {bigint[]} released Tickets released by this call, oldest first.
 * @property {boolean} due A checkpoint is due: call `flush`.
 */
/**
 * @typedef {object} StageStateInput
 * @property {{name: string, position: bigint | number}[]} [sinks]
 * @property {{name: string, state: Uint8Array}[]} [operatorStates]
 */
/**
 * @typedef {object} ProcessedMessage
 * @property {string} id
 * @property {bigint} nextOffset The message's own offset + 1.
 * @property {bigint} [eventTimeMs] Default 0.
 */
/**
 * @typedef {{kind: 'pending', pending: number} | {kind: 'checkpointed', receipt: Receipt} | {kind: 'covered', acks: AckOutcome}} Progress
 */
/**
 * @typedef {object} BatchProgress
 * @property {Receipt[]} checkpoints
 * @property {number} pending
 * @property {number} covered Messages a durable checkpoint already covered (acked, not recorded).
 */
/**
 * @typedef {object} Changelog
 * @property {{kind: 'processed' | 'watermark' | 'checkpoint', sequence: bigint, watermark: Watermark}[]} events
 * @property {bigint} overflowCount
 * @property {number} capacity
 */
/**
 * @typedef {object} ResetOrigin Where a reset moved a stage from.
 * @property {bigint} fromSequence Sequence of the latest before; 0 when nothing was stored.
 * @property {bigint} fromEpoch Epoch of the latest before (the owner fenced); 0 when none.
 * @property {Watermark} fromWatermark Watermark of the latest before.
 * @property {string | null} savepoint The savepoint restored; `null` for a reset to a position.
 */
/**
 * @typedef {object} ResetRequestInput A deliberate move of a stage's position.
 * @property {string} runId
 * @property {string} stage
 * @property {{offset: bigint | number, eventTimeMs: bigint | number}} watermark Where to resume.
 * @property {{name: string, sequence: bigint | number, watermark: Watermark}[]} [sources]
 *   Positions of the named inputs; they replace the stored ones. Default `[]`.
 * @property {StageStateInput | null} [state] None (default): keep the stored latest's state.
 * @property {bigint | number | null} [epoch] Above the stored one; none (default): stored + 1.
 * @property {bigint | number} atMs The reset checkpoint's `atMs`.
 */
/**
 * @typedef {object} ResetReceipt
 * @property {Checkpoint} checkpoint The reset checkpoint, now the durable latest.
 * @property {bigint} version Storage version of the latest after the reset.
 * @property {number} pruned Retained older checkpoints removed.
 * @property {ResetOrigin} origin Where the stage was before.
 */
/**
 * @typedef {object} HistoryRequestInput
 * @property {bigint | number} [afterSequence] Start after this sequence; default 0.
 * @property {number} maxCheckpoints At most this many; at least 1.
 * @property {bigint | number} [maxBytes] At most this many encoded bytes (a page holds at
 *   least one); default 0: the largest page served.
 */
/**
 * @typedef {object} HistoryEntry
 * @property {Checkpoint} checkpoint
 * @property {bigint} encodedBytes
 * @property {ResetOrigin | null} reset Set when this checkpoint is a reset.
 */
/**
 * @typedef {object} HistoryPage
 * @property {HistoryEntry[]} entries Oldest first; the last page ends with the latest.
 * @property {bigint | null} nextAfter The next page's `afterSequence`; `null` on the last page.
 */
/**
 * @typedef {object} SavepointInfo
 * @property {string} name
 * @property {ResumePoint} point The pinned checkpoint's position.
 * @property {bigint} atMs
 * @property {bigint} encodedBytes
 */
/**
 * @typedef {object} StageSummary
 * @property {string} runId
 * @property {string} stage
 * @property {ResumePoint | null} latest `null` when only savepoints are stored or the latest is damaged.
 * @property {bigint} atMs 0 when `latest` is `null`.
 * @property {bigint} encodedBytes 0 when `latest` is `null`.
 * @property {ResetOrigin | null} reset Set when the latest is a reset.
 * @property {{kind: string, key: string, detail: string} | null} damage Set when the latest is damaged.
 * @property {number} retained Retained copies stored.
 * @property {number} savepoints Savepoints stored.
 */
/**
 * @typedef {object} StoredCopy One retained copy of a stage, as stored.
 * @property {bigint} sequence The sequence its key names.
 * @property {Uint8Array} bytes The stored bytes.
 */
/**
 * @typedef {object} StoredSavepoint One savepoint of a stage, as stored.
 * @property {string} name
 * @property {Uint8Array} bytes The stored bytes.
 */
/**
 * @typedef {object} StageExport Everything stored for one stage, byte for byte.
 * @property {string} runId
 * @property {string} stage
 * @property {Uint8Array | null} latest The latest's stored bytes; `null` when only savepoints are stored.
 * @property {StoredCopy[]} retained The retained copies, oldest first.
 * @property {StoredSavepoint[]} savepoints The savepoints, by name.
 */
/**
 * @typedef {object} StageExportInput What `importStage` takes (a `StageExport` is one).
 * @property {string} runId
 * @property {string} stage
 * @property {Uint8Array | null} [latest] None (`null`, the default): only savepoints.
 * @property {{sequence: bigint | number, bytes: Uint8Array}[]} [retained] Default `[]`.
 * @property {{name: string, bytes: Uint8Array}[]} [savepoints] Default `[]`.
 */
/**
 * @typedef {object} ImportReceipt What an import wrote (for a dry run: would write).
 * @property {'created' | 'replaced' | 'identical'} action
 * @property {number} keysWritten Entries put (latest, retained copies, savepoints).
 * @property {number} keysRemoved Retained copies of the replaced chain removed.
 * @property {bigint} bytesWritten Bytes put.
 */
