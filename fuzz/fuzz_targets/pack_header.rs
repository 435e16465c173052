//! Fuzz target `pack_header`: see [`stowage_fuzz::fuzz_pack_header`].
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    stowage_fuzz::fuzz_pack_header(data);
});
