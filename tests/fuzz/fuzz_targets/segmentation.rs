#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| plantwatch_actors::fuzzing::segmentation(data));
