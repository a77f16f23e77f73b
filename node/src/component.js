// Loads the bindings jco generated for target/checkpoint.wasm (node/build.sh) and makes
// instances of the component, each with its own storage and consumer.
//
// Host limits handled here:
// - The bindings are transpiled with `--instantiation sync`: `instantiate(getCoreModule,
//   imports)` takes the imports per call, so every checkpointer gets its own instance over its
//   own store. The core modules are compiled once per process and shared.
// - jco treats a JS exception thrown by an import as a trap unless it carries a `payload`, and
//   lowers answers without checking them. Every store and consumer answer therefore passes
//   through the adapters below: an exception becomes the WIT error value for that call (the
//   instance stays usable); an answer that breaks the storage contract becomes a trap, as in
//   the Rust host, and the instance refuses further calls.
// - jco's per-call read of `process.env.JCO_DEBUG` is removed at build time
//   (tools/patch-generated.mjs).

import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

import { CheckpointError, ComponentFailure, errorFromWit } from './errors.js';
import { BACKEND_ERROR_KINDS, BackendError, compareKeys } from './storage.js';

const GENERATED = new URL('../generated/', import.meta.url);

let bindings;
try {
  bindings = await import(new URL('checkpoint.js', GENERATED).href);
} catch (e) {
  throw new Error(
    `the component bindings are missing or broken (${fileURLToPath(GENERATED)}checkpoint.js): ` +
      `run \`bash node/build.sh\` after \`make guest\`: ${e.message}`,
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

/** Thrown inside an import to trap: the store broke its contract (a host bug). */
function contractBreach(op, what) {
  return new WebAssembly.RuntimeError(`storage backend broke its contract in \`${op}\`: ${what}`);
}

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

function asVersion(value, op, what) {
  const v = typeof value === 'number' && Number.isSafeInteger(value) ? BigInt(value) : value;
  if (typeof v !== 'bigint' || v < 0n || v > U64_MAX) {
    throw contractBreach(op, `${what} is ${typeof value} ${String(value)}, not a u64 BigInt`);
  }
  return v;
}

const SYNC_ONLY = 'the Node host needs a synchronous store (Node 20 has no JSPI); it returned a Promise';

/**
 * The `storage` import over a user store.
 * @param {import('./storage.js').Storage} store
 */
function storageImport(store) {
  return {
    get(key) {
      let found;
      try {
        found = store.get(key);
      } catch (e) {
        return { tag: 'err', val: storageErrorOf('get', e) };
      }
      if (isThenable(found)) return { tag: 'err', val: { tag: 'failed', val: `get: ${SYNC_ONLY}` } };
      if (found === null || found === undefined) return { tag: 'ok', val: { tag: 'missing' } };
      if (!(found.value instanceof Uint8Array)) {
        throw contractBreach('get', `key ${JSON.stringify(key)} was found without a Uint8Array value`);
      }
      const version = asVersion(found.version, 'get', `the version of key ${JSON.stringify(key)}`);
      if (version === 0n) throw contractBreach('get', `key ${JSON.stringify(key)} was found with version 0`);
      return { tag: 'ok', val: { tag: 'found', val: { value: found.value, version } } };
    },

    commit(writes) {
      const batch = writes.map((w) =>
        w.op.tag === 'put'
          ? { key: w.key, expectedVersion: w.expectedVersion ?? null, op: 'put', value: w.op.val }
          : { key: w.key, expectedVersion: w.expectedVersion ?? null, op: 'delete' },
      );
      let outcome;
      try {
        outcome = store.commit(batch);
      } catch (e) {
        return { tag: 'err', val: storageErrorOf('commit', e) };
      }
      if (isThenable(outcome)) {
        // It may still apply when the Promise settles: the outcome is unknown.
        return { tag: 'err', val: { tag: 'timeout', val: `commit: ${SYNC_ONLY}` } };
      }
      if (outcome !== null && typeof outcome === 'object' && Array.isArray(outcome.committed)) {
        if (outcome.committed.length !== writes.length) {
          throw contractBreach('commit', `${outcome.committed.length} versions for a batch of ${writes.length} writes`);
        }
        const versions = outcome.committed.map((v, i) => asVersion(v, 'commit', `version ${i}`));
        const wrong = versions.findIndex((v, i) => (writes[i].op.tag === 'put') !== (v !== 0n));
        if (wrong >= 0) {
          throw contractBreach('commit', `version ${versions[wrong]} for write ${wrong} (0 is for deletes only)`);
        }
        return { tag: 'ok', val: { tag: 'committed', val: versions } };
      }
      if (outcome !== null && typeof outcome === 'object' && 'conflict' in outcome) {
        const i = outcome.conflict;
        if (!Number.isInteger(i) || i < 0 || i >= writes.length) {
          throw contractBreach('commit', `conflict at index ${String(i)} in a batch of ${writes.length} writes`);
        }
        return { tag: 'ok', val: { tag: 'conflict', val: i } };
      }
      throw contractBreach('commit', 'the answer is neither {committed: [...]} nor {conflict: i}');
    },

    listKeys(prefix) {
      let keys;
      try {
        keys = store.listKeys(prefix);
      } catch (e) {
        return { tag: 'err', val: storageErrorOf('list-keys', e) };
      }
      if (isThenable(keys)) return { tag: 'err', val: { tag: 'failed', val: `list-keys: ${SYNC_ONLY}` } };
      if (!Array.isArray(keys)) throw contractBreach('list-keys', 'the answer is not an array');
      for (let i = 0; i < keys.length; i++) {
        const key = keys[i];
        if (typeof key !== 'string' || !key.isWellFormed() || !key.startsWith(prefix)) {
          throw contractBreach('list-keys', `key ${JSON.stringify(key)} lacks the prefix ${JSON.stringify(prefix)}`);
        }
        if (i > 0 && compareKeys(keys[i - 1], key) >= 0) {
          throw contractBreach(
            'list-keys',
            `keys ${JSON.stringify(keys[i - 1])} and ${JSON.stringify(key)} are not in ascending order`,
          );
        }
      }
      return { tag: 'ok', val: keys };
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
    try {
      return fn();
    } catch (e) {
      // jco throws a `result` error as a ComponentError whose own `payload` is the WIT value.
      if (e instanceof Error && !(e instanceof CheckpointError) && Object.hasOwn(e, 'payload') && e.payload?.tag) {
        throw errorFromWit(e.payload);
      }
      const message = e instanceof Error ? e.message : String(e);
      this.#broken = `\`${name}\` trapped: ${message}`;
      throw new ComponentFailure(`the component call \`${name}\` trapped: ${message}`, e);
    } finally {
      this.#inCall = null;
    }
  }
}

/**
 * Number of core modules compiled so far in this process (they are compiled once and shared by
 * every instance).
 */
export function compiledModuleCount() {
  return coreModules.size;
}
