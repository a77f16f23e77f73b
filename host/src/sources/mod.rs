//! Sources that feed a [`Driver`](crate::Driver) and take its acks.
//!
//! A source reads messages, hands them to [`Driver::begin`](crate::Driver::begin) as
//! [`Message`](crate::Message)s, and supplies the [`Consumer`](crate::Consumer) that acks them
//! once a durable checkpoint covers them. Everything about redeliveries (skipping covered
//! messages, acking them again after a crash) is the driver's job, not the source's.
//!
//! - [`redis_streams`] (feature `redis`): a Redis Streams consumer group, one stream per
//!   partition.

#[cfg(feature = "redis")]
pub mod redis_streams;
