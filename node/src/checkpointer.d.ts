// Declarations of checkpointer.js: Checkpointer, Driver, Codec and the records they take and
// give. Records mirror the WIT (wit/types.wit, wit/checkpointer.wit) with camelCase fields.
// Integers: u64/s64 are BigInts on output; on input a safe-integer Number is accepted too
// (anything else, or out of range, is an InvalidInputError). u32 values are Numbers.

/// <reference lib="esnext.disposable" />

import type { Consumer } from './consumer.js';
import type { CheckpointError, Corruption } from './errors.js';
import type { Storage } from './storage.js';
import type { Runtime } from './index.js';

/** A u64 or s64 given to the API: a BigInt, or a Number that is a safe integer. */
export type IntegerInput = bigint | number;

/** How far a stage has read (WIT `watermark`). */
export interface Watermark {
  /** The next offset to read. */
  offset: bigint;
  /** Event time reached, ms since the Unix epoch (may be negative). */
  eventTimeMs: bigint;
}

/** One named input of a stage (WIT `source-position`). */
export interface SourcePosition {
  name: string;
  sequence: bigint;
  watermark: Watermark;
}

/** One named output of a stage (WIT `sink-position`). */
export interface SinkPosition {
  name: string;
  position: bigint;
}

/** Opaque state of one named operator (WIT `operator-state`). */
export interface OperatorState {
  name: string;
  state: Uint8Array;
}

/** A checkpoint as the component returns it (WIT `checkpoint`): every field present. */
export interface Checkpoint {
  runId: string;
  stage: string;
  /** At least 1, strictly growing per (runId, stage). */
  sequence: bigint;
  /** Ownership epoch of the writer. */
  epoch: bigint;
  watermark: Watermark;
  sources: SourcePosition[];
  sinks: SinkPosition[];
  operatorStates: OperatorState[];
  idempotencyKey: string;
  /** Wall-clock time of the checkpoint, ms since the Unix epoch (the caller's clock). */
  atMs: bigint;
}

/** A watermark given to the API. */
export interface WatermarkInput {
  offset: IntegerInput;
  eventTimeMs: IntegerInput;
}

/**
 * A checkpoint given to the API. `sources`, `sinks`, `operatorStates` (default `[]`) and
 * `idempotencyKey` (default `''`) may be omitted. A {@link Checkpoint} read back is one.
 */
export interface CheckpointInput {
  runId: string;
  stage: string;
  sequence: IntegerInput;
  epoch: IntegerInput;
  watermark: WatermarkInput;
  sources?: Array<{ name: string; sequence: IntegerInput; watermark: WatermarkInput }>;
  sinks?: Array<{ name: string; position: IntegerInput }>;
  operatorStates?: Array<{ name: string; state: Uint8Array }>;
  idempotencyKey?: string;
  atMs: IntegerInput;
}

/** How a checkpointer stores checkpoints (WIT `options`). */
export interface Options {
  /** 1 to 64 bytes of `A-Z a-z 0-9 _ - .`. */
  namespace: string;
  /** Checkpoints kept per (runId, stage), at least 1. */
  maxRetained: number;
  /** Largest encoding accepted, in bytes, at least 64. */
  maxCheckpointBytes: number;
}

/** What became of the acks of a durable write. */
export type AckOutcome = { kind: 'acked'; count: number } | { kind: 'failed'; message: string };

/** Proof that a checkpoint is durable (WIT `receipt`). */
export interface Receipt {
  sequence: bigint;
  /** Storage version of the latest after this write. */
  version: bigint;
  /** The stored latest was already this checkpoint: nothing written, the batch acked again. */
  replayed: boolean;
  /** Older checkpoints removed. */
  pruned: number;
  acks: AckOutcome;
}

/** Where a stage should restart (WIT `resume-point`). */
export interface ResumePoint {
  runId: string;
  stage: string;
  /** 0 when nothing was stored. */
  sequence: bigint;
  /** 0 when nothing was stored. */
  epoch: bigint;
  /** Restart reading at `watermark.offset`. */
  watermark: Watermark;
}

/** A resume point given to the API (`Codec.resumePointLabel`). A {@link ResumePoint} read back is one. */
export interface ResumePointInput {
  runId: string;
  stage: string;
  sequence: IntegerInput;
  epoch: IntegerInput;
  watermark: WatermarkInput;
}

/** Where a resume point comes from. */
export type ResumeOrigin = 'latest' | 'fallback' | 'fresh';

/** A resume point, where it comes from, and the whole checkpoint it comes from. */
export interface Resume {
  point: ResumePoint;
  origin: ResumeOrigin;
  /** What was wrong with the newer checkpoints a fallback skipped (empty unless `'fallback'`). */
  skipped: Corruption[];
  /**
   * The checkpoint the point comes from (the fallback one after a fallback); `null` when
   * `'fresh'`. Restore operator state, sink and source positions from it, so that state and
   * position always come from the same checkpoint.
   */
  checkpoint: Checkpoint | null;
}

/** The kinds of damage (WIT `corruption-kind`). */
export type CorruptionKind =
  | 'truncated'
  | 'bad-magic'
  | 'crc-mismatch'
  | 'unknown-version'
  | 'unknown-flags'
  | 'trailing-bytes'
  | 'invalid-utf8'
  | 'malformed'
  | 'misplaced';

/** When a driver writes a checkpoint. */
export type Policy = 'per-message' | 'explicit-flush' | { perBatch: number };

/** What a driver's changelog does when it is full. */
export type OverflowPolicy = 'drop-new' | 'overwrite-oldest';

/** How to run a driver (WIT `driver-options`). */
export interface DriverOptions {
  runId: string;
  stage: string;
  /** The writer's ownership epoch. */
  epoch: IntegerInput;
  policy: Policy;
  /** Recent events the changelog keeps; default 0 (no changelog). */
  changelogCapacity?: number;
  /** Default `'drop-new'`. */
  overflow?: OverflowPolicy;
  /**
   * Most messages taken (by `begin` or `recordProcessed`) and not yet covered by a durable
   * checkpoint, 1 to 4096; default 1024. At the cap `begin` answers `backpressure`. A
   * `perBatch` above it is an `InvalidInputError`.
   */
  maxInFlight?: number;
}

/** One message from a source, before it is processed (WIT `message`, for `Driver.begin`). */
export interface Message {
  /** Id to ack once a durable checkpoint covers it (a stream entry id, a delivery tag). */
  id: string;
  /**
   * The input (partition, stream) it comes from; its position is kept in the checkpoint's
   * `sources` under this name. Default `''`: the stage's own input (the checkpoint's watermark).
   */
  source?: string;
  /**
   * The message's own position in its input (not the next one). `undefined` or `null` (the
   * default) for queues without positions: their redeliveries are recognised by id.
   */
  offset?: IntegerInput | null;
  /** Default 0. */
  eventTimeMs?: IntegerInput;
}

/** What `Driver.begin` decided about a message (WIT `admission`). */
export type Admission =
  /** Process the message, then `complete(ticket)`. */
  | { kind: 'admitted'; ticket: bigint }
  /** A durable checkpoint covers it already (a redelivery): skip it; it was acked now. */
  | { kind: 'covered'; acks: AckOutcome }
  /** `inFlight` messages are taken and not durable (the cap): complete and flush, then retry. */
  | { kind: 'backpressure'; inFlight: number };

/** What `Driver.complete` did (WIT `completion`). */
export interface Completion {
  /**
   * Tickets that joined the completed prefix of their input with this call, oldest first:
   * apply their effects in this order before the next `flush`.
   */
  released: bigint[];
  /** The policy (or the `maxInFlight` cap) says a checkpoint is due: call `flush`. */
  due: boolean;
}

/** The state a checkpoint carries besides its position (WIT `stage-state`), as read back. */
export interface StageState {
  sinks: SinkPosition[];
  operatorStates: OperatorState[];
}

/** A stage state given to `Driver.flush`; both lists default to `[]`. */
export interface StageStateInput {
  sinks?: Array<{ name: string; position: IntegerInput }>;
  operatorStates?: Array<{ name: string; state: Uint8Array }>;
}

/** One processed message (WIT `processed-message`). */
export interface ProcessedMessage {
  /** Id to ack once a checkpoint covers it. */
  id: string;
  /** The message's own offset + 1. */
  nextOffset: IntegerInput;
  /** Default 0. */
  eventTimeMs?: IntegerInput;
}

/** What a driver call did. */
export type Progress =
  | { kind: 'pending'; pending: number }
  | { kind: 'checkpointed'; receipt: Receipt }
  /** A durable checkpoint already covered the message (a redelivery): acked now, not recorded. */
  | { kind: 'covered'; acks: AckOutcome };

/** What recording several messages did. */
export interface BatchProgress {
  /** The checkpoints the batch caused, in order. */
  checkpoints: Receipt[];
  /** Messages that still wait for a checkpoint. */
  pending: number;
  /** Messages of the batch a durable checkpoint already covered: acked, not recorded. */
  covered: number;
}

/** The kind of a changelog event. */
export type ChangeKind = 'processed' | 'watermark' | 'checkpoint';

/** One event in a driver's changelog. */
export interface ChangeEvent {
  kind: ChangeKind;
  sequence: bigint;
  watermark: Watermark;
}

/** A copy of a driver's changelog. */
export interface Changelog {
  /** Retained events, oldest first. */
  events: ChangeEvent[];
  /** Events lost to the overflow policy since the driver was opened. */
  overflowCount: bigint;
  capacity: number;
}

/** Where a reset moved a stage from (WIT `reset-origin`). */
export interface ResetOrigin {
  /** Sequence of the latest before the reset; 0 when nothing was stored. */
  fromSequence: bigint;
  /** Epoch of the latest before the reset (the owner the reset fenced); 0 when nothing was stored. */
  fromEpoch: bigint;
  /** Watermark of the latest before the reset. */
  fromWatermark: Watermark;
  /** The savepoint the reset restored; `null` for a reset to a given position. */
  savepoint: string | null;
}

/** A deliberate move of a stage's position, backwards or forwards (WIT `reset-request`). */
export interface ResetRequestInput {
  runId: string;
  stage: string;
  /** The position to resume from (every field may go backwards). */
  watermark: WatermarkInput;
  /** Positions of the stage's named inputs; they replace the stored ones. Default `[]`. */
  sources?: Array<{ name: string; sequence: IntegerInput; watermark: WatermarkInput }>;
  /** The state the reset checkpoint carries; none (the default) keeps the stored latest's. */
  state?: StageStateInput | null;
  /** Above the stored epoch, fencing every older writer; none (the default): stored + 1. */
  epoch?: IntegerInput | null;
  /** The reset checkpoint's `atMs`. */
  atMs: IntegerInput;
}

/** What a reset did (WIT `reset-receipt`). */
export interface ResetReceipt {
  /** The reset checkpoint, now the durable latest. */
  checkpoint: Checkpoint;
  /** Storage version of the stage's latest after the reset. */
  version: bigint;
  /** Retained older checkpoints the reset removed (as a write prunes). */
  pruned: number;
  /** Where the stage was before. */
  origin: ResetOrigin;
}

/** A page of a stage's history to read (WIT `history-request`). */
export interface HistoryRequestInput {
  /** Start after this sequence; default 0 (from the oldest retained). */
  afterSequence?: IntegerInput;
  /** At most this many checkpoints; 1 or more. */
  maxCheckpoints: number;
  /**
   * At most this many encoded bytes (a page holds at least one checkpoint whatever its size);
   * default 0: the largest page the checkpointer serves (a quarter of its memory limit).
   */
  maxBytes?: IntegerInput;
}

/** One retained checkpoint with what is stored beside it (WIT `history-entry`). */
export interface HistoryEntry {
  checkpoint: Checkpoint;
  /** Its encoded size in bytes (as `Codec.encode` gives it). */
  encodedBytes: bigint;
  /** Set when this checkpoint is a reset: where the stage was before. */
  reset: ResetOrigin | null;
}

/** One page of history, oldest first (WIT `history-page`). */
export interface HistoryPage {
  /** The last page ends with the latest. */
  entries: HistoryEntry[];
  /** Ask again with `afterSequence` set to this; `null` on the last page. */
  nextAfter: bigint | null;
}

/** A named, pinned copy of one checkpoint of a stage (WIT `savepoint-info`). */
export interface SavepointInfo {
  /** 1 to 128 bytes of UTF-8. */
  name: string;
  /** The pinned checkpoint's position. */
  point: ResumePoint;
  /** The pinned checkpoint's `atMs`. */
  atMs: bigint;
  /** Its encoded size in bytes. */
  encodedBytes: bigint;
}

/** What is stored for one stage (WIT `stage-summary`). */
export interface StageSummary {
  runId: string;
  stage: string;
  /** The latest's position; `null` when the stage holds only savepoints or its latest is damaged. */
  latest: ResumePoint | null;
  /** The latest's `atMs`; 0 when `latest` is `null`. */
  atMs: bigint;
  /** The latest's encoded size; 0 when `latest` is `null`. */
  encodedBytes: bigint;
  /** Set when the latest is a reset. */
  reset: ResetOrigin | null;
  /** Set when the latest is damaged: `resumePoint` will fall back or fail. */
  damage: Corruption | null;
  /** How many retained copies are stored. */
  retained: number;
  /** How many savepoints are stored. */
  savepoints: number;
}

/** One retained copy of a stage, as stored (WIT `stored-copy`). */
export interface StoredCopy {
  /** The sequence its key names. */
  sequence: bigint;
  /** The stored bytes (the checkpoint with what is stored beside it). */
  bytes: Uint8Array;
}

/** One savepoint of a stage, as stored (WIT `stored-savepoint`). */
export interface StoredSavepoint {
  name: string;
  /** The stored bytes. */
  bytes: Uint8Array;
}

/**
 * Everything stored for one stage, byte for byte (WIT `stage-export`): what `exportStage`
 * answers, so that `importStage` recreates the stage in another store or namespace with its
 * sequences, epochs, stored ack ids and reset records unchanged.
 */
export interface StageExport {
  runId: string;
  stage: string;
  /** The latest's stored bytes; `null` when the stage holds only savepoints. */
  latest: Uint8Array | null;
  /** The retained copies, oldest first. */
  retained: StoredCopy[];
  /** The savepoints, by name. */
  savepoints: StoredSavepoint[];
}

/** What `importStage` takes: a `StageExport`, or one built by hand. */
export interface StageExportInput {
  runId: string;
  stage: string;
  /** The latest's stored bytes; none (the default) when the stage holds only savepoints. */
  latest?: Uint8Array | null;
  /** The retained copies; default `[]`. */
  retained?: Array<{ sequence: IntegerInput; bytes: Uint8Array }>;
  /** The savepoints; default `[]`. */
  savepoints?: Array<{ name: string; bytes: Uint8Array }>;
}

/**
 * What `importStage` did (or, for a dry run, would do) to the stage (WIT `import-action`):
 * `'created'` (nothing of it was stored here), `'replaced'` (an older chain was, or part of
 * it), `'identical'` (every entry was here with the same bytes: nothing written).
 */
export type ImportAction = 'created' | 'replaced' | 'identical';

/** What an import wrote (WIT `import-receipt`; for a dry run, what it would write). */
export interface ImportReceipt {
  action: ImportAction;
  /** Entries put (latest, retained copies, savepoints). */
  keysWritten: number;
  /** Retained copies of the replaced chain removed (the export does not hold them). */
  keysRemoved: number;
  /** Bytes put. */
  bytesWritten: bigint;
}

/** How `importStage` imports. */
export interface ImportOptions {
  /** Replace an older chain of the stage stored here; default `false` (refused). */
  replaceOlder?: boolean;
  /** Refuse as the import would and answer what it would do, writing nothing; default `false`. */
  dryRun?: boolean;
}

/**
 * Writes and reads the checkpoints of one namespace of a store, through its own instance of the
 * component. Every method is synchronous and throws a `CheckpointError` subclass for a refusal,
 * or `ComponentFailure` when the component could not run the call (after which this
 * checkpointer refuses every call).
 */
export class Checkpointer implements Disposable {
  /** Use {@link Checkpointer.open}. */
  private constructor();
  /**
   * Opens a checkpointer in a new instance of the component over `storage` and `consumer`
   * (`null` for none). Does no storage I/O. Throws `InvalidInputError` for bad options.
   */
  static open(
    storage: Storage,
    consumer: Consumer | null | undefined,
    options: Options,
    sandbox?: { runtime?: Runtime },
  ): Checkpointer;
  /** Makes `checkpoint` the durable latest of its (runId, stage), then acks `batch`. */
  write(checkpoint: CheckpointInput, batch?: string[]): Receipt;
  /**
   * Acks again the ids stored with the checkpoint `resumePoint` would resume from: repairs a
   * crash between a commit and its acks. `{kind: 'acked', count: 0}` when nothing is stored.
   */
  recoverAcks(runId: string, stage: string): AckOutcome;
  /** The latest checkpoint; `NotFoundError` when none, `CorruptError` when damaged. */
  get(runId: string, stage: string): Checkpoint;
  /** Where (runId, stage) should restart: latest, else newest intact retained, else fresh. */
  resumePoint(runId: string, stage: string): Resume;
  /**
   * Retained checkpoints, oldest first, ending with the latest; empty when nothing is stored.
   * Read page by page (the checkpoints of `historyEntries`), so a history larger than one
   * answer (a quarter of the memory limit) is read all the same.
   */
  history(runId: string, stage: string): Checkpoint[];
  /**
   * One page of the retained checkpoints, oldest first; the last page ends with the latest and
   * has `nextAfter` null. `InvalidInputError` for `maxCheckpoints` 0.
   */
  historyPage(runId: string, stage: string, request: HistoryRequestInput): HistoryPage;
  /** Every retained checkpoint with its size and reset record, oldest first, read page by page. */
  historyEntries(runId: string, stage: string): HistoryEntry[];
  /** The retained checkpoint with `sequence` (the latest included); `NotFoundError` when not retained. */
  getAt(runId: string, stage: string, sequence: IntegerInput): Checkpoint;
  /**
   * Moves (runId, stage) to `request.watermark`, backwards or forwards, with an epoch above the
   * stored one: every older writer is fenced from then on. `InvalidInputError` (field `epoch`)
   * for an epoch not above the stored one.
   */
  reset(request: ResetRequestInput): ResetReceipt;
  /**
   * Pins the latest checkpoint, or the retained one with `sequence`, under `name`: retention,
   * writes, resets and `delete` never remove it.
   */
  createSavepoint(runId: string, stage: string, name: string, sequence?: IntegerInput | null): SavepointInfo;
  /** The savepoints of (runId, stage), by name. */
  listSavepoints(runId: string, stage: string): SavepointInfo[];
  /** The checkpoint a savepoint pins; `NotFoundError` when there is no such savepoint. */
  getSavepoint(runId: string, stage: string, name: string): Checkpoint;
  /** Resets (runId, stage) to a savepoint (position and state), as `reset` does, recording its name. */
  restoreSavepoint(
    runId: string,
    stage: string,
    name: string,
    at: { atMs: IntegerInput; epoch?: IntegerInput | null },
  ): ResetReceipt;
  /** Removes a savepoint; `true` when it existed. */
  deleteSavepoint(runId: string, stage: string, name: string): boolean;
  /**
   * Every stage of the namespace (of one run, when given), ordered by run and stage; a damaged
   * latest is reported in its summary, not thrown.
   */
  listStages(runId?: string | null): StageSummary[];
  /**
   * Everything stored for (runId, stage), as stored: latest, retained copies, savepoints.
   * `CorruptError` when an entry is damaged (damage is not copied), `NotFoundError` when
   * nothing is stored. Never writes.
   */
  exportStage(runId: string, stage: string): StageExport;
  /**
   * Recreates an exported stage here, byte for byte, in one conditional commit. An older chain
   * stored here is replaced only with `replaceOlder` (else `InvalidInputError`, field
   * `replace-older`); a newer one is a `RegressionError` or `FencedError`. `dryRun` writes
   * nothing and answers what the import would do.
   */
  importStage(exported: StageExportInput, how?: ImportOptions): ImportReceipt;
  /**
   * Removes every checkpoint of (runId, stage) in one commit; returns how many entries. Also
   * forgets the epoch; savepoints are kept.
   */
  delete(runId: string, stage: string): number;
  /**
   * Opens a driver for one (runId, stage), sharing this checkpointer's instance; acks again the
   * ids stored with the checkpoint it resumes from (see `Driver.recoveredAcks`).
   */
  openDriver(options: DriverOptions): Driver;
  /** Releases the component's handle; this checkpointer and its drivers refuse further calls. */
  close(): void;
  [Symbol.dispose](): void;
}

/**
 * Turns processed messages into checkpoints by policy and acks each message once a checkpoint
 * covers it. Open one with {@link Checkpointer.openDriver}.
 */
export class Driver implements Disposable {
  /** Use {@link Checkpointer.openDriver}. */
  private constructor();
  /** The checkpointer this driver writes through. */
  readonly checkpointer: Checkpointer;
  /** Where this driver resumed: read input from `point.watermark.offset`; state from `checkpoint`. */
  resumedFrom(): Resume;
  /** What became of the acks opening this driver sent again for the checkpoint it resumed from. */
  recoveredAcks(): AckOutcome;
  /** The sequence, epoch and watermark of the last durable checkpoint this driver knows. */
  cursor(): ResumePoint;
  /** Records one processed message; writes a checkpoint when the policy says so. */
  recordProcessed(message: ProcessedMessage, nowMs: IntegerInput): Progress;
  /** Records messages in order, in one call; stops at the first error. */
  recordProcessedBatch(messages: ProcessedMessage[], nowMs: IntegerInput): BatchProgress;
  /**
   * Takes a message before it is processed: `admitted` (process, then `complete(ticket)`),
   * `covered` (a redelivery of durable work: skip it; acked now) or `backpressure` (the cap).
   */
  begin(message: Message): Admission;
  /** Marks a taken message done, in any order; never does I/O. */
  complete(ticket: IntegerInput): Completion;
  /**
   * Writes a checkpoint covering every released message, carrying `state` (or the last state
   * given, or the resumed checkpoint's), then acks them; `pending(0)` when there is nothing new.
   */
  flush(nowMs: IntegerInput, state?: StageStateInput | null): Progress;
  /** A copy of the recent events. */
  changelog(): Changelog;
  /** Frees the driver; pending messages are dropped, not flushed. */
  close(): void;
  [Symbol.dispose](): void;
}

/**
 * The checkpoint binary format (FORMAT.md), from the component: encode, decode, validate,
 * chain signatures and resume points of lists. Owns an instance with no storage.
 */
export class Codec {
  /** `runtime`: the limits the codec's instance runs under (`Runtime.shared()` by default). */
  constructor(sandbox?: { runtime?: Runtime });
  /** Canonical bytes of a checkpoint (named lists sorted). */
  encode(checkpoint: CheckpointInput): Uint8Array;
  /** Decodes bytes made by `encode`; `CorruptError` naming the damage. */
  decode(data: Uint8Array): Checkpoint;
  /** Checks the rules of a checkpoint without any I/O; `InvalidInputError` naming the rule. */
  validate(checkpoint: CheckpointInput): void;
  /** Lowercase hex SHA-256 over the chain, in order: equal on every host. */
  chainSignature(checkpoints: CheckpointInput[]): string;
  /** The checkpoint of `stage` with the highest sequence; `NotFoundError` when none. */
  resumePointForStage(checkpoints: CheckpointInput[], stage: string): ResumePoint;
  /** The component's one line about an error (`codec.describe`): every error's `message`. */
  describe(error: CheckpointError): string;
  /** One stable line about a watermark (FORMAT.md "Labels"). */
  watermarkLabel(watermark: WatermarkInput): string;
  /** One stable line about a checkpoint: run, stage, sequence, epoch, watermark, counts, size. */
  checkpointLabel(checkpoint: CheckpointInput): string;
  /** One stable line about a resume point, or that the stage starts fresh. */
  resumePointLabel(point: ResumePointInput): string;
}
