// Uses the package's public API from TypeScript, as a user would: type-checked with
// `tsc --noEmit --strict` (module nodenext) against the in-repo package (run-tests.sh) and
// against the installed tarball (install-test.sh). run-tests.sh also compiles and runs it, so
// what the declarations claim about runtime values is checked too. Imports nothing but the
// package (no @types/node needed).

import {
  BackendError,
  BrokenStoreError,
  CheckpointError,
  Checkpointer,
  Codec,
  ComponentFailure,
  FencedError,
  MapStorage,
  NotFoundError,
  RecordingConsumer,
  RegressionError,
  StorageError,
  compiledModuleCount,
} from 'pipeline-checkpoint';
import type {
  Admission,
  Checkpoint,
  CheckpointInput,
  CommitOutcome,
  Completion,
  Consumer,
  Corruption,
  HistoryEntry,
  HistoryPage,
  ImportAction,
  ImportReceipt,
  Progress,
  Receipt,
  ResetReceipt,
  ResetRequestInput,
  Resume,
  SavepointInfo,
  StageExport,
  StageStateInput,
  StageSummary,
  Storage,
  StoredEntry,
  StorageWrite,
} from 'pipeline-checkpoint';
import { FaultScript, FaultyStorage } from 'pipeline-checkpoint/faults';

function check(condition: boolean, what: string): asserts condition {
  if (!condition) throw new Error(`types-check: ${what}`);
}

/** A store of the user's own: a Map, with versions from one counter (never reused). */
class MyStorage implements Storage {
  readonly #entries = new Map<string, { value: Uint8Array; version: bigint }>();
  #lastVersion = 0n;
  commits = 0;

  get(key: string): StoredEntry | null {
    return this.#entries.get(key) ?? null;
  }

  commit(writes: StorageWrite[]): CommitOutcome {
    this.commits += 1;
    for (const [i, w] of writes.entries()) {
      const current = this.#entries.get(w.key)?.version ?? 0n;
      if (w.expectedVersion !== null && w.expectedVersion !== current) return { conflict: i };
    }
    const committed: bigint[] = [];
    for (const w of writes) {
      if (w.op === 'put') {
        const version = ++this.#lastVersion;
        this.#entries.set(w.key, { value: w.value, version });
        committed.push(version);
      } else {
        this.#entries.delete(w.key);
        committed.push(0n);
      }
    }
    return { committed };
  }

  listKeys(prefix: string): string[] {
    // Keys here are ASCII, so code-unit order is byte order (else use compareKeys).
    return [...this.#entries.keys()].filter((k) => k.startsWith(prefix)).sort();
  }
}

/** A consumer of the user's own: a plain object. */
const acked: string[][] = [];
const consumer: Consumer = { ack: (ids) => void acked.push([...ids]) };

const storage = new MyStorage();
const checkpointer: Checkpointer = Checkpointer.open(storage, consumer, {
  namespace: 'orders',
  maxRetained: 3,
  maxCheckpointBytes: 1 << 20,
});

// Open, resume, write.
const fresh: Resume = checkpointer.resumePoint('run-1', 'enrich');
check(fresh.origin === 'fresh' && fresh.point.watermark.offset === 0n, 'fresh resume point');

const first: CheckpointInput = {
  runId: 'run-1',
  stage: 'enrich',
  sequence: 1n,
  epoch: 2, // a safe-integer Number is accepted for a u64
  watermark: { offset: 42n, eventTimeMs: 1_700_000_000_000n },
  sources: [{ name: 'orders-0', sequence: 41n, watermark: { offset: 42n, eventTimeMs: 0n } }],
  operatorStates: [{ name: 'window', state: new Uint8Array([1, 2, 3]) }],
  atMs: 1_700_000_000_500n,
};
const receipt: Receipt = checkpointer.write(first, ['m-41']);
check(receipt.sequence === 1n && typeof receipt.version === 'bigint', 'receipt');
check(receipt.acks.kind === 'acked' && receipt.acks.count === 1, 'acks');
check(acked.length === 1 && acked[0][0] === 'm-41' && storage.commits === 1, 'acked after commit');

const stored: Checkpoint = checkpointer.get('run-1', 'enrich');
const state: Uint8Array = stored.operatorStates[0].state;
check(stored.epoch === 2n && state[2] === 3 && stored.idempotencyKey === '', 'read back');
const resume = checkpointer.resumePoint('run-1', 'enrich');
check(resume.origin === 'latest' && resume.point.watermark.offset === 42n, 'latest resume point');
const skipped: Corruption[] = resume.skipped;
check(skipped.length === 0, 'nothing skipped');

// Errors: instanceof narrows to the subclass and its payload.
try {
  checkpointer.write({ ...stored, sequence: stored.sequence + 1n, epoch: 1n });
  check(false, 'an older epoch must be fenced');
} catch (e) {
  check(e instanceof FencedError, 'fenced');
  const storedEpoch: bigint = e.payload.storedEpoch;
  check(storedEpoch === 2n && e.attemptedEpoch === 1n && e.code === 'fenced', 'fenced payload');
}
try {
  checkpointer.write({ ...stored, watermark: { offset: 41n, eventTimeMs: 0n }, sequence: 2n });
  check(false, 'a move backwards must be refused');
} catch (e) {
  if (!(e instanceof RegressionError)) throw e;
  const offset: bigint = e.storedWatermark.offset;
  check(e.field === 'offset' && offset === 42n && e.payload.attemptedSequence === 2n, 'regression payload');
}
try {
  checkpointer.get('run-1', 'other');
  check(false, 'nothing is stored for this stage');
} catch (e) {
  check(e instanceof NotFoundError && e instanceof CheckpointError && e.payload === undefined, 'not found');
}

// A store failure is a StorageError; a scripted fault from the faults entry point.
const script = new FaultScript();
const faulty = Checkpointer.open(new FaultyStorage(new MapStorage(), script), null, {
  namespace: 'faults',
  maxRetained: 1,
  maxCheckpointBytes: 4096,
});
script.inject('commit', 1, 'unavailable');
try {
  faulty.write({ ...first, epoch: 1n });
  check(false, 'the injected fault must fail the write');
} catch (e) {
  check(e instanceof StorageError && e.detail.includes('injected'), 'storage error');
}
const unreachable: Storage = {
  get: () => {
    throw new BackendError('unavailable', 'server gone');
  },
  commit: () => ({ committed: [] }),
  listKeys: () => [],
};
try {
  Checkpointer.open(unreachable, new RecordingConsumer(), { namespace: 'x', maxRetained: 1, maxCheckpointBytes: 64 }).get('r', 's');
  check(false, 'the store fails every get');
} catch (e) {
  check(e instanceof StorageError && e.payload.includes('server gone'), 'backend error reaches the caller');
}

// A store that breaks the contract: BrokenStoreError, worded by the component.
const shared = new MapStorage();
const zeroVersions: Storage = {
  get: (key) => shared.get(key),
  commit: (writes) => ({ committed: writes.map(() => 0n) }),
  listKeys: (prefix) => shared.listKeys(prefix),
};
try {
  Checkpointer.open(zeroVersions, null, { namespace: 'x', maxRetained: 1, maxCheckpointBytes: 4096 }).write({ ...first, epoch: 1n });
  check(false, 'version 0 for a put breaks the contract');
} catch (e) {
  check(e instanceof BrokenStoreError && e.code === 'broken-store', 'broken store');
  const detail: string = e.detail;
  const text: string = new Codec().describe(e);
  check(detail.includes('version 0') && e.message === text, 'broken store payload and text');
}

// A driver: checkpoint every 2 messages.
const driver = checkpointer.openDriver({ runId: 'run-1', stage: 'enrich', epoch: 2n, policy: { perBatch: 2 } });
const start: bigint = driver.resumedFrom().point.watermark.offset;
let progress: Progress = { kind: 'pending', pending: 0 };
for (let offset = start; offset < start + 2n; offset++) {
  progress = driver.recordProcessed({ id: `m-${offset}`, nextOffset: offset + 1n }, 1_700_000_001_000n);
}
check(progress.kind === 'checkpointed' && progress.receipt.sequence === 2n, 'driver checkpointed');
check(driver.cursor().watermark.offset === 44n, 'driver cursor');
check(driver.flush(1_700_000_002_000n).kind === 'pending', 'nothing pending');
driver.close();

// A driver for a source that redelivers, with two partitions, out-of-order work and state.
const worker = checkpointer.openDriver({ runId: 'run-1', stage: 'sum', epoch: 1n, policy: 'explicit-flush', maxInFlight: 8 });
const resumed: Resume = worker.resumedFrom();
check(resumed.checkpoint === null && worker.recoveredAcks().kind === 'acked', 'a fresh worker');
const taken: bigint[] = [];
for (const message of [{ id: 'p0-0', source: 'p0', offset: 0 }, { id: 'p1-0', source: 'p1', offset: 0n }]) {
  const admission: Admission = worker.begin(message);
  if (admission.kind === 'admitted') taken.push(admission.ticket);
}
const completion: Completion = worker.complete(taken[1]);
check(completion.released.length === 1 && completion.released[0] === taken[1] && !completion.due, 'released');
worker.complete(taken[0]);
const stageState: StageStateInput = { sinks: [{ name: 'out', position: 2 }], operatorStates: [{ name: 'sum', state: new Uint8Array([2]) }] };
const flushed = worker.flush(1_700_000_003_000n, stageState);
check(flushed.kind === 'checkpointed' && flushed.receipt.acks.kind === 'acked' && flushed.receipt.acks.count === 2, 'flushed');
const again: Admission = worker.begin({ id: 'p0-0', source: 'p0', offset: 0 });
check(again.kind === 'covered', 'a redelivery is covered');
const sources = checkpointer.resumePoint('run-1', 'sum').checkpoint?.sources.map((s) => s.name);
check(JSON.stringify(sources) === '["p0","p1"]', 'both partitions in the checkpoint');
check(checkpointer.recoverAcks('run-1', 'sum').kind === 'acked', 'recover acks');
worker.close();

// The codec, without storage.
const codec = new Codec();
const bytes: Uint8Array = codec.encode(stored);
check(codec.decode(bytes).sequence === 1n && codec.chainSignature([stored]).length === 64, 'codec');
check(compiledModuleCount() > 0, 'modules compiled');

// Operator tools: a savepoint, a reset that fences the old owner, paged history, the stages.
const saved: SavepointInfo = checkpointer.createSavepoint('run-1', 'enrich', 'before-deploy');
check(saved.point.sequence === 2n && typeof saved.encodedBytes === 'bigint', 'savepoint');
const rewind: ResetRequestInput = { runId: 'run-1', stage: 'enrich', watermark: { offset: 10, eventTimeMs: 0 }, atMs: 1_700_000_004_000n };
const reset: ResetReceipt = checkpointer.reset(rewind);
check(reset.checkpoint.epoch === 3n && reset.origin.fromEpoch === 2n && reset.origin.savepoint === null, 'reset');
const restored = checkpointer.restoreSavepoint('run-1', 'enrich', 'before-deploy', { atMs: 1_700_000_005_000n });
check(restored.origin.savepoint === 'before-deploy' && restored.checkpoint.watermark.offset === 44n, 'restored');
check(checkpointer.getAt('run-1', 'enrich', reset.checkpoint.sequence).watermark.offset === 10n, 'get-at');
const page: HistoryPage = checkpointer.historyPage('run-1', 'enrich', { maxCheckpoints: 1 });
const next: bigint | null = page.nextAfter;
check(page.entries.length === 1 && next !== null, 'a page with more after it');
const entries: HistoryEntry[] = checkpointer.historyEntries('run-1', 'enrich');
check(entries.at(-1)?.reset?.savepoint === 'before-deploy', 'the last entry is the restore');
const stages: StageSummary[] = checkpointer.listStages('run-1');
check(stages.length === 2 && stages[0].damage === null && stages[0].savepoints === 1, 'stages');
check(checkpointer.listSavepoints('run-1', 'enrich')[0].name === 'before-deploy', 'savepoints listed');
check(checkpointer.getSavepoint('run-1', 'enrich', 'before-deploy').sequence === 2n, 'savepoint read');
check(checkpointer.deleteSavepoint('run-1', 'enrich', 'before-deploy'), 'savepoint deleted');
// Copying a stage to another store, byte for byte.
const exported: StageExport = checkpointer.exportStage('run-1', 'enrich');
check(exported.latest instanceof Uint8Array && exported.retained.every((c) => typeof c.sequence === 'bigint'), 'export');
const copy = Checkpointer.open(new MapStorage(), null, { namespace: 'copy', maxRetained: 3, maxCheckpointBytes: 1 << 20 });
const dry: ImportReceipt = copy.importStage(exported, { dryRun: true });
const imported = copy.importStage(exported);
check(dry.action === 'created' && imported.keysWritten === dry.keysWritten && typeof imported.bytesWritten === 'bigint', 'import');
const reimported: ImportAction = copy.importStage(exported, { replaceOlder: false }).action;
check(reimported === 'identical' && copy.get('run-1', 'enrich').sequence === checkpointer.get('run-1', 'enrich').sequence, 'imported');
copy.close();
check(codec.watermarkLabel(stored.watermark).startsWith('offset 42, event time '), 'watermark label');
check(codec.checkpointLabel(stored).startsWith('run "run-1" stage "enrich" #1 epoch 2'), 'checkpoint label');
check(codec.resumePointLabel(resume.point).includes('(checkpoint #1, epoch 2)'), 'resume point label');

checkpointer.close();
try {
  checkpointer.resumePoint('run-1', 'enrich');
  check(false, 'a closed checkpointer refuses calls');
} catch (e) {
  check(e instanceof ComponentFailure && !(e instanceof CheckpointError), 'closed');
}

// What the declarations refuse (never run).
export function refused(): void {
  // @ts-expect-error a u64 is a bigint or a number, not a string
  checkpointer.write({ ...first, sequence: '3' });
  // @ts-expect-error options need maxRetained and maxCheckpointBytes
  Checkpointer.open(storage, consumer, { namespace: 'n' });
  // @ts-expect-error a store needs listKeys
  Checkpointer.open({ get: () => null, commit: () => ({ conflict: 0 }) }, null, { namespace: 'n', maxRetained: 1, maxCheckpointBytes: 64 });
  // @ts-expect-error the policy is per-message, explicit-flush or {perBatch}
  checkpointer.openDriver({ runId: 'r', stage: 's', epoch: 1n, policy: 'sometimes' });
  // @ts-expect-error use Checkpointer.open
  new Checkpointer();
  // @ts-expect-error a message needs an id
  driver.begin({ source: 'p0', offset: 1 });
  // @ts-expect-error flush takes the time first, then the state
  driver.flush({ sinks: [] }, 0n);
  // @ts-expect-error outputs are bigints
  const n: number = receipt.sequence;
  void n;
  // @ts-expect-error a history page needs maxCheckpoints
  checkpointer.historyPage('r', 's', { afterSequence: 1n });
  // @ts-expect-error restoreSavepoint takes {atMs, epoch}, not the time alone
  checkpointer.restoreSavepoint('r', 's', 'n', 0n);
  // @ts-expect-error importStage takes {replaceOlder, dryRun}, not a bare flag
  checkpointer.importStage({ runId: 'r', stage: 's' }, true);
  // @ts-expect-error an export's bytes are a Uint8Array
  checkpointer.importStage({ runId: 'r', stage: 's', latest: 'ab' });
  // @ts-expect-error a reset request needs atMs
  checkpointer.reset({ runId: 'r', stage: 's', watermark: { offset: 0, eventTimeMs: 0 } });
}

console.log('types-check: ok');
