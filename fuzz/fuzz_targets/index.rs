//! Fuzz target `index`: see [`stowage_fuzz::fuzz_index`].
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    stowage_fuzz::fuzz_index(data);
});
