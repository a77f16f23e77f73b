// Declarations of index.js, the package's entry point (`pipeline-checkpoint`).

export { Checkpointer, Codec, Driver } from './checkpointer.js';
export type {
  AckOutcome,
  Admission,
  BatchProgress,
  ChangeEvent,
  ChangeKind,
  Changelog,
  Checkpoint,
  CheckpointInput,
  Completion,
  CorruptionKind,
  DriverOptions,
  HistoryEntry,
  HistoryPage,
  HistoryRequestInput,
  ImportAction,
  ImportOptions,
  ImportReceipt,
  IntegerInput,
  Message,
  OperatorState,
  Options,
  OverflowPolicy,
  Policy,
  ProcessedMessage,
  Progress,
  Receipt,
  ResetOrigin,
  ResetReceipt,
  ResetRequestInput,
  Resume,
  ResumeOrigin,
  ResumePoint,
  ResumePointInput,
  SavepointInfo,
  SinkPosition,
  SourcePosition,
  StageExport,
  StageExportInput,
  StageState,
  StageStateInput,
  StageSummary,
  StoredCopy,
  StoredSavepoint,
  Watermark,
  WatermarkInput,
} from './checkpointer.js';
export {
  BrokenStoreError,
  CheckpointError,
  ComponentFailure,
  ConflictError,
  CorruptError,
  DeadlineError,
  FencedError,
  InvalidInputError,
  MemoryLimitError,
  NotFoundError,
  RegressionError,
  StorageError,
  TooLargeError,
  TrapError,
  UnusableError,
} from './errors.js';
export type {
  CheckpointErrorCode,
  ComponentFailureKind,
  Corruption,
  FencedInfo,
  InvalidInput,
  RegressionInfo,
  TooLargeInfo,
} from './errors.js';
export { BackendError, JsonFileStorage, MapStorage, compareKeys } from './storage.js';
export type { BackendErrorKind, CommitOutcome, Storage, StoredEntry, StorageWrite } from './storage.js';
export { NullConsumer, RecordingConsumer } from './consumer.js';
export type { Consumer } from './consumer.js';

/**
 * Number of core modules compiled so far in this process (compiled once, shared by every
 * instance).
 */
export function compiledModuleCount(): number;

/** The sandbox's limits, as in the Rust host's `RuntimeConfig`. */
export interface RuntimeLimits {
  /** Longest one call may run, store and consumer callbacks included. Default 10 000 ms. */
  callDeadlineMs?: number;
  /** Largest linear memory of one instance, 64 KiB to 4 GiB. Default 64 MiB. */
  maxMemoryBytes?: number;
}

/**
 * The sandbox's limits and the bindings they apply to. Pass one as `{runtime}` to
 * `Checkpointer.open` or `new Codec` to change the limits; every handle gets its own instance.
 */
export class Runtime {
  constructor(limits?: RuntimeLimits);
  readonly callDeadlineMs: number;
  readonly maxMemoryBytes: number;
  /** The runtime of the shipped component with the default limits. */
  static shared(): Runtime;
  /** A runtime over bindings made by `node tools/transpile.mjs` (repository only). */
  static load(bindings: string | URL, limits?: RuntimeLimits): Promise<Runtime>;
}
