//! `checkpoint_guest::codec::decode` on arbitrary bytes: it never panics, and whatever it accepts
//! is canonical (re-encoding gives back exactly the input) and round-trips.

#![no_main]

use checkpoint_guest::codec::{decode, encode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let Ok(checkpoint) = decode(bytes) else {
        return;
    };
    let encoded = match encode(&checkpoint) {
        Ok(encoded) => encoded,
        Err(error) => panic!("decode accepted {checkpoint:?} but encode refused it: {error:?}"),
    };
    assert_eq!(encoded, bytes, "accepted bytes are not canonical");
    assert_eq!(decode(&encoded).as_ref(), Ok(&checkpoint), "round trip");
});
