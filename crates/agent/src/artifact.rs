//! A task's `artifact` blocks: fetched into its task directory before it first starts, with
//! Nomad's meaning for http and https sources: `headers`, `options { checksum = "sha256:…" }`
//! (or `sha512:`), `options { archive = false }`, unpacking of `.tar.gz`/`.tgz`, `.tar` and
//! `.zip`, and `mode` `any`, `file` or `dir`; `destination` is relative to the task directory,
//! `local/` by default.
//!
//! It refuses every other getter (git, s3, gcs, file, forced `x::` getters) rather than ignoring
//! it, bounds what it downloads, and never writes outside the task directory, whatever the
//! destination or an archive's entries say: `..` and absolute names are refused, and so are links
//! in archives that point outside. It does not interpolate `${...}`: the runner hands it resolved
//! fields. Blocking IO; the runner calls it off the async threads.

use model::Artifact;
use sha2::Digest;
use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

/// The most one artifact may download (Nomad's `http_max_size` is configurable; orc's is fixed).
pub const MAX_DOWNLOAD_BYTES: u64 = 1 << 30;

/// How long one download may take in all (Nomad's default `http_read_timeout` is 30 minutes).
const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// Why an artifact could not be fetched; the message goes into the task event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ArtifactError(pub String);

fn err(message: impl Into<String>) -> ArtifactError {
    ArtifactError(message.into())
}

/// Checks a source is something orc fetches: an `http://` or `https://` URL.
pub fn check_source(source: &str) -> Result<(), ArtifactError> {
    let lower = source.to_ascii_lowercase();
    if lower.starts_with("http://") || lower.starts_with("https://") {
        return Ok(());
    }
    Err(err(format!(
        "artifact source {source:?}: orc fetches artifacts over http:// and https:// only (no git, s3, gcs, hg, file or forced getters)"
    )))
}

/// The archive formats unpacked, from the URL path's ending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Archive {
    TarGz,
    Tar,
    Zip,
}

fn url_path(source: &str) -> &str {
    let rest = source.split_once("://").map_or(source, |(_, r)| r);
    let rest = rest.split(['?', '#']).next().unwrap_or_default();
    rest.split_once('/').map_or("", |(_, p)| p)
}

fn archive_kind(source: &str) -> Option<Archive> {
    let path = url_path(source).to_ascii_lowercase();
    if path.ends_with(".tar.gz") || path.ends_with(".tgz") {
        Some(Archive::TarGz)
    } else if path.ends_with(".tar") {
        Some(Archive::Tar)
    } else if path.ends_with(".zip") {
        Some(Archive::Zip)
    } else {
        None
    }
}

/// `base` joined with the relative `rel`, refused if `rel` is absolute or climbs out of `base`.
pub fn contained(base: &Path, rel: &str) -> Result<PathBuf, ArtifactError> {
    let mut parts: Vec<&std::ffi::OsStr> = Vec::new();
    for c in Path::new(rel).components() {
        match c {
            Component::Normal(p) => parts.push(p),
            Component::CurDir => {}
            Component::ParentDir => {
                if parts.pop().is_none() {
                    return Err(err(format!("{rel:?} leaves the task directory")));
                }
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err(err(format!(
                    "{rel:?} is absolute; artifact destinations are relative to the task directory"
                )))
            }
        }
    }
    Ok(parts.iter().fold(base.to_path_buf(), |p, c| p.join(c)))
}

/// The expected digest from `options.checksum`.
enum Checksum {
    Sha256(String),
    Sha512(String),
}

fn parse_checksum(text: &str) -> Result<Checksum, ArtifactError> {
    let (kind, hex) = text
        .split_once(':')
        .ok_or_else(|| err(format!("checksum {text:?}: expected TYPE:HEX, e.g. sha256:…")))?;
    let hex = hex.to_ascii_lowercase();
    let want = match kind {
        "sha256" => 64,
        "sha512" => 128,
        other => {
            return Err(err(format!(
                "checksum type {other:?} is not supported: use sha256 or sha512"
            )))
        }
    };
    if hex.len() != want || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(err(format!("checksum {text:?}: {kind} needs {want} hex digits")));
    }
    Ok(if kind == "sha256" { Checksum::Sha256(hex) } else { Checksum::Sha512(hex) })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Fetches one artifact into `task_dir`.
pub fn fetch(task_dir: &Path, artifact: &Artifact) -> Result<(), ArtifactError> {
    let source = artifact.getter_source.trim();
    check_source(source)?;
    let mut checksum = None;
    let mut unpack = true;
    for (k, v) in &artifact.getter_options {
        match k.as_str() {
            "checksum" => checksum = Some(parse_checksum(v)?),
            "archive" => unpack = !matches!(v.as_str(), "false" | "0"),
            other => {
                return Err(err(format!(
                    "artifact option {other:?} is not supported (orc knows checksum and archive)"
                )))
            }
        }
    }
    let dest_rel =
        if artifact.relative_dest.is_empty() { "local/" } else { &artifact.relative_dest };
    let dest = contained(task_dir, dest_rel)?;
    let archive = archive_kind(source).filter(|_| unpack);
    let mode = if artifact.getter_mode.is_empty() { "any" } else { artifact.getter_mode.as_str() };

    let tmp = task_dir.join(format!(".artifact-{}.tmp", std::process::id()));
    let result = download(source, &artifact.getter_headers, &tmp, checksum.as_ref())
        .and_then(|()| place(&tmp, &dest, source, mode, archive));
    let _ = std::fs::remove_file(&tmp);
    result
}

fn download(
    source: &str,
    headers: &std::collections::BTreeMap<String, String>,
    to: &Path,
    checksum: Option<&Checksum>,
) -> Result<(), ArtifactError> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_connect(Some(Duration::from_secs(30)))
        .timeout_global(Some(DOWNLOAD_TIMEOUT))
        .build()
        .into();
    let mut req = agent.get(source);
    for (k, v) in headers {
        req = req.header(k.as_str(), v.as_str());
    }
    let resp = req.call().map_err(|e| err(format!("GET {source}: {e}")))?;
    let mut body = resp.into_body().into_reader().take(MAX_DOWNLOAD_BYTES + 1);
    let mut file =
        std::fs::File::create(to).map_err(|e| err(format!("creating {}: {e}", to.display())))?;
    let mut sha256 = sha2::Sha256::new();
    let mut sha512 = sha2::Sha512::new();
    let mut total: u64 = 0;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = body.read(&mut buf).map_err(|e| err(format!("GET {source}: {e}")))?;
        if n == 0 {
            break;
        }
        total += n as u64;
        if total > MAX_DOWNLOAD_BYTES {
            return Err(err(format!("GET {source}: larger than {MAX_DOWNLOAD_BYTES} bytes")));
        }
        match checksum {
            Some(Checksum::Sha256(_)) => sha256.update(&buf[..n]),
            Some(Checksum::Sha512(_)) => sha512.update(&buf[..n]),
            None => {}
        }
        file.write_all(&buf[..n]).map_err(|e| err(format!("writing {}: {e}", to.display())))?;
    }
    file.sync_all().map_err(|e| err(format!("writing {}: {e}", to.display())))?;
    let (want, got) = match checksum {
        Some(Checksum::Sha256(want)) => (want, hex(&sha256.finalize())),
        Some(Checksum::Sha512(want)) => (want, hex(&sha512.finalize())),
        None => return Ok(()),
    };
    if *want != got {
        return Err(err(format!("checksum mismatch for {source}: expected {want}, got {got}")));
    }
    Ok(())
}

/// Moves or unpacks the downloaded file per `mode`.
fn place(
    tmp: &Path,
    dest: &Path,
    source: &str,
    mode: &str,
    archive: Option<Archive>,
) -> Result<(), ArtifactError> {
    fn io(what: &Path) -> impl Fn(std::io::Error) -> ArtifactError + '_ {
        move |e| err(format!("{}: {e}", what.display()))
    }
    match (mode, archive) {
        ("file", _) => {
            if let Some(parent) = dest.parent() {
                std::fs::create_dir_all(parent).map_err(io(parent))?;
            }
            std::fs::rename(tmp, dest).map_err(io(dest))
        }
        ("dir" | "any", Some(kind)) => {
            std::fs::create_dir_all(dest).map_err(io(dest))?;
            unpack(tmp, dest, kind)
        }
        ("dir", None) => Err(err(format!(
            "mode \"dir\" needs an archive (.tar.gz, .tgz, .tar or .zip); {source} is not one"
        ))),
        ("any", None) => {
            let name = url_path(source).rsplit('/').next().unwrap_or_default();
            if name.is_empty() || name == "." || name == ".." {
                return Err(err(format!("{source} names no file; set mode = \"file\"")));
            }
            std::fs::create_dir_all(dest).map_err(io(dest))?;
            let target = dest.join(name);
            std::fs::rename(tmp, &target).map_err(io(&target))
        }
        (other, _) => Err(err(format!("artifact mode {other:?}: expected any, file or dir"))),
    }
}

/// True if a link at `entry` (relative to the unpack root) pointing at `target` stays inside.
fn link_stays_inside(entry: &Path, target: &Path) -> bool {
    if target.is_absolute() {
        return false;
    }
    let mut depth: i64 =
        entry.components().filter(|c| matches!(c, Component::Normal(_))).count() as i64 - 1;
    for c in target.components() {
        match c {
            Component::Normal(_) => depth += 1,
            Component::ParentDir => {
                depth -= 1;
                if depth < 0 {
                    return false;
                }
            }
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) => return false,
        }
    }
    true
}

fn unpack(file: &Path, dest: &Path, kind: Archive) -> Result<(), ArtifactError> {
    let open = || std::fs::File::open(file).map_err(|e| err(format!("{}: {e}", file.display())));
    match kind {
        Archive::TarGz => unpack_tar(flate2::read::GzDecoder::new(open()?), dest),
        Archive::Tar => unpack_tar(open()?, dest),
        Archive::Zip => unpack_zip(open()?, dest),
    }
}

fn unpack_tar(reader: impl Read, dest: &Path) -> Result<(), ArtifactError> {
    let bad = |e: std::io::Error| err(format!("unpacking the archive: {e}"));
    let mut archive = tar::Archive::new(reader);
    for entry in archive.entries().map_err(bad)? {
        let mut entry = entry.map_err(bad)?;
        let path = entry.path().map_err(bad)?.into_owned();
        let name = path.display().to_string();
        contained(dest, &name)
            .map_err(|_| err(format!("archive entry {name} leaves the destination")))?;
        use tar::EntryType as T;
        match entry.header().entry_type() {
            T::Regular | T::Directory | T::Continuous | T::GNUSparse => {}
            T::Symlink | T::Link => {
                let target = entry.link_name().map_err(bad)?.unwrap_or_default().into_owned();
                // A hard link's target is a path inside the archive; a symlink's is relative to
                // the link's own directory.
                let inside = if entry.header().entry_type() == T::Link {
                    contained(dest, &target.display().to_string()).is_ok()
                } else {
                    link_stays_inside(&path, &target)
                };
                if !inside {
                    return Err(err(format!(
                        "archive entry {name} links to {} outside the destination",
                        target.display()
                    )));
                }
            }
            // Metadata entries carry no file.
            T::XGlobalHeader | T::XHeader | T::GNULongName | T::GNULongLink => continue,
            other => return Err(err(format!("archive entry {name}: unsupported type {other:?}"))),
        }
        // unpack_in refuses names that leave `dest` (and does not write through links that do).
        if !entry.unpack_in(dest).map_err(bad)? {
            return Err(err(format!("archive entry {name} leaves the destination")));
        }
    }
    Ok(())
}

fn unpack_zip(file: std::fs::File, dest: &Path) -> Result<(), ArtifactError> {
    let bad = |e: zip::result::ZipError| err(format!("unpacking the archive: {e}"));
    let mut archive = zip::ZipArchive::new(file).map_err(bad)?;
    for i in 0..archive.len() {
        let mut entry = archive.by_index(i).map_err(bad)?;
        let name = entry.name().to_string();
        let Some(rel) = entry.enclosed_name() else {
            return Err(err(format!("archive entry {name} leaves the destination")));
        };
        let path = contained(dest, &rel.display().to_string())
            .map_err(|_| err(format!("archive entry {name} leaves the destination")))?;
        if entry.is_symlink() {
            return Err(err(format!("archive entry {name}: links in zip archives are refused")));
        }
        let io = |e: std::io::Error| err(format!("{}: {e}", path.display()));
        if entry.is_dir() {
            std::fs::create_dir_all(&path).map_err(io)?;
            continue;
        }
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io)?;
        }
        let mut out = std::fs::File::create(&path).map_err(io)?;
        std::io::copy(&mut entry, &mut out).map_err(io)?;
        if let Some(mode) = entry.unix_mode() {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode & 0o777))
                .map_err(io)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_destinations_and_links() {
        assert!(check_source("https://example.com/a.tgz").is_ok());
        assert!(check_source("HTTP://example.com/a").is_ok());
        for bad in ["git::https://x/y", "s3://b/k", "file:///etc/passwd", "/etc/passwd", "x/y"] {
            assert!(check_source(bad).is_err(), "{bad}");
        }
        let base = Path::new("/t");
        assert_eq!(contained(base, "local/").unwrap(), Path::new("/t/local"));
        assert_eq!(contained(base, "a/../b").unwrap(), Path::new("/t/b"));
        assert!(contained(base, "../x").is_err());
        assert!(contained(base, "a/../../x").is_err());
        assert!(contained(base, "/etc").is_err());
        assert_eq!(archive_kind("https://h/p/x.tar.gz?sig=1"), Some(Archive::TarGz));
        assert_eq!(archive_kind("https://h/x.TGZ"), Some(Archive::TarGz));
        assert_eq!(archive_kind("https://h/x.zip#f"), Some(Archive::Zip));
        assert_eq!(archive_kind("https://h/x.txt"), None);
        assert_eq!(archive_kind("https://h.tgz"), None);
        assert!(link_stays_inside(Path::new("a/l"), Path::new("../b")));
        assert!(!link_stays_inside(Path::new("a/l"), Path::new("../../b")));
        assert!(!link_stays_inside(Path::new("l"), Path::new("/etc/passwd")));
        assert!(parse_checksum("sha256:abc").is_err());
        assert!(parse_checksum("md5:d41d8cd98f00b204e9800998ecf8427e").is_err());
        assert!(parse_checksum(&format!("sha256:{}", "A".repeat(64))).is_ok());
    }
}
