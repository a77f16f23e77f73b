// Consumers for the component's `consumer` import: where acks go.

/**
 * Acknowledges input messages to their source: what the component's `consumer` import needs.
 * Any object with an `ack` method is a consumer.
 *
 * The component calls `ack` only after a checkpoint covering the messages is durable, and never
 * with an empty list. It must be idempotent (the same ids may come again after a retry, a
 * replayed write or a restart). To fail, throw: the message reaches the receipt
 * (`acks: {kind: 'failed', message}`) and the checkpoint stays durable. Synchronous, like
 * storage calls.
 *
 * @typedef {object} Consumer
 * @property {(messageIds: string[]) => void} ack
 */

/** A consumer that accepts every ack and does nothing with it. */
export class NullConsumer {
  /** @param {string[]} _messageIds */
  ack(_messageIds) {}
}

/**
 * A consumer that records every ack, for tests and demos; it can be told to fail the next
 * acks.
 */
export class RecordingConsumer {
  /** @type {string[][]} The batches acked successfully, in call order. */
  acks = [];
  /** @type {string[][]} The batches whose ack was made to fail, in call order. */
  failed = [];
  #failNext = 0;

  /**
   * Makes the next `n` acks fail (recorded in `failed`, not `acks`). Replaces an earlier count.
   * @param {number} n
   */
  failNext(n) {
    this.#failNext = n;
  }

  /** @param {string[]} messageIds */
  ack(messageIds) {
    if (this.#failNext > 0) {
      this.#failNext -= 1;
      this.failed.push([...messageIds]);
      throw new Error('injected ack failure (RecordingConsumer.failNext)');
    }
    this.acks.push([...messageIds]);
  }
}
