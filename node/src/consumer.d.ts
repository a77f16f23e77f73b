// Declarations of consumer.js: the consumer contract (what the component's `consumer` import
// needs) and the two consumers of this package.

/**
 * Acknowledges input messages to their source. Any object with a synchronous `ack` method is a
 * consumer. The component calls it only after a checkpoint covering the messages is durable,
 * never with an empty list. It must be idempotent. To fail, throw: the message reaches the
 * receipt (`acks: {kind: 'failed', message}`) and the checkpoint stays durable.
 */
export interface Consumer {
  ack(messageIds: string[]): void;
}

/** A consumer that accepts every ack and does nothing with it. */
export class NullConsumer implements Consumer {
  constructor();
  ack(messageIds: string[]): void;
}

/** A consumer that records every ack, for tests and demos; it can be told to fail the next acks. */
export class RecordingConsumer implements Consumer {
  constructor();
  /** The batches acked successfully, in call order. */
  acks: string[][];
  /** The batches whose ack was made to fail, in call order. */
  failed: string[][];
  /** Makes the next `n` acks fail (recorded in `failed`, not `acks`). Replaces an earlier count. */
  failNext(n: number): void;
  ack(messageIds: string[]): void;
}
