// Typed errors: one class per case of the WIT `error` variant, each carrying its payload, and
// one for a call the component could not complete (a trap).

/**
 * A refusal by the component: the call completed and answered one case of the WIT `error`
 * variant. `code` is the WIT case name (`invalid`, `regression`, ...) and `payload` the WIT
 * payload with camelCase fields (`undefined` for `not-found`). Each subclass says what to do.
 */
export class CheckpointError extends Error {
  /**
   * @param {string} code WIT case name.
   * @param {unknown} payload WIT payload (camelCase fields, BigInt for u64/s64).
   * @param {string} message Human-readable description.
   */
  constructor(code, payload, message) {
    super(message);
    this.name = new.target.name;
    /** @type {string} */
    this.code = code;
    /** @type {unknown} */
    this.payload = payload;
  }
}

/** `invalid`: the input breaks a rule; nothing was read or written. Fix the input. */
export class InvalidInputError extends CheckpointError {
  /** @param {{field: string, reason: string}} payload */
  constructor(payload) {
    super('invalid', payload, `invalid input: \`${payload.field}\`: ${payload.reason}`);
    /** The offending field, as a path such as `run-id` or `sources[2].name`. */
    this.field = payload.field;
    /** What is wrong with it. */
    this.reason = payload.reason;
  }
}

const watermarkText = (w) => `offset ${w.offset}, event time ${w.eventTimeMs} ms`;

/** `regression`: the write would move the stage backwards. Call `resumePoint` and continue. */
export class RegressionError extends CheckpointError {
  /**
   * @param {{storedSequence: bigint, storedWatermark: {offset: bigint, eventTimeMs: bigint},
   *   attemptedSequence: bigint, attemptedWatermark: {offset: bigint, eventTimeMs: bigint},
   *   field: string}} payload
   */
  constructor(payload) {
    super(
      'regression',
      payload,
      `regression: the ${payload.field} would move backwards (stored sequence ` +
        `${payload.storedSequence} at ${watermarkText(payload.storedWatermark)}, attempted ` +
        `sequence ${payload.attemptedSequence} at ${watermarkText(payload.attemptedWatermark)}); ` +
        'nothing was written or acked: continue from the resume point',
    );
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
  /** @param {{storedEpoch: bigint, attemptedEpoch: bigint}} payload */
  constructor(payload) {
    super(
      'fenced',
      payload,
      `fenced: the stage is owned by epoch ${payload.storedEpoch}, this writer has epoch ` +
        `${payload.attemptedEpoch}; nothing was written or acked: stop this writer`,
    );
    this.storedEpoch = payload.storedEpoch;
    this.attemptedEpoch = payload.attemptedEpoch;
  }
}

/** `conflict`: the stage changed between read and commit. Re-read and retry. */
export class ConflictError extends CheckpointError {
  /** @param {string} payload What changed. */
  constructor(payload) {
    super('conflict', payload, `conflict: ${payload}; nothing was written or acked: re-read the stage and retry`);
    this.detail = payload;
  }
}

/** `not-found`: nothing is stored for this run and stage. */
export class NotFoundError extends CheckpointError {
  constructor() {
    super('not-found', undefined, 'not found: nothing is stored for this run and stage');
  }
}

/**
 * `corrupt`: stored or given bytes are damaged. Never start from zero: use the fallback of
 * `resumePoint`, or repair.
 */
export class CorruptError extends CheckpointError {
  /** @param {{kind: string, key: string, detail: string}} payload */
  constructor(payload) {
    const where = payload.key === '' ? ' in the given bytes' : ` at key ${JSON.stringify(payload.key)}`;
    const detail = payload.detail === '' ? '' : `: ${payload.detail}`;
    super('corrupt', payload, `corrupt data: ${payload.kind}${where}${detail}`);
    /** The corruption kind (`truncated`, `crc-mismatch`, ... as in the WIT). */
    this.kind = payload.kind;
    this.key = payload.key;
    this.detail = payload.detail;
  }
}

/** `storage`: the backend failed; nothing was acked. Retry the same write. */
export class StorageError extends CheckpointError {
  /** @param {string} payload The host's message. */
  constructor(payload) {
    super(
      'storage',
      payload,
      `storage failure: ${payload}; nothing was acked: retry the same write (a committed one is accepted as a replay)`,
    );
    this.detail = payload;
  }
}

/** `too-large`: the encoded checkpoint exceeds the configured limit. */
export class TooLargeError extends CheckpointError {
  /** @param {{size: bigint, limit: bigint}} payload */
  constructor(payload) {
    super(
      'too-large',
      payload,
      `checkpoint too large: ${payload.size} bytes encoded, the limit is ${payload.limit} bytes; nothing was written`,
    );
    this.size = payload.size;
    this.limit = payload.limit;
  }
}

/**
 * The component could not complete a call: it trapped (for example because a store broke the
 * storage contract), or the handle was closed. The handle refuses every further call; open a
 * new one. Not a `CheckpointError`: nothing about the checkpoint is known.
 */
export class ComponentFailure extends Error {
  /**
   * @param {string} message
   * @param {unknown} [cause]
   */
  constructor(message, cause) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = 'ComponentFailure';
  }
}

/**
 * The typed error for a WIT `error` value as jco lifts it (`{tag, val}`).
 * @param {{tag: string, val?: any}} error
 * @returns {CheckpointError}
 */
export function errorFromWit(error) {
  const { tag, val } = error;
  switch (tag) {
    case 'invalid':
      return new InvalidInputError(val);
    case 'regression':
      return new RegressionError(val);
    case 'fenced':
      return new FencedError(val);
    case 'conflict':
      return new ConflictError(val);
    case 'not-found':
      return new NotFoundError();
    case 'corrupt':
      return new CorruptError(val);
    case 'storage':
      return new StorageError(val);
    case 'too-large':
      return new TooLargeError(val);
    default:
      throw new ComponentFailure(`the component answered an unknown error case ${JSON.stringify(tag)}`);
  }
}
