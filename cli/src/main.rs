//! The `shmring` command-line tool: the `ipcs`/`ipcrm` of rings.
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]

mod cli;

fn main() {
    // Rust ignores SIGPIPE by default, so `shmring ls | head` would panic on
    // EPIPE instead of exiting quietly like every other Unix tool.
    // SAFETY: first thing in main, before any other thread exists; SIG_DFL
    // installs no handler code.
    unsafe {
        let _ = nix::sys::signal::signal(
            nix::sys::signal::Signal::SIGPIPE,
            nix::sys::signal::SigHandler::SigDfl,
        );
    }
    std::process::exit(cli::run());
}
