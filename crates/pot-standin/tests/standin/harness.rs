//! Test fixtures: an isolated pot root per test, running the `pot` binary, images, and `pot start` in the
//! background with cleanup. It owns process hygiene for the tests: every started process is killed and
//! reaped when its fixture drops.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub const POT: &str = env!("CARGO_BIN_EXE_pot");

/// The result of one `pot` run.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    fn from(o: Output) -> Run {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
    /// Asserts the exit code, showing the output on failure.
    #[track_caller]
    pub fn code(&self, expected: i32) -> &Run {
        assert_eq!(
            self.code, expected,
            "exit code; stdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }
    /// Asserts that stdout has this exact line.
    #[track_caller]
    pub fn line(&self, expected: &str) -> &Run {
        assert!(
            self.stdout.lines().any(|l| l == expected),
            "no line {expected:?} in stdout:\n{}",
            self.stdout
        );
        self
    }
}

static NEXT_NET: AtomicU32 = AtomicU32::new(0);

/// One isolated pot installation: `<tmp>/pot` (POT_FS_ROOT), `<tmp>/cache`, `<tmp>/tmp`, its own
/// `/24` of loopback addresses, and a `file://` registry at `<tmp>/registry`.
pub struct Env {
    pub dir: tempfile::TempDir,
    pub network: String,
    starts: Vec<Child>,
}

impl Env {
    pub fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        for d in ["pot/jails", "cache", "tmp", "registry"] {
            std::fs::create_dir_all(dir.path().join(d)).unwrap();
        }
        // Tests run in parallel and pots of different tests bind the same ports, so each test gets
        // its own slice of 127.0.0.0/8.
        let n = NEXT_NET.fetch_add(1, Ordering::SeqCst);
        let network = format!("127.{}.{}.0/24", 200 + (std::process::id() % 50), n % 256);
        Env { dir, network, starts: Vec::new() }
    }

    pub fn root(&self) -> PathBuf {
        self.dir.path().join("pot")
    }
    pub fn tmp(&self) -> PathBuf {
        self.dir.path().join("tmp")
    }
    pub fn registry(&self) -> PathBuf {
        self.dir.path().join("registry")
    }
    pub fn registry_url(&self) -> String {
        format!("file://{}", self.registry().display())
    }
    pub fn jail(&self, name: &str) -> PathBuf {
        self.root().join("jails").join(name)
    }
    pub fn pot_conf(&self, name: &str) -> String {
        std::fs::read_to_string(self.jail(name).join("conf/pot.conf")).unwrap()
    }

    /// A `pot` command with this installation's environment, as the driver would run it.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(POT);
        c.args(args)
            .env("POT_FS_ROOT", self.root())
            .env("POT_CACHE", self.dir.path().join("cache"))
            .env("POT_TMP", self.tmp())
            .env("POT_NETWORK", &self.network)
            .env_remove("POT_STANDIN_VERSION")
            .stdin(Stdio::null());
        c
    }

    pub fn pot(&self, args: &[&str]) -> Run {
        Run::from(self.command(args).output().unwrap())
    }

    /// `pot start <name>` in the background, with stdout piped. The fixture kills and reaps it on drop.
    pub fn start_bg(&mut self, name: &str) -> usize {
        let child = self
            .command(&["start", name])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        self.starts.push(child);
        self.starts.len() - 1
    }

    pub fn start_pid(&self, idx: usize) -> u32 {
        self.starts[idx].id()
    }

    /// Waits for background start `idx` to exit and returns its exit code and output.
    pub fn wait_start(&mut self, idx: usize, limit: Duration) -> Run {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.starts[idx].try_wait().unwrap() {
                let mut stdout = String::new();
                let mut stderr = String::new();
                if let Some(mut s) = self.starts[idx].stdout.take() {
                    s.read_to_string(&mut stdout).unwrap();
                }
                if let Some(mut s) = self.starts[idx].stderr.take() {
                    s.read_to_string(&mut stderr).unwrap();
                }
                return Run { code: status.code().unwrap_or(-1), stdout, stderr };
            }
            assert!(Instant::now() < deadline, "pot start did not exit within {limit:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for background start `idx` to exit without reading its pipes (which an orphaned pot process
    /// may still hold open) and returns its exit code (-1 if killed by a signal).
    pub fn wait_exit(&mut self, idx: usize, limit: Duration) -> i32 {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.starts[idx].try_wait().unwrap() {
                return status.code().unwrap_or(-1);
            }
            assert!(Instant::now() < deadline, "pot start did not exit within {limit:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Polls until the pot's status file says `state` (the last line).
    pub fn wait_status(&self, name: &str, state: &str) {
        let f = self.tmp().join(format!("pot_status_{name}"));
        let expected = format!("pot.status={state},");
        wait_until(Duration::from_secs(20), || {
            std::fs::read_to_string(&f)
                .ok()
                .and_then(|t| t.lines().last().map(|l| l == expected))
                .unwrap_or(false)
        });
    }

    /// Builds an image from `files` (path in the jail, content, mode) into the registry.
    pub fn image(&self, pot: &str, tag: &str, files: &[(&str, &str, u32)]) {
        let root = self.dir.path().join(format!("image-root-{pot}-{tag}"));
        for (path, content, mode) in files {
            pot_standin::image::write_file(&root.join(path), content.as_bytes(), *mode).unwrap();
        }
        pot_standin::image::build_image(&root, &self.registry(), pot, tag).unwrap();
    }

    /// Builds a tiny image `app` tag `1.0` and prepares a pot `<task>_<alloc>` from it with `cmd`.
    pub fn prepared(&self, task: &str, alloc: &str, cmd: &str, extra: &[&str]) -> String {
        if !self.registry().join("app_1.0.xz").exists() {
            self.image("app", "1.0", APP_FILES);
        }
        let url = self.registry_url();
        let quoted = format!("\"{cmd}\"");
        let mut args = vec![
            "prepare", "-U", &url, "-p", "app", "-t", "1.0", "-c", &quoted, "-a", alloc, "-n", task,
        ];
        args.extend_from_slice(extra);
        self.pot(&args).code(0);
        format!("{task}_{alloc}")
    }
}

/// Scripts for the tiny test image, found through the jail's PATH.
pub const APP_FILES: &[(&str, &str, u32)] = &[
    ("usr/local/bin/exit-with", "#!/bin/sh\necho \"exiting with $1\"\nexit \"$1\"\n", 0o755),
    ("usr/local/bin/sleeper", "#!/bin/sh\necho sleeping\nexec sleep 600\n", 0o755),
    (
        "usr/local/bin/trap-usr1",
        "#!/bin/sh\ntrap 'echo got-usr1; exit 7' USR1\n: > trapped\necho ready\nwhile :; do sleep 0.05; done\n",
        0o755,
    ),
    ("usr/local/bin/show-env", "#!/bin/sh\nenv | sort\npwd\n", 0o755),
    ("etc/hosts", "127.0.0.1 localhost\n", 0o644),
];

impl Drop for Env {
    fn drop(&mut self) {
        // Stop pots through the stand-in first (it kills their process groups), then make sure every
        // `pot start` we spawned is gone and reaped.
        for name in std::fs::read_dir(self.root().join("jails")).into_iter().flatten().flatten() {
            let name = name.file_name().to_string_lossy().into_owned();
            let _ = self.command(&["destroy", "-F", "-p", &name]).output();
        }
        for c in &mut self.starts {
            if c.try_wait().ok().flatten().is_none() {
                let _ = c.kill();
            }
            let _ = c.wait();
        }
    }
}

/// Polls `f` every 20 ms until it holds, failing the test after `limit`.
#[track_caller]
pub fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !f() {
        assert!(Instant::now() < deadline, "condition not met within {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A free loopback port for a process this test starts (see `testkit::free_port`).
pub fn free_port() -> u16 {
    testkit::free_port()
}

/// A minimal HTTP/1.0 GET; `None` while nothing answers.
pub fn http_get(addr: &str, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: test\r\n\r\n").ok()?;
    let mut resp = String::new();
    s.read_to_string(&mut resp).ok()?;
    let status = resp.split_whitespace().nth(1)?.parse().ok()?;
    let body = resp.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Some((status, body))
}

/// Whether this process runs as root (binding port 80 needs it).
pub fn is_root() -> bool {
    rustix_uid_is_root()
}

fn rustix_uid_is_root() -> bool {
    // `id -u` keeps the test crate free of extra dependencies.
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// The host's python3, if there is one where the stand-in's PATH looks.
pub fn python3() -> Option<PathBuf> {
    ["/usr/local/bin/python3", "/usr/bin/python3", "/bin/python3"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

/// Reads a file, or an empty string.
pub fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}
