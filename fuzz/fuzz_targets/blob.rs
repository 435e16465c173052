//! Fuzz target `blob`: see [`stowage_fuzz::fuzz_blob`].
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    stowage_fuzz::fuzz_blob(data);
});
