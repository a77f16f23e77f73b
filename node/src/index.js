// The Node host of the checkpoint component (pipeline:checkpoint@0.1.0): the same
// target/checkpoint.wasm the Rust host embeds, run through bindings jco generated at build
// time (node/build.sh). See README.md "Embedding from Node".

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
  ComponentFailure,
} from './errors.js';
export { MapStorage, JsonFileStorage, BackendError, compareKeys } from './storage.js';
export { RecordingConsumer, NullConsumer } from './consumer.js';
export { compiledModuleCount } from './component.js';
