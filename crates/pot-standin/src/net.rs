//! Pot networking, stand-in style: `-e` port specs, per-pot IP allocation (pot's `potnet next`), and the
//! user-space port forwarders that replace pf `rdr` rules. It owns no pot state; callers pass IPs in.
//!
//! Every non-`inherit` pot gets its own address from POT_NETWORK (default 127.192.0.0/16). Linux routes
//! all of 127.0.0.0/8 to loopback, so a pot's program can bind `<its ip>:80` while another pot binds the
//! same port on its own address. (FreeBSD only has 127.0.0.1 on lo0 unless aliases are added, which is one
//! reason the stand-in is for Linux test hosts.) Forwarding listens on `0.0.0.0:<host port>`; this clashes
//! with a pot binding the same port number itself, which the driver never asks for (host ports are dynamic).

use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Transport protocol of an exported port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    Tcp,
    Udp,
}

/// One `-e [proto:]pot_port[:host_port]` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortExport {
    pub proto: Proto,
    pub pot_port: u16,
    /// `None` means "pick a free host port at start", as pot does.
    pub host_port: Option<u16>,
}

/// pot's `_is_port_number`: digits only, 1..=65535.
fn port_number(s: &str) -> Option<u16> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // Long digit strings overflow; pot's `[ -gt 65535 ]` rejects them too.
    let n: u32 = s.parse().ok()?;
    if n == 0 || n > 65535 {
        return None;
    }
    Some(n as u16)
}

/// Parses an `-e` value with pot's `_is_export_port_valid` rules (fields beyond the second are ignored,
/// as `cut -f 1`/`-f 2` ignores them).
pub fn parse_export(spec: &str) -> Option<PortExport> {
    let (proto, rest) = if let Some(r) = spec.strip_prefix("tcp:") {
        (Proto::Tcp, r)
    } else if let Some(r) = spec.strip_prefix("udp:") {
        (Proto::Udp, r)
    } else {
        (Proto::Tcp, spec)
    };
    let mut fields = rest.split(':');
    let pot_port = port_number(fields.next().unwrap_or(""))?;
    if !rest.contains(':') {
        return Some(PortExport { proto, pot_port, host_port: None });
    }
    let host_port = port_number(fields.next().unwrap_or(""))?;
    Some(PortExport { proto, pot_port, host_port: Some(host_port) })
}

/// The lowest free host address of `network` that is not in `taken`, skipping the network address and
/// the first host (pot's gateway, POT_GATEWAY) like `potnet next`.
pub fn next_ip(network: (Ipv4Addr, u8), taken: &[Ipv4Addr]) -> Option<Ipv4Addr> {
    let (base, len) = network;
    let size: u32 = 1u32 << (32 - u32::from(len));
    let start = u32::from(base) & !(size - 1);
    (2..size - 1).map(|i| Ipv4Addr::from(start + i)).find(|ip| !taken.contains(ip))
}

/// Running forwarders; they stop when this is dropped (or when the process exits).
pub struct Forwarders {
    stop: Arc<AtomicBool>,
    /// The host ports actually bound, in order (useful when a spec had none).
    pub bound: Vec<(Proto, u16, u16)>,
}

impl Drop for Forwarders {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Binds every export on `0.0.0.0:<host port>` and relays to `<pot_ip>:<pot port>`. A bind failure is
/// returned with the spec, so the caller can report it the way pot reports a failed pfctl.
pub fn forward(
    exports: &[PortExport],
    pot_ip: IpAddr,
) -> (Forwarders, Vec<(PortExport, io::Error)>) {
    let stop = Arc::new(AtomicBool::new(false));
    let mut bound = Vec::new();
    let mut failed = Vec::new();
    for e in exports {
        let host = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), e.host_port.unwrap_or(0));
        let target = SocketAddr::new(pot_ip, e.pot_port);
        let result = match e.proto {
            Proto::Tcp => TcpListener::bind(host).and_then(|l| {
                let port = l.local_addr()?.port();
                let stop = stop.clone();
                std::thread::spawn(move || tcp_accept_loop(l, target, stop));
                Ok(port)
            }),
            Proto::Udp => UdpSocket::bind(host).and_then(|s| {
                let port = s.local_addr()?.port();
                let stop = stop.clone();
                std::thread::spawn(move || udp_relay_loop(s, target, stop));
                Ok(port)
            }),
        };
        match result {
            Ok(port) => bound.push((e.proto, port, e.pot_port)),
            Err(err) => failed.push((*e, err)),
        }
    }
    (Forwarders { stop, bound }, failed)
}

fn tcp_accept_loop(listener: TcpListener, target: SocketAddr, stop: Arc<AtomicBool>) {
    for conn in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(client) = conn else { continue };
        std::thread::spawn(move || {
            // A refused upstream just closes the client, like a pf rdr to a closed port resets it.
            if let Ok(upstream) = TcpStream::connect_timeout(&target, Duration::from_secs(5)) {
                splice(client, upstream);
            }
        });
    }
}

/// Copies both directions until each side has closed its half.
fn splice(a: TcpStream, b: TcpStream) {
    let (Ok(a2), Ok(b2)) = (a.try_clone(), b.try_clone()) else { return };
    let t = std::thread::spawn(move || copy_half(a2, b2));
    copy_half(b, a);
    let _ = t.join();
}

fn copy_half(mut from: TcpStream, mut to: TcpStream) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

/// Relays datagrams: one upstream socket per client address, whose replies go back to that client.
fn udp_relay_loop(socket: UdpSocket, target: SocketAddr, stop: Arc<AtomicBool>) {
    let mut peers: Vec<(SocketAddr, UdpSocket)> = Vec::new();
    let mut buf = [0u8; 64 * 1024];
    let _ = socket.set_read_timeout(Some(Duration::from_millis(200)));
    while !stop.load(Ordering::SeqCst) {
        let Ok((n, client)) = socket.recv_from(&mut buf) else { continue };
        let upstream = match peers.iter().find(|(c, _)| *c == client) {
            Some((_, u)) => u,
            None => {
                let bind = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0);
                let Ok(u) = UdpSocket::bind(bind) else { continue };
                if u.connect(target).is_err() {
                    continue;
                }
                let (Ok(reply_from), Ok(reply_to)) = (u.try_clone(), socket.try_clone()) else {
                    continue;
                };
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let mut buf = [0u8; 64 * 1024];
                    let _ = reply_from.set_read_timeout(Some(Duration::from_millis(200)));
                    while !stop.load(Ordering::SeqCst) {
                        if let Ok(n) = reply_from.recv(&mut buf) {
                            let _ = reply_to.send_to(&buf[..n], client);
                        }
                    }
                });
                peers.push((client, u));
                &peers.last().expect("just pushed").1
            }
        };
        let _ = upstream.send(&buf[..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn export_specs_follow_pot() {
        let tcp = |p, h| Some(PortExport { proto: Proto::Tcp, pot_port: p, host_port: h });
        assert_eq!(parse_export("80:8080"), tcp(80, Some(8080)));
        assert_eq!(parse_export("tcp:80:8080"), tcp(80, Some(8080)));
        assert_eq!(parse_export("80"), tcp(80, None));
        assert_eq!(
            parse_export("udp:53:5353"),
            Some(PortExport { proto: Proto::Udp, pot_port: 53, host_port: Some(5353) })
        );
        for bad in [
            "80:",
            ":80",
            "0:80",
            "80:65536",
            "x:80",
            "",
            "sctp:80:80",
            "80:8a",
            "99999999999999999999",
        ] {
            assert_eq!(parse_export(bad), None, "{bad}");
        }
    }

    #[test]
    fn next_ip_skips_network_gateway_and_taken() {
        let net = (Ipv4Addr::new(127, 192, 0, 0), 16);
        assert_eq!(next_ip(net, &[]), Some(Ipv4Addr::new(127, 192, 0, 2)));
        let taken = [Ipv4Addr::new(127, 192, 0, 2), Ipv4Addr::new(127, 192, 0, 4)];
        assert_eq!(next_ip(net, &taken), Some(Ipv4Addr::new(127, 192, 0, 3)));
        let tiny = (Ipv4Addr::new(127, 9, 0, 0), 30);
        assert_eq!(next_ip(tiny, &[Ipv4Addr::new(127, 9, 0, 2)]), None);
    }

    #[test]
    fn tcp_forwarding_relays_both_ways() {
        let upstream = TcpListener::bind("127.0.0.1:0").unwrap();
        let up_port = upstream.local_addr().unwrap().port();
        let echo = std::thread::spawn(move || {
            let (mut s, _) = upstream.accept().unwrap();
            let mut buf = [0u8; 5];
            s.read_exact(&mut buf).unwrap();
            s.write_all(&buf).unwrap();
        });
        let spec = PortExport { proto: Proto::Tcp, pot_port: up_port, host_port: None };
        let (fw, failed) = forward(&[spec], IpAddr::V4(Ipv4Addr::LOCALHOST));
        assert!(failed.is_empty());
        let host_port = fw.bound[0].1;
        let mut c = TcpStream::connect(("127.0.0.1", host_port)).unwrap();
        c.write_all(b"hello").unwrap();
        let mut back = [0u8; 5];
        c.read_exact(&mut back).unwrap();
        assert_eq!(&back, b"hello");
        echo.join().unwrap();
    }

    #[test]
    fn udp_forwarding_relays_replies() {
        let upstream = UdpSocket::bind("127.0.0.1:0").unwrap();
        let up_port = upstream.local_addr().unwrap().port();
        let echo = std::thread::spawn(move || {
            let mut buf = [0u8; 16];
            let (n, from) = upstream.recv_from(&mut buf).unwrap();
            upstream.send_to(&buf[..n], from).unwrap();
        });
        let spec = PortExport { proto: Proto::Udp, pot_port: up_port, host_port: None };
        let (fw, failed) = forward(&[spec], IpAddr::V4(Ipv4Addr::LOCALHOST));
        assert!(failed.is_empty());
        let c = UdpSocket::bind("127.0.0.1:0").unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        c.send_to(b"ping", ("127.0.0.1", fw.bound[0].1)).unwrap();
        let mut buf = [0u8; 16];
        let n = c.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"ping");
        echo.join().unwrap();
    }
}
