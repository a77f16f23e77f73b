//! `checkpoint_guest::codec::decode` on arbitrary bytes: it never panics, and whatever it accepts
//! is canonical (re-encoding gives back exactly the input) and round-trips. Each input is tried
//! as it is and with its frame (length, CRC) made valid, so the body parser is reached too.

#![no_main]

use checkpoint_fuzz::with_valid_frame;
use checkpoint_guest::codec::{decode, encode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    check(bytes);
    if let Some(framed) = with_valid_frame(bytes) {
        check(&framed);
    }
});

fn check(bytes: &[u8]) {
    let Ok(checkpoint) = decode(bytes) else {
        return;
    };
    let encoded = match encode(&checkpoint) {
        Ok(encoded) => encoded,
        Err(error) => panic!("decode accepted {checkpoint:?} but encode refused it: {error:?}"),
    };
    assert_eq!(encoded, bytes, "accepted bytes are not canonical");
    assert_eq!(decode(&encoded).as_ref(), Ok(&checkpoint), "round trip");
}
