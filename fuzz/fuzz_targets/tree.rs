//! Fuzz target `tree`: see [`stowage_fuzz::fuzz_tree`].
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    stowage_fuzz::fuzz_tree(data);
});
