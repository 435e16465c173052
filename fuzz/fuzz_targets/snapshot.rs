//! Fuzz target `snapshot`: see [`stowage_fuzz::fuzz_snapshot`].
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    stowage_fuzz::fuzz_snapshot(data);
});
