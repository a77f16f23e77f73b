// A stage reading Redis Streams through the driver, run as its own process by
// redis-streams.test.js, which kills it with SIGKILL and starts it again.
//
// It keeps a running sum and count as operator state and writes one JSON line per entry to a
// file sink whose position (its length in bytes, fsynced before each checkpoint) is in the
// checkpoint; on start it truncates the file to that position and restores the sum from the
// same checkpoint. With outOfOrder it begins a whole read batch, completes it in a shuffled
// order (as a worker pool would) and applies what the driver releases, in release order.
//
// Everything the test checks afterwards is appended to `audit`, one JSON object a line,
// synchronously (a SIGKILL loses nothing already written):
// - `xack`: an XACK that reached the client, with the ids no durable checkpoint covered at that
//   moment (`early`, which must stay empty). "Durable" is learnt independently of the driver:
//   from the checkpoint resumed at open, and from every checkpoint the store committed,
//   decoded by the codec after the commit returned.
// - `start`, `covered` (redeliveries the driver skipped), `ackFailed`, `done`.
//
// `crash: "POINT:K"` kills the process with SIGKILL the K-th time it reaches POINT:
// - after-commit: a checkpoint is durable, its acks not yet handed to the source;
// - after-flush: the flush returned, its acks are queued in the source, no XACK sent yet;
// - before-flush: the sink is fsynced, the checkpoint that records its length not yet written;
// - after-apply: an entry applied to the state and the sink;
// - after-read: entries read (now pending in the group), none begun yet.
// `failAcks: P` makes that share of the component's acks fail (as an unreachable Redis would),
// so that their entries stay pending and come back after a restart as `covered` redeliveries.

import { appendFileSync, closeSync, fstatSync, fsyncSync, openSync, truncateSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { createClient } from 'redis';

import { Checkpointer, Codec, JsonFileStorage } from 'pipeline-checkpoint';
import { RedisStreamSource, entryOffset, parseMessageId } from 'pipeline-checkpoint/sources/redis-streams';

const RUN = 'e2e';
const STAGE = 'sum';
const SINK = 'lines';
const OPERATOR = 'sum';

const config = JSON.parse(process.argv[2]);
const audit = (event) => appendFileSync(config.audit, JSON.stringify(event) + '\n');

// A small seeded generator (mulberry32), so a run can be replayed from the test's seed.
let seed = config.seed >>> 0;
const random = () => {
  seed = (seed + 0x6d2b79f5) >>> 0;
  let t = seed;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
};

const [crashPoint, crashAt] = config.crash ? [config.crash.split(':')[0], Number(config.crash.split(':')[1])] : [null, 0];
let reached = 0;
const crash = (point) => {
  if (point === crashPoint && ++reached === crashAt) process.kill(process.pid, 'SIGKILL');
};

// Each stream's next offset as covered by a durable checkpoint, learnt outside the driver.
const durable = new Map();
const learn = (checkpoint) => {
  for (const source of checkpoint?.sources ?? []) durable.set(source.name, source.watermark.offset);
};

class AuditedStorage extends JsonFileStorage {
  #codec = new Codec();
  commit(writes) {
    const outcome = super.commit(writes);
    for (const w of writes) {
      if (w.op === 'put' && w.key.endsWith('/latest')) learn(this.#codec.decode(w.value));
    }
    crash('after-commit');
    return outcome;
  }
}

class FlakySource extends RedisStreamSource {
  ack(ids) {
    if (random() < config.failAcks) {
      audit({ ackFailed: ids.length });
      throw new Error('injected: Redis is unreachable');
    }
    super.ack(ids);
  }
}

const client = await createClient({ url: config.redis }).connect();
// Every XACK that reaches Redis is checked against what is durable at that moment.
const audited = new Proxy(client, {
  get(target, prop) {
    if (prop === 'xAck') {
      return (stream, group, ids) => {
        const early = ids.filter((id) => entryOffset(id) >= (durable.get(stream) ?? 0n)).map((id) => `${stream}/${id}`);
        audit({ xack: ids.length, early });
        return target.xAck(stream, group, ids);
      };
    }
    const value = target[prop];
    return typeof value === 'function' ? value.bind(target) : value;
  },
});

const source = new FlakySource(audited, config.streams, {
  group: config.group, consumer: config.consumer, count: config.count ?? 25, blockMs: 200,
});
const storage = new AuditedStorage(join(config.dir, 'checkpoints.json'));
const checkpointer = Checkpointer.open(storage, source, { namespace: 'redis-e2e', maxRetained: 3, maxCheckpointBytes: 1 << 20 });
// What opening the driver acks again (the resumed checkpoint's ids) is durable already.
learn(checkpointer.resumePoint(RUN, STAGE).checkpoint);
const driver = checkpointer.openDriver({
  runId: RUN, stage: STAGE, epoch: 1n, policy: { perBatch: config.batch ?? 40 }, maxInFlight: 64,
});

// State and sink position come from the checkpoint the driver resumed from.
const resumed = driver.resumedFrom().checkpoint;
let [total, count] = [0, 0];
let position = 0;
if (resumed !== null) {
  const op = resumed.operatorStates.find((o) => o.name === OPERATOR);
  [total, count] = JSON.parse(new TextDecoder().decode(op.state));
  position = Number(resumed.sinks.find((s) => s.name === SINK).position);
}
const sinkPath = join(config.dir, 'sink.jsonl');
const fd = openSync(sinkPath, 'a+');
const before = fstatSync(fd).size;
truncateSync(sinkPath, position); // output past the checkpoint is dropped: it is produced again
audit({ start: process.pid, count, dropped: before - position, recovered: driver.recoveredAcks() });
console.log('ready');

const state = () => ({
  sinks: [{ name: SINK, position: BigInt(position) }],
  operatorStates: [{ name: OPERATOR, state: new TextEncoder().encode(JSON.stringify([total, count])) }],
});
const flush = () => {
  fsyncSync(fd); // the bytes a checkpoint counts are durable before it is written
  crash('before-flush');
  driver.flush(BigInt(Date.now()), state());
  crash('after-flush');
};

let covered = 0;
for (;;) {
  const entries = await source.read(); // sends the acks queued by earlier driver calls first
  if (entries.length === 0) {
    flush();
    await source.sendAcks();
    if (count === config.expect) break;
    console.log('idle', count);
    continue;
  }
  crash('after-read');
  const waiting = [...entries];
  while (waiting.length > 0) {
    const begun = new Map();
    let stalled = false;
    while (waiting.length > 0) {
      const admission = driver.begin(waiting[0].message);
      if (admission.kind === 'backpressure') {
        stalled = true;
        break;
      }
      const entry = waiting.shift();
      if (admission.kind === 'covered') {
        covered += 1; // a redelivery a durable checkpoint holds: acked, not processed
        continue;
      }
      begun.set(admission.ticket, entry);
    }
    // Processing is pure; its effects are applied in the order the driver releases.
    const values = new Map([...begun].map(([t, e]) => [t, Number(e.fields.value)]));
    const order = [...begun.keys()];
    if (config.outOfOrder) {
      for (let i = order.length - 1; i > 0; i--) {
        const j = Math.floor(random() * (i + 1));
        [order[i], order[j]] = [order[j], order[i]];
      }
    }
    let due = false;
    for (const ticket of order) {
      const completion = driver.complete(ticket);
      for (const released of completion.released) {
        const e = begun.get(released);
        total += values.get(released);
        count += 1;
        const line = JSON.stringify([e.stream, e.entryId, values.get(released)]) + '\n';
        position += writeSync(fd, line);
        crash('after-apply');
      }
      due ||= completion.due;
    }
    if (due || stalled) flush();
  }
  if (covered > 0) {
    audit({ covered });
    covered = 0;
  }
}
closeSync(fd);
audit({ done: count, sum: total });
await client.close();
console.log('done', count, total);
