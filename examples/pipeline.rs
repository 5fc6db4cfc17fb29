//! A `#[repr(C)]` struct between two processes.
//!
//! ```sh
//! cargo run --release --example pipeline            # 1,000,000 ticks
//! cargo run --release --example pipeline -- 5000    # fewer
//! ```
//!
//! The parent creates the ring and produces; it starts itself again as the
//! consumer, which opens the ring by name (waiting for it if it comes first)
//! and checks every tick.

use std::process::Command;
use std::time::{Duration, Instant};

use shmring::spsc::{Consumer, PopError, Producer};

/// One message: plain old data with no padding, named for other programs.
#[derive(Clone, Copy, Debug, PartialEq, shmring::Message)]
#[message(name = "example/tick/v1")]
#[repr(C)]
struct Tick {
    seq: u64,
    price: f64,
    qty: u32,
    side: u32,
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
        .unwrap_or(1_000_000);
    let name = format!("example-pipeline-{}", std::process::id());

    // One expression: a ring of 4096 ticks, created or joined by name.
    let mut tx = Producer::<Tick>::open_or_create(&name, 4096)?;
    let mut consumer = Command::new(std::env::current_exe()?)
        .args(["consumer", &name, &count.to_string()])
        .spawn()?;

    let start = Instant::now();
    for seq in 0..count {
        let tick = Tick {
            seq,
            price: 100.0 + (seq % 100) as f64 / 100.0,
            qty: (seq % 7) as u32 + 1,
            side: (seq % 2) as u32,
        };
        tx.push(tick)?; // waits while the ring is full
    }
    // Wait until the consumer has taken everything, then let go.
    tx.flush(Duration::from_secs(30))?;
    let elapsed = start.elapsed();
    drop(tx);
    let status = consumer.wait()?;
    println!(
        "producer: sent {count} ticks in {elapsed:.2?} ({:.1} M/s)",
        count as f64 / elapsed.as_secs_f64() / 1e6
    );
    if !status.success() {
        return Err(format!("consumer failed: {status}").into());
    }
    Ok(())
}

fn consume(name: &str, count: u64) -> Result<(), Box<dyn std::error::Error>> {
    let mut rx = Consumer::<Tick>::builder(name)
        .wait_for(Duration::from_secs(10))
        .open()?;
    let mut next = 0;
    let mut qty = 0u64;
    loop {
        match rx.pop_timeout(Some(Duration::from_secs(10))) {
            Ok(tick) => {
                if tick.seq != next {
                    return Err(format!("tick {} arrived, {next} expected", tick.seq).into());
                }
                qty += u64::from(tick.qty);
                next += 1;
            }
            Err(PopError::Disconnected) => break,
            Err(e) => return Err(e.into()),
        }
    }
    println!("consumer: received {next} ticks in order, total quantity {qty}");
    if next != count {
        return Err(format!("{next} ticks received, {count} sent").into());
    }
    Ok(())
}
