//! Request and reply between a client and a server process, with the
//! round-trip latency.
//!
//! ```sh
//! cargo run --release --example request_reply            # 100,000 round trips
//! cargo run --release --example request_reply -- 2000    # fewer
//! ```
//!
//! Two SPSC rings, one each way. The client sends a request, waits for its
//! reply and records the time; it prints the median and the 99th
//! percentile. Both sides use the default wait strategy (spin briefly, then
//! sleep on a futex), so an idle server burns no CPU.

use std::process::Command;
use std::time::{Duration, Instant};

use shmring::spsc::{Consumer, PopError, Producer};

#[derive(Clone, Copy, Debug, shmring::Message)]
#[message(name = "example/request/v1")]
#[repr(C)]
struct Request {
    id: u64,
    a: u64,
    b: u64,
}

#[derive(Clone, Copy, Debug, shmring::Message)]
#[message(name = "example/reply/v1")]
#[repr(C)]
struct Reply {
    id: u64,
    sum: u64,
}

const TIMEOUT: Duration = Duration::from_secs(10);

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("server") {
        return serve(&args[2]);
    }
    let count: u64 = args
        .get(1)
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(100_000);
    let base = format!("example-rr-{}", std::process::id());

    let mut requests = Producer::<Request>::create(&format!("{base}-req"), 64)?;
    let mut server = Command::new(std::env::current_exe()?)
        .args(["server", &base])
        .spawn()?;
    let mut replies = Consumer::<Reply>::builder(format!("{base}-rep"))
        .wait_for(TIMEOUT)
        .open()?;

    let mut samples = Vec::with_capacity(count as usize);
    for id in 0..count {
        let start = Instant::now();
        requests.push(Request {
            id,
            a: id,
            b: 2 * id,
        })?;
        let reply = replies.pop_timeout(Some(TIMEOUT))?;
        samples.push(start.elapsed());
        if reply.id != id || reply.sum != 3 * id {
            return Err(format!("reply {reply:?} to request {id}").into());
        }
    }
    drop(requests); // the server sees Disconnected and exits
    let status = server.wait()?;
    samples.sort();
    let pct = |p: f64| samples[((samples.len() as f64 - 1.0) * p) as usize];
    println!(
        "client: {count} round trips, p50 {:?}, p99 {:?}, max {:?}",
        pct(0.5),
        pct(0.99),
        samples[samples.len() - 1]
    );
    if !status.success() {
        return Err(format!("server failed: {status}").into());
    }
    Ok(())
}

fn serve(base: &str) -> Result<(), Box<dyn std::error::Error>> {
    let mut requests = Consumer::<Request>::builder(format!("{base}-req"))
        .wait_for(TIMEOUT)
        .open()?;
    let mut replies = Producer::<Reply>::create(&format!("{base}-rep"), 64)?;
    let mut served = 0u64;
    loop {
        match requests.pop() {
            Ok(r) => {
                replies.push(Reply {
                    id: r.id,
                    sum: r.a + r.b,
                })?;
                served += 1;
            }
            Err(PopError::Disconnected) => break,
            Err(e) => return Err(e.into()),
        }
    }
    println!("server: answered {served} requests");
    Ok(())
}
