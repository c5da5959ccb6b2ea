//! Parsing on several threads. The reading thread cuts the input into blocks that end at a line
//! end and hands them round-robin to workers, each with its own [`Analyzer`]; the aggregates merge
//! at the end. Buffers go back to the reader for reuse, so memory is (workers × 2 + 1) blocks.
//!
//! Line numbers of malformed lines: a worker records (block, line within block); the reader keeps
//! each block's line count (8 bytes per block) to turn those into line numbers of the input.

use std::io::{self, Read};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use super::stats::{Location, MAX_MALFORMED_EXAMPLES};
use super::{Analyzer, MAX_LINE};

struct Block {
    seq: usize,
    /// The lines are `data[start..end]`.
    data: Vec<u8>,
    start: usize,
    end: usize,
    /// A single line longer than `MAX_LINE`, already cut: count it as one malformed line.
    overlong: bool,
}

/// A worker's analyzer and its first malformed lines as (block, line in block).
type WorkerResult = (Analyzer, Vec<(usize, u64)>);

struct Done {
    seq: usize,
    lines: u64,
    data: Vec<u8>,
}

fn work(
    mut a: Analyzer,
    input: usize,
    rx: Receiver<Block>,
    done: SyncSender<Done>,
) -> (Analyzer, Vec<(usize, u64)>) {
    let mut examples: Vec<(usize, u64)> = Vec::new();
    while let Ok(b) = rx.recv() {
        let mut local = 0u64;
        if b.overlong {
            local = 1;
            a.stats.lines += 1;
            a.stats.note_malformed(Location { input, line: 1 });
        } else {
            let mut start = 0;
            let data = &b.data[b.start..b.end];
            for nl in memchr::memchr_iter(b'\n', data) {
                local += 1;
                a.line(&data[start..nl], Location { input, line: local });
                start = nl + 1;
            }
            if start < data.len() {
                local += 1;
                a.line(&data[start..], Location { input, line: local });
            }
        }
        // Keep this worker's first few malformed lines as (block, line in block).
        for at in a.stats.malformed_at.drain(..) {
            if examples.len() < MAX_MALFORMED_EXAMPLES {
                examples.push((b.seq, at.line));
            }
        }
        if done
            .send(Done {
                seq: b.seq,
                lines: local,
                data: b.data,
            })
            .is_err()
        {
            break;
        }
    }
    (a, examples)
}

pub(super) fn feed(
    analyzer: &mut Analyzer,
    mut r: Box<dyn Read + Send + '_>,
    input: usize,
) -> io::Result<()> {
    let n = analyzer.threads;
    let block = analyzer.block;
    let (done_tx, done_rx) = sync_channel::<Done>(n * 2);
    let mut line_counts: Vec<u64> = Vec::new();
    let results = std::thread::scope(|scope| -> io::Result<Vec<WorkerResult>> {
        let mut senders = Vec::with_capacity(n);
        let mut handles = Vec::with_capacity(n);
        for _ in 0..n {
            let (tx, rx) = sync_channel::<Block>(1);
            let worker = Analyzer::new(analyzer.format.clone(), analyzer.stats.limits)
                .with_block_size(block);
            let done = done_tx.clone();
            handles.push(scope.spawn(move || work(worker, input, rx, done)));
            senders.push(tx);
        }
        drop(done_tx);
        let mut spare: Vec<Vec<u8>> = Vec::new();
        let mut in_flight = 0usize;
        let mut seq = 0usize;
        let mut carry: Vec<u8> = Vec::new();
        let mut skipping = false;
        let record = |d: Done, spare: &mut Vec<Vec<u8>>, counts: &mut Vec<u64>| {
            if counts.len() <= d.seq {
                counts.resize(d.seq + 1, 0);
            }
            counts[d.seq] = d.lines;
            spare.push(d.data);
        };
        let send = |data: Vec<u8>,
                    start: usize,
                    end: usize,
                    overlong: bool,
                    seq: &mut usize,
                    in_flight: &mut usize|
         -> bool {
            let ok = senders[*seq % n]
                .send(Block {
                    seq: *seq,
                    data,
                    start,
                    end,
                    overlong,
                })
                .is_ok();
            *seq += 1;
            *in_flight += 1;
            ok
        };
        let result = loop {
            // Reuse a returned buffer when one is back; never more than 2 per worker in flight.
            while in_flight >= n * 2 {
                match done_rx.recv() {
                    Ok(d) => {
                        in_flight -= 1;
                        record(d, &mut spare, &mut line_counts);
                    }
                    Err(_) => break,
                }
            }
            while let Ok(d) = done_rx.try_recv() {
                in_flight -= 1;
                record(d, &mut spare, &mut line_counts);
            }
            // Buffers keep their length (zeroed once) and carry the valid length beside them:
            // resizing each time would clear megabytes per block.
            let mut buf = spare.pop().unwrap_or_default();
            let want = carry.len() + block;
            if buf.len() < want {
                buf.resize(want.max(2 * block), 0);
            }
            let filled = carry.len();
            buf[..filled].copy_from_slice(&carry);
            carry.clear();
            let got = match read_full(&mut r, &mut buf[filled..filled + block]) {
                Ok(g) => g,
                Err(e) => break Err(e),
            };
            let mut start = 0;
            let end = filled + got;
            if skipping {
                match memchr::memchr(b'\n', &buf[..end]) {
                    Some(p) => {
                        start = p + 1;
                        skipping = false;
                    }
                    None => {
                        spare.push(buf);
                        if got == 0 {
                            break Ok(());
                        }
                        continue;
                    }
                }
            }
            if got == 0 {
                if start < end && !send(buf, start, end, false, &mut seq, &mut in_flight) {
                    break Err(io::Error::other("a parsing thread stopped"));
                }
                break Ok(());
            }
            match memchr::memrchr(b'\n', &buf[start..end]) {
                Some(p) => {
                    carry.extend_from_slice(&buf[start + p + 1..end]);
                    if !send(buf, start, start + p + 1, false, &mut seq, &mut in_flight) {
                        break Err(io::Error::other("a parsing thread stopped"));
                    }
                }
                None if end - start >= MAX_LINE => {
                    skipping = true;
                    if !send(buf, 0, 0, true, &mut seq, &mut in_flight) {
                        break Err(io::Error::other("a parsing thread stopped"));
                    }
                }
                // No line end yet: keep reading into a larger buffer.
                None => {
                    carry.extend_from_slice(&buf[start..end]);
                    spare.push(buf);
                }
            }
        };
        drop(senders);
        while let Ok(d) = done_rx.recv() {
            record(d, &mut spare, &mut line_counts);
        }
        let mut out = Vec::with_capacity(n);
        for h in handles {
            match h.join() {
                Ok(x) => out.push(x),
                Err(_) => return Err(io::Error::other("a parsing thread panicked")),
            }
        }
        result.map(|()| out)
    })?;
    // Line number of (block, line in block): lines of earlier blocks plus the local number.
    let mut prefix = Vec::with_capacity(line_counts.len() + 1);
    let mut sum = 0u64;
    for c in &line_counts {
        prefix.push(sum);
        sum += c;
    }
    let mut examples: Vec<(usize, u64)> = Vec::new();
    for (worker, ex) in results {
        analyzer.stats.merge(worker.stats);
        examples.extend(ex);
    }
    examples.sort_unstable();
    analyzer.stats.malformed_at.retain(|l| l.input != input);
    for (seq, local) in examples {
        if analyzer.stats.malformed_at.len() < MAX_MALFORMED_EXAMPLES {
            let base = prefix.get(seq).copied().unwrap_or(0);
            analyzer.stats.malformed_at.push(Location {
                input,
                line: base + local,
            });
        }
    }
    analyzer.stats.malformed_at.sort_unstable();
    Ok(())
}

/// Fill `buf` as far as the reader allows (a pipe returns short reads); 0 only at the end.
fn read_full(r: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(k) => got += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}
