//! The Zenoh side: the session's configuration, opening it, and checking
//! key expressions, with errors that say what to fix.

use std::time::Duration;

use zenoh::Wait;
use zenoh::key_expr::KeyExpr;

use crate::BridgeError;

/// How this process joins the Zenoh network.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Mode {
    /// A peer: talks directly to the peers it connects to or that connect
    /// to it (and, with scouting, to those it finds).
    #[default]
    Peer,
    /// A client of a Zenoh router (`zenohd`) given with `connect`.
    Client,
}

/// The network options of a bridge.
#[derive(Clone, Debug)]
pub struct NetOptions {
    /// Peer or client.
    pub mode: Mode,
    /// Endpoints to connect to (`tcp/HOST:PORT`).
    pub connect: Vec<String>,
    /// Endpoints to listen on (`tcp/HOST:PORT`).
    pub listen: Vec<String>,
    /// Multicast scouting (finding peers on the LAN by UDP multicast):
    /// off unless asked for.
    pub multicast_scouting: bool,
    /// How long to try the `connect` endpoints before giving up.
    pub connect_timeout: Duration,
    /// Drop instead of blocking when congested (see [`QoS`]).
    pub best_effort: bool,
}

impl Default for NetOptions {
    fn default() -> Self {
        NetOptions {
            mode: Mode::Peer,
            connect: Vec::new(),
            listen: Vec::new(),
            multicast_scouting: false,
            connect_timeout: Duration::from_secs(5),
            best_effort: false,
        }
    }
}

/// Delivery guarantees on the Zenoh side.
///
/// Zenoh's reliability is reliable by default (its per-message setting is
/// still an unstable API), and this build carries TCP only, a reliable
/// link; what differs is congestion control.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QoS {
    /// Block (a full queue, down to a full destination ring, slows the
    /// publisher: back-pressure) or drop (best effort: a message that
    /// finds the queue full is dropped and shows as a gap).
    pub congestion: zenoh::qos::CongestionControl,
}

impl NetOptions {
    /// Block by default; drop with `best_effort`.
    pub fn qos(&self) -> QoS {
        QoS {
            congestion: if self.best_effort {
                zenoh::qos::CongestionControl::Drop
            } else {
                zenoh::qos::CongestionControl::Block
            },
        }
    }

    /// The Zenoh configuration these options describe. Endpoints are
    /// checked here, so a typo is an error that names the endpoint.
    pub fn config(&self) -> Result<zenoh::Config, BridgeError> {
        for e in self.connect.iter().chain(&self.listen) {
            check_endpoint(e)?;
        }
        if self.mode == Mode::Client && self.connect.is_empty() {
            return Err(BridgeError::Config(
                "client mode needs a router to connect to: give --connect tcp/HOST:PORT".into(),
            ));
        }
        let mut c = zenoh::Config::default();
        let mode = match self.mode {
            Mode::Peer => "peer",
            Mode::Client => "client",
        };
        let ms = i64::try_from(self.connect_timeout.as_millis()).unwrap_or(i64::MAX);
        let settings = [
            ("mode", json(mode)),
            ("connect/endpoints", json(&self.connect)),
            ("listen/endpoints", json(&self.listen)),
            ("scouting/multicast/enabled", json(self.multicast_scouting)),
            // Explicit endpoints are meant: an unreachable one is an error
            // now, not a silent retry forever.
            ("connect/timeout_ms", json(ms)),
            ("connect/exit_on_failure", json(true)),
            ("listen/exit_on_failure", json(true)),
            // Zenoh closes a session whose blocking publisher has waited 5 s
            // for room (and the far side then receives garbage: found by
            // cli/tests/bridge_stream.rs). Back-pressure from a consumer
            // that pauses is normal here: wait as long as it takes (dead
            // peers are still found by the link lease).
            (
                "transport/link/tx/queue/congestion_control/block/wait_before_close",
                json(BLOCK_FOREVER_US),
            ),
        ];
        for (key, value) in settings {
            c.insert_json5(key, &value).map_err(|e| {
                BridgeError::Config(format!(
                    "zenoh setting {key} = {value}: {}",
                    crate::reason(&e)
                ))
            })?;
        }
        Ok(c)
    }

    /// Opens the Zenoh session: listens and connects as configured.
    pub fn open(&self) -> Result<zenoh::Session, BridgeError> {
        let config = self.config()?;
        zenoh::open(config).wait().map_err(|e| {
            let connect = format!(
                "cannot reach {} within {} ms",
                self.connect.join(", "),
                self.connect_timeout.as_millis()
            );
            let listen = format!("cannot listen on {}", self.listen.join(", "));
            let what = match (self.connect.is_empty(), self.listen.is_empty()) {
                (false, true) => connect,
                (false, false) => format!("{connect}, or {listen}"),
                (true, false) => listen,
                (true, true) => "cannot open a Zenoh session".into(),
            };
            BridgeError::Network(format!("{what}: {}", crate::reason(&e)))
        })
    }
}

/// "As long as it takes" for a blocked publisher: a year, in microseconds.
const BLOCK_FOREVER_US: i64 = 365 * 24 * 3600 * 1_000_000;

/// A JSON5 value for `insert_json5` (serde-free: strings, lists, numbers).
fn json<T: Json>(v: T) -> String {
    v.json()
}

trait Json {
    fn json(&self) -> String;
}

impl Json for &str {
    fn json(&self) -> String {
        let mut s = String::from("\"");
        for c in self.chars() {
            match c {
                '"' | '\\' => {
                    s.push('\\');
                    s.push(c);
                }
                c if c.is_control() => s.push_str(&format!("\\u{:04x}", c as u32)),
                c => s.push(c),
            }
        }
        s.push('"');
        s
    }
}

impl Json for &Vec<String> {
    fn json(&self) -> String {
        let items: Vec<String> = self.iter().map(|e| e.as_str().json()).collect();
        format!("[{}]", items.join(","))
    }
}

impl Json for bool {
    fn json(&self) -> String {
        self.to_string()
    }
}

impl Json for i64 {
    fn json(&self) -> String {
        self.to_string()
    }
}

/// Checks an endpoint (`PROTOCOL/ADDRESS[?metadata][#config]`): this
/// build carries TCP only.
pub fn check_endpoint(e: &str) -> Result<(), BridgeError> {
    let parsed: zenoh::config::EndPoint = e.parse().map_err(|err| {
        BridgeError::Config(format!(
            "{e:?} is not a Zenoh endpoint (expected tcp/HOST:PORT, e.g. tcp/192.0.2.7:7447): {}",
            crate::reason(&err)
        ))
    })?;
    let protocol = parsed.protocol();
    if protocol.as_str() != "tcp" {
        return Err(BridgeError::Config(format!(
            "{e:?}: protocol {:?} is not built in (this shmring carries tcp only)",
            protocol.as_str()
        )));
    }
    Ok(())
}

/// Checks a key expression (`a/b/c`, with `*` and `**` chunks for
/// subscribers): the error quotes Zenoh's reason.
pub fn key_expr(key: &str) -> Result<KeyExpr<'static>, BridgeError> {
    KeyExpr::try_from(key.to_string()).map_err(|e| {
        BridgeError::Config(format!(
            "{key:?} is not a valid key expression (chunks separated by '/', no empty chunk, no leading or trailing '/'; '*' and '**' only as whole chunks): {}",
            crate::reason(&e)
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_endpoints_and_keys() {
        assert!(check_endpoint("tcp/127.0.0.1:7447").is_ok());
        let e = check_endpoint("127.0.0.1:7447").unwrap_err().to_string();
        assert!(e.contains("not a Zenoh endpoint"), "{e}");
        let e = check_endpoint("udp/127.0.0.1:7447")
            .unwrap_err()
            .to_string();
        assert!(e.contains("tcp only"), "{e}");
        assert!(key_expr("shmring/a/b").is_ok());
        let e = key_expr("a//b").unwrap_err().to_string();
        assert!(e.contains("not a valid key expression"), "{e}");
        assert!(key_expr("/a").is_err());
    }

    #[test]
    fn config_quotes_endpoints() {
        let o = NetOptions {
            listen: vec!["tcp/127.0.0.1:0".into()],
            ..NetOptions::default()
        };
        assert!(o.config().is_ok());
        let o = NetOptions {
            mode: Mode::Client,
            ..NetOptions::default()
        };
        assert!(o.config().unwrap_err().to_string().contains("router"));
    }
}
