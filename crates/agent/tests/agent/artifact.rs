//! `artifact` blocks: fetched over HTTP from a server in the test before the task starts, with
//! checksums, archives, modes and headers; refused when they would leave the task directory or
//! fail verification, with Nomad's events.

use crate::harness::*;
use model::{Artifact, ClientStatus, JobType};
use sha2::Digest;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Each request's path and its lower-cased header lines.
type Requests = Arc<Mutex<Vec<(String, Vec<String>)>>>;

/// A tiny HTTP/1.0 server: serves `files` by path, records each request's headers.
pub struct FileServer {
    pub addr: String,
    pub requests: Requests,
}

impl FileServer {
    pub fn start(files: BTreeMap<String, Vec<u8>>) -> FileServer {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = requests.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut line = String::new();
                let _ = reader.read_line(&mut line);
                let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
                let mut headers = Vec::new();
                loop {
                    let mut h = String::new();
                    if reader.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
                        break;
                    }
                    headers.push(h.trim().to_lowercase());
                }
                seen.lock().unwrap().push((path.clone(), headers));
                let reply = match files.get(&path) {
                    Some(body) => {
                        let mut r = format!(
                            "HTTP/1.0 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                            body.len()
                        )
                        .into_bytes();
                        r.extend_from_slice(body);
                        r
                    }
                    None => b"HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_vec(),
                };
                let _ = conn.write_all(&reply);
            }
        });
        FileServer { addr, requests }
    }
}

/// A gzipped tar of `(name, contents)`; names are written as given, `../` included.
pub fn tar_gz(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    for (name, data) in entries {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_entry_type(tar::EntryType::Regular);
        // set_path refuses `..`; write the raw name, as a hostile archive would.
        let raw = &mut header.as_old_mut().name;
        raw[..name.len()].copy_from_slice(name.as_bytes());
        header.set_cksum();
        tar.append(&header, *data).unwrap();
    }
    tar.into_inner().unwrap().finish().unwrap()
}

pub fn zip_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, data) in entries {
        zip.start_file(*name, zip::write::SimpleFileOptions::default()).unwrap();
        zip.write_all(data).unwrap();
    }
    zip.finish().unwrap().into_inner()
}

fn artifact(source: String, dest: &str) -> Artifact {
    Artifact { getter_source: source, relative_dest: dest.into(), ..Artifact::default() }
}

#[tokio::test]
async fn artifacts_are_fetched_verified_and_unpacked_before_the_task_starts() {
    let bundle = tar_gz(&[("bin/run.sh", b"echo from-tar"), ("README", b"readme")]);
    let digest = sha2::Sha256::digest(&bundle);
    let sum = format!("sha256:{}", digest.iter().map(|b| format!("{b:02x}")).collect::<String>());
    let files = BTreeMap::from([
        ("/hello.txt".to_string(), b"hello artifact\n".to_vec()),
        ("/bundle.tgz".to_string(), bundle),
        ("/site.zip".to_string(), zip_of(&[("site/index.html", b"<h1>zip</h1>")])),
        ("/conf.json".to_string(), b"{}".to_vec()),
    ]);
    let server = FileServer::start(files);
    let base = format!("http://{}", server.addr);

    let dir = tempfile::tempdir().unwrap();
    let servers = FakeServers::new();
    let c = client(servers.clone(), dir.path(), None).await;
    let mut task = sh_task(
        "web",
        "cat local/hello.txt; sh local/b/bin/run.sh; cat local/site/index.html; echo; cat local/conf/app.json; echo; sleep 60",
    );
    let mut tgz = artifact(format!("{base}/bundle.tgz"), "local/b");
    tgz.getter_options.insert("checksum".into(), sum);
    let mut hello = artifact(format!("{base}/hello.txt"), "");
    hello.getter_headers.insert("X-Token".into(), "${NOMAD_TASK_NAME}-secret".into());
    let mut file = artifact(format!("{base}/conf.json"), "local/conf/app.json");
    file.getter_mode = "file".into();
    task.artifacts = vec![hello, tgz, artifact(format!("{base}/site.zip"), "local"), file];
    let job = job("art", JobType::Service, vec![task]);
    let a = alloc(&job, &[]);
    servers.place(a.clone(), job);
    let r = servers
        .wait_report(&a.id, Duration::from_secs(30), |r| r.client_status == ClientStatus::Running)
        .await;
    assert_eq!(events(&r, "web"), ["Received", "Task Setup", "Downloading Artifacts", "Started"]);
    let stdout = dir.path().join("alloc").join(&a.id).join("alloc/logs/web.stdout.0");
    wait_until(Duration::from_secs(10), || {
        std::fs::read_to_string(&stdout).is_ok_and(|t| t.contains("{}"))
    })
    .await;
    assert_eq!(
        std::fs::read_to_string(&stdout).unwrap(),
        "hello artifact\nfrom-tar\n<h1>zip</h1>\n{}\n"
    );
    // Headers are sent, interpolated with the task's environment.
    let requests = server.requests.lock().unwrap().clone();
    let hello_req = requests.iter().find(|(p, _)| p == "/hello.txt").unwrap();
    assert!(hello_req.1.contains(&"x-token: web-secret".to_string()), "{hello_req:?}");
    servers.stop(&a.id);
    servers.wait_report(&a.id, Duration::from_secs(10), |r| r.client_status.is_terminal()).await;
    c.shutdown();
}

#[tokio::test]
async fn a_bad_artifact_fails_the_task_with_the_reason_and_writes_nothing_outside() {
    let bundle = b"not what you expected".to_vec();
    let evil = tar_gz(&[("../../../escaped.txt", b"pwned")]);
    let files =
        BTreeMap::from([("/a.bin".to_string(), bundle), ("/evil.tar.gz".to_string(), evil)]);
    let server = FileServer::start(files);
    let base = format!("http://{}", server.addr);
    let dir = tempfile::tempdir().unwrap();
    let servers = FakeServers::new();
    let c = client(servers.clone(), dir.path(), None).await;

    let cases: Vec<(&str, Artifact, &str)> = vec![
        (
            "checksum",
            {
                let mut a = artifact(format!("{base}/a.bin"), "");
                a.getter_options.insert("checksum".into(), format!("sha256:{}", "0".repeat(64)));
                a
            },
            "checksum mismatch",
        ),
        ("escape", artifact(format!("{base}/a.bin"), "../../.."), "leaves the task directory"),
        ("archive", artifact(format!("{base}/evil.tar.gz"), "local"), "leaves the destination"),
        ("missing", artifact(format!("{base}/nope.txt"), ""), "404"),
        ("scheme", artifact("git::https://example.com/repo".into(), ""), "http:// and https://"),
    ];
    let mut placed = Vec::new();
    for (name, art, _) in &cases {
        let mut task = sh_task("t", "echo ran; sleep 60");
        task.artifacts = vec![art.clone()];
        let job = job(&format!("bad-{name}"), JobType::Service, vec![task]);
        let a = alloc(&job, &[]);
        servers.place(a.clone(), job);
        placed.push(a);
    }
    for ((name, _, reason), a) in cases.iter().zip(&placed) {
        let r = servers
            .wait_report(&a.id, Duration::from_secs(30), |r| {
                r.client_status == ClientStatus::Failed
            })
            .await;
        let evs = &r.task_states["t"].events;
        let failed = evs.iter().find(|e| e.event_type == "Failed Artifact Download");
        let failed = failed.unwrap_or_else(|| panic!("{name}: {:?}", events(&r, "t")));
        assert!(failed.display_message.contains(reason), "{name}: {}", failed.display_message);
        assert!(!events(&r, "t").contains(&"Started".to_string()), "{name} started anyway");
    }
    // Nothing was written outside the allocation directories.
    let mut stray = Vec::new();
    for e in walk(dir.path()) {
        if e.file_name().is_some_and(|n| n == "escaped.txt" || n == "a.bin") {
            stray.push(e);
        }
    }
    assert!(stray.is_empty(), "{stray:?}");
    c.shutdown();
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        }
        out.push(p);
    }
    out
}
