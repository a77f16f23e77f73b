"""Sources: adapters that read messages from a real system, hand them to a `Driver`, and ack them
through the checkpointer's `consumer` import once a durable checkpoint covers them.

- `pipeline_checkpoint.sources.redis_streams`: Redis Streams consumer groups (needs the
  optional `redis` package: `pip install pipeline-checkpoint[redis]`).

Each source lives in its own module, imported on demand, so that its client library weighs only
on users of that source.
"""
