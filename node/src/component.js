// Loads the bindings jco generated for the shipped component (component/checkpoint.wasm in the
// repository; node/build.sh generates them at pack time and the npm package carries them in
// generated/) and makes instances of the component, each with its own storage and consumer.
//
// Host limits handled here:
// - The bindings are transpiled with `--instantiation sync`: `instantiate(getCoreModule,
//   imports)` takes the imports per call, so every checkpointer gets its own instance over its
//   own store. The core modules are compiled once per process and shared.
// - jco treats a JS exception thrown by an import as a trap unless it carries a `payload`, and
//   lowers answers without checking them (a u64 wraps, a u32 wraps, a lone surrogate becomes
//   U+FFFD). Every store and consumer answer therefore passes through the adapters below: an
//   exception becomes the WIT error value for that call (the instance stays usable), and an
//   answer the WIT types cannot carry (a version that is not an integer, a value that is not a
//   Uint8Array) becomes a `failed` storage error. Answers that convert are passed on unchanged:
//   the component checks them against the storage contract and answers `broken-store`.
// - jco's per-call read of `process.env.JCO_DEBUG` is removed at build time
//   (tools/patch-generated.mjs).
// - Error texts are the component's: after a call answers an error, `codec.describe` of the same
//   instance words it (errors.js writes none).

import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

import { CheckpointError, ComponentFailure, errorFromWit, setDescriber } from './errors.js';
import { BACKEND_ERROR_KINDS, BackendError } from './storage.js';

const GENERATED = new URL('../generated/', import.meta.url);

let bindings;
try {
  bindings = await import(new URL('checkpoint.js', GENERATED).href);
} catch (e) {
  throw new Error(
    `the component bindings are missing or broken (${fileURLToPath(GENERATED)}checkpoint.js): ` +
      'the npm package ships them (reinstall it); in the repository, run `bash node/build.sh`: ' +
      e.message,
    { cause: e },
  );
}

/** @type {Map<string, WebAssembly.Module>} */
const coreModules = new Map();

/** The core modules of the component, compiled at first use and kept for the process. */
function getCoreModule(name) {
  let module = coreModules.get(name);
  if (module === undefined) {
    module = new WebAssembly.Module(readFileSync(new URL(name, GENERATED)));
    coreModules.set(name, module);
  }
  return module;
}

const U64_MAX = (1n << 64n) - 1n;
const U32_MAX = 2 ** 32 - 1;

function isThenable(value) {
  return value !== null && typeof value === 'object' && typeof value.then === 'function';
}

/** The WIT `storage-error` for an exception thrown by a store. */
function storageErrorOf(op, e) {
  if (e instanceof BackendError && BACKEND_ERROR_KINDS.includes(e.kind)) {
    return { tag: e.kind, val: String(e.message) };
  }
  const name = e instanceof Error ? e.name : 'exception';
  const message = e instanceof Error ? e.message : String(e);
  return { tag: 'failed', val: `${op} threw ${name}: ${message}` };
}

/** Thrown inside an import for an answer the WIT types cannot carry; caught below. */
class Unconvertible extends Error {}

/** The result of an import for such an answer: a `failed` storage error (not a trap). */
function unconvertible(op, e) {
  return { tag: 'err', val: { tag: 'failed', val: `${op}: the store's answer cannot be passed to the component: ${e.message}` } };
}

/** A u64 from a BigInt or a safe-integer Number; 0 passes (the component judges it). */
function asU64(value, what) {
  const v = typeof value === 'number' && Number.isSafeInteger(value) ? BigInt(value) : value;
  if (typeof v !== 'bigint' || v < 0n || v > U64_MAX) {
    throw new Unconvertible(`${what} is ${typeof value} ${String(value)}, not a u64 (BigInt or safe-integer Number)`);
  }
  return v;
}

const SYNC_ONLY = 'the Node host needs a synchronous store (Node 20 has no JSPI); it returned a Promise';

/**
 * Runs one storage call: an exception is that call's storage error, an answer that cannot be
 * converted a `failed` one, and `convert(answer)` the `ok` value otherwise.
 */
function storageCall(op, call, convert, promiseError = 'failed') {
  let answer;
  try {
    answer = call();
  } catch (e) {
    return { tag: 'err', val: storageErrorOf(op, e) };
  }
  // A commit that returned a Promise may still apply when it settles: the outcome is unknown.
  if (isThenable(answer)) return { tag: 'err', val: { tag: promiseError, val: `${op}: ${SYNC_ONLY}` } };
  try {
    return { tag: 'ok', val: convert(answer) };
  } catch (e) {
    if (e instanceof Unconvertible) return unconvertible(op, e);
    throw e;
  }
}

/**
 * The `storage` import over a user store. Answers are converted, never judged: the component
 * checks them against the storage contract.
 * @param {import('./storage.js').Storage} store
 */
function storageImport(store) {
  return {
    get(key) {
      return storageCall('get', () => store.get(key), (found) => {
        if (found === null || found === undefined) return { tag: 'missing' };
        if (typeof found !== 'object' || !(found.value instanceof Uint8Array)) {
          throw new Unconvertible(`key ${JSON.stringify(key)} was answered without a Uint8Array value`);
        }
        return { tag: 'found', val: { value: found.value, version: asU64(found.version, 'the version') } };
      });
    },

    commit(writes) {
      const batch = writes.map((w) =>
        w.op.tag === 'put'
          ? { key: w.key, expectedVersion: w.expectedVersion ?? null, op: 'put', value: w.op.val }
          : { key: w.key, expectedVersion: w.expectedVersion ?? null, op: 'delete' },
      );
      return storageCall('commit', () => store.commit(batch), (outcome) => {
        if (outcome !== null && typeof outcome === 'object' && Array.isArray(outcome.committed)) {
          return { tag: 'committed', val: outcome.committed.map((v, i) => asU64(v, `version ${i}`)) };
        }
        if (outcome !== null && typeof outcome === 'object' && 'conflict' in outcome) {
          const i = outcome.conflict;
          if (!Number.isInteger(i) || i < 0 || i > U32_MAX) {
            throw new Unconvertible(`the conflict index ${String(i)} is not a u32`);
          }
          return { tag: 'conflict', val: i };
        }
        throw new Unconvertible('the answer is neither {committed: [...]} nor {conflict: i}');
      }, 'timeout');
    },

    listKeys(prefix) {
      return storageCall('list-keys', () => store.listKeys(prefix), (keys) => {
        if (!Array.isArray(keys)) throw new Unconvertible('the answer is not an array');
        for (const key of keys) {
          if (typeof key !== 'string') throw new Unconvertible(`the key ${String(key)} is not a string`);
          if (!key.isWellFormed()) throw new Unconvertible(`the key ${JSON.stringify(key)} is not well-formed Unicode`);
        }
        return keys;
      });
    },
  };
}

/**
 * The `consumer` import over a user consumer: a thrown exception is the ack's failure message.
 * @param {import('./consumer.js').Consumer} consumer
 */
function consumerImport(consumer) {
  return {
    ack(ids) {
      let answer;
      try {
        answer = consumer.ack(ids);
      } catch (e) {
        return { tag: 'err', val: e instanceof Error ? e.message : String(e) };
      }
      if (isThenable(answer)) return { tag: 'err', val: `ack: the Node host needs a synchronous consumer (Node 20 has no JSPI); it returned a Promise` };
      return { tag: 'ok', val: undefined };
    },
  };
}

/**
 * One instance of the component with its own imports. `call` turns jco's thrown result errors
 * into typed `CheckpointError`s and anything else (a trap) into `ComponentFailure`, after which
 * the instance refuses further calls.
 */
export class Instance {
  /** @type {string | null} Why this instance is unusable, once it is. */
  #broken = null;
  /** @type {string | null} The call in progress, if any. */
  #inCall = null;

  /**
   * @param {import('./storage.js').Storage} storage
   * @param {import('./consumer.js').Consumer} consumer
   */
  constructor(storage, consumer) {
    let root;
    try {
      root = bindings.instantiate(getCoreModule, {
        'pipeline:checkpoint/storage': storageImport(storage),
        'pipeline:checkpoint/consumer': consumerImport(consumer),
        'pipeline:checkpoint/types': {},
      });
    } catch (e) {
      throw new ComponentFailure(`cannot instantiate the component: ${e instanceof Error ? e.message : String(e)}`, e);
    }
    /** The `checkpointer` export: `{Checkpointer, Driver}` resource classes. */
    this.checkpointer = root.checkpointer;
    /** The `codec` export. */
    this.codec = root.codec;
  }

  /** Why this instance refuses calls, or `null` while it serves them. */
  get broken() {
    return this.#broken;
  }

  /** Marks the instance unusable (its handle was closed). */
  close(reason) {
    this.#broken ??= reason;
  }

  /**
   * Runs one component call.
   * @template T
   * @param {string} name The WIT function, for messages.
   * @param {() => T} fn
   * @returns {T}
   */
  call(name, fn) {
    if (this.#broken !== null) {
      throw new ComponentFailure(`\`${name}\`: this instance is unusable after an earlier failure (${this.#broken}); open a new one`);
    }
    if (this.#inCall !== null) {
      // A store or consumer called back into the checkpointer that is calling it. The component
      // model forbids re-entering an instance; refusing here keeps the outer call intact (the
      // store's exception becomes its storage error).
      throw new ComponentFailure(`\`${name}\` was called from inside \`${this.#inCall}\` of the same checkpointer (re-entrant call)`);
    }
    this.#inCall = name;
    let answered;
    try {
      return fn();
    } catch (e) {
      // jco throws a `result` error as a ComponentError whose own `payload` is the WIT value.
      if (e instanceof Error && !(e instanceof CheckpointError) && Object.hasOwn(e, 'payload') && e.payload?.tag) {
        answered = e.payload;
      } else {
        const message = e instanceof Error ? e.message : String(e);
        this.#broken = `\`${name}\` trapped: ${message}`;
        throw new ComponentFailure(`the component call \`${name}\` trapped: ${message}`, e);
      }
    } finally {
      this.#inCall = null;
    }
    throw errorFromWit(answered, this.describe(answered));
  }

  /**
   * The component's one line about a WIT `error` value (`codec.describe`), from this instance.
   * @param {{tag: string, val?: unknown}} error As jco lifts it.
   * @returns {string}
   */
  describe(error) {
    return this.call('codec.describe', () => this.codec.describe(error));
  }
}

/** One instance that words errors made outside a call (by hand, or by the range checks). */
let describer = null;

setDescriber((error) => {
  if (describer === null || describer.broken !== null) {
    describer = new Instance({ get: refuse, commit: refuse, listKeys: refuse }, { ack: refuse });
  }
  return describer.describe(error);
});

function refuse() {
  throw new Error('this instance only describes errors');
}

/**
 * Number of core modules compiled so far in this process (they are compiled once and shared by
 * every instance).
 */
export function compiledModuleCount() {
  return coreModules.size;
}
