//! Fuzz the access-log line parsers: whatever the bytes, parsing must not panic, and feeding them
//! as a whole input (lines, gzip detection, over-long lines) must count every line.
#![no_main]

use libfuzzer_sys::fuzz_target;
use meshmedic::logs::fuzzing::exercise;

fuzz_target!(|data: &[u8]| {
    exercise(data);
});
