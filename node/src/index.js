// The Node host of the checkpoint component (pipeline:checkpoint@0.1.0): the same component the
// Rust and Python hosts embed (component/checkpoint.wasm), run through bindings jco generated
// when the package was packed (node/build.sh). Declarations: index.d.ts. See README.md.

export { Checkpointer, Driver, Codec } from './checkpointer.js';
export {
  CheckpointError,
  InvalidInputError,
  RegressionError,
  FencedError,
  ConflictError,
  NotFoundError,
  CorruptError,
  StorageError,
  TooLargeError,
  BrokenStoreError,
  ComponentFailure,
  DeadlineError,
  MemoryLimitError,
  TrapError,
  UnusableError,
} from './errors.js';
export { MapStorage, JsonFileStorage, BackendError, compareKeys } from './storage.js';
export { RecordingConsumer, NullConsumer } from './consumer.js';
export { Runtime, compiledModuleCount } from './component.js';
