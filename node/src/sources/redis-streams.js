// A Redis Streams consumer-group source for the driver (`begin` / `complete` / `flush`), over a
// node-redis client (`redis` 6; an optional peer dependency: this module never imports it, the
// caller passes a connected client).
//
// How entries become driver messages: id `${stream}/${entryId}` (so that `ack`, which receives
// ids only, also those stored with a checkpoint and acked again after a restart, knows the
// stream to XACK; entry ids contain no `/`), source = the stream, offset = `ms << 20 | seq` as a
// BigInt (an id that does not fit is refused with EntryIdOutOfRangeError), eventTimeMs = ms.
//
// What it reads, in order: once, every entry pending in the group on each stream, whichever
// consumer holds it (XAUTOCLAIM with min-idle 0 from 0-0, page by page, in id order); then new
// entries (XREADGROUP `>`). Pending entries must all come before new ones, or a stream's
// positions would go back for the driver (`regression`, or `covered` once a checkpoint passed
// them); so one stage owns the group on its streams, and the source claims nothing later on.
//
// Acks. The component calls `ack` synchronously, inside `openDriver`, `begin` (a covered
// redelivery) and `flush`, and only after the checkpoint covering the ids is durable; a
// network client cannot XACK synchronously, so `ack` queues the ids and `sendAcks()` XACKs
// them, after the driver call returned: later still than the durable write, never before it.
// `read()` sends the queued acks first, so a loop of read / begin / complete / flush needs no
// call of its own; call `sendAcks()` before exiting. The receipt's `acks: {kind: 'acked'}`
// thus means "queued". An XACK that fails makes `sendAcks` throw and keeps the ids queued for
// the next call. If the process dies with ids queued, the entries stay pending in the group:
// the next driver acks the ids stored with the checkpoint it resumes from at open, and any other
// covered entry comes back at the next start and is answered `covered` (and acked) by `begin`.
// XACK is idempotent, so acking again is harmless.

const SEQ_BITS = 20n;
const MAX_SEQ = (1n << SEQ_BITS) - 1n;
const MAX_MS = (1n << (64n - SEQ_BITS)) - 1n;
const ENTRY_ID = /^(\d+)-(\d+)$/;

/** An entry id whose ms or seq does not fit in a u64 offset (`ms << 20 | seq`). */
export class EntryIdOutOfRangeError extends RangeError {
  constructor(message) {
    super(message);
    this.name = 'EntryIdOutOfRangeError';
  }
}

function splitEntryId(entryId) {
  const m = typeof entryId === 'string' ? ENTRY_ID.exec(entryId) : null;
  if (m === null) throw new TypeError(`not a stream entry id: ${JSON.stringify(entryId)} (expected MS-SEQ)`);
  return [BigInt(m[1]), BigInt(m[2])];
}

/**
 * The driver offset of a stream entry id: `ms << 20 | seq`, a BigInt.
 * @param {string} entryId
 * @returns {bigint}
 */
export function entryOffset(entryId) {
  const [ms, seq] = splitEntryId(entryId);
  if (ms > MAX_MS || seq > MAX_SEQ) {
    throw new EntryIdOutOfRangeError(
      `stream entry id ${entryId} does not fit in an offset (ms << ${SEQ_BITS} | seq): ` +
        `ms must be below 2^${64n - SEQ_BITS} and seq below 2^${SEQ_BITS}`,
    );
  }
  return (ms << SEQ_BITS) | seq;
}

/**
 * The stream entry id of a driver offset (the inverse of `entryOffset`).
 * @param {bigint} offset
 * @returns {string}
 */
export function entryId(offset) {
  if (typeof offset !== 'bigint' || offset < 0n || offset >= 1n << 64n) {
    throw new RangeError(`offset ${offset} is not a u64 BigInt`);
  }
  return `${offset >> SEQ_BITS}-${offset & MAX_SEQ}`;
}

/** The id the driver acks an entry by: `${stream}/${entryId}`. */
export function messageId(stream, entryId) {
  return `${stream}/${entryId}`;
}

/**
 * The stream and entry id of an id made by `messageId`; a TypeError for any other string.
 * @param {string} id
 * @returns {[string, string]}
 */
export function parseMessageId(id) {
  const slash = typeof id === 'string' ? id.lastIndexOf('/') : -1;
  if (slash < 1) throw new TypeError(`not a Redis stream message id: ${JSON.stringify(id)} (expected STREAM/MS-SEQ)`);
  const entry = id.slice(slash + 1);
  splitEntryId(entry);
  return [id.slice(0, slash), entry];
}

function entryOf(stream, raw) {
  const id = String(raw.id);
  const offset = entryOffset(id);
  return {
    stream,
    entryId: id,
    fields: raw.message ?? {},
    message: { id: messageId(stream, id), source: stream, offset, eventTimeMs: offset >> SEQ_BITS },
  };
}

/**
 * Reads `streams` through consumer group `group` as `consumer`, and is the checkpointer's
 * consumer: XACK of what the component hands to `ack` (see the file's header for the order of
 * reads, the message mapping and how acks are deferred).
 */
export class RedisStreamSource {
  #claiming = null;
  #queued = [];

  /**
   * @param {object} client A connected node-redis client (`createClient(...)` after `connect()`).
   * @param {string | string[]} streams
   * @param {{group: string, consumer: string, count?: number, blockMs?: number, createFrom?: string}} options
   *   `count`: entries per read, at most (100); `blockMs`: how long `read` waits for new
   *   entries (1000; 0: do not wait); `createFrom`: where a group this source creates starts
   *   (`'0'`, the whole stream; `'$'`: only new entries).
   */
  constructor(client, streams, { group, consumer, count = 100, blockMs = 1000, createFrom = '0' } = {}) {
    const names = typeof streams === 'string' ? [streams] : [...streams];
    if (names.length === 0 || new Set(names).size !== names.length || names.some((s) => typeof s !== 'string' || s === '')) {
      throw new TypeError(`streams must be distinct non-empty names, at least one: ${JSON.stringify(names)}`);
    }
    if (typeof group !== 'string' || group === '' || typeof consumer !== 'string' || consumer === '') {
      throw new TypeError('group and consumer must be non-empty strings');
    }
    if (!Number.isSafeInteger(count) || count < 1 || !Number.isSafeInteger(blockMs) || blockMs < 0) {
      throw new RangeError(`count must be at least 1 and blockMs at least 0 (${count}, ${blockMs})`);
    }
    this.client = client;
    this.streams = Object.freeze(names);
    this.group = group;
    this.consumer = consumer;
    this.count = count;
    this.blockMs = blockMs;
    this.createFrom = createFrom;
    /** Entries XACK removed from the group's pending list in this process. */
    this.acked = 0;
  }

  /** Creates the group on every stream that lacks it (XGROUP CREATE ... MKSTREAM). Idempotent. */
  async ensureGroups() {
    for (const stream of this.streams) {
      try {
        await this.client.xGroupCreate(stream, this.group, this.createFrom, { MKSTREAM: true });
      } catch (e) {
        if (!String(e?.message).startsWith('BUSYGROUP')) throw e;
      }
    }
  }

  /**
   * Sends the queued acks, then returns the next entries (at most `count`, in id order within
   * each stream): first, once, every entry pending in the group, then new ones, waiting up to
   * `blockMs` for them. `[]` when none came in time.
   * @param {{blockMs?: number}} [options]
   */
  async read({ blockMs = this.blockMs } = {}) {
    await this.sendAcks();
    if (this.#claiming === null) {
      await this.ensureGroups();
      this.#claiming = new Map(this.streams.map((s) => [s, '0-0']));
    }
    while (this.#claiming.size > 0) {
      const [stream, cursor] = this.#claiming.entries().next().value;
      const reply = await this.client.xAutoClaim(stream, this.group, this.consumer, 0, cursor, { COUNT: this.count });
      const next = String(reply.nextId);
      if (next === '0-0') this.#claiming.delete(stream);
      else this.#claiming.set(stream, next);
      // A null is an entry deleted while pending (Redis 7 drops it from the pending list).
      const entries = reply.messages.filter((m) => m !== null && m.message !== null).map((m) => entryOf(stream, m));
      if (entries.length > 0) return entries;
    }
    const reply = await this.client.xReadGroup(
      this.group,
      this.consumer,
      this.streams.map((key) => ({ key, id: '>' })),
      blockMs > 0 ? { COUNT: this.count, BLOCK: blockMs } : { COUNT: this.count },
    );
    if (reply === null || reply === undefined) return [];
    const byStream = Array.isArray(reply)
      ? reply.map((r) => [String(r.name), r.messages])
      : Object.entries(reply instanceof Map ? Object.fromEntries(reply) : reply);
    return byStream.flatMap(([stream, messages]) => messages.map((m) => entryOf(stream, m)));
  }

  /**
   * The consumer import: queues these ids for `sendAcks` (the component calls it only once a
   * durable checkpoint covers them). Throws, which the receipt reports as a failed ack, for an
   * id that is not an entry of this source's streams.
   * @param {string[]} messageIds
   */
  ack(messageIds) {
    const parsed = messageIds.map((id) => {
      const [stream, entry] = parseMessageId(id);
      if (!this.streams.includes(stream)) throw new TypeError(`${JSON.stringify(id)} is not an entry of this source's streams`);
      return [stream, entry];
    });
    this.#queued.push(...parsed);
  }

  /** How many acked ids wait for `sendAcks`. */
  get queuedAcks() {
    return this.#queued.length;
  }

  /**
   * XACKs every queued id (one XACK per stream, sent together). On failure it throws and keeps
   * the ids queued for the next call. Returns how many entries left the pending list.
   * @returns {Promise<number>}
   */
  async sendAcks() {
    if (this.#queued.length === 0) return 0;
    const batch = this.#queued;
    this.#queued = [];
    const byStream = new Map();
    for (const [stream, entry] of batch) {
      if (!byStream.has(stream)) byStream.set(stream, []);
      byStream.get(stream).push(entry);
    }
    let removed;
    try {
      removed = await Promise.all([...byStream].map(([stream, ids]) => this.client.xAck(stream, this.group, ids)));
    } catch (e) {
      this.#queued = batch.concat(this.#queued);
      throw e;
    }
    const n = removed.reduce((a, b) => a + Number(b), 0);
    this.acked += n;
    return n;
  }

  /**
   * How many entries are pending in the group (read, not acked), per stream (XPENDING).
   * @returns {Promise<Record<string, number>>}
   */
  async pending() {
    const out = {};
    for (const stream of this.streams) out[stream] = Number((await this.client.xPending(stream, this.group)).pending);
    return out;
  }
}
