//! Test-only helpers shared by orc's crates.
//!
//! A test that starts a process on a fixed port has to choose the port before the process
//! binds it. Asking the kernel for port 0 and closing the socket is racy: the number comes from
//! the ephemeral range, and any outgoing connection on the machine (another test's client, say)
//! may take it before the process binds. [`free_port`] picks ports below that range instead,
//! which the kernel never hands out on its own, from a window that depends on the process ID,
//! and never returns one port twice in a process.

use std::net::{TcpListener, UdpSocket};
use std::sync::atomic::{AtomicU32, Ordering};

/// The ports `free_port` chooses from: below Linux's default ephemeral range (32768–60999),
/// above the well-known and common service ports, and outside Nomad's (and orc's) default
/// range for tasks' dynamic ports, 20000–32000: a test's agent listening on a port the
/// scheduler hands another test's task would keep that task from binding it.
const FIRST: u32 = 12_000;
const LAST: u32 = 20_000;

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A port that is free for TCP and UDP on every address now, never returned before in this process,
/// and outside the kernel's ephemeral range.
///
/// # Panics
///
/// When every port of the range is taken.
pub fn free_port() -> u16 {
    let span = LAST - FIRST;
    let start = std::process::id().wrapping_mul(2_654_435_761) % span;
    for _ in 0..span {
        let offset = (start + NEXT.fetch_add(1, Ordering::Relaxed)) % span;
        let port = u16::try_from(FIRST + offset).expect("the range fits in u16");
        if TcpListener::bind(("0.0.0.0", port)).is_ok()
            && UdpSocket::bind(("0.0.0.0", port)).is_ok()
        {
            return port;
        }
    }
    panic!("no free loopback port between {FIRST} and {LAST}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_distinct_bindable_and_outside_the_ephemeral_range() {
        let ports: Vec<u16> = (0..50).map(|_| free_port()).collect();
        let mut sorted = ports.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), ports.len(), "{ports:?}");
        for p in ports {
            assert!((12_000..20_000).contains(&p), "{p}");
            TcpListener::bind(("127.0.0.1", p)).unwrap();
        }
    }
}
