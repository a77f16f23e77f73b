// Declarations of sources/redis-streams.js: a Redis Streams consumer-group source over a
// node-redis client (the `redis` package, an optional peer dependency).

import type { Consumer } from '../consumer.js';
import type { Message } from '../checkpointer.js';

/** An entry id whose ms or seq does not fit in a u64 offset (`ms << 20 | seq`). */
export class EntryIdOutOfRangeError extends RangeError {}

/** The driver offset of a stream entry id: `ms << 20 | seq`. */
export function entryOffset(entryId: string): bigint;
/** The stream entry id of a driver offset (the inverse of `entryOffset`). */
export function entryId(offset: bigint): string;
/** The id the driver acks an entry by: `${stream}/${entryId}`. */
export function messageId(stream: string, entryId: string): string;
/** `[stream, entryId]` of an id made by `messageId`; a TypeError for any other string. */
export function parseMessageId(id: string): [string, string];

/** A driver message made from a stream entry: every field is set. */
export interface StreamMessage extends Message {
  id: string;
  source: string;
  offset: bigint;
  eventTimeMs: bigint;
}

/** One entry read from a stream, with the driver message it maps to. */
export interface StreamEntry {
  /** The stream (the message's `source`). */
  stream: string;
  /** The entry id, `MS-SEQ`. */
  entryId: string;
  /** The entry's fields, as the client returned them. */
  fields: Record<string, string>;
  /** What to hand to `Driver.begin`. */
  message: StreamMessage;
}

/** The commands of a node-redis client (`redis` 6) that the source uses. */
export interface RedisStreamsClient {
  xGroupCreate(key: string, group: string, id: string, options?: { MKSTREAM?: boolean }): Promise<unknown>;
  xAutoClaim(
    key: string,
    group: string,
    consumer: string,
    minIdleTime: number,
    start: string,
    options?: { COUNT?: number },
  ): Promise<{ nextId: string; messages: Array<{ id: string; message: Record<string, string> | null } | null> }>;
  xReadGroup(
    group: string,
    consumer: string,
    streams: Array<{ key: string; id: string }>,
    options?: { COUNT?: number; BLOCK?: number },
  ): Promise<unknown>;
  xAck(key: string, group: string, ids: string[]): Promise<number>;
  xPending(key: string, group: string): Promise<{ pending: number }>;
}

export interface RedisStreamSourceOptions {
  /** The consumer group (created on each stream when missing). */
  group: string;
  /** This process's consumer name in the group. */
  consumer: string;
  /** Entries per read, at most; default 100. */
  count?: number;
  /** How long `read` waits for new entries, in ms; default 1000; 0: do not wait. */
  blockMs?: number;
  /** Where a group this source creates starts: `'0'` (default, the whole stream) or `'$'`. */
  createFrom?: string;
}

/**
 * Reads streams through one consumer group and acks (XACK) what the checkpointer hands to
 * `ack`, after the driver call that acked returned: `ack` queues, `sendAcks` (and every `read`)
 * sends. One stage owns the group on its streams.
 */
export class RedisStreamSource implements Consumer {
  constructor(client: RedisStreamsClient, streams: string | string[], options: RedisStreamSourceOptions);
  readonly client: RedisStreamsClient;
  readonly streams: readonly string[];
  readonly group: string;
  readonly consumer: string;
  readonly count: number;
  readonly blockMs: number;
  readonly createFrom: string;
  /** Entries XACK removed from the group's pending list in this process. */
  acked: number;
  /** Creates the group on every stream that lacks it (XGROUP CREATE ... MKSTREAM). */
  ensureGroups(): Promise<void>;
  /**
   * Sends the queued acks, then the next entries: first (once) every entry pending in the
   * group, in id order, then new ones, waiting up to `blockMs`; `[]` when none came in time.
   * Rejects with `EntryIdOutOfRangeError` for an entry whose id does not fit in an offset.
   */
  read(options?: { blockMs?: number }): Promise<StreamEntry[]>;
  /** The consumer import: queues the ids for `sendAcks`. */
  ack(messageIds: string[]): void;
  /** How many acked ids wait for `sendAcks`. */
  readonly queuedAcks: number;
  /** XACKs every queued id; on failure rejects and keeps them queued. Resolves to how many left the pending list. */
  sendAcks(): Promise<number>;
  /** Entries pending in the group (read, not acked), per stream (XPENDING). */
  pending(): Promise<Record<string, number>>;
}
