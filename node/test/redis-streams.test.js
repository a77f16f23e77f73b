// The Redis Streams source (pipeline-checkpoint/sources/redis-streams) against a real
// redis-server: the one scripts/with-test-servers.sh starts (node/run-tests.sh runs the tests
// under it), at CKPT_TEST_REDIS_URL. A missing URL fails these tests; only
// CKPT_SKIP_SERVER_TESTS=1 skips them, loudly (with-test-servers.sh refuses it under CI).
//
// The end-to-end tests run redis-streams-worker.mjs as a process, kill it with SIGKILL 24 times
// (at random moments and at chosen points: between a durable checkpoint and its acks, between
// the flush and the XACK of its queued acks, between the sink's fsync and the checkpoint,
// mid-batch, right after a read) and start it again, then check every entry processed, the
// state of a crash-free run, no duplicate or missing sink line, nothing pending in the group,
// and no XACK before a durable checkpoint.

import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { createClient } from 'redis';

import { Checkpointer, MapStorage } from 'pipeline-checkpoint';
import {
  EntryIdOutOfRangeError,
  RedisStreamSource,
  entryId,
  entryOffset,
  messageId,
  parseMessageId,
} from 'pipeline-checkpoint/sources/redis-streams';

const WORKER = fileURLToPath(new URL('./redis-streams-worker.mjs', import.meta.url));
const KILLS = 24;
const ENTRIES = 5000;

const url = process.env.CKPT_TEST_REDIS_URL || '';
const skip = !url && process.env.CKPT_SKIP_SERVER_TESTS === '1';
if (skip) console.error('\n!!! SKIPPED the Redis Streams tests: CKPT_SKIP_SERVER_TESTS=1 !!!\n');
const server = { skip: skip ? 'CKPT_SKIP_SERVER_TESTS=1' : false };

let client;
before(async () => {
  if (skip) return;
  assert.ok(
    url,
    'the Redis Streams tests need a redis-server: run them under scripts/with-test-servers.sh ' +
      '(node/run-tests.sh does), or set CKPT_TEST_REDIS_URL; CKPT_SKIP_SERVER_TESTS=1 skips them',
  );
  client = await createClient({ url }).connect();
});
after(async () => {
  await client?.close();
});

const names = (n) => {
  const tag = randomBytes(5).toString('hex');
  return Array.from({ length: n }, (_, i) => `node-${tag}-p${i}`);
};

async function readAll(source) {
  const out = [];
  for (let batch; (batch = await source.read()).length > 0; ) out.push(...batch);
  return out;
}

test('an entry id maps to ms shifted by 20 bits or seq, and back', () => {
  assert.equal(entryOffset('0-0'), 0n);
  assert.equal(entryOffset('1-0'), 1n << 20n);
  assert.equal(entryOffset('1700000000000-5'), (1700000000000n << 20n) | 5n);
  assert.equal(entryId((1700000000000n << 20n) | 5n), '1700000000000-5');
  assert.equal(entryOffset(`${(1n << 44n) - 1n}-${(1n << 20n) - 1n}`), (1n << 64n) - 1n);
  assert.throws(() => entryOffset(`${1n << 44n}-0`), EntryIdOutOfRangeError);
  assert.throws(() => entryOffset(`0-${1n << 20n}`), EntryIdOutOfRangeError);
  for (const bad of ['', '12', 'a-1', '1-b', '-1-0', '1-2-3']) assert.throws(() => entryOffset(bad), TypeError);
});

test('a message id names its stream, even when the stream has slashes', () => {
  assert.equal(messageId('a/b', '1-2'), 'a/b/1-2');
  assert.deepEqual(parseMessageId('a/b/1-2'), ['a/b', '1-2']);
  for (const bad of ['1-2', '/1-2', 'a/b', 'a/']) assert.throws(() => parseMessageId(bad), TypeError);
});

test('entries become messages of their stream with the entry time', server, async () => {
  const [stream] = names(1);
  await client.xAdd(stream, '1000-1', { value: '1' });
  const source = new RedisStreamSource(client, stream, { group: 'g', consumer: 'c', blockMs: 0 });
  const [entry, ...rest] = await source.read();
  assert.deepEqual(rest, []);
  assert.deepEqual(entry, {
    stream, entryId: '1000-1', fields: { value: '1' },
    message: { id: `${stream}/1000-1`, source: stream, offset: (1000n << 20n) | 1n, eventTimeMs: 1000n },
  });
  assert.deepEqual(await source.read(), []);
  await client.del(stream);
});

test('a restart takes over every pending entry in id order before new ones', server, async () => {
  // Entries pending under two earlier consumer names (interleaved), one acked, one never read.
  const [stream] = names(1);
  const ids = [];
  for (let i = 0; i < 6; i++) ids.push(await client.xAdd(stream, '*', { value: String(i) }));
  await client.xGroupCreate(stream, 'g', '0');
  await client.xReadGroup('g', 'old-1', [{ key: stream, id: '>' }], { COUNT: 2 });
  await client.xReadGroup('g', 'old-2', [{ key: stream, id: '>' }], { COUNT: 3 });
  await client.xClaim(stream, 'g', 'old-2', 0, [ids[1]]);
  await client.xAck(stream, 'g', [ids[0]]);
  const source = new RedisStreamSource(client, stream, { group: 'g', consumer: 'new', count: 2, blockMs: 0 });
  const got = [];
  for (let batch; (batch = await source.read()).length > 0; ) got.push(batch.map((e) => e.entryId));
  assert.deepEqual(got, [ids.slice(1, 3), ids.slice(3, 5), ids.slice(5)]);
  assert.deepEqual(await source.pending(), { [stream]: 5 });
  await client.del(stream);
});

test('ack queues, sendAcks XACKs each entry in its own stream, and again harmlessly', server, async () => {
  const streams = names(2);
  for (const s of streams) await client.xAdd(s, '5-0', { value: '1' }); // one entry id, two streams
  const source = new RedisStreamSource(client, streams, { group: 'g', consumer: 'c', blockMs: 0 });
  const entries = await source.read();
  assert.deepEqual(entries.map((e) => e.message.id).sort(), streams.map((s) => `${s}/5-0`).sort());
  source.ack([`${streams[0]}/5-0`]);
  assert.equal(source.queuedAcks, 1);
  assert.deepEqual(await source.pending(), { [streams[0]]: 1, [streams[1]]: 1 }); // queued, not sent
  assert.equal(await source.sendAcks(), 1);
  assert.deepEqual(await source.pending(), { [streams[0]]: 0, [streams[1]]: 1 });
  source.ack([`${streams[0]}/5-0`, `${streams[1]}/5-0`]);
  assert.equal(await source.sendAcks(), 1);
  assert.equal(source.acked, 2);
  assert.throws(() => source.ack(['elsewhere/5-0']), TypeError);
  await client.del(streams);
});

test('an XACK that fails keeps its ids queued for the next call', server, async () => {
  const [stream] = names(1);
  await client.xAdd(stream, '7-0', { value: '1' });
  let down = true;
  const flaky = new Proxy(client, {
    get(target, prop) {
      if (prop === 'xAck' && down) return async () => { throw new Error('connection lost'); };
      const value = target[prop];
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
  const source = new RedisStreamSource(flaky, stream, { group: 'g', consumer: 'c', blockMs: 0 });
  await source.read();
  source.ack([`${stream}/7-0`]);
  await assert.rejects(source.sendAcks(), /connection lost/);
  assert.equal(source.queuedAcks, 1);
  down = false;
  assert.deepEqual(await source.read(), []); // read sends the queued acks first
  assert.deepEqual(await source.pending(), { [stream]: 0 });
  await client.del(stream);
});

test('a driver acks only what a durable checkpoint covers, and skips redeliveries', server, async () => {
  const [stream] = names(1);
  for (let i = 0; i < 5; i++) await client.xAdd(stream, '*', { value: String(i) });
  const storage = new MapStorage();
  const options = { namespace: 'redis-unit', maxRetained: 3, maxCheckpointBytes: 1 << 20 };
  const driverOptions = { runId: 'r', stage: 's', epoch: 1n, policy: { perBatch: 3 } };
  const source = new RedisStreamSource(client, stream, { group: 'g', consumer: 'c1', blockMs: 0 });
  let driver = Checkpointer.open(storage, source, options).openDriver(driverOptions);
  const entries = await readAll(source);
  for (const e of entries.slice(0, 4)) driver.complete(driver.begin(e.message).ticket);
  assert.equal(source.queuedAcks, 0); // released, not yet durable: nothing acked
  driver.flush(1n, {});
  assert.equal(source.queuedAcks, 4);
  assert.deepEqual(await source.pending(), { [stream]: 5 }); // durable; the XACK comes after
  await source.sendAcks();
  assert.deepEqual(await source.pending(), { [stream]: 1 });

  // A restart under another name: entry 4 is taken over and admitted with the new one; an
  // entry the checkpoint covers, offered again, is skipped and acked (again).
  await client.xAdd(stream, '*', { value: '9' });
  const again = new RedisStreamSource(client, stream, { group: 'g', consumer: 'c2', blockMs: 0 });
  driver = Checkpointer.open(storage, again, options).openDriver(driverOptions);
  assert.equal(again.queuedAcks, 4); // the resumed checkpoint's ids, acked again at open
  const later = await readAll(again); // sends them first
  assert.equal(again.queuedAcks, 0);
  assert.deepEqual(later.map((e) => e.entryId), [entries[4].entryId, later[1].entryId]);
  assert.ok(later.every((e) => driver.begin(e.message).kind === 'admitted'));
  assert.equal(driver.begin(entries[0].message).kind, 'covered');
  assert.equal(again.queuedAcks, 1);
  await client.del(stream);
});

// --------------------------------------------------------------------------------------------
// End to end: a worker process killed with SIGKILL and started again.

class Worker {
  constructor(config) {
    this.child = spawn(process.execPath, [WORKER, JSON.stringify(config)], { stdio: ['ignore', 'pipe', 'pipe'] });
    this.stderr = '';
    this.child.stderr.on('data', (d) => (this.stderr += d));
    this.lines = [];
    this.waiters = [];
    this.ended = false;
    createInterface({ input: this.child.stdout }).on('line', (line) => this.#push(line.trim()))
      .on('close', () => this.#push(null));
    this.exit = new Promise((resolve) => this.child.on('exit', (code, signal) => resolve({ code, signal })));
  }

  #push(line) {
    if (line === null) this.ended = true;
    else this.lines.push(line);
    for (const w of this.waiters.splice(0)) w();
  }

  /** True once the worker prints a line starting with `word`; false when it exits first. */
  async waitFor(word) {
    for (;;) {
      while (this.lines.length > 0) if (this.lines.shift().split(' ')[0] === word) return true;
      if (this.ended) return false;
      await new Promise((resolve) => this.waiters.push(resolve));
    }
  }

  kill() {
    this.child.kill('SIGKILL');
  }

  async wait() {
    const { code, signal } = await this.exit;
    if (code !== 0 && signal !== 'SIGKILL') throw new Error(`worker exited ${code ?? signal}:\n${this.stderr}`);
    return signal === 'SIGKILL' ? 'killed' : 'exited';
  }
}

// The same seeded generator as the worker's (mulberry32).
function generator(seed) {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const readAudit = (path) => readFileSync(path, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l));
const readSink = (dir) => readFileSync(join(dir, 'sink.jsonl'), 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l));

for (const [partitions, outOfOrder] of [[1, false], [4, true]]) {
  const what = partitions === 1 ? 'one stream' : `${partitions} streams, out-of-order completion`;
  test(`a worker killed ${KILLS} times processes every entry exactly once (${what})`, server, async () => {
    // CKPT_E2E_SEED=N replays a schedule (entries, crash points, shuffles; the moments of the
    // external kills still vary): the seed is in the figure line and the failure messages.
    const seed = Number(process.env.CKPT_E2E_SEED || Math.floor(Math.random() * 2 ** 32));
    const random = generator(seed);
    const int = (lo, hi) => lo + Math.floor(random() * (hi - lo + 1));
    const streams = names(partitions);
    const started = performance.now();
    const work = mkdtempSync(join(tmpdir(), 'ckpt-redis-e2e-'));
    const config = (group, consumer, dir, crash, failAcks) => {
      mkdirSync(dir, { recursive: true });
      return {
        redis: url, streams, group, consumer, dir, audit: join(dir, 'audit.jsonl'), expect: ENTRIES,
        seed: int(0, 2 ** 32 - 1), outOfOrder, crash, failAcks,
      };
    };
    try {
      // Rounds: each starts a worker, adds a burst of entries once it is ready, and kills it: at
      // a chosen crash point (the worker SIGKILLs itself there) or from here after a random
      // pause. A worker whose crash point did not come up goes idle and is killed from here.
      const bursts = Array(KILLS).fill(Math.floor(ENTRIES / (KILLS + 1)));
      bursts.push(ENTRIES - bursts.reduce((a, b) => a + b, 0));
      // A burst of 200 entries makes about 5 checkpoints, 8 reads and 200 applied entries: the
      // K-th time a point comes up is drawn below that.
      const reach = { 'after-commit': 3, 'after-flush': 3, 'before-flush': 3, 'after-apply': 150, 'after-read': 6 };
      const points = Object.keys(reach);
      const crashes = Object.fromEntries(['external', ...points].map((p) => [p, 0]));
      const crashed = join(work, 'crashed');
      let kills = 0;
      for (const [round, burst] of bursts.entries()) {
        const last = round === bursts.length - 1;
        // Every crash point once, then one external kill, then a random mix of both.
        let point;
        if (last || round === points.length) point = null;
        else if (round < points.length) point = points[round];
        else point = random() < 0.3 ? null : points[int(0, points.length - 1)];
        const crash = point === null ? null : `${point}:${int(1, reach[point])}`;
        // A new consumer name on every other start: the killed one's pending entries are taken
        // over by XAUTOCLAIM; on the others, they are the worker's own pending entries. Before
        // the last round a tenth of the acks fail, and come back as skipped redeliveries.
        const worker = new Worker(config('crashy', `w${Math.floor(round / 2)}`, crashed, crash, last ? 0 : 0.1));
        assert.ok(await worker.waitFor('ready'), `seed ${seed}: ${worker.stderr}`);
        const batch = client.multi();
        for (let i = 0; i < burst; i++) batch.xAdd(streams[int(0, partitions - 1)], '*', { value: String(int(-1000, 1000)) });
        await batch.execAsPipeline();
        if (last) {
          assert.ok(await worker.waitFor('done'), `seed ${seed}: ${worker.stderr}`);
          assert.equal(await worker.wait(), 'exited');
          continue;
        }
        if (point === null) {
          await new Promise((resolve) => setTimeout(resolve, random() * 300));
          worker.kill();
        } else if (await worker.waitFor('idle')) {
          worker.kill(); // its crash point did not come up
          point = null;
        }
        assert.equal(await worker.wait(), 'killed', `seed ${seed}, round ${round}: the worker finished instead of being killed`);
        kills += 1;
        crashes[point ?? 'external'] += 1;
      }

      // The same entries through the same code without a crash, in a group of its own.
      const clean = join(work, 'clean');
      const reference = new Worker(config('clean', 'w', clean, null, 0));
      assert.ok(await reference.waitFor('done'), reference.stderr);
      assert.equal(await reference.wait(), 'exited');

      const entries = new Map();
      for (const s of streams) {
        for (const { id, message } of await client.xRange(s, '-', '+')) entries.set(`${s}/${id}`, Number(message.value));
      }
      const rows = readSink(crashed);
      const keys = rows.map(([s, id]) => `${s}/${id}`);
      const duplicates = keys.length - new Set(keys).size;
      const seen = new Set(keys);
      const missing = [...entries.keys()].filter((k) => !seen.has(k)).length;
      const stray = keys.filter((k) => !entries.has(k)).length;
      const events = readAudit(join(crashed, 'audit.jsonl'));
      const done = events.findLast((e) => 'done' in e);
      const cleanDone = readAudit(join(clean, 'audit.jsonl')).findLast((e) => 'done' in e);
      const early = events.filter((e) => 'xack' in e).flatMap((e) => e.early);
      const sum = (key) => events.filter((e) => key in e).reduce((a, e) => a + e[key], 0);
      const pending = {};
      for (const group of ['crashy', 'clean']) {
        pending[group] = 0;
        for (const s of streams) pending[group] += Number((await client.xPending(s, group)).pending);
      }
      const canon = (list) => list.map((r) => JSON.stringify(r)).sort();
      console.log(
        `redis streams e2e (node, ${partitions} stream(s), ${outOfOrder ? 'out-of-order' : 'in-order'} completion, ` +
          `seed ${seed}): ${entries.size} entries, ${kills} SIGKILLs (` +
          `${Object.entries(crashes).map(([k, v]) => `${k} ${v}`).join(', ')}), ${rows.length} sink lines, ` +
          `${duplicates} duplicate, ${missing} missing, ${sum('dropped')} bytes past a checkpoint truncated at ` +
          `restart, ${sum('covered')} redeliveries skipped, ${sum('xack')} ids XACKed (${sum('ackFailed')} more ` +
          `failed on purpose), ${early.length} XACKs before a durable checkpoint, pending at the end ` +
          `${pending.crashy} (crash-free run ${pending.clean}), sum ${done.sum} (crash-free ${cleanDone.sum}), ` +
          `${((performance.now() - started) / 1000).toFixed(1)} s`,
      );
      assert.ok(kills >= 20);
      assert.equal(entries.size, ENTRIES);
      assert.deepEqual([duplicates, missing, stray], [0, 0, 0]);
      const expected = [...entries].map(([k, v]) => {
        const slash = k.lastIndexOf('/');
        return [k.slice(0, slash), k.slice(slash + 1), v];
      });
      assert.deepEqual(canon(rows), canon(expected));
      assert.deepEqual(canon(readSink(clean)), canon(expected));
      assert.deepEqual([done.done, done.sum], [cleanDone.done, cleanDone.sum]);
      assert.equal(done.sum, [...entries.values()].reduce((a, b) => a + b, 0));
      assert.deepEqual(early, []);
      assert.deepEqual(pending, { crashy: 0, clean: 0 });
      await client.del(streams);
    } finally {
      rmSync(work, { recursive: true, force: true });
    }
  });
}

// --------------------------------------------------------------------------------------------
// The example of node/README.md runs as written (inside the package, so that its imports of
// 'pipeline-checkpoint' and 'redis' resolve as a user's would).

test("the package README's Redis Streams example runs, and resumes its total", server, async () => {
  const text = readFileSync(new URL('../README.md', import.meta.url), 'utf8');
  const heading = '## Reading a Redis stream';
  const start = text.indexOf(heading);
  assert.ok(start >= 0, `no ${heading} in node/README.md`);
  const end = text.indexOf('\n## ', start + heading.length);
  const blocks = [...text.slice(start, end === -1 ? undefined : end).matchAll(/^```js\n([\s\S]*?)^```/gm)].map((m) => m[1]);
  assert.equal(blocks.length, 1);
  const file = fileURLToPath(new URL('../generated/redis-streams-example.mjs', import.meta.url));
  const cwd = mkdtempSync(join(tmpdir(), 'ckpt-redis-readme-'));
  writeFileSync(file, blocks[0]);
  const run = () => {
    const done = spawnSync(process.execPath, [file], { cwd, encoding: 'utf8', env: { ...process.env, REDIS_URL: url } });
    assert.equal(done.status, 0, done.stderr);
    return done.stdout;
  };
  try {
    await client.del('orders'); // the example's stream, on this run's own test server
    for (let i = 1; i <= 250; i++) await client.xAdd('orders', '*', { amount: String(i) });
    assert.equal(run(), `total ${(250 * 251) / 2}\n`);
    await client.xAdd('orders', '*', { amount: '1000' });
    // A second run resumes the total from its checkpoint and reads only the new entry.
    assert.equal(run(), `total ${(250 * 251) / 2 + 1000}\n`);
    assert.ok(existsSync(join(cwd, 'checkpoints.json')));
  } finally {
    await client.del('orders');
    rmSync(file, { force: true });
    rmSync(cwd, { recursive: true, force: true });
  }
});
