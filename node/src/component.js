// Loads the bindings jco generated for the shipped component (component/checkpoint.wasm in the
// repository; node/build.sh generates them at pack time and the npm package carries them in
// generated/) and makes instances of the component, each with its own storage and consumer, in
// the sandbox of a `Runtime`.
//
// Host limits handled here:
// - The bindings are transpiled with `--instantiation sync`: `instantiate(getCoreModule,
//   imports, instantiateCore)` takes the imports per call, so every checkpointer gets its own
//   instance over its own store. The core modules are compiled once per runtime and shared.
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
//
// The sandbox, the Rust host's (`RuntimeConfig`) in the calling thread:
// - V8 cannot interrupt a synchronous wasm call, so the core modules meter themselves
//   (tools/sandbox-core.mjs, applied at pack time): about every millisecond of guest code they
//   call this instance's tick, which throws once the call's deadline has passed. Time in a store
//   or consumer callback counts too: the deadline is checked when the callback returns, and a
//   late answer is never handed to the guest. A callback is never interrupted (a store that
//   hangs hangs the call, as in every host).
// - `memory.grow` goes through the module's own check against `ckpt_memory_limit`, set here per
//   instance; a refusal is recorded, so the trap that follows is named after the limit.
// - After any failure the instance refuses every call (`UnusableError`); other instances and the
//   runtime keep serving. A component that imports WASI gets it with no authority (wasi.js), as
//   from the other hosts' empty WASI context; any other import traps when called.

import { readFileSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';

import {
  CheckpointError,
  ComponentFailure,
  DeadlineError,
  MemoryLimitError,
  TrapError,
  UnusableError,
  errorFromWit,
  setDescriber,
} from './errors.js';
import { BACKEND_ERROR_KINDS, BackendError } from './storage.js';
import { deniedImport } from './wasi.js';

const GENERATED = new URL('../generated/', import.meta.url);

/** The generated module of a bindings directory. */
async function importBindings(dir) {
  try {
    return await import(new URL('checkpoint.js', dir).href);
  } catch (e) {
    throw new Error(
      `the component bindings are missing or broken (${fileURLToPath(dir)}checkpoint.js): ` +
        'the npm package ships them (reinstall it); in the repository, run `bash node/build.sh`: ' +
        e.message,
      { cause: e },
    );
  }
}

const shippedBindings = await importBindings(GENERATED);

/** Marker export of a core module metered by tools/sandbox-core.mjs. */
const SANDBOX_EXPORT = 'ckpt_sandbox';
const WASM_PAGE = 65536;
const MAX_MEMORY_LIMIT = 4 * 1024 ** 3;

/** Every compiled core module, per bindings directory: compiled at first use, kept for the process. */
const compiled = new Map();

/** The bindings of each runtime: the generated module (`instantiate`) and its directory. */
const bindingsOf = new WeakMap();

/**
 * Rust's `Debug` of a `Duration` (`200ms`, `10s`, `1.5s`): deadline texts match the Rust host's.
 * @param {number} ms
 */
export function formatDuration(ms) {
  const nanos = Math.round(ms * 1e6);
  const decimal = (whole, fraction, divisor) => {
    let digits = '';
    for (; fraction > 0 && divisor >= 1; divisor = Math.floor(divisor / 10)) {
      digits += String(Math.floor(fraction / divisor));
      fraction %= divisor;
    }
    return digits === '' ? String(whole) : `${whole}.${digits}`;
  };
  if (nanos >= 1e9) return `${decimal(Math.floor(nanos / 1e9), nanos % 1e9, 1e8)}s`;
  if (nanos >= 1e6) return `${decimal(Math.floor(nanos / 1e6), nanos % 1e6, 1e5)}ms`;
  if (nanos >= 1e3) return `${decimal(Math.floor(nanos / 1e3), nanos % 1e3, 100)}µs`;
  return `${nanos}ns`;
}

/**
 * The sandbox's limits and the bindings they apply to (the shipped component's, unless
 * `Runtime.load` was given others). One per process is usual (`Runtime.shared()`); every
 * checkpointer and codec made with it gets its own instance under these limits.
 */
export class Runtime {
  static #shared = null;

  /**
   * @param {{callDeadlineMs?: number, maxMemoryBytes?: number}} [limits]
   *   `callDeadlineMs`: longest one call may run, callbacks included (default 10 s);
   *   `maxMemoryBytes`: largest linear memory of one instance (default 64 MiB), as in the Rust
   *   host's `RuntimeConfig`.
   */
  constructor({ callDeadlineMs = 10_000, maxMemoryBytes = 64 * 1024 * 1024 } = {}) {
    if (typeof callDeadlineMs !== 'number' || !(callDeadlineMs > 0) || !Number.isFinite(callDeadlineMs)) {
      throw new RangeError(`callDeadlineMs must be a positive finite number, not ${String(callDeadlineMs)}`);
    }
    if (!Number.isSafeInteger(maxMemoryBytes) || maxMemoryBytes < WASM_PAGE || maxMemoryBytes > MAX_MEMORY_LIMIT) {
      throw new RangeError(`maxMemoryBytes must be an integer between 64 KiB and 4 GiB, not ${String(maxMemoryBytes)}`);
    }
    /** Longest one call into the component may run, in milliseconds. */
    this.callDeadlineMs = callDeadlineMs;
    /** Largest linear memory one instance may grow to, in bytes. */
    this.maxMemoryBytes = maxMemoryBytes;
    bindingsOf.set(this, { module: shippedBindings, dir: GENERATED });
    Object.freeze(this);
  }

  /** The runtime of the shipped component with the default limits. */
  static shared() {
    Runtime.#shared ??= new Runtime();
    return Runtime.#shared;
  }

  /**
   * A runtime over other bindings: a directory made by `node tools/transpile.mjs COMPONENT DIR`
   * in the repository (a custom build of the guest, or a hostile stand-in in the sandbox tests).
   * @param {string | URL} bindings
   * @param {{callDeadlineMs?: number, maxMemoryBytes?: number}} [limits]
   */
  static async load(bindings, limits) {
    const runtime = new Runtime(limits);
    let dir = bindings instanceof URL ? bindings : pathToFileURL(String(bindings));
    if (!dir.href.endsWith('/')) dir = new URL(`${dir.href}/`);
    bindingsOf.set(runtime, { module: await importBindings(dir), dir });
    return runtime;
  }
}

/**
 * A core module of `dir`, compiled at first use; refused unless tools/sandbox-core.mjs metered
 * it (unmetered code would run without deadline or memory limit).
 */
function getCoreModule(dir, name) {
  const key = new URL(name, dir).href;
  let module = compiled.get(key);
  if (module === undefined) {
    module = new WebAssembly.Module(readFileSync(new URL(name, dir)));
    if (!WebAssembly.Module.exports(module).some((e) => e.name === SANDBOX_EXPORT)) {
      throw new Error(`${fileURLToPath(new URL(name, dir))} has no sandbox (it was not made by node/tools/transpile.mjs)`);
    }
    compiled.set(key, module);
  }
  return module;
}

/** Thrown inside the guest when the deadline passed: a trap, recognised by the call's record. */
class DeadlinePassed extends Error {}

/** A wasm function that calls `tick`, to sit in a module's `ckpt_hooks` table. */
const TICK_MODULE = new WebAssembly.Module(new Uint8Array([
  0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
  0x01, 0x04, 0x01, 0x60, 0x00, 0x00, // type 0: [] -> []
  0x02, 0x0a, 0x01, 0x01, 0x68, 0x04, 0x74, 0x69, 0x63, 0x6b, 0x00, 0x00, // import "h" "tick"
  0x07, 0x08, 0x01, 0x04, 0x74, 0x69, 0x63, 0x6b, 0x00, 0x00, // export "tick"
]));

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
function storageCall(op, call, convert, promiseError = 'failed', returned = noCheck) {
  let answer;
  try {
    answer = call();
  } catch (e) {
    returned(op);
    return { tag: 'err', val: storageErrorOf(op, e) };
  }
  returned(op);
  // A commit that returned a Promise may still apply when it settles: the outcome is unknown.
  if (isThenable(answer)) return { tag: 'err', val: { tag: promiseError, val: `${op}: ${SYNC_ONLY}` } };
  try {
    return { tag: 'ok', val: convert(answer) };
  } catch (e) {
    if (e instanceof Unconvertible) return unconvertible(op, e);
    throw e;
  }
}

function noCheck() {}

/**
 * The `storage` import over a user store. Answers are converted, never judged: the component
 * checks them against the storage contract. `returned(op)` runs when the store returns (it
 * throws once the call's deadline has passed).
 * @param {import('./storage.js').Storage} store
 * @param {(op: string) => void} returned
 */
function storageImport(store, returned) {
  return {
    get(key) {
      return storageCall('get', () => store.get(key), (found) => {
        if (found === null || found === undefined) return { tag: 'missing' };
        if (typeof found !== 'object' || !(found.value instanceof Uint8Array)) {
          throw new Unconvertible(`key ${JSON.stringify(key)} was answered without a Uint8Array value`);
        }
        return { tag: 'found', val: { value: found.value, version: asU64(found.version, 'the version') } };
      }, 'failed', returned);
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
      }, 'timeout', returned);
    },

    listKeys(prefix) {
      return storageCall('list-keys', () => store.listKeys(prefix), (keys) => {
        if (!Array.isArray(keys)) throw new Unconvertible('the answer is not an array');
        for (const key of keys) {
          if (typeof key !== 'string') throw new Unconvertible(`the key ${String(key)} is not a string`);
          if (!key.isWellFormed()) throw new Unconvertible(`the key ${JSON.stringify(key)} is not well-formed Unicode`);
        }
        return keys;
      }, 'failed', returned);
    },
  };
}

/**
 * The `consumer` import over a user consumer: a thrown exception is the ack's failure message.
 * @param {import('./consumer.js').Consumer} consumer
 * @param {(op: string) => void} returned
 */
function consumerImport(consumer, returned) {
  return {
    ack(ids) {
      let answer;
      try {
        answer = consumer.ack(ids);
      } catch (e) {
        returned('ack');
        return { tag: 'err', val: e instanceof Error ? e.message : String(e) };
      }
      returned('ack');
      if (isThenable(answer)) return { tag: 'err', val: `ack: the Node host needs a synchronous consumer (Node 20 has no JSPI); it returned a Promise` };
      return { tag: 'ok', val: undefined };
    },
  };
}

/**
 * One instance of the component with its own imports, in the sandbox of its runtime. `call`
 * turns jco's thrown result errors into typed `CheckpointError`s and anything else into a
 * `ComponentFailure` subclass (`DeadlineError`, `MemoryLimitError`, `TrapError`), after which
 * the instance refuses further calls (`UnusableError`).
 */
export class Instance {
  /** @type {string | null} Why this instance is unusable, once it is. */
  #broken = null;
  /**
   * The call in progress: its WIT name, deadline (`performance.now()` time) and, once the
   * deadline passed, where that was noticed.
   * @type {{name: string, deadline: number, expired: string | null} | null}
   */
  #call = null;
  /** Guest code running outside any call (a destructor jco runs at garbage collection): since when. */
  #ambientSince = null;
  /** @type {Runtime} */
  #runtime;
  /** Exports of the core instances that enforce the memory limit. */
  #limited = [];

  /**
   * @param {import('./storage.js').Storage} storage
   * @param {import('./consumer.js').Consumer} consumer
   * @param {Runtime} [runtime]
   */
  constructor(storage, consumer, runtime = Runtime.shared()) {
    if (!(runtime instanceof Runtime)) {
      throw new TypeError(`runtime must be a Runtime, not ${runtime?.constructor?.name ?? typeof runtime}`);
    }
    this.#runtime = runtime;
    const { module, dir } = bindingsOf.get(runtime);
    const returned = (op) => this.#returned(op);
    const known = {
      'pipeline:checkpoint/storage': storageImport(storage, returned),
      'pipeline:checkpoint/consumer': consumerImport(consumer, returned),
      'pipeline:checkpoint/types': {},
    };
    const imports = new Proxy(known, {
      get: (target, name) => (typeof name !== 'string' || Object.hasOwn(target, name) ? target[name] : deniedImport(name)),
    });
    const tick = new WebAssembly.Instance(TICK_MODULE, { h: { tick: () => this.#tick() } }).exports.tick;
    const limitPages = Math.floor(runtime.maxMemoryBytes / WASM_PAGE);
    const instantiateCore = (core, importObject) => {
      const instance = new WebAssembly.Instance(core, importObject);
      const ex = instance.exports;
      ex.ckpt_hooks.set(0, tick);
      if (ex.ckpt_memory_limit !== undefined) {
        ex.ckpt_memory_limit.value = limitPages;
        this.#limited.push(ex);
        if (ex.memory instanceof WebAssembly.Memory && ex.memory.buffer.byteLength > runtime.maxMemoryBytes) {
          throw new Error(`its initial memory of ${ex.memory.buffer.byteLength} bytes is over the memory limit of ${runtime.maxMemoryBytes} bytes`);
        }
      }
      return instance;
    };
    // Instantiation runs guest code too (start functions): it gets a deadline.
    const call = { name: 'instantiate', deadline: performance.now() + runtime.callDeadlineMs, expired: null };
    this.#call = call;
    let root;
    try {
      root = module.instantiate((name) => getCoreModule(dir, name), imports, instantiateCore);
    } catch (e) {
      if (call.expired !== null) throw this.#failure(call, 0, e);
      throw new ComponentFailure(`cannot instantiate the component: ${e instanceof Error ? e.message : String(e)}`, e, 'Instantiate');
    } finally {
      this.#call = null;
    }
    /** The `checkpointer` export: `{Checkpointer, Driver}` resource classes. */
    this.checkpointer = root.checkpointer;
    /** The `codec` export. */
    this.codec = root.codec;
  }

  /** Why this instance refuses calls, or `null` while it serves them. */
  /** The largest linear memory this instance may grow to, in bytes (its runtime's limit). */
  get maxMemoryBytes() {
    return this.#runtime.maxMemoryBytes;
  }

  get broken() {
    return this.#broken;
  }

  /** Marks the instance unusable (its handle was closed). */
  close(reason) {
    this.#broken ??= reason;
  }

  /**
   * Runs one component call under the deadline.
   * @template T
   * @param {string} name The WIT function, for messages.
   * @param {() => T} fn
   * @returns {T}
   */
  call(name, fn) {
    if (this.#broken !== null) {
      throw new UnusableError(
        `cannot call \`${name}\`: this instance of the component is unusable after an earlier failure (${this.#broken}); open a new one`,
      );
    }
    if (this.#call !== null) {
      // A store or consumer called back into the checkpointer that is calling it. The component
      // model forbids re-entering an instance; refusing here keeps the outer call intact (the
      // store's exception becomes its storage error).
      throw new ComponentFailure(`\`${name}\` was called from inside \`${this.#call.name}\` of the same checkpointer (re-entrant call)`);
    }
    const refusals = this.#refusals();
    const call = { name, deadline: performance.now() + this.#runtime.callDeadlineMs, expired: null };
    this.#call = call;
    let answered;
    try {
      return fn();
    } catch (e) {
      // jco throws a `result` error as a ComponentError whose own `payload` is the WIT value.
      if (call.expired === null && e instanceof Error && !(e instanceof CheckpointError) && Object.hasOwn(e, 'payload') && e.payload?.tag) {
        answered = e.payload;
      } else {
        throw this.#failure(call, refusals, e);
      }
    } finally {
      this.#call = null;
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

  /** The error for a call that did not complete; the instance refuses calls from now on. */
  #failure(call, refusalsBefore, e) {
    const cause = e instanceof Error ? e.message : String(e);
    let error;
    if (call.expired !== null) {
      const context = `the component call \`${call.name}\` ran past its deadline of ${formatDuration(this.#runtime.callDeadlineMs)} and was interrupted`;
      error = new DeadlineError(`${context}: ${call.expired}`, e);
      this.#broken = context;
    } else if (this.#refusals() !== refusalsBefore) {
      // A guest that runs out of memory usually traps (Rust aborts) rather than reporting it,
      // so the trap is named after the limit that caused it.
      const { from, to } = this.#lastRefusal();
      const context = `the component call \`${call.name}\` trapped after its memory limit of ${this.#runtime.maxMemoryBytes} bytes refused to grow its memory from ${from} to ${to} bytes`;
      error = new MemoryLimitError(`${context}: ${cause}`, e);
      this.#broken = context;
    } else {
      const context = `the component call \`${call.name}\` trapped`;
      error = new TrapError(`${context}: ${cause}`, e);
      this.#broken = context;
    }
    return error;
  }

  /** Growth refusals so far, over every core instance with a memory. */
  #refusals() {
    let n = 0;
    for (const ex of this.#limited) n += ex.ckpt_refusals.value;
    return n;
  }

  #lastRefusal() {
    let last = { from: 0, to: 0 };
    for (const ex of this.#limited) {
      if (ex.ckpt_refusals.value > 0) {
        const from = ex.ckpt_refused_from.value >>> 0;
        last = { from: from * WASM_PAGE, to: (from + (ex.ckpt_refused_delta.value >>> 0)) * WASM_PAGE };
      }
    }
    return last;
  }

  /** Called by the metered guest about every millisecond of its code. */
  #tick() {
    const call = this.#call;
    const now = performance.now();
    if (call !== null) {
      if (now > call.deadline) {
        call.expired = 'the guest was stopped in its code';
        throw new DeadlinePassed();
      }
      return;
    }
    // Guest code outside any call: a resource destructor jco runs when a handle is garbage
    // collected. It gets a deadline of its own, counted from the first tick of this task.
    if (this.#ambientSince === null) {
      this.#ambientSince = now;
      queueMicrotask(() => {
        this.#ambientSince = null;
      });
    } else if (now - this.#ambientSince > this.#runtime.callDeadlineMs) {
      this.#broken ??= `guest code run outside a call (a destructor) ran past the deadline of ${formatDuration(this.#runtime.callDeadlineMs)}`;
      throw new DeadlinePassed();
    }
  }

  /** Called when a store or consumer callback returns: a late answer never reaches the guest. */
  #returned(op) {
    const call = this.#call;
    if (call !== null && performance.now() > call.deadline) {
      call.expired = `the host call \`${op}\` returned after the deadline`;
      throw new DeadlinePassed();
    }
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
  return compiled.size;
}
