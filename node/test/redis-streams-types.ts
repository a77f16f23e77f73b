// The declarations of pipeline-checkpoint/sources/redis-streams, used from TypeScript as a user
// would, with a real node-redis client: tsc --strict (run-tests.sh) checks that they compile
// against the package's own (an entry's message feeds `Driver.begin`, the source is a
// `Consumer`) and that the client `createClient()` returns is accepted. Only type-checked, never
// run (the tests run the same calls). node-redis's command types are loose here (its
// declarations lean on Node's types, not installed), so this does not pin the reply shapes: the
// tests against a real server do.

import { createClient } from 'redis';
import { Checkpointer, MapStorage } from 'pipeline-checkpoint';
import type { Admission, Completion } from 'pipeline-checkpoint';
import {
  EntryIdOutOfRangeError,
  RedisStreamSource,
  entryId,
  entryOffset,
  messageId,
  parseMessageId,
} from 'pipeline-checkpoint/sources/redis-streams';
import type { StreamEntry } from 'pipeline-checkpoint/sources/redis-streams';

export async function typed(url: string): Promise<number> {
  const client = await createClient({ url }).connect();
  const source = new RedisStreamSource(client, ['a', 'b'], { group: 'g', consumer: 'c', count: 10, blockMs: 0 });
  const checkpointer = Checkpointer.open(new MapStorage(), source, { namespace: 'n', maxRetained: 1, maxCheckpointBytes: 1 << 20 });
  const driver = checkpointer.openDriver({ runId: 'r', stage: 's', epoch: 1n, policy: 'explicit-flush' });
  const entries: StreamEntry[] = await source.read({ blockMs: 5 });
  for (const entry of entries) {
    const offset: bigint = entry.message.offset;
    const admission: Admission = driver.begin(entry.message);
    if (admission.kind === 'admitted') {
      const done: Completion = driver.complete(admission.ticket);
      if (done.due) driver.flush(BigInt(Date.now()), { sinks: [{ name: 'out', position: offset }] });
    }
  }
  const [stream, id]: [string, string] = parseMessageId(messageId('a', entryId(entryOffset('1-2'))));
  const error: RangeError = new EntryIdOutOfRangeError(`${stream} ${id}`);
  const pending: Record<string, number> = await source.pending();
  const sent: number = await source.sendAcks();
  await client.close();
  return sent + source.queuedAcks + source.acked + (pending[stream] ?? 0) + error.message.length;
}
