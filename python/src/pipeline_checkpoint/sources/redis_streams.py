"""A Redis Streams consumer-group source for the driver (`Driver.begin` / `complete` / `flush`).

`RedisStreamSource` reads entries of one or more streams (the stage's partitions) through one
consumer group with redis-py, and is the checkpointer's consumer: its `ack` is XACK. Hand it to
`Checkpointer.open` as the consumer and feed what `read` returns to `Driver.begin`::

    source = RedisStreamSource(redis.Redis.from_url(url), ["orders"], group="totals",
                               consumer="worker-1")
    checkpointer = Checkpointer.open(SqliteStorage("checkpoints.db"), source, options)
    driver = checkpointer.open_driver(DriverOptions(...))  # acks again what the resumed one covers
    for entry in source.read():
        admission = driver.begin(entry.message)           # Covered: a redelivery, already acked
        ...

Needs the optional `redis` package (`pip install pipeline-checkpoint[redis]`); the client is
created by the caller, so its connection, TLS and credentials settings are the caller's.

How entries become driver messages
    - `id`: `"{stream}/{entry id}"` (see `message_id`), so that `ack`, which receives ids only
      (also the ids stored with a checkpoint and acked again after a restart), knows which stream
      to XACK. Entry ids contain no `/`; the stream is everything before the last one.
    - `source`: the stream name, so the checkpoint keeps one position per stream.
    - `offset`: the entry id as a u64, `ms << 20 | seq` (see `entry_offset`); an id that does not
      fit (ms of 2^44 or more, seq of 2^20 or more) is refused with `EntryIdOutOfRange`.
    - `event_time_ms`: the entry id's milliseconds.

What it reads, in order
    1. Once, before anything new: every entry pending in the group on each stream, whichever
       consumer it was delivered to (XAUTOCLAIM with min-idle 0 from `0-0`, page by page, in id
       order). These are the entries an earlier process of the stage read and never acked: its
       own pending entries when it ran under this consumer name, or those of an earlier name.
       The driver admits the ones its checkpoint does not cover and answers `Covered` (and acks)
       for the others.
    2. Then new entries (XREADGROUP `>`), blocking up to `block_ms`.

    Taking every pending entry before any new one is what keeps each stream's positions growing
    for the driver: a pending entry offered after a newer one would be a `Regression`, or worse,
    `Covered` once a checkpoint passed it. For the same reason the source claims nothing later
    on: one stage owns the group on its streams. Scale out by streams (partitions), each worker
    with its own streams and stage, not by several consumers in one group.

Acks
    `ack` is called by the component, synchronously, only after the checkpoint covering the ids
    is durable; it XACKs them (one pipelined XACK per stream) before it returns, so no entry is
    ever acked before a durable checkpoint covers it. XACK is idempotent: acking an entry again
    after a restart, or one no longer pending, is harmless. When Redis fails, `ack` raises: the
    receipt says `AckFailed`, the checkpoint stays durable, and the entries stay pending; they are
    acked again with the driver's next checkpoint, or after a crash when the next driver opens
    (the ids stored with the checkpoint) or when they come back as `Covered` redeliveries.

    The XACK runs inside the driver call, under the checkpointer's call deadline (10 s by
    default): give the client a socket timeout well below it, so that a Redis that does not
    answer fails the ack (`AckFailed`) rather than the call.

Use one source from one thread, with one checkpointer and driver.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

from ..types import Message

#: Bits of an offset that hold the sequence part of an entry id (`ms << 20 | seq`).
SEQ_BITS = 20
_MAX_SEQ = (1 << SEQ_BITS) - 1
_MAX_MS = (1 << (64 - SEQ_BITS)) - 1


class EntryIdOutOfRange(ValueError):
    """A stream entry id whose milliseconds or sequence do not fit in a u64 offset
    (`ms << 20 | seq`: ms below 2^44, about the year 2527, and seq below 2^20). Entries of
    explicit, made-up ids can hit it; server-generated ids of today do not. The entry stays
    pending; such a stream cannot be read with positions."""


def _split_entry_id(entry_id: str) -> tuple[int, int]:
    ms, dash, seq = entry_id.partition("-")
    if not dash or not ms.isdigit() or not seq.isdigit() or not ms.isascii() or not seq.isascii():
        raise ValueError(f"not a stream entry id: {entry_id!r} (expected MS-SEQ)")
    return int(ms), int(seq)


def entry_offset(entry_id: str) -> int:
    """The driver offset of a stream entry id: `ms << 20 | seq`. Raises `EntryIdOutOfRange`
    when it does not fit, `ValueError` for a string that is no entry id."""
    ms, seq = _split_entry_id(entry_id)
    if ms > _MAX_MS or seq > _MAX_SEQ:
        raise EntryIdOutOfRange(
            f"stream entry id {entry_id} does not fit in an offset (ms << {SEQ_BITS} | seq): "
            f"ms must be below 2^{64 - SEQ_BITS} and seq below 2^{SEQ_BITS}"
        )
    return ms << SEQ_BITS | seq


def entry_id(offset: int) -> str:
    """The stream entry id of a driver offset (the inverse of `entry_offset`)."""
    if not 0 <= offset < 1 << 64:
        raise ValueError(f"offset {offset} is not a u64")
    return f"{offset >> SEQ_BITS}-{offset & _MAX_SEQ}"


def message_id(stream: str, entry_id: str) -> str:
    """The id the driver acks an entry by: `"{stream}/{entry id}"`."""
    return f"{stream}/{entry_id}"


def parse_message_id(message_id: str) -> tuple[str, str]:
    """(stream, entry id) of an id made by `message_id`; `ValueError` for any other string."""
    stream, slash, entry = message_id.rpartition("/")
    if not slash or not stream:
        raise ValueError(f"not a Redis stream message id: {message_id!r} (expected STREAM/MS-SEQ)")
    _split_entry_id(entry)
    return stream, entry


@dataclass(frozen=True)
class StreamEntry:
    """One entry read from a stream, with the driver `message` it maps to."""

    stream: str
    """The stream (the driver's `source`)."""
    entry_id: str
    """The entry id, `MS-SEQ`."""
    fields: Mapping[Any, Any]
    """The entry's fields as the client returned them (bytes unless it decodes responses)."""
    message: Message
    """What to hand to `Driver.begin`."""


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, (bytes, bytearray)) else str(value)


def _entries(stream: str, raw: Iterable[Any]) -> list[StreamEntry]:
    out = []
    for item in raw or ():
        if item is None or item[0] is None:
            continue  # an entry deleted from the stream while pending: nothing to read
        eid = _text(item[0])
        ms, _ = _split_entry_id(eid)
        out.append(
            StreamEntry(
                stream=stream,
                entry_id=eid,
                fields=item[1] if item[1] is not None else {},
                message=Message(
                    id=message_id(stream, eid),
                    source=stream,
                    offset=entry_offset(eid),
                    event_time_ms=ms,
                ),
            )
        )
    return out


def _by_stream(reply: Any) -> list[tuple[str, Any]]:
    # XREADGROUP as redis-py parses it: RESP2 gives [[stream, entries], ...], RESP3 a dict of
    # stream -> entries (or -> [entries], depending on the redis-py version).
    if not reply:
        return []
    if isinstance(reply, Mapping):
        pairs = list(reply.items())
        return [
            (_text(k), v[0] if len(v) == 1 and isinstance(v[0], list) else v) for k, v in pairs
        ]
    return [(_text(k), v) for k, v in reply]


class RedisStreamSource:
    """Reads `streams` through consumer group `group` as `consumer`, and acks (XACK) what the
    checkpointer hands to `ack`. See the module's documentation for the order of reads and the
    mapping to driver messages.

    `client` is a `redis.Redis` (or anything with its stream methods). `count`: entries per
    read, at most; `block_ms`: how long `read` waits for new entries (0: do not wait).
    `create_from`: where a group created by this source starts (`"0"`: the whole stream, `"$"`:
    only entries added from now on); an existing group is left as it is.
    """

    def __init__(
        self,
        client: Any,
        streams: str | Sequence[str],
        *,
        group: str,
        consumer: str,
        count: int = 100,
        block_ms: int = 1000,
        create_from: str = "0",
    ) -> None:
        names = (streams,) if isinstance(streams, str) else tuple(streams)
        if not names or len(set(names)) != len(names):
            raise ValueError(f"streams must be distinct names, at least one: {names!r}")
        for name in names:
            if not isinstance(name, str) or not name:
                raise ValueError(f"a stream name must be a non-empty str, not {name!r}")
        if count < 1 or block_ms < 0:
            raise ValueError(
                f"count must be at least 1 and block_ms at least 0 ({count}, {block_ms})"
            )
        self.client = client
        self.streams: tuple[str, ...] = names
        self.group = group
        self.consumer = consumer
        self.count = count
        self.block_ms = block_ms
        self.create_from = create_from
        # Streams whose pending entries are still being taken over: stream -> XAUTOCLAIM cursor.
        self._claiming: dict[str, str] | None = None
        self.acked = 0
        """Entries that XACK removed from the group's pending list in this process (an id
        acked again, or no longer pending, counts 0)."""

    def ensure_groups(self) -> None:
        """Creates the group on every stream that lacks it (XGROUP CREATE ... MKSTREAM, so the
        stream is created empty when missing). Idempotent; `read` calls it first."""
        import redis  # the optional dependency, only for its error class

        for stream in self.streams:
            try:
                self.client.xgroup_create(stream, self.group, id=self.create_from, mkstream=True)
            except redis.ResponseError as e:
                if not str(e).startswith("BUSYGROUP"):
                    raise

    def read(self, block_ms: int | None = None) -> list[StreamEntry]:
        """The next entries, at most `count`, in id order within each stream: first (once) every
        entry pending in the group, then new ones, waiting up to `block_ms` (default: the
        source's) for them. Empty when none came in time. Raises `EntryIdOutOfRange` for an entry
        whose id does not fit in an offset."""
        if self._claiming is None:
            self.ensure_groups()
            self._claiming = {stream: "0-0" for stream in self.streams}
        while self._claiming:
            stream, cursor = next(iter(self._claiming.items()))
            reply = self.client.xautoclaim(
                stream, self.group, self.consumer, 0, start_id=cursor, count=self.count
            )
            following = _text(reply[0])
            if following == "0-0":
                del self._claiming[stream]
            else:
                self._claiming[stream] = following
            entries = _entries(stream, reply[1])
            if entries:
                return entries
        block = self.block_ms if block_ms is None else block_ms
        reply = self.client.xreadgroup(
            self.group,
            self.consumer,
            {stream: ">" for stream in self.streams},
            count=self.count,
            block=block if block > 0 else None,
        )
        return [e for stream, raw in _by_stream(reply) for e in _entries(stream, raw)]

    def ack(self, message_ids: list[str]) -> None:
        """The `Consumer` import: XACKs these entries in the group (one pipelined XACK per
        stream). Called by the component only once a durable checkpoint covers them. Raises
        when an id is not one of this source's, or when Redis fails (nothing is lost: see the
        module's documentation)."""
        by_stream: dict[str, list[str]] = {}
        for mid in message_ids:
            stream, eid = parse_message_id(mid)
            if stream not in self.streams:
                raise ValueError(f"{mid!r} is not an entry of this source's streams")
            by_stream.setdefault(stream, []).append(eid)
        pipe = self.client.pipeline(transaction=False)
        for stream, ids in by_stream.items():
            pipe.xack(stream, self.group, *ids)
        self.acked += sum(int(n) for n in pipe.execute())

    def pending(self) -> dict[str, int]:
        """How many entries are pending (read, not acked) in the group, per stream (XPENDING),
        whichever consumer holds them."""
        return {
            stream: int(self.client.xpending(stream, self.group)["pending"])
            for stream in self.streams
        }


__all__ = [
    "EntryIdOutOfRange",
    "RedisStreamSource",
    "StreamEntry",
    "entry_id",
    "entry_offset",
    "message_id",
    "parse_message_id",
]
