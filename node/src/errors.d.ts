// Declarations of errors.js: one class per case of the WIT `error` variant, each carrying its
// payload (camelCase fields, BigInt for u64/s64), and ComponentFailure for a trap. The `message`
// of every CheckpointError is the component's description of it (`codec.describe`).

import type { CorruptionKind, Watermark } from './checkpointer.js';

/** The WIT case names of the `error` variant. */
export type CheckpointErrorCode =
  | 'invalid'
  | 'regression'
  | 'fenced'
  | 'conflict'
  | 'not-found'
  | 'corrupt'
  | 'storage'
  | 'too-large'
  | 'broken-store';

/** Payload of `invalid` (WIT `invalid-input`). */
export interface InvalidInput {
  /** The offending field, as a path such as `run-id` or `sources[2].name`. */
  field: string;
  /** What is wrong with it. */
  reason: string;
}

/** Payload of `regression` (WIT `regression-info`). */
export interface RegressionInfo {
  storedSequence: bigint;
  storedWatermark: Watermark;
  attemptedSequence: bigint;
  attemptedWatermark: Watermark;
  /** Which rule was broken: `sequence`, `offset` or `event-time`. */
  field: string;
}

/** Payload of `fenced` (WIT `fenced-info`). */
export interface FencedInfo {
  /** Epoch of the stored latest checkpoint: the current owner's. */
  storedEpoch: bigint;
  /** Epoch of the writer that was refused. */
  attemptedEpoch: bigint;
}

/** Payload of `corrupt` (WIT `corruption`). */
export interface Corruption {
  kind: CorruptionKind;
  /** The storage key the bytes came from; `''` when they were passed in directly. */
  key: string;
  /** Details for an operator. */
  detail: string;
}

/** Payload of `too-large` (WIT `too-large-info`). */
export interface TooLargeInfo {
  /** Encoded size in bytes. */
  size: bigint;
  /** The limit in bytes. */
  limit: bigint;
}

/**
 * A refusal by the component: the call completed and answered one case of the WIT `error`
 * variant. Catch a subclass with `instanceof`; each says what to do. `message` is the
 * component's one line about it (`codec.describe`), the same words in every host; made by hand
 * without `message`, the error asks the component for it.
 */
export class CheckpointError extends Error {
  constructor(code: CheckpointErrorCode, payload: unknown, message?: string);
  /** The WIT case name. */
  code: CheckpointErrorCode;
  /** The WIT payload (`undefined` for `not-found`). */
  payload: unknown;
}

/** `invalid`: the input breaks a rule; nothing was read or written. Fix the input. */
export class InvalidInputError extends CheckpointError {
  constructor(payload: InvalidInput, message?: string);
  code: 'invalid';
  payload: InvalidInput;
  field: string;
  reason: string;
}

/** `regression`: the write would move the stage backwards. Call `resumePoint` and continue. */
export class RegressionError extends CheckpointError {
  constructor(payload: RegressionInfo, message?: string);
  code: 'regression';
  payload: RegressionInfo;
  storedSequence: bigint;
  storedWatermark: Watermark;
  attemptedSequence: bigint;
  attemptedWatermark: Watermark;
  /** Which rule was broken: `sequence`, `offset` or `event-time`. */
  field: string;
}

/** `fenced`: a writer with a newer epoch owns the stage. Stop this writer. */
export class FencedError extends CheckpointError {
  constructor(payload: FencedInfo, message?: string);
  code: 'fenced';
  payload: FencedInfo;
  storedEpoch: bigint;
  attemptedEpoch: bigint;
}

/** `conflict`: the stage changed between read and commit. Re-read and retry. */
export class ConflictError extends CheckpointError {
  constructor(payload: string, message?: string);
  code: 'conflict';
  payload: string;
  /** What changed (the payload). */
  detail: string;
}

/** `not-found`: nothing is stored for this run and stage. */
export class NotFoundError extends CheckpointError {
  constructor(message?: string);
  code: 'not-found';
  payload: undefined;
}

/**
 * `corrupt`: stored or given bytes are damaged. Never start from zero: use the fallback of
 * `resumePoint`, or repair.
 */
export class CorruptError extends CheckpointError {
  constructor(payload: Corruption, message?: string);
  code: 'corrupt';
  payload: Corruption;
  kind: CorruptionKind;
  /** The storage key; `''` for bytes passed in directly. */
  key: string;
  detail: string;
}

/** `storage`: the backend failed; nothing was acked. Retry the same write. */
export class StorageError extends CheckpointError {
  constructor(payload: string, message?: string);
  code: 'storage';
  payload: string;
  /** The host's message (the payload). */
  detail: string;
}

/** `too-large`: the encoded checkpoint exceeds the configured limit. */
export class TooLargeError extends CheckpointError {
  constructor(payload: TooLargeInfo, message?: string);
  code: 'too-large';
  payload: TooLargeInfo;
  size: bigint;
  limit: bigint;
}

/**
 * `broken-store`: the store answered outside the storage contract (a found entry with version
 * 0, a wrong count or kind of versions from `commit`, a conflict at a write without condition
 * or outside the batch, listed keys outside the prefix or out of order). Found by the
 * component, the same in every host. Nothing was acked; fix or replace the store, then call
 * `resumePoint`.
 */
export class BrokenStoreError extends CheckpointError {
  constructor(payload: string, message?: string);
  code: 'broken-store';
  payload: string;
  /** The operation and the broken rule (the payload). */
  detail: string;
}

/** The Rust host's `RuntimeErrorKind` cases a `ComponentFailure` can be. */
export type ComponentFailureKind = 'Deadline' | 'MemoryLimit' | 'Trap' | 'Unusable' | 'Instantiate';

/**
 * The component could not complete a call: it trapped, ran past its deadline, or the handle was
 * closed. The handle refuses every further call; open a new one. Not a `CheckpointError`.
 * `kind` is `null` for a closed handle or a re-entrant call.
 */
export class ComponentFailure extends Error {
  constructor(message: string, cause?: unknown, kind?: ComponentFailureKind | null);
  readonly kind: ComponentFailureKind | null;
}

/** `Deadline`: the call ran past the runtime's `callDeadlineMs` (callbacks included). */
export class DeadlineError extends ComponentFailure {
  constructor(message: string, cause?: unknown);
  readonly kind: 'Deadline';
}

/** `MemoryLimit`: the call trapped after `maxMemoryBytes` refused to grow the memory. */
export class MemoryLimitError extends ComponentFailure {
  constructor(message: string, cause?: unknown);
  readonly kind: 'MemoryLimit';
}

/** `Trap`: the component trapped for another reason. */
export class TrapError extends ComponentFailure {
  constructor(message: string, cause?: unknown);
  readonly kind: 'Trap';
}

/** `Unusable`: the instance failed earlier and refuses every call. */
export class UnusableError extends ComponentFailure {
  constructor(message: string, cause?: unknown);
  readonly kind: 'Unusable';
}
