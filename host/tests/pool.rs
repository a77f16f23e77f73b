//! The default pool holds at least 1000 live instances. In its own test binary so no other
//! test competes for the shared runtime's slots.

use checkpoint_host::{Codec, Runtime, RuntimeConfig};

#[test]
fn default_runtime_holds_a_thousand_live_instances() {
    assert!(RuntimeConfig::default().max_instances >= 1000);
    let dir = tempfile::tempdir().expect("temp dir");
    let runtime = Runtime::new(RuntimeConfig {
        cache_dir: Some(dir.path().to_owned()),
        ..RuntimeConfig::default()
    })
    .expect("runtime");
    let live: Vec<Codec> = (0..1000)
        .map(|i| Codec::new_in(&runtime).unwrap_or_else(|e| panic!("instance {i}: {e}")))
        .collect();
    assert_eq!(live.len(), 1000);
}
