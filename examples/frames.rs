//! Serialized messages of varying size through a frame ring, zero-copy on
//! both sides.
//!
//! ```sh
//! cargo run --release --example frames            # 200,000 records
//! cargo run --release --example frames -- 1000    # fewer
//! ```
//!
//! Each record is a log line with a level, a timestamp and a text of 0 to
//! 2000 bytes, encoded by hand (any serializer that writes into a `&mut
//! [u8]` works the same way). The producer encodes straight into the ring
//! (`write_chunk`), the consumer decodes straight from it (`read_chunk`).

use std::process::Command;
use std::time::{Duration, Instant};

use shmring::frames::{Consumer, Producer};
use shmring::spsc::PopError;

const TIMEOUT: Duration = Duration::from_secs(10);

/// Fixed part of a record: level (1 byte), 3 spare bytes, sequence (8),
/// text length (4).
const HEAD: usize = 16;

fn text_len(seq: u64) -> usize {
    (seq.wrapping_mul(2_654_435_761) % 2001) as usize
}

fn encode(seq: u64, out: &mut [u8]) {
    let len = text_len(seq);
    out[0] = (seq % 5) as u8;
    out[4..12].copy_from_slice(&seq.to_le_bytes());
    out[12..16].copy_from_slice(&(len as u32).to_le_bytes());
    for (i, b) in out[HEAD..HEAD + len].iter_mut().enumerate() {
        *b = b'a' + ((seq as usize + i) % 26) as u8;
    }
}

/// Checks a record and returns its sequence number.
fn decode(frame: &[u8]) -> Result<u64, String> {
    if frame.len() < HEAD {
        return Err(format!(
            "a {}-byte frame is shorter than a record",
            frame.len()
        ));
    }
    let seq = u64::from_le_bytes(frame[4..12].try_into().expect("8 bytes"));
    let len = u32::from_le_bytes(frame[12..16].try_into().expect("4 bytes")) as usize;
    let ok = len == text_len(seq)
        && frame.len() == HEAD + len
        && frame[0] == (seq % 5) as u8
        && frame[HEAD..]
            .iter()
            .enumerate()
            .all(|(i, &b)| b == b'a' + ((seq as usize + i) % 26) as u8);
    if !ok {
        return Err(format!("record {seq} is damaged"));
    }
    Ok(seq)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("consumer") {
        return consume(&args[2], args[3].parse()?);
    }
    let count: u64 = args
        .get(1)
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(200_000);
    let name = format!("example-frames-{}", std::process::id());

    // 256 KiB of frames.
    let mut tx = Producer::open_or_create(&name, 256 * 1024)?;
    let mut consumer = Command::new(std::env::current_exe()?)
        .args(["consumer", &name, &count.to_string()])
        .spawn()?;
    let start = Instant::now();
    let mut bytes = 0;
    for seq in 0..count {
        let len = HEAD + text_len(seq);
        let mut chunk = tx.write_chunk_timeout(len, Some(TIMEOUT))?;
        encode(seq, &mut chunk);
        chunk.commit();
        bytes += len;
    }
    tx.flush(TIMEOUT)?;
    let elapsed = start.elapsed();
    drop(tx);
    let status = consumer.wait()?;
    println!(
        "producer: {count} records, {:.1} MB in {elapsed:.2?} ({:.2} GB/s)",
        bytes as f64 / 1e6,
        bytes as f64 / elapsed.as_secs_f64() / 1e9
    );
    if !status.success() {
        return Err(format!("consumer failed: {status}").into());
    }
    Ok(())
}

fn consume(name: &str, count: u64) -> Result<(), Box<dyn std::error::Error>> {
    let mut rx = Consumer::builder(name).wait_for(TIMEOUT).open()?;
    let mut next = 0;
    loop {
        match rx.read_chunk_timeout(Some(TIMEOUT)) {
            Ok(frame) => {
                let seq = decode(&frame)?;
                if seq != next {
                    return Err(format!("record {seq} arrived, {next} expected").into());
                }
                next += 1;
                // Dropping the chunk releases the frame.
            }
            Err(PopError::Disconnected) => break,
            Err(e) => return Err(e.into()),
        }
    }
    println!("consumer: {next} records, every byte checked");
    if next != count {
        return Err(format!("{next} records received, {count} sent").into());
    }
    Ok(())
}
