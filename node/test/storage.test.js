// The storage contract (node/src/storage.js, the same as the Rust `Storage` trait), checked on
// both stores, plus the consumers and the fault wrappers.

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';

import { BackendError, JsonFileStorage, MapStorage, RecordingConsumer, compareKeys } from '../src/index.js';
import { AckScript, FaultScript, FaultyConsumer, FaultyStorage } from '../src/faults.js';

const bytes = (s) => new TextEncoder().encode(s);
const put = (key, value, expectedVersion = null) => ({ key, expectedVersion, op: 'put', value: bytes(value) });
const del = (key, expectedVersion = null) => ({ key, expectedVersion, op: 'delete' });

/** Fresh stores of each kind; `reopen` gives another handle on the same data. */
const STORES = {
  MapStorage: () => {
    const store = new MapStorage();
    return { store, reopen: () => store, close() {} };
  },
  JsonFileStorage: () => {
    const dir = mkdtempSync(join(tmpdir(), 'ckpt-node-store-'));
    const path = join(dir, 'store.json');
    return { store: new JsonFileStorage(path), reopen: () => new JsonFileStorage(path), close: () => rmSync(dir, { recursive: true }) };
  },
};

for (const [name, make] of Object.entries(STORES)) {
  describe(`${name} meets the storage contract`, () => {
    const withStore = (fn) => () => {
      const s = make();
      try {
        fn(s.store, s.reopen);
      } finally {
        s.close();
      }
    };

    test('get of an absent key is null; a put is read back with a positive version', withStore((store) => {
      assert.equal(store.get('k'), null);
      const { committed } = store.commit([put('k', 'v1')]);
      assert.equal(committed.length, 1);
      assert.ok(committed[0] > 0n);
      const entry = store.get('k');
      assert.deepEqual(Buffer.from(entry.value).toString(), 'v1');
      assert.equal(entry.version, committed[0]);
    }));

    test('versions change on every write and are never reused, not even after a delete', withStore((store) => {
      const seen = new Set();
      for (let i = 0; i < 3; i++) {
        const [v] = store.commit([put('k', `v${i}`)]).committed;
        assert.ok(!seen.has(v), `version ${v} reused`);
        seen.add(v);
      }
      assert.deepEqual(store.commit([del('k')]).committed, [0n]);
      const [again] = store.commit([put('k', 'back')]).committed;
      assert.ok(!seen.has(again), `version ${again} reused after a delete`);
    }));

    test('a failed condition answers the first failing index and applies nothing', withStore((store) => {
      const [v] = store.commit([put('a', '1')]).committed;
      const outcome = store.commit([put('b', '2', 0n), put('a', '3', v + 1n), put('c', '4', 5n)]);
      assert.deepEqual(outcome, { conflict: 1 });
      assert.equal(store.get('b'), null);
      assert.equal(Buffer.from(store.get('a').value).toString(), '1');
      // The conditions that hold: absent is version 0, present is its version.
      assert.ok(store.commit([put('b', '2', 0n), put('a', '3', v)]).committed);
    }));

    test('deleting an absent key is not an error; an empty batch commits nothing', withStore((store) => {
      assert.deepEqual(store.commit([del('nothing')]), { committed: [0n] });
      assert.deepEqual(store.commit([]), { committed: [] });
      assert.deepEqual(store.listKeys(''), []);
    }));

    test('a batch that repeats a key is refused with `failed` and applies nothing', withStore((store) => {
      assert.throws(() => store.commit([put('x', '1'), put('y', '2'), del('x')]), (e) => e instanceof BackendError && e.kind === 'failed');
      assert.deepEqual(store.listKeys(''), []);
    }));

    test('listKeys gives exactly the prefixed keys in UTF-8 byte order', withStore((store) => {
      const keys = ['p/\u{1F600}', 'p/\uE000', 'p/b', 'p/a', 'p%/x', 'q/a', 'p/', 'p/\u0000'];
      store.commit(keys.map((k) => put(k, 'v')));
      const expected = keys.filter((k) => k.startsWith('p/')).sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
      assert.deepEqual(store.listKeys('p/'), expected);
      assert.equal(store.listKeys('').length, keys.length);
      assert.deepEqual(store.listKeys('zz'), []);
    }));

    test('every handle sees what another committed', withStore((store, reopen) => {
      store.commit([put('shared', 'yes')]);
      assert.equal(Buffer.from(reopen().get('shared').value).toString(), 'yes');
    }));
  });
}

test('compareKeys orders like the UTF-8 bytes', () => {
  const pieces = ['', 'a', 'z', '\u00e9', '\u07ff', '\u0800', '\ud7ff', '\ue000', '\uffff', '\u{10000}', '\u{1F600}', '\u{10FFFF}'];
  for (const a of pieces) {
    for (const b of pieces) {
      for (const c of pieces) {
        const [x, y] = [a + c, b + a];
        assert.equal(Math.sign(compareKeys(x, y)), Buffer.compare(Buffer.from(x), Buffer.from(y)), `${JSON.stringify(x)} vs ${JSON.stringify(y)}`);
      }
    }
  }
});

test('BackendError accepts only the WIT storage-error kinds', () => {
  assert.equal(new BackendError('timeout', 'slow').kind, 'timeout');
  assert.throws(() => new BackendError('conflict', 'no'), TypeError);
});

test('RecordingConsumer records acks and fails the next n on request', () => {
  const consumer = new RecordingConsumer();
  consumer.ack(['a']);
  consumer.failNext(1);
  assert.throws(() => consumer.ack(['b']), /injected ack failure/);
  consumer.ack(['c']);
  assert.deepEqual(consumer.acks, [['a'], ['c']]);
  assert.deepEqual(consumer.failed, [['b']]);
});

test('FaultyStorage fails the scripted call only, and time-out-after-apply applies', () => {
  const inner = new MapStorage();
  const script = new FaultScript();
  const storage = new FaultyStorage(inner, script);
  script.inject('commit', 2, 'time-out-after-apply');
  script.inject('get', 1, 'unavailable');
  storage.commit([put('a', '1')]);
  // The texts of tests/conformance/README.md "Scripted faults", the same in every host.
  assert.throws(() => storage.commit([put('b', '2')]), { kind: 'timeout', message: 'injected fault on commit, after the call was applied' });
  assert.ok(inner.get('b'), 'the timed-out commit was applied');
  assert.throws(() => storage.get('a'), { kind: 'unavailable', message: 'injected fault on get' });
  assert.ok(storage.get('a'));
  assert.equal(script.calls('get'), 2);
  script.reset();
  script.inject('commit', 1, { conflict: 7 });
  assert.deepEqual(storage.commit([put('c', '1'), put('d', '1')]), { conflict: 1 }, 'index clamped to the last write');
  assert.equal(inner.get('c'), null);
  script.inject('list-keys', 1, { conflict: 0 });
  assert.throws(() => storage.listKeys(''), { kind: 'failed', message: 'injected fault on list-keys' });
});

test('FaultyStorage break-contract applies the call, then answers outside the contract', () => {
  const inner = new MapStorage();
  const script = new FaultScript();
  const storage = new FaultyStorage(inner, script);
  script.inject('commit', 1, 'break-contract');
  script.inject('get', 1, 'break-contract');
  script.inject('get', 2, 'break-contract');
  script.inject('list-keys', 1, 'break-contract');
  assert.deepEqual(storage.commit([put('a', '1'), put('b', '2')]), { committed: [1n, 2n, 3n] }, 'one version too many');
  assert.deepEqual(inner.listKeys(''), ['a', 'b'], 'the commit was applied');
  assert.deepEqual(storage.get('a'), { value: inner.get('a').value, version: 0n });
  assert.deepEqual(storage.get('missing'), { value: new Uint8Array(), version: 0n });
  assert.deepEqual(storage.listKeys('a'), ['a', '!']);
});

test('FaultyConsumer fails the scripted ack and logs it; the inner consumer never sees it', () => {
  const inner = new RecordingConsumer();
  const script = new AckScript();
  const consumer = new FaultyConsumer(inner, script);
  script.failNth(2);
  consumer.ack(['a']);
  assert.throws(() => consumer.ack(['b']), { message: 'injected ack failure' });
  consumer.ack(['c']);
  assert.deepEqual(inner.acks, [['a'], ['c']]);
  assert.deepEqual(script.failed, [['b']]);
  assert.equal(script.calls(), 3);
});
