//! One publisher, three subscriber processes: each gets every message.
//!
//! ```sh
//! cargo run --release --example broadcast            # 1,000,000 readings
//! cargo run --release --example broadcast -- 5000    # fewer
//! ```
//!
//! The parent creates a broadcast ring and starts itself three times as a
//! subscriber (a logger, a planner and a monitor, say), waits until all
//! three have joined, publishes, and checks that each got every reading in
//! order. The ring is lossless (`Overflow::Block`): the publisher waits for
//! the slowest subscriber, and would evict one that kept it waiting for more
//! than a second.

use std::process::Command;
use std::time::{Duration, Instant};

use shmring::broadcast::{PopError, Publisher, Subscriber};

/// One sensor reading.
#[derive(Clone, Copy, Debug, PartialEq, shmring::Message)]
#[message(name = "example/reading/v1")]
#[repr(C)]
struct Reading {
    sensor: u32,
    flags: u32,
    value: f64,
}

const SUBSCRIBERS: usize = 3;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("subscriber") {
        return subscribe(&args[2], &args[3], args[4].parse()?);
    }
    let count: u64 = args
        .get(1)
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(1_000_000);
    let name = format!("example-broadcast-{}", std::process::id());

    // One expression: a broadcast ring of 1024 readings.
    let mut tx = Publisher::<Reading>::open_or_create(&name, 1024)?;
    let mut children = Vec::new();
    for who in ["logger", "planner", "monitor"] {
        children.push(
            Command::new(std::env::current_exe()?)
                .args(["subscriber", &name, who, &count.to_string()])
                .spawn()?,
        );
    }
    // Subscribers start at the oldest message still in the ring; waiting
    // for all of them before publishing means none misses anything.
    let deadline = Instant::now() + Duration::from_secs(30);
    while tx.subscribers() < SUBSCRIBERS {
        if Instant::now() > deadline {
            return Err("the subscribers did not join within 30 s".into());
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let start = Instant::now();
    for i in 0..count {
        tx.push(Reading {
            sensor: (i % 16) as u32,
            flags: 0,
            value: i as f64 * 0.5,
        })?;
    }
    let elapsed = start.elapsed();
    drop(tx); // the subscribers drain what is left, then see us gone
    let mut ok = true;
    for mut child in children {
        ok &= child.wait()?.success();
    }
    println!(
        "publisher: sent {count} readings to {SUBSCRIBERS} subscribers in {elapsed:.2?} ({:.1} M/s)",
        count as f64 / elapsed.as_secs_f64() / 1e6
    );
    if !ok {
        return Err("a subscriber failed".into());
    }
    Ok(())
}

fn subscribe(name: &str, who: &str, count: u64) -> Result<(), Box<dyn std::error::Error>> {
    let mut rx = Subscriber::<Reading>::builder(name)
        .wait_for(Duration::from_secs(10))
        .open()?;
    let mut next = 0u64;
    loop {
        match rx.pop_timeout(Some(Duration::from_secs(30))) {
            Ok((seq, reading)) => {
                if seq != next || reading.value != seq as f64 * 0.5 {
                    return Err(format!("{who}: message {seq} out of order or wrong").into());
                }
                next += 1;
            }
            Err(PopError::Disconnected) => break,
            Err(e) => return Err(format!("{who}: {e}").into()),
        }
    }
    if next != count {
        return Err(format!("{who}: received {next} of {count}").into());
    }
    println!("{who}: received {next} readings in order");
    Ok(())
}
