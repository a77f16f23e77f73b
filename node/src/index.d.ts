// Declarations of index.js, the package's entry point (`pipeline-checkpoint`).

export { Checkpointer, Codec, Driver } from './checkpointer.js';
export type {
  AckOutcome,
  BatchProgress,
  ChangeEvent,
  ChangeKind,
  Changelog,
  Checkpoint,
  CheckpointInput,
  CorruptionKind,
  DriverOptions,
  IntegerInput,
  OperatorState,
  Options,
  OverflowPolicy,
  Policy,
  ProcessedMessage,
  Progress,
  Receipt,
  Resume,
  ResumeOrigin,
  ResumePoint,
  SinkPosition,
  SourcePosition,
  Watermark,
  WatermarkInput,
} from './checkpointer.js';
export {
  BrokenStoreError,
  CheckpointError,
  ComponentFailure,
  ConflictError,
  CorruptError,
  FencedError,
  InvalidInputError,
  NotFoundError,
  RegressionError,
  StorageError,
  TooLargeError,
} from './errors.js';
export type {
  CheckpointErrorCode,
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
