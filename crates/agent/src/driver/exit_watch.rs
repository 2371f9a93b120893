//! Exit statuses of processes that are not the agent's children: the raw_exec tasks a restarted
//! agent re-adopted. Their parent is gone, so `waitpid` cannot see them; the kernel still says
//! how they ended. Linux: the process-events connector (a netlink socket in group CN_IDX_PROC,
//! `PROC_EVENT_EXIT` carries the thread group and its wait status; needs CAP_NET_ADMIN in the
//! initial user, pid and network namespaces). FreeBSD: `EVFILT_PROC` with `NOTE_EXIT` on a kqueue,
//! whose `data` is the wait status (works for any process the agent may signal).
//!
//! One watcher per driver, opened when the first task is re-adopted: one socket (or kqueue) and
//! one tokio task reading it, shared by every re-adopted task; no thread or process per task.
//! What it deliberately does not do: decide whether the process is still the one the agent
//! started (the caller re-checks pid and start time *after* subscribing, so an exit can never
//! fall between the check and the subscription), nor fall back to polling (the caller does when
//! [`ExitWatcher::open`] fails). No `unsafe`: rustix speaks netlink, nix speaks kqueue.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

/// The decoded wait status of a process that exited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitStatus {
    /// The exit code, or -1 when a signal ended it (as `std` reports it for children).
    pub exit_code: i32,
    /// The signal that ended it, 0 if none.
    pub signal: i32,
}

impl ExitStatus {
    /// Decodes a wait status as `waitpid` reports it (the same encoding on Linux and FreeBSD):
    /// the low seven bits are the terminating signal, 0 for a normal exit whose code is in the
    /// next byte; 0x7f means stopped, which an exit event never carries.
    pub fn from_wait_status(status: i32) -> ExitStatus {
        let signal = status & 0x7f;
        if signal == 0 {
            ExitStatus { exit_code: (status >> 8) & 0xff, signal: 0 }
        } else {
            ExitStatus { exit_code: -1, signal }
        }
    }
}

/// What the watcher has seen of one process's exit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exit {
    /// The status of the last of its threads to exit: a process's threads all carry its exit
    /// status when it exits as a whole.
    pub status: ExitStatus,
    /// Whether its main thread has exited, which is when the process ends (unless the main
    /// thread left early and others go on, which is rare).
    pub leader: bool,
}

/// Subscriptions by pid.
type Subscribers = Arc<Mutex<HashMap<u32, watch::Sender<Option<Exit>>>>>;

/// The shared watcher. Dropping it stops its reader task.
pub struct ExitWatcher {
    subscribers: Subscribers,
    reader: tokio::task::JoinHandle<()>,
    #[cfg(target_os = "freebsd")]
    kqueue: Arc<nix::sys::event::Kqueue>,
}

impl Drop for ExitWatcher {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// One process's exit, as the watcher will report it. Dropping it unsubscribes.
pub struct Subscription {
    pid: u32,
    rx: watch::Receiver<Option<Exit>>,
    subscribers: Subscribers,
}

impl Subscription {
    /// Resolves when an exit event for the process (one of its threads) has arrived, or the
    /// watcher stopped; what is known is then in [`Subscription::exit`].
    pub async fn changed(&mut self) {
        if self.rx.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    /// What has been reported of the process's exit so far.
    pub fn exit(&self) -> Option<Exit> {
        *self.rx.borrow()
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        // Only our own entry: a newer subscription to the same pid may have replaced it.
        let mut subscribers = self.subscribers.lock().unwrap_or_else(|e| e.into_inner());
        if subscribers.get(&self.pid).is_some_and(|tx| tx.subscribe().same_channel(&self.rx)) {
            subscribers.remove(&self.pid);
        }
    }
}

/// Why a process cannot be watched.
#[derive(Debug, thiserror::Error)]
pub enum SubscribeError {
    /// It has already exited (FreeBSD reports this when attaching).
    #[error("process {0} has already exited")]
    Gone(u32),
    #[error("watching process {0}: {1}")]
    Io(u32, std::io::Error),
}

impl ExitWatcher {
    /// Subscribes to the exit of `pid`. Call before re-checking that `pid` is still the
    /// process the agent started: an exit after the subscription is always reported.
    pub fn subscribe(&self, pid: u32) -> Result<Subscription, SubscribeError> {
        let (tx, rx) = watch::channel(None);
        self.subscribers.lock().unwrap_or_else(|e| e.into_inner()).insert(pid, tx);
        let sub = Subscription { pid, rx, subscribers: self.subscribers.clone() };
        #[cfg(target_os = "freebsd")]
        freebsd::attach(&self.kqueue, pid)?;
        Ok(sub)
    }

    /// Opens the watcher: on Linux, the connector socket, subscribed and acknowledged by the
    /// kernel; on FreeBSD, a kqueue. Fails where the OS has neither or the agent may not use
    /// it (not root, not in the initial namespaces); the message says why.
    pub async fn open() -> std::io::Result<ExitWatcher> {
        let subscribers: Subscribers = Arc::default();
        #[cfg(target_os = "linux")]
        {
            let socket = linux::open().await?;
            let reader = tokio::spawn(linux::read(socket, subscribers.clone()));
            Ok(ExitWatcher { subscribers, reader })
        }
        #[cfg(target_os = "freebsd")]
        {
            let kqueue = Arc::new(nix::sys::event::Kqueue::new().map_err(std::io::Error::from)?);
            // tokio deprecated its safe constructors because a caller could close the
            // descriptor while it is registered; the kqueue is shared only with the watcher,
            // which never closes it, so it closes once both are dropped.
            #[allow(deprecated)]
            let fd = tokio::io::unix::AsyncFd::with_interest(
                freebsd::Queue(kqueue.clone()),
                tokio::io::Interest::READABLE,
            )?;
            let reader = tokio::spawn(freebsd::read(fd, subscribers.clone()));
            Ok(ExitWatcher { subscribers, reader, kqueue })
        }
        #[cfg(not(any(target_os = "linux", target_os = "freebsd")))]
        {
            let _ = subscribers;
            Err(std::io::Error::new(
                std::io::ErrorKind::Unsupported,
                "no exit watcher for non-child processes on this OS",
            ))
        }
    }
}

/// Records the exit of a thread of process `pid` (its main thread when `leader`) with the wait
/// status `status`, if someone watches it.
fn deliver(subscribers: &Subscribers, pid: u32, status: i32, leader: bool) {
    if let Some(tx) = subscribers.lock().unwrap_or_else(|e| e.into_inner()).get(&pid) {
        tx.send_modify(|seen| {
            let leader = leader || seen.is_some_and(|s| s.leader);
            *seen = Some(Exit { status: ExitStatus::from_wait_status(status), leader });
        });
    }
}

#[cfg(target_os = "linux")]
mod linux {
    //! The process-events connector. Message layout (all native-endian, from
    //! `<linux/netlink.h>`, `<linux/connector.h>`, `<linux/cn_proc.h>`): a 16-byte `nlmsghdr`,
    //! a 20-byte `cn_msg` (idx, val, seq, ack, len, flags), then the payload: to the kernel a
    //! `proc_cn_mcast_op` (optionally followed by an event-type filter, kernels 6.6+), from the
    //! kernel a `proc_event` (what, cpu, timestamp_ns, then the event's data).

    use super::{deliver, Subscribers};
    use rustix::net::netlink::{self, SocketAddrNetlink};
    use rustix::net::{AddressFamily, RecvFlags, SendFlags, SocketFlags, SocketType};
    use std::io;
    use std::os::fd::OwnedFd;
    use std::time::Duration;
    use tokio::io::unix::AsyncFd;
    use tokio::io::Interest;

    const NLMSG_HDRLEN: usize = 16;
    const CN_MSG_LEN: usize = 20;
    const NLMSG_NOOP: u16 = 1;
    const NLMSG_ERROR: u16 = 2;
    const NLMSG_DONE: u16 = 3;
    const CN_IDX_PROC: u32 = 1;
    const CN_VAL_PROC: u32 = 1;
    const PROC_CN_MCAST_LISTEN: u32 = 1;
    const PROC_EVENT_NONE: u32 = 0;
    const PROC_EVENT_EXIT: u32 = 0x8000_0000;
    /// Makes each socket's subscription `ack` distinct (the kernel's answer, `ack + 1`, goes
    /// to every subscribed socket, other agents in this process included).
    static NEXT_ACK: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    /// Big enough for any datagram the connector sends (one event each).
    const RECV_BUF: usize = 4096;
    /// Exits are bursty on a busy host; a lost event only costs one unknown exit code, but a
    /// larger queue makes that rarer.
    const SOCKET_BUFFER: usize = 1 << 20;

    /// What one datagram from the connector says.
    #[derive(Debug, PartialEq, Eq)]
    pub(super) enum Message {
        /// Thread `pid` of process `tgid` exited with the wait status `status`.
        Exit { pid: u32, tgid: u32, status: i32 },
        /// The kernel's answer to a subscription (`err` is an errno, 0 for success).
        Ack { ack: u32, err: u32 },
    }

    fn u32_at(buf: &[u8], at: usize) -> Option<u32> {
        Some(u32::from_ne_bytes(buf.get(at..at + 4)?.try_into().ok()?))
    }

    fn u16_at(buf: &[u8], at: usize) -> Option<u16> {
        Some(u16::from_ne_bytes(buf.get(at..at + 2)?.try_into().ok()?))
    }

    /// Parses the connector messages in one datagram; anything malformed or of no interest
    /// is skipped, never trusted past its stated bounds.
    pub(super) fn parse(datagram: &[u8]) -> Vec<Message> {
        let mut out = Vec::new();
        let mut rest = datagram;
        while rest.len() >= NLMSG_HDRLEN {
            let Some(len) = u32_at(rest, 0).map(|l| l as usize) else { break };
            if len < NLMSG_HDRLEN || len > rest.len() {
                break;
            }
            let msg_type = u16_at(rest, 4).unwrap_or(NLMSG_ERROR);
            let body = &rest[NLMSG_HDRLEN..len];
            if msg_type != NLMSG_NOOP && msg_type != NLMSG_ERROR {
                if let Some(m) = parse_cn(body) {
                    out.push(m);
                }
            }
            // Messages are 4-byte aligned.
            let next = (len + 3) & !3;
            rest = rest.get(next..).unwrap_or_default();
        }
        out
    }

    fn parse_cn(body: &[u8]) -> Option<Message> {
        if u32_at(body, 0)? != CN_IDX_PROC || u32_at(body, 4)? != CN_VAL_PROC {
            return None;
        }
        let ack = u32_at(body, 12)?;
        let data_len = u16_at(body, 16)? as usize;
        let event = body.get(CN_MSG_LEN..CN_MSG_LEN.checked_add(data_len)?)?;
        // proc_event: what (u32), cpu (u32), timestamp_ns (u64), then the union at 16.
        let what = u32_at(event, 0)?;
        match what {
            PROC_EVENT_EXIT => {
                // exit_proc_event: process_pid, process_tgid, exit_code, exit_signal, ...
                let pid = u32_at(event, 16)?;
                let tgid = u32_at(event, 20)?;
                let status = u32_at(event, 24)? as i32;
                Some(Message::Exit { pid, tgid, status })
            }
            PROC_EVENT_NONE => Some(Message::Ack { ack, err: u32_at(event, 16)? }),
            _ => None,
        }
    }

    /// The subscription request: `PROC_CN_MCAST_LISTEN`, with a filter for exit events only
    /// when `filtered` (kernels before 6.6 ignore a message of that size). The kernel answers
    /// with a `PROC_EVENT_NONE` event carrying our `ack + 1`, which a filtered socket never
    /// receives.
    pub(super) fn subscribe_message(filtered: bool, ack: u32) -> Vec<u8> {
        let mut payload = PROC_CN_MCAST_LISTEN.to_ne_bytes().to_vec();
        if filtered {
            payload.extend_from_slice(&PROC_EVENT_EXIT.to_ne_bytes());
        }
        let total = NLMSG_HDRLEN + CN_MSG_LEN + payload.len();
        let mut msg = Vec::with_capacity(total);
        msg.extend_from_slice(&(total as u32).to_ne_bytes());
        msg.extend_from_slice(&NLMSG_DONE.to_ne_bytes());
        msg.extend_from_slice(&0u16.to_ne_bytes()); // flags
        msg.extend_from_slice(&0u32.to_ne_bytes()); // seq
        msg.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel knows ours
        msg.extend_from_slice(&CN_IDX_PROC.to_ne_bytes());
        msg.extend_from_slice(&CN_VAL_PROC.to_ne_bytes());
        msg.extend_from_slice(&0u32.to_ne_bytes()); // seq
        msg.extend_from_slice(&ack.to_ne_bytes());
        msg.extend_from_slice(&(payload.len() as u16).to_ne_bytes());
        msg.extend_from_slice(&0u16.to_ne_bytes()); // flags
        msg.extend_from_slice(&payload);
        msg
    }

    /// Opens, binds and subscribes the socket, and waits for the kernel's acknowledgement, so
    /// events flow once this returns. A kernel that does not answer (another pid namespace, no
    /// CONFIG_PROC_EVENTS) or refuses (no CAP_NET_ADMIN) makes this fail.
    pub(super) async fn open() -> io::Result<AsyncFd<OwnedFd>> {
        let fd = rustix::net::socket_with(
            AddressFamily::NETLINK,
            SocketType::DGRAM,
            SocketFlags::NONBLOCK | SocketFlags::CLOEXEC,
            Some(netlink::CONNECTOR),
        )
        .map_err(|e| io::Error::new(e.kind(), format!("netlink connector socket: {e}")))?;
        if rustix::net::sockopt::set_socket_recv_buffer_size_force(&fd, SOCKET_BUFFER).is_err() {
            let _ = rustix::net::sockopt::set_socket_recv_buffer_size(&fd, SOCKET_BUFFER);
        }
        rustix::net::bind(&fd, &SocketAddrNetlink::new(0, CN_IDX_PROC)).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("joining the process-events group (needs CAP_NET_ADMIN): {e}"),
            )
        })?;
        // tokio deprecated its safe constructors because a caller could close or replace the
        // descriptor while it is registered; here the `AsyncFd` owns the only `OwnedFd`, so
        // nothing can.
        #[allow(deprecated)]
        let fd = AsyncFd::with_interest(fd, Interest::READABLE)?;
        let ack = std::process::id().rotate_left(16)
            ^ NEXT_ACK.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let subscribe = |filtered: bool| {
            rustix::net::sendto(
                fd.get_ref(),
                &subscribe_message(filtered, ack),
                SendFlags::empty(),
                &SocketAddrNetlink::new(0, 0),
            )
            .map_err(|e| io::Error::new(e.kind(), format!("subscribing to process events: {e}")))
        };
        // All events first: the kernel's answer passes the per-socket filter only then.
        subscribe(false)?;
        match tokio::time::timeout(Duration::from_secs(2), acknowledgement(&fd, ack)).await {
            Ok(Ok(0)) => {}
            Ok(Ok(err)) => {
                let e = io::Error::from_raw_os_error(err as i32);
                return Err(io::Error::new(
                    e.kind(),
                    format!("the kernel refused the process-events subscription: {e}"),
                ));
            }
            Ok(Err(e)) => return Err(e),
            Err(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    "the kernel did not answer the process-events subscription (not in the \
                     initial user and pid namespaces, or no CONFIG_PROC_EVENTS)",
                ))
            }
        }
        // Then narrow it to exits, so a busy host's forks and execs never wake the reader.
        // Kernels before 6.6 ignore this (and keep sending everything, which the reader skips);
        // newer ones apply it before this call returns and answer nothing.
        subscribe(true)?;
        Ok(fd)
    }

    /// Reads until the answer to our subscription; returns its errno (0 for success).
    async fn acknowledgement(fd: &AsyncFd<OwnedFd>, sent: u32) -> io::Result<u32> {
        let mut buf = vec![0u8; RECV_BUF];
        loop {
            let n = recv(fd, &mut buf).await?;
            for m in parse(&buf[..n]) {
                if let Message::Ack { ack, err } = m {
                    if ack == sent.wrapping_add(1) {
                        return Ok(err);
                    }
                }
            }
        }
    }

    async fn recv(fd: &AsyncFd<OwnedFd>, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let mut guard = fd.readable().await?;
            match guard.try_io(|fd| {
                rustix::net::recv(fd.get_ref(), &mut *buf, RecvFlags::empty())
                    .map(|(n, _)| n)
                    .map_err(io::Error::from)
            }) {
                Ok(result) => return result,
                Err(_would_block) => continue,
            }
        }
    }

    /// The reader task: delivers each exit to its subscriber until the watcher is dropped.
    pub(super) async fn read(fd: AsyncFd<OwnedFd>, subscribers: Subscribers) {
        let mut buf = vec![0u8; RECV_BUF];
        loop {
            match recv(&fd, &mut buf).await {
                Ok(n) => {
                    for m in parse(&buf[..n]) {
                        if let Message::Exit { pid, tgid, status } = m {
                            deliver(&subscribers, tgid, status, pid == tgid);
                        }
                    }
                }
                // The queue overflowed: some exits were lost. Waiters notice a process that is
                // gone without an event and report its exit code unknown.
                Err(e) if e.raw_os_error() == Some(rustix::io::Errno::NOBUFS.raw_os_error()) => {
                    tracing::warn!("process-events queue overflowed; some exit codes are lost");
                }
                Err(e) => {
                    tracing::warn!("process-events socket failed, exit codes unknown: {e}");
                    return;
                }
            }
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        fn event(what: u32, data: &[u32]) -> Vec<u8> {
            let mut ev = Vec::new();
            ev.extend_from_slice(&what.to_ne_bytes());
            ev.extend_from_slice(&0u32.to_ne_bytes());
            ev.extend_from_slice(&0u64.to_ne_bytes());
            for d in data {
                ev.extend_from_slice(&d.to_ne_bytes());
            }
            let mut msg = subscribe_message(false, 0);
            // Reuse the headers of a request, then put the event where its payload was.
            msg.truncate(NLMSG_HDRLEN + CN_MSG_LEN);
            msg[NLMSG_HDRLEN + 12..NLMSG_HDRLEN + 16].copy_from_slice(&7u32.to_ne_bytes());
            msg[NLMSG_HDRLEN + 16..NLMSG_HDRLEN + 18]
                .copy_from_slice(&(ev.len() as u16).to_ne_bytes());
            msg.extend_from_slice(&ev);
            let len = msg.len() as u32;
            msg[0..4].copy_from_slice(&len.to_ne_bytes());
            msg
        }

        #[test]
        fn exit_and_ack_events_parse_and_malformed_ones_are_skipped() {
            let exit = event(PROC_EVENT_EXIT, &[42, 41, 7 << 8, 17, 1, 1]);
            assert_eq!(parse(&exit), [Message::Exit { pid: 42, tgid: 41, status: 7 << 8 }]);
            let ack = event(PROC_EVENT_NONE, &[1]);
            assert_eq!(parse(&ack), [Message::Ack { ack: 7, err: 1 }]);
            // Two messages in one datagram (the first padded to 4 bytes).
            let mut both = exit.clone();
            both.extend_from_slice(&ack);
            assert_eq!(parse(&both).len(), 2);
            // A length past the datagram, a truncated event, another connector: nothing.
            let mut lying = exit.clone();
            lying[0..4].copy_from_slice(&1000u32.to_ne_bytes());
            assert!(parse(&lying).is_empty());
            assert!(parse(&exit[..exit.len() - 8]).is_empty());
            let mut other = exit.clone();
            other[NLMSG_HDRLEN..NLMSG_HDRLEN + 4].copy_from_slice(&2u32.to_ne_bytes());
            assert!(parse(&other).is_empty());
            let fork = event(1, &[1, 2, 3, 4]);
            assert!(parse(&fork).is_empty());
        }
    }
}

#[cfg(target_os = "freebsd")]
mod freebsd {
    //! `EVFILT_PROC`/`NOTE_EXIT` on one kqueue. The kqueue's descriptor is itself readable when
    //! events are pending, so tokio waits on it and the reader drains it without blocking.

    use super::{deliver, SubscribeError, Subscribers};
    use nix::errno::Errno;
    use nix::sys::event::{EvFlags, EventFilter, FilterFlag, KEvent, Kqueue};
    use std::os::fd::{AsFd, AsRawFd, RawFd};
    use std::sync::Arc;
    use tokio::io::unix::AsyncFd;

    /// The shared kqueue, as tokio registers it.
    pub(super) struct Queue(pub(super) Arc<Kqueue>);

    impl AsRawFd for Queue {
        fn as_raw_fd(&self) -> RawFd {
            self.0.as_fd().as_raw_fd()
        }
    }

    fn proc_exit(pid: u32, flags: EvFlags) -> KEvent {
        KEvent::new(pid as usize, EventFilter::EVFILT_PROC, flags, FilterFlag::NOTE_EXIT, 0, 0)
    }

    /// Attaches to the process itself (a later pid reuse does not reach this filter);
    /// `ESRCH` means it has already exited.
    pub(super) fn attach(kqueue: &Kqueue, pid: u32) -> Result<(), SubscribeError> {
        let change = [proc_exit(pid, EvFlags::EV_ADD | EvFlags::EV_ONESHOT)];
        match kqueue.kevent(&change, &mut [], Some(nix::libc::timespec { tv_sec: 0, tv_nsec: 0 })) {
            Ok(_) => Ok(()),
            Err(Errno::ESRCH) => Err(SubscribeError::Gone(pid)),
            Err(e) => Err(SubscribeError::Io(pid, e.into())),
        }
    }

    /// The reader task: drains exit events as they come, until the watcher is dropped.
    pub(super) async fn read(fd: AsyncFd<Queue>, subscribers: Subscribers) {
        let zero = nix::libc::timespec { tv_sec: 0, tv_nsec: 0 };
        let mut events = vec![proc_exit(0, EvFlags::empty()); 64];
        loop {
            let Ok(mut guard) = fd.readable().await else { return };
            match fd.get_ref().0.kevent(&[], &mut events, Some(zero)) {
                Ok(0) => guard.clear_ready(),
                Ok(n) => {
                    for ev in &events[..n] {
                        if ev.fflags().contains(FilterFlag::NOTE_EXIT) {
                            deliver(&subscribers, ev.ident() as u32, ev.data() as i32, true);
                        }
                    }
                }
                Err(Errno::EINTR) => {}
                Err(e) => {
                    tracing::warn!("kqueue failed, exit codes unknown: {e}");
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_statuses_decode_into_exit_codes_and_signals() {
        assert_eq!(ExitStatus::from_wait_status(0), ExitStatus { exit_code: 0, signal: 0 });
        assert_eq!(ExitStatus::from_wait_status(7 << 8), ExitStatus { exit_code: 7, signal: 0 });
        assert_eq!(
            ExitStatus::from_wait_status(255 << 8),
            ExitStatus { exit_code: 255, signal: 0 }
        );
        assert_eq!(ExitStatus::from_wait_status(9), ExitStatus { exit_code: -1, signal: 9 });
        // SIGSEGV with a core dump (0x80).
        assert_eq!(
            ExitStatus::from_wait_status(0x80 | 11),
            ExitStatus { exit_code: -1, signal: 11 }
        );
    }
}
