//! Queries built byte by byte, replies read back with a small decoder: what a resolver sends and
//! sees.

use super::*;
use std::collections::BTreeMap;

struct Fixed(BTreeMap<String, Vec<Instance>>);

impl Catalog for Fixed {
    fn healthy(&self, service: &str) -> BoxFuture<'_, Option<Vec<Instance>>> {
        let r = self.0.get(service).cloned();
        Box::pin(async move { r })
    }
}

fn catalog(n: usize) -> Fixed {
    let web = (0..n)
        .map(|i| Instance {
            address: IpAddr::from([10, 0, 0, 1 + i as u8]),
            port: 23000 + i as u16,
        })
        .collect();
    let v6 = vec![Instance { address: "2003:f1::1".parse().unwrap(), port: 22854 }];
    Fixed(BTreeMap::from([
        ("hello-web".to_string(), web),
        ("v6".to_string(), v6),
        ("empty".to_string(), vec![]),
    ]))
}

fn query(name: &str, qtype: u16) -> Vec<u8> {
    let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for l in name.split('.') {
        q.push(l.len() as u8);
        q.extend_from_slice(l.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&CLASS_IN.to_be_bytes());
    q
}

#[derive(Debug, PartialEq)]
struct Decoded {
    rcode: u8,
    truncated: bool,
    answers: Vec<(u16, String)>,
    additional: Vec<(u16, String)>,
}

fn read_name(msg: &[u8], mut pos: usize) -> (String, usize) {
    let mut labels = Vec::new();
    let mut end = None;
    loop {
        let len = msg[pos] as usize;
        if len & 0xc0 == 0xc0 {
            end.get_or_insert(pos + 2);
            pos = ((len & 0x3f) << 8) | msg[pos + 1] as usize;
            continue;
        }
        if len == 0 {
            return (labels.join("."), end.unwrap_or(pos + 1));
        }
        labels.push(String::from_utf8(msg[pos + 1..pos + 1 + len].to_vec()).unwrap());
        pos += 1 + len;
    }
}

fn decode(msg: &[u8]) -> Decoded {
    assert_eq!(&msg[..2], &[0x12, 0x34], "the ID is echoed");
    assert!(msg[2] & 0x80 != 0, "QR set");
    let count = |i: usize| u16::from_be_bytes([msg[i], msg[i + 1]]) as usize;
    let (qd, an, ar) = (count(4), count(6), count(10));
    let mut pos = 12;
    for _ in 0..qd {
        pos = read_name(msg, pos).1 + 4;
    }
    let mut records = Vec::new();
    for _ in 0..an + ar {
        let (name, p) = read_name(msg, pos);
        let rtype = u16::from_be_bytes([msg[p], msg[p + 1]]);
        let len = u16::from_be_bytes([msg[p + 8], msg[p + 9]]) as usize;
        let data = &msg[p + 10..p + 10 + len];
        let text = match rtype {
            TYPE_A => format!("{name} {}", IpAddr::from(<[u8; 4]>::try_from(data).unwrap())),
            TYPE_AAAA => format!("{name} {}", IpAddr::from(<[u8; 16]>::try_from(data).unwrap())),
            TYPE_SRV => {
                let port = u16::from_be_bytes([data[4], data[5]]);
                format!("{name} {port} {}", read_name(msg, p + 10 + 6).0)
            }
            _ => panic!("unexpected type {rtype}"),
        };
        records.push((rtype, text));
        pos = p + 10 + len;
    }
    assert_eq!(pos, msg.len(), "no trailing bytes");
    assert!(msg.len() <= MAX_UDP_BYTES);
    let additional = records.split_off(an);
    Decoded { rcode: msg[3] & 0xf, truncated: msg[2] & 0x02 != 0, answers: records, additional }
}

async fn ask(name: &str, qtype: u16) -> Decoded {
    decode(&respond(&query(name, qtype), "orc", &catalog(2)).await.unwrap())
}

#[tokio::test]
async fn a_and_srv_records_of_healthy_instances() {
    let a = ask("hello-web.service.orc", TYPE_A).await;
    assert_eq!(
        a.answers,
        [
            (TYPE_A, "hello-web.service.orc 10.0.0.1".to_string()),
            (TYPE_A, "hello-web.service.orc 10.0.0.2".to_string())
        ]
    );
    let srv = ask("_hello-web._tcp.service.orc", TYPE_SRV).await;
    assert_eq!(
        srv.answers,
        [
            (TYPE_SRV, "_hello-web._tcp.service.orc 23000 0a000001.addr.orc".to_string()),
            (TYPE_SRV, "_hello-web._tcp.service.orc 23001 0a000002.addr.orc".to_string())
        ]
    );
    assert_eq!(srv.additional[0], (TYPE_A, "0a000001.addr.orc 10.0.0.1".to_string()));
    // Names are case-insensitive; the SRV target resolves.
    let t = ask("0A000002.ADDR.orc", TYPE_A).await;
    assert_eq!(t.answers, [(TYPE_A, "0A000002.ADDR.orc 10.0.0.2".to_string())]);
    let v6 = ask("v6.service.orc", TYPE_AAAA).await;
    assert_eq!(v6.answers, [(TYPE_AAAA, "v6.service.orc 2003:f1::1".to_string())]);
    assert_eq!(ask("v6.service.orc", TYPE_A).await.answers, [], "no A for an IPv6 instance");
}

#[tokio::test]
async fn unknown_foreign_and_empty_names() {
    assert_eq!(ask("nope.service.orc", TYPE_A).await.rcode, RCODE_NXDOMAIN);
    assert_eq!(ask("x.y.orc", TYPE_A).await.rcode, RCODE_NXDOMAIN);
    assert_eq!(ask("zz.addr.orc", TYPE_A).await.rcode, RCODE_NXDOMAIN);
    assert_eq!(ask("example.com", TYPE_A).await.rcode, RCODE_REFUSED);
    let empty = ask("empty.service.orc", TYPE_SRV).await;
    assert_eq!((empty.rcode, empty.answers.len()), (0, 0), "a service with no healthy instance");
}

#[tokio::test]
async fn replies_fit_in_512_bytes_and_say_when_they_do_not() {
    let q = query("_hello-web._tcp.service.orc", TYPE_SRV);
    let r = decode(&respond(&q, "orc", &catalog(40)).await.unwrap());
    assert!(r.truncated);
    assert!(!r.answers.is_empty() && r.answers.len() < 40);
    let r = decode(
        &respond(&query("hello-web.service.orc", TYPE_A), "orc", &catalog(5)).await.unwrap(),
    );
    assert!(!r.truncated && r.answers.len() == 5);
}

#[tokio::test]
async fn malformed_queries_are_refused_not_trusted() {
    let good = query("hello-web.service.orc", TYPE_A);
    let c = catalog(1);
    let rcode = |msg: Vec<u8>| {
        let c = &c;
        async move { respond(&msg, "orc", c).await.map(|r| r[3] & 0xf) }
    };
    assert_eq!(rcode(good[..5].to_vec()).await, None, "shorter than a header");
    let mut two = good.clone();
    two[5] = 2;
    assert_eq!(rcode(two).await, Some(RCODE_FORMERR));
    let mut pointer = good[..12].to_vec();
    pointer.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1]);
    assert_eq!(rcode(pointer).await, Some(RCODE_FORMERR));
    let mut cut = good.clone();
    cut.truncate(good.len() - 3);
    assert_eq!(rcode(cut).await, Some(RCODE_FORMERR));
    let mut label = good[..12].to_vec();
    label.push(50);
    label.extend_from_slice(&[b'a'; 10]);
    assert_eq!(rcode(label).await, Some(RCODE_FORMERR), "a label running past the end");
    let mut long = good[..12].to_vec();
    for _ in 0..5 {
        long.push(63);
        long.extend_from_slice(&[b'a'; 63]);
    }
    long.extend_from_slice(&[0, 0, 1, 0, 1]);
    assert_eq!(rcode(long).await, Some(RCODE_FORMERR), "a name over 255 bytes");
    let mut reply = good.clone();
    reply[2] |= 0x80;
    assert_eq!(rcode(reply).await, Some(RCODE_FORMERR));
    let mut notify = good.clone();
    notify[2] |= 4 << 3;
    assert_eq!(rcode(notify).await, Some(RCODE_NOTIMP));
    let mut chaos = good.clone();
    let n = chaos.len();
    chaos[n - 1] = 3;
    assert_eq!(rcode(chaos).await, Some(RCODE_REFUSED));
    assert_eq!(rcode(vec![0u8; 600]).await, Some(RCODE_FORMERR));
}

#[tokio::test]
async fn serves_over_udp() {
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(socket, "orc".into(), Arc::new(catalog(2)), async {
        let _ = stopped.await;
    }));
    let client = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    client.send_to(&query("hello-web.service.orc", TYPE_A), addr).await.unwrap();
    let mut buf = [0u8; 600];
    let n = tokio::time::timeout(std::time::Duration::from_secs(5), client.recv(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(decode(&buf[..n]).answers.len(), 2);
    let _ = stop.send(());
    server.await.unwrap();
}
