//! `shmring bridge out` and `shmring bridge in`: a ring's messages over
//! Zenoh to a ring on another host (crate `shmring-zenoh`).
//!
//! Both run until SIGINT, SIGTERM or SIGHUP (see [`super::signals`]), then
//! detach and exit with 128 + the signal's number. Progress, where a
//! bridge in joined a source, and every gap go to stderr as lines that
//! start with `shmring: bridge`.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};
use shmring::{Error, Segment};
use shmring_zenoh::net::{Mode, NetOptions};
use shmring_zenoh::{BridgeError, gaps, inbound, out};

use super::signals;
use super::{KindArg, Shape};

/// `shmring bridge`.
#[derive(Subcommand, Debug)]
pub(super) enum BridgeCommand {
    /// Publish every message of a ring to a Zenoh key expression.
    Out {
        /// The ring to consume (a frame ring, or an MPMC ring of byte slots).
        name: String,
        /// The key expression to publish on (e.g. shmring/host-a/quotes).
        #[arg(long, value_name = "KEY")]
        key: String,
        /// Best effort: drop messages (counted as gaps on the far side)
        /// instead of slowing down when the network or the far ring is
        /// full.
        #[arg(long)]
        best_effort: bool,
        #[command(flatten)]
        net: NetArgs,
    },
    /// Subscribe to a Zenoh key expression and produce every message into
    /// a ring.
    In {
        /// The key expression to subscribe to.
        key: String,
        /// The ring to produce into.
        #[arg(long, value_name = "NAME")]
        into: String,
        /// Create the ring if it does not exist.
        #[arg(long)]
        create: bool,
        /// With --create: what kind of ring to create.
        #[arg(long, value_enum, default_value = "frames")]
        kind: KindArg,
        #[command(flatten)]
        shape: Shape,
        #[command(flatten)]
        net: NetArgs,
    },
}

/// `--mode`.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub(super) enum ModeArg {
    /// Talk directly to the peers given (and found).
    Peer,
    /// Talk through a Zenoh router given with --connect.
    Client,
}

/// The network options of both directions.
#[derive(Args, Debug, Clone)]
pub(super) struct NetArgs {
    /// An endpoint to connect to, e.g. tcp/192.0.2.7:7447 (repeatable).
    #[arg(long, value_name = "ENDPOINT")]
    connect: Vec<String>,
    /// An endpoint to listen on, e.g. tcp/0.0.0.0:7447 (repeatable).
    #[arg(long, value_name = "ENDPOINT")]
    listen: Vec<String>,
    /// Peer to peer, or client of a router.
    #[arg(long, value_enum, default_value = "peer")]
    mode: ModeArg,
    /// Find peers by UDP multicast scouting (off: only the endpoints given).
    #[arg(long)]
    scout: bool,
    /// Give up when no --connect endpoint answers within this many
    /// milliseconds (exit 1).
    #[arg(long, value_name = "MS", default_value_t = 5000)]
    connect_timeout: u64,
    /// Print the counters to stderr every this many seconds (0: only at
    /// the end).
    #[arg(long, value_name = "SECONDS", default_value_t = 10)]
    report_every: u64,
}

impl NetArgs {
    fn options(&self, best_effort: bool) -> NetOptions {
        NetOptions {
            mode: match self.mode {
                ModeArg::Peer => Mode::Peer,
                ModeArg::Client => Mode::Client,
            },
            connect: self.connect.clone(),
            listen: self.listen.clone(),
            multicast_scouting: self.scout,
            connect_timeout: Duration::from_millis(self.connect_timeout),
            best_effort,
        }
    }

    /// The options, once `key` and the endpoints are known to be valid
    /// (before any ring is opened or created).
    fn checked(&self, key: &str, best_effort: bool) -> Result<NetOptions, BridgeError> {
        shmring_zenoh::net::key_expr(key)?;
        let opts = self.options(best_effort);
        opts.config()?;
        Ok(opts)
    }

    fn report_every(&self) -> Option<Duration> {
        (self.report_every > 0).then(|| Duration::from_secs(self.report_every))
    }
}

fn stopped() -> bool {
    signals::received().is_some()
}

/// The exit status once a bridge returned: 128 + the signal that stopped
/// it.
fn status() -> i32 {
    signals::received().map_or(0, signals::exit_status)
}

/// Runs `shmring bridge ...`: 0, or 128 + the signal that stopped it;
/// a failure is one `shmring: error:` line and exit 1, as for the other
/// commands.
pub(super) fn run(cmd: BridgeCommand, dir: &Path) -> Result<i32, Error> {
    signals::install(false)?;
    match bridge(cmd, dir) {
        Ok(()) => Ok(status()),
        Err(BridgeError::Ring(e)) => Err(e),
        Err(e) => {
            eprintln!("shmring: error: {e}");
            Ok(signals::received().map_or(1, signals::exit_status))
        }
    }
}

fn bridge(cmd: BridgeCommand, dir: &Path) -> Result<(), BridgeError> {
    match cmd {
        BridgeCommand::Out {
            name,
            key,
            best_effort,
            net,
        } => {
            let opts = net.checked(&key, best_effort)?;
            let seg = Arc::new(shmring::SegmentOptions::new().dir(dir).open(&name)?);
            let session = opts.open()?;
            let counters = out::Counters::default();
            let options = out::Options {
                qos: opts.qos(),
                report_every: net.report_every(),
                wait: shmring::wait::WaitStrategy::default(),
            };
            let path = seg.path().display().to_string();
            let mut events = |e: out::Event| match e {
                out::Event::Waiting { session } => eprintln!(
                    "shmring: bridge out: {path} -> {key:?} (session {session:#018x}); waiting for a subscriber"
                ),
                out::Event::Matched => {
                    eprintln!("shmring: bridge out: a subscriber matches; sending")
                }
                out::Event::Unmatched { published } => eprintln!(
                    "shmring: bridge out: no subscriber matches any more after {published} messages; holding the rest in the ring"
                ),
                out::Event::Progress { published } => {
                    eprintln!("shmring: bridge out: published {published}")
                }
            };
            let result = out::run(
                &session,
                &key,
                seg,
                &options,
                &stopped,
                &counters,
                &mut events,
            );
            let published = counters
                .published
                .load(std::sync::atomic::Ordering::Relaxed);
            eprintln!("shmring: bridge out: end: published {published}");
            result
        }
        BridgeCommand::In {
            key,
            into,
            create,
            kind,
            shape,
            net,
        } => {
            let opts = net.checked(&key, false)?;
            let layout = create.then(|| shape.layout(kind)).transpose()?;
            let seg_opts = shape.options(dir);
            let seg: Arc<Segment> = Arc::new(match layout {
                Some(layout) => {
                    seg_opts.open_or_create(&into, &shmring::raw::bytes_spec(&layout))?
                }
                None => seg_opts.open(&into)?,
            });
            let session = opts.open()?;
            let counters = gaps::Counters::default();
            let options = inbound::Options {
                report_every: net.report_every(),
                wait: shmring::wait::WaitStrategy::default(),
            };
            let path = seg.path().display().to_string();
            let mut events = |e: inbound::Event| match e {
                inbound::Event::Subscribed => {
                    eprintln!("shmring: bridge in: {key:?} -> {path}; subscribed")
                }
                inbound::Event::Joined {
                    session,
                    seq,
                    restarted,
                } => eprintln!(
                    "shmring: bridge in: joined source session {session:#018x} at sequence number {seq}{}",
                    if restarted {
                        " (the source restarted)"
                    } else {
                        ""
                    }
                ),
                inbound::Event::Gap { missing, seq } => eprintln!(
                    "shmring: bridge in: gap: {missing} messages lost before sequence number {seq}"
                ),
                inbound::Event::Resumed {
                    session,
                    last_seq,
                    delivered,
                    gaps,
                    interrupted_push,
                } => eprintln!(
                    "shmring: bridge in: resumed the ring's record: source session {session:#018x}, last seq {last_seq}, {delivered} delivered, {gaps} lost before{}",
                    match interrupted_push {
                        Some(true) =>
                            " (the previous bridge was killed while pushing; that message is in the ring)",
                        Some(false) =>
                            " (the previous bridge was killed while pushing; that message never reached the ring and is counted as lost)",
                        None => "",
                    }
                ),
                inbound::Event::RecordHeld { pid } => eprintln!(
                    "shmring: bridge in: warning: process {pid} holds the ring's upstream record (another relay produces into it); this bridge's gaps are in its log only"
                ),
                inbound::Event::Progress(s) => eprintln!("shmring: bridge in: {}", counts(&s)),
            };
            let result = inbound::run(
                &session,
                &key,
                seg,
                &options,
                &stopped,
                &counters,
                &mut events,
            );
            eprintln!("shmring: bridge in: end: {}", counts(&counters.snapshot()));
            result
        }
    }
}

/// The counters in one line (the tests read it).
fn counts(s: &gaps::Snapshot) -> String {
    format!(
        "delivered {} last_seq {} gaps {} repeats {} sessions {}",
        s.delivered, s.last_seq, s.gaps, s.repeats, s.sessions
    )
}
