//! The per-pot files under `jails/<name>/conf/`: `pot.conf` (key=value lines) and `fscomp.conf`
//! (mount lines). It owns their text format only; it does not decide what may be written.

use std::io;
use std::path::Path;

/// `pot.conf`: ordered `key=value` lines. Keys may repeat (`pot.env`, `pot.hosts`), as in pot.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PotConf {
    lines: Vec<String>,
}

impl PotConf {
    pub fn load(path: &Path) -> io::Result<PotConf> {
        let text = std::fs::read_to_string(path)?;
        Ok(PotConf { lines: text.lines().map(str::to_string).collect() })
    }

    /// Writes the file through a temporary and a rename, so a concurrent reader never sees half a file.
    pub fn save(&self, path: &Path) -> io::Result<()> {
        let mut text = self.lines.join("\n");
        if !text.is_empty() {
            text.push('\n');
        }
        let tmp = path.with_extension("conf.tmp");
        std::fs::write(&tmp, text)?;
        std::fs::rename(tmp, path)
    }

    /// The value as pot's `_get_conf_var` returns it: the raw value of the line with spaces, tabs and
    /// double quotes removed.
    pub fn get(&self, key: &str) -> Option<String> {
        self.raw(key).map(|v| v.chars().filter(|c| !matches!(c, ' ' | '\t' | '"')).collect())
    }

    /// The raw text after `key=` of the last line with that key.
    pub fn raw(&self, key: &str) -> Option<&str> {
        self.all(key).last().copied()
    }

    /// Every raw value of `key`, in file order.
    pub fn all(&self, key: &str) -> Vec<&str> {
        let prefix = format!("{key}=");
        self.lines.iter().filter_map(|l| l.strip_prefix(&prefix)).collect()
    }

    /// Removes every line of `key`, as pot's `sed -i '' -e "/^key=.*/d"` does.
    pub fn remove(&mut self, key: &str) {
        let prefix = format!("{key}=");
        self.lines.retain(|l| !l.starts_with(&prefix));
    }

    /// Appends one `key=value` line.
    pub fn push(&mut self, key: &str, value: &str) {
        self.lines.push(format!("{key}={value}"));
    }

    /// Replaces all lines of `key` with one line at the end, pot's delete-then-append idiom.
    pub fn set(&mut self, key: &str, value: &str) {
        self.remove(key);
        self.push(key, value);
    }

    pub fn lines(&self) -> &[String] {
        &self.lines
    }
}

/// One `fscomp.conf` line: `<host dir or dataset> /<mount point> [ro|zfs-remount]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FsEntry {
    pub source: String,
    pub mountpoint: String,
    pub option: Option<String>,
}

impl FsEntry {
    pub fn to_line(&self) -> String {
        match &self.option {
            Some(o) => format!("{} {} {}", self.source, self.mountpoint, o),
            None => format!("{} {}", self.source, self.mountpoint),
        }
    }
}

/// Reads `fscomp.conf`; a missing file is an empty list, as for a fresh single-type pot.
pub fn load_fscomp(path: &Path) -> io::Result<Vec<FsEntry>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    Ok(text
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            Some(FsEntry {
                source: f.next()?.to_string(),
                mountpoint: f.next()?.to_string(),
                option: f.next().map(str::to_string),
            })
        })
        .collect())
}

/// Appends one line to `fscomp.conf`, creating it if needed, like pot's `echo … >> fscomp.conf`.
pub fn append_fscomp(path: &Path, entry: &FsEntry) -> io::Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
    writeln!(f, "{}", entry.to_line())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_replaces_all_and_get_strips_quotes() {
        let mut c = PotConf::default();
        c.push("pot.env", "\"A=1\"");
        c.push("ip", "127.192.0.2");
        c.push("pot.env", "\"B=2\"");
        assert_eq!(c.all("pot.env"), vec!["\"A=1\"", "\"B=2\""]);
        c.set("pot.env", "\"C=3\"");
        assert_eq!(c.lines(), &["ip=127.192.0.2".to_string(), "pot.env=\"C=3\"".to_string()]);
        c.push("host.hostname", "\"web.example\"");
        assert_eq!(c.get("host.hostname").as_deref(), Some("web.example"));
        assert_eq!(c.get("missing"), None);
    }

    #[test]
    fn save_load_and_fscomp_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = PotConf::default();
        c.push("pot.cmd", "nginx -g 'daemon off;'");
        c.save(&dir.path().join("pot.conf")).unwrap();
        assert_eq!(PotConf::load(&dir.path().join("pot.conf")).unwrap(), c);
        let fs = dir.path().join("fscomp.conf");
        assert!(load_fscomp(&fs).unwrap().is_empty());
        let e = FsEntry {
            source: "/h/local".into(),
            mountpoint: "/local".into(),
            option: Some("ro".into()),
        };
        append_fscomp(&fs, &e).unwrap();
        assert_eq!(std::fs::read_to_string(&fs).unwrap(), "/h/local /local ro\n");
        assert_eq!(load_fscomp(&fs).unwrap(), vec![e]);
    }
}
