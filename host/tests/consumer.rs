//! The test consumers.

use checkpoint_host::consumer::{Consumer, NullConsumer, RecordingConsumer};

fn ids(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

#[test]
fn recording_consumer_records_acks_through_every_handle() {
    let recorder = RecordingConsumer::new();
    let mut handle: Box<dyn Consumer> = Box::new(recorder.clone());
    handle.ack(ids(&["m1", "m2"])).expect("ack");
    handle.ack(ids(&["m3"])).expect("ack");
    assert_eq!(recorder.acks(), vec![ids(&["m1", "m2"]), ids(&["m3"])]);
    assert!(recorder.failed().is_empty());
}

#[test]
fn fail_next_fails_exactly_that_many_acks() {
    let recorder = RecordingConsumer::new();
    let mut handle = recorder.clone();
    recorder.fail_next(2);
    assert!(handle.ack(ids(&["a"])).is_err());
    assert!(handle.ack(ids(&["b"])).is_err());
    handle.ack(ids(&["c"])).expect("third ack succeeds");
    assert_eq!(recorder.failed(), vec![ids(&["a"]), ids(&["b"])]);
    assert_eq!(recorder.acks(), vec![ids(&["c"])]);
}

#[test]
fn null_consumer_accepts_everything() {
    assert_eq!(NullConsumer.ack(ids(&["x"])), Ok(()));
}
