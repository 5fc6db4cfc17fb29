//! Message identity across processes: two programs that define the same
//! message under the same name interoperate whatever their module paths;
//! the same name with another shape is refused, naming both; `stat` shows
//! the name.

mod common;

use std::time::Duration;

use common::{ChildGuard, TestDir, child_role, env_str, spawn_self};
use shmring::Error;

/// The sender's definition (module path `message_identity::sender::Quote`).
mod sender {
    #[derive(Clone, Copy, Debug, PartialEq, shmring::Message)]
    #[message(name = "test/quote/v1")]
    #[repr(C)]
    pub struct Quote {
        pub bid: f64,
        pub ask: f64,
        pub size: u32,
        pub venue: u32,
    }
}

/// The receiver's own definition: same name, same shape, another path.
mod receiver {
    #[derive(Clone, Copy, Debug, PartialEq, shmring::Message)]
    #[message(name = "test/quote/v1")]
    #[repr(C)]
    pub struct Quote {
        pub bid: f64,
        pub ask: f64,
        pub size: u32,
        pub venue: u32,
    }
}

/// A third program that changed the struct but kept the name.
mod changed {
    #[derive(Clone, Copy, Debug, PartialEq, shmring::Message)]
    #[message(name = "test/quote/v1")]
    #[repr(C)]
    pub struct Quote {
        pub bid: f64,
        pub ask: f64,
        pub size: u64,
        pub venue: u64,
    }
}

const N: u32 = 500;

/// Child: sends N quotes with its own definition of `Quote`.
#[test]
fn child_sender() {
    let Some(role) = child_role() else { return };
    assert_eq!(role, "sender");
    let mut tx = shmring::spsc::Producer::<sender::Quote>::builder(env_str("RING"))
        .dir(env_str("DIR"))
        .capacity(32)
        .create()
        .expect("create");
    println!("created");
    for i in 0..N {
        let q = sender::Quote {
            bid: f64::from(i),
            ask: f64::from(i) + 0.5,
            size: i,
            venue: 7,
        };
        tx.push(q).expect("push");
    }
    tx.flush(Duration::from_secs(60)).expect("flush");
}

#[test]
fn same_name_and_shape_interoperate_across_programs() {
    let dir = TestDir::new("msg-interop");
    let mut child = ChildGuard(Some(
        spawn_self(
            "child_sender",
            "sender",
            &[
                ("DIR", dir.path.display().to_string()),
                ("RING", "quotes".into()),
            ],
        )
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn"),
    ));
    // Kept open until the child exits: it prints more after "created".
    let mut out = std::io::BufReader::new(child.child().stdout.take().unwrap());
    common::read_line_starting(&mut out, "created");

    // Another shape under the same name is refused, naming both.
    let err = shmring::spsc::Consumer::<changed::Quote>::builder("quotes")
        .dir(&dir.path)
        .open()
        .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, Error::LayoutMismatch { .. }), "{text}");
    assert!(
        text.matches("test/quote/v1").count() == 2 && text.contains("24") && text.contains("32"),
        "the error names both sides: {text}"
    );

    // `stat` shows the name.
    let status = shmring::segment::inspect(&dir.path, "quotes").unwrap();
    assert_eq!(status.message_name.as_deref(), Some("test/quote/v1"));

    let mut rx = shmring::spsc::Consumer::<receiver::Quote>::builder("quotes")
        .dir(&dir.path)
        .open()
        .expect("same name and shape attach");
    for i in 0..N {
        let q = rx.pop_timeout(Some(Duration::from_secs(60))).unwrap();
        assert_eq!(
            q,
            receiver::Quote {
                bid: f64::from(i),
                ask: f64::from(i) + 0.5,
                size: i,
                venue: 7
            }
        );
    }
    assert!(child.wait_within(Duration::from_secs(60)).success());
    drop((rx, out));
    dir.finish();
}
