// Typed errors: one class per case of the WIT `error` variant, each carrying its payload, and
// one for a call the component could not complete (a trap). The text of every
// `CheckpointError` (`err.message`) is the component's own (`codec.describe`), word for word what
// the Rust and Python hosts show: this module writes none of it.

/** @type {((error: {tag: string, val?: unknown}) => string) | null} */
let describer = null;

/**
 * Sets how an error made outside a call is worded (component.js: `codec.describe` of an
 * instance kept for that). Internal.
 * @param {(error: {tag: string, val?: unknown}) => string} describe
 */
export function setDescriber(describe) {
  describer = describe;
}

function describe(code, payload) {
  const undescribed = () => `${code}: ${JSON.stringify(payload, (_, v) => (typeof v === 'bigint' ? String(v) : v))}`;
  if (describer === null) return undescribed();
  try {
    return describer(payload === undefined ? { tag: code } : { tag: code, val: payload });
  } catch (e) {
    // A payload the WIT cannot carry (a Number where a BigInt belongs): no words for it.
    return `${undescribed()} (not described: ${e instanceof Error ? e.message : String(e)})`;
  }
}

/**
 * A refusal by the component: the call completed and answered one case of the WIT `error`
 * variant. `code` is the WIT case name (`invalid`, `regression`, ...) and `payload` the WIT
 * payload with camelCase fields (`undefined` for `not-found`). Each subclass says what to do.
 * `message` is the component's description (`codec.describe`): from the instance that
 * answered, or, for an error made by hand or by the range checks, from an instance kept for it.
 */
export class CheckpointError extends Error {
  /**
   * @param {string} code WIT case name.
   * @param {unknown} payload WIT payload (camelCase fields, BigInt for u64/s64).
   * @param {string} [message] The component's description; asked of the component when omitted.
   */
  constructor(code, payload, message) {
    super(message ?? describe(code, payload));
    this.name = new.target.name;
    /** @type {string} */
    this.code = code;
    /** @type {unknown} */
    this.payload = payload;
  }
}

/** `invalid`: the input breaks a rule; nothing was read or written. Fix the input. */
export class InvalidInputError extends CheckpointError {
  /**
   * @param {{field: string, reason: string}} payload
   * @param {string} [message]
   */
  constructor(payload, message) {
    super('invalid', payload, message);
    /** The offending field, as a path such as `run-id` or `sources[2].name`. */
    this.field = payload.field;
    /** What is wrong with it. */
    this.reason = payload.reason;
  }
}

/** `regression`: the write would move the stage backwards. Call `resumePoint` and continue. */
export class RegressionError extends CheckpointError {
  /**
   * @param {{storedSequence: bigint, storedWatermark: {offset: bigint, eventTimeMs: bigint},
   *   attemptedSequence: bigint, attemptedWatermark: {offset: bigint, eventTimeMs: bigint},
   *   field: string}} payload
   * @param {string} [message]
   */
  constructor(payload, message) {
    super('regression', payload, message);
    Object.assign(this, {
      storedSequence: payload.storedSequence,
      storedWatermark: payload.storedWatermark,
      attemptedSequence: payload.attemptedSequence,
      attemptedWatermark: payload.attemptedWatermark,
      field: payload.field,
    });
  }
}

/** `fenced`: a writer with a newer epoch owns the stage. Stop this writer. */
export class FencedError extends CheckpointError {
  /**
   * @param {{storedEpoch: bigint, attemptedEpoch: bigint}} payload
   * @param {string} [message]
   */
  constructor(payload, message) {
    super('fenced', payload, message);
    this.storedEpoch = payload.storedEpoch;
    this.attemptedEpoch = payload.attemptedEpoch;
  }
}

/** `conflict`: the stage changed between read and commit. Re-read and retry. */
export class ConflictError extends CheckpointError {
  /**
   * @param {string} payload What changed.
   * @param {string} [message]
   */
  constructor(payload, message) {
    super('conflict', payload, message);
    this.detail = payload;
  }
}

/** `not-found`: nothing is stored for this run and stage. */
export class NotFoundError extends CheckpointError {
  /** @param {string} [message] */
  constructor(message) {
    super('not-found', undefined, message);
  }
}

/**
 * `corrupt`: stored or given bytes are damaged. Never start from zero: use the fallback of
 * `resumePoint`, or repair.
 */
export class CorruptError extends CheckpointError {
  /**
   * @param {{kind: string, key: string, detail: string}} payload
   * @param {string} [message]
   */
  constructor(payload, message) {
    super('corrupt', payload, message);
    /** The corruption kind (`truncated`, `crc-mismatch`, ... as in the WIT). */
    this.kind = payload.kind;
    this.key = payload.key;
    this.detail = payload.detail;
  }
}

/** `storage`: the backend failed; nothing was acked. Retry the same write. */
export class StorageError extends CheckpointError {
  /**
   * @param {string} payload The host's message.
   * @param {string} [message]
   */
  constructor(payload, message) {
    super('storage', payload, message);
    this.detail = payload;
  }
}

/** `too-large`: the encoded checkpoint exceeds the configured limit. */
export class TooLargeError extends CheckpointError {
  /**
   * @param {{size: bigint, limit: bigint}} payload
   * @param {string} [message]
   */
  constructor(payload, message) {
    super('too-large', payload, message);
    this.size = payload.size;
    this.limit = payload.limit;
  }
}

/**
 * `broken-store`: the store answered outside the storage contract (a found entry with version
 * 0, a wrong count or kind of versions from `commit`, a conflict at a write without condition
 * or outside the batch, listed keys outside the prefix or out of order). Found by the
 * component, the same in every host. Nothing was acked; fix or replace the store, then call
 * `resumePoint`.
 */
export class BrokenStoreError extends CheckpointError {
  /**
   * @param {string} payload The operation and the broken rule.
   * @param {string} [message]
   */
  constructor(payload, message) {
    super('broken-store', payload, message);
    this.detail = payload;
  }
}

/**
 * The component could not complete a call: it trapped, ran past its deadline, or the handle was
 * closed. The handle refuses every further call; open a new one. Not a `CheckpointError`:
 * nothing about the checkpoint is known. `kind` names the case as the Rust host's
 * `RuntimeErrorKind` does (`Deadline`, `MemoryLimit`, `Trap`, `Unusable`, `Instantiate`), and
 * each of the first four has its own subclass; `null` for a closed handle or a re-entrant call.
 */
export class ComponentFailure extends Error {
  /**
   * @param {string} message
   * @param {unknown} [cause]
   * @param {string | null} [kind]
   */
  constructor(message, cause, kind = null) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = new.target.name;
    /** @type {string | null} */
    this.kind = kind;
  }
}

/**
 * `Deadline`: the call ran past the runtime's `callDeadlineMs` (time in store and consumer
 * callbacks counts) and was interrupted. Open a new handle; a store call that hangs is the
 * usual cause.
 */
export class DeadlineError extends ComponentFailure {
  /**
   * @param {string} message
   * @param {unknown} [cause]
   */
  constructor(message, cause) {
    super(message, cause, 'Deadline');
  }
}

/**
 * `MemoryLimit`: the call trapped after the runtime's `maxMemoryBytes` refused to grow the
 * instance's memory. Lower the size limits in the options, or raise the memory limit.
 */
export class MemoryLimitError extends ComponentFailure {
  /**
   * @param {string} message
   * @param {unknown} [cause]
   */
  constructor(message, cause) {
    super(message, cause, 'MemoryLimit');
  }
}

/**
 * `Trap`: the component trapped for another reason (a bug, a store that broke its contract, or
 * a call to an import the Node host does not grant). Open a new handle.
 */
export class TrapError extends ComponentFailure {
  /**
   * @param {string} message
   * @param {unknown} [cause]
   */
  constructor(message, cause) {
    super(message, cause, 'Trap');
  }
}

/** `Unusable`: this handle's instance failed earlier and refuses every call: open a new one. */
export class UnusableError extends ComponentFailure {
  /**
   * @param {string} message
   * @param {unknown} [cause]
   */
  constructor(message, cause) {
    super(message, cause, 'Unusable');
  }
}

/**
 * The typed error for a WIT `error` value as jco lifts it (`{tag, val}`).
 * @param {{tag: string, val?: any}} error
 * @param {string} [message] The component's description of it.
 * @returns {CheckpointError}
 */
export function errorFromWit(error, message) {
  const { tag, val } = error;
  switch (tag) {
    case 'invalid':
      return new InvalidInputError(val, message);
    case 'regression':
      return new RegressionError(val, message);
    case 'fenced':
      return new FencedError(val, message);
    case 'conflict':
      return new ConflictError(val, message);
    case 'not-found':
      return new NotFoundError(message);
    case 'corrupt':
      return new CorruptError(val, message);
    case 'storage':
      return new StorageError(val, message);
    case 'too-large':
      return new TooLargeError(val, message);
    case 'broken-store':
      return new BrokenStoreError(val, message);
    default:
      throw new ComponentFailure(`the component answered an unknown error case ${JSON.stringify(tag)}`);
  }
}

/**
 * The WIT `error` value of a `CheckpointError`, as jco lowers it (what `codec.describe` takes).
 * @param {CheckpointError} error
 * @returns {{tag: string, val?: unknown}}
 */
export function errorToWit(error) {
  return error.payload === undefined ? { tag: error.code } : { tag: error.code, val: error.payload };
}
