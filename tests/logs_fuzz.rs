//! Random inputs for the line parsers, driven by `cargo test` (the libFuzzer target in `fuzz/`
//! needs cargo-fuzz and nightly features; this runs everywhere). Inputs are fixture lines mutated
//! by a seeded generator (byte flips, cuts, splices, duplicated separators), so failures replay.

use std::path::PathBuf;

use meshmedic::logs::fuzzing::exercise;

/// xorshift64*: small, seeded, good enough to pick mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const SPECIAL: &[u8] = b"\"{}[]%:,|-\\\n\r\t 0123456789UCFRXNH\x1f\x8b";

fn mutate(rng: &mut Rng, seed: &[u8], other: &[u8]) -> Vec<u8> {
    let mut v = seed.to_vec();
    for _ in 0..1 + rng.below(6) {
        let len = v.len();
        match rng.below(6) {
            0 if len > 0 => {
                let i = rng.below(len);
                v[i] = SPECIAL[rng.below(SPECIAL.len())];
            }
            1 if len > 0 => v.truncate(rng.below(len)),
            2 => {
                let i = rng.below(len + 1);
                v.insert(i, SPECIAL[rng.below(SPECIAL.len())]);
            }
            3 if len > 0 => {
                let i = rng.below(len);
                v.remove(i);
            }
            4 => {
                // Splice a piece of another line in.
                let a = rng.below(other.len() + 1);
                let b = a + rng.below(other.len() - a + 1);
                let i = rng.below(len + 1);
                v.splice(i..i, other[a..b].iter().copied());
            }
            _ => {
                let i = rng.below(len + 1);
                v.insert(i, (rng.next() & 0xff) as u8);
            }
        }
    }
    v
}

#[test]
fn mutated_fixture_lines_never_panic() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/logs");
    let mut seeds: Vec<Vec<u8>> = Vec::new();
    for name in [
        "mixed.log",
        "listener-change.jsonl",
        "custom-format.log",
        "prometheus-exposition.txt",
        "prometheus-query.json",
    ] {
        let text = std::fs::read(dir.join(name)).expect("fixture");
        seeds.extend(text.split(|&b| b == b'\n').take(20).map(<[u8]>::to_vec));
        seeds.push(text);
    }
    let iterations: usize = std::env::var("MESHMEDIC_FUZZ_ITERATIONS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000);
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    for _ in 0..iterations {
        let a = rng.below(seeds.len());
        let b = rng.below(seeds.len());
        let input = mutate(&mut rng, &seeds[a], &seeds[b]);
        exercise(&input);
    }
}

#[test]
fn pathological_inputs() {
    for input in [
        &b""[..],
        b"\n\n\n",
        b"\x1f\x8b",
        b"\x1f\x8b\x08\x00garbage",
        b"{",
        b"{\"response_code\":",
        b"[",
        b"%",
        b"%REQ(",
        b"%RESPONSE_CODE%\n503",
        b"%RESPONSE_CODE%%RESPONSE_FLAGS%\n503UC",
        // Found by the libFuzzer target: an all-digit start time overflowing i64.
        b"99999999999999999999999999",
        b"[99999999999999999999999999] \"GET / HTTP/1.1\" 503 UC",
        b"{\"a\":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]",
    ] {
        exercise(input);
    }
}
