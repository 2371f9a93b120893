//! Pot images in the stand-in's own format, and fetching them from a `file://` registry into POT_CACHE.
//! It owns the `.xz`/`.meta`/`.skein` files and unpacking a jail root; it does not create pots (see
//! `cmd::create`).
//!
//! Real pot images are `zfs send -R | xz` streams. The stand-in has no ZFS, so `<pot>_<tag>.xz` is an
//! xz-compressed **tar** of the jail root (the content of `m/`). The rest is as in pot: `<file>.meta`
//! holds one line (`-`, or `<origin pot>:<origin tag>@<snapshot>` for an image that builds on a parent),
//! and `<file>.skein` is what FreeBSD's `skein1024 -q` prints for `cat <file> <file>.meta`: the
//! 1024-bit Skein digest in lowercase hex and a newline.

use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::path::{Path, PathBuf};

use skein::{Digest, Skein1024_1024};

/// The file name of an image: `<pot>_<tag>.xz`, with the tag as given (dots are kept; only the local pot
/// name changes dots to `_`).
pub fn image_file_name(pot: &str, tag: &str) -> String {
    format!("{pot}_{tag}.xz")
}

/// What `cat <files…> | skein1024 -q` prints: 256 lowercase hex digits and a newline.
pub fn skein1024_hex(parts: &[&[u8]]) -> String {
    let mut h = Skein1024_1024::new();
    for p in parts {
        h.update(p);
    }
    let digest = h.finalize();
    let mut s: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    s.push('\n');
    s
}

/// Builds `<pot>_<tag>.xz`, `.xz.meta` (`-`, no parent) and `.xz.skein` in `out_dir` from the jail root
/// `root_dir`. Tests use this to make images that `pot prepare -U file://<out_dir>` imports.
pub fn build_image(root_dir: &Path, out_dir: &Path, pot: &str, tag: &str) -> io::Result<()> {
    build_image_with_meta(root_dir, out_dir, pot, tag, "-")
}

/// Like `build_image`, with an explicit `.meta` line, e.g. `base:1.0@1700000000` for an image whose
/// root is laid over the root of the image `base` tag `1.0`.
pub fn build_image_with_meta(
    root_dir: &Path,
    out_dir: &Path,
    pot: &str,
    tag: &str,
    meta: &str,
) -> io::Result<()> {
    std::fs::create_dir_all(out_dir)?;
    let mut tar_bytes = Vec::new();
    {
        let mut b = tar::Builder::new(&mut tar_bytes);
        // Symlinks stay symlinks: a jail root has absolute links that must not be followed on the host.
        b.follow_symlinks(false);
        b.append_dir_all(".", root_dir)?;
        b.finish()?;
    }
    let mut xz = Vec::new();
    lzma_rs::xz_compress(&mut io::Cursor::new(&tar_bytes), &mut xz)?;
    let meta = format!("{meta}\n");
    let name = image_file_name(pot, tag);
    std::fs::write(out_dir.join(&name), &xz)?;
    std::fs::write(out_dir.join(format!("{name}.meta")), &meta)?;
    std::fs::write(out_dir.join(format!("{name}.skein")), skein1024_hex(&[&xz, meta.as_bytes()]))?;
    Ok(())
}

/// Why fetching failed; the caller prints it with pot's `###>` prefix.
#[derive(Debug)]
pub enum FetchError {
    /// Not a `file://` URL: the stand-in has no network fetch.
    UnsupportedUrl(String),
    Missing(PathBuf),
    HashMismatch,
    Io(io::Error),
}

impl std::fmt::Display for FetchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FetchError::UnsupportedUrl(u) => {
                write!(f, "fetch {u} failed: the pot stand-in only fetches file:// URLs")
            }
            FetchError::Missing(p) => write!(f, "fetch {} failed: no such file", p.display()),
            FetchError::HashMismatch => write!(f, "The image and its hash do not overlap"),
            FetchError::Io(e) => write!(f, "fetch failed: {e}"),
        }
    }
}

impl std::error::Error for FetchError {}

/// Copies `<url>/<file>` to `<cache>/<file>` unless the cache already has it (pot's `[ ! -r … ]` check).
fn fetch_one(url: &str, cache: &Path, file: &str) -> Result<(), FetchError> {
    let dest = cache.join(file);
    if File::open(&dest).is_ok() {
        return Ok(());
    }
    let Some(dir) = url.strip_prefix("file://") else {
        return Err(FetchError::UnsupportedUrl(format!("{url}/{file}")));
    };
    // pot concatenates `$URL/$file`, so a trailing `/` gives `//`, which a path tolerates.
    let src = PathBuf::from(format!("{dir}/{file}"));
    if !src.is_file() {
        return Err(FetchError::Missing(src));
    }
    std::fs::copy(&src, &dest).map_err(FetchError::Io)?;
    Ok(())
}

/// pot's `_fetch_pot_internal`: `.skein`, the image, then `.meta` (optional: an empty one is made and
/// `on_no_meta` is called), then the hash check.
pub fn fetch_image(
    url: &str,
    cache: &Path,
    pot: &str,
    tag: &str,
    on_no_meta: &mut dyn FnMut(&Path),
) -> Result<(), FetchError> {
    std::fs::create_dir_all(cache).map_err(FetchError::Io)?;
    let name = image_file_name(pot, tag);
    fetch_one(url, cache, &format!("{name}.skein"))?;
    fetch_one(url, cache, &name)?;
    let meta_name = format!("{name}.meta");
    if fetch_one(url, cache, &meta_name).is_err() {
        let meta = cache.join(&meta_name);
        on_no_meta(&meta);
        File::create(&meta).map_err(FetchError::Io)?;
    }
    let read = |f: &str| std::fs::read(cache.join(f)).map_err(FetchError::Io);
    let (xz, meta, skein) = (read(&name)?, read(&meta_name)?, read(&format!("{name}.skein"))?);
    if skein1024_hex(&[&xz, &meta]).as_bytes() != skein.as_slice() {
        return Err(FetchError::HashMismatch);
    }
    Ok(())
}

/// Deletes an image's files from the cache, as pot does before its one retry.
pub fn remove_cached(cache: &Path, pot: &str, tag: &str) {
    let name = image_file_name(pot, tag);
    for suffix in ["", ".skein", ".meta", ".skein.sig"] {
        let _ = std::fs::remove_file(cache.join(format!("{name}{suffix}")));
    }
}

/// The parent of an image from its `.meta` first line: `Some((pot, tag))`, or `None` for `-`/empty.
pub fn parse_meta(meta: &str) -> Option<(String, String)> {
    let line = meta.lines().next().unwrap_or("").trim();
    if line.is_empty() || line == "-" {
        return None;
    }
    let pot_tag = line.split('@').next().unwrap_or("");
    let (pot, tag) = pot_tag.split_once(':')?;
    Some((pot.to_string(), tag.to_string()))
}

/// Unpacks a cached image's tar into `dest` (the new pot's `m/`), keeping modes.
pub fn unpack(cache: &Path, pot: &str, tag: &str, dest: &Path) -> io::Result<()> {
    let mut xz = BufReader::new(File::open(cache.join(image_file_name(pot, tag)))?);
    let mut tar_bytes = Vec::new();
    lzma_rs::xz_decompress(&mut xz, &mut tar_bytes)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("xz: {e:?}")))?;
    let mut archive = tar::Archive::new(io::Cursor::new(tar_bytes));
    archive.set_preserve_permissions(true);
    archive.set_overwrite(true);
    std::fs::create_dir_all(dest)?;
    archive.unpack(dest)
}

/// Copies a directory tree, keeping symlinks as symlinks and file modes; used to clone a pot's root
/// where pot would `zfs clone` a snapshot.
pub fn copy_tree(from: &Path, to: &Path) -> io::Result<()> {
    std::fs::create_dir_all(to)?;
    std::fs::set_permissions(to, std::fs::metadata(from)?.permissions())?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let ty = entry.file_type()?;
        let dst = to.join(entry.file_name());
        if ty.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(entry.path())?, &dst)?;
        } else if ty.is_dir() {
            copy_tree(&entry.path(), &dst)?;
        } else {
            std::fs::copy(entry.path(), &dst)?;
        }
    }
    Ok(())
}

/// Reads a whole small file, for tests and callers that want the `.skein` text.
pub fn read_to_string(path: &Path) -> io::Result<String> {
    let mut s = String::new();
    File::open(path)?.read_to_string(&mut s)?;
    Ok(s)
}

/// Writes bytes to a file, creating parents; a small helper for building test roots.
pub fn write_file(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let mut f = File::create(path)?;
    f.write_all(bytes)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

/// The seed job's image name and tag (`examples/nginx.job`).
pub const NGINX_IMAGE: (&str, &str) = ("nginx-nomad-amd64-13_1", "1.1.13");

/// A fake `nginx` for test images: a `#!/bin/sh` script that serves HTTP with the host's python3 on
/// `$_POT_IP:${NGINX_PORT:-80}`, answers 200 with `hello from $_POT_NAME`, logs one `request GET /…`
/// line per request to stdout, and ignores nginx's own arguments (`-g 'daemon off;'`). Binding port 80
/// needs root on Linux; tests that run unprivileged set `NGINX_PORT` through `pot set-env`.
pub const FAKE_NGINX: &str = r#"#!/bin/sh
# Stand-in for nginx in pot-standin test images; the arguments nginx would take are ignored.
exec python3 -u -c '
import http.server, os, sys
name = os.environ.get("_POT_NAME", "")
addr = (os.environ.get("_POT_IP", ""), int(os.environ.get("NGINX_PORT", "80")))
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = ("hello from " + name + "\n").encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, fmt, *args):
        sys.stdout.write("request " + self.command + " " + self.path + "\n")
http.server.HTTPServer(addr, Handler).serve_forever()
'
"#;

/// Builds the seed-shaped test image `nginx-nomad-amd64-13_1` tag `1.1.13` into `out_dir` (a `file://`
/// registry), with `usr/local/sbin/nginx` = `FAKE_NGINX`. `work_dir` holds the jail root it is made from.
pub fn build_nginx_test_image(work_dir: &Path, out_dir: &Path) -> io::Result<()> {
    let root = work_dir.join("nginx-image-root");
    write_file(&root.join("usr/local/sbin/nginx"), FAKE_NGINX.as_bytes(), 0o755)?;
    write_file(&root.join("etc/hosts"), b"127.0.0.1 localhost\n", 0o644)?;
    std::fs::create_dir_all(root.join("tmp"))?;
    build_image(&root, out_dir, NGINX_IMAGE.0, NGINX_IMAGE.1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn skein1024_known_answer() {
        // Skein-1024-1024 of the one byte 0xFF, from the Skein 1.3 paper's known-answer tests.
        let hex = skein1024_hex(&[&[0xff]]);
        assert!(
            hex.starts_with("e62c05802ea0152407cdd8787fda9e35703de862a4fbc119cff8590afe79250b"),
            "{hex}"
        );
        assert_eq!(hex.len(), 257);
        assert!(hex.ends_with('\n'));
    }

    #[test]
    fn build_fetch_unpack_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        write_file(&root.join("usr/local/bin/hello"), b"#!/bin/sh\necho hi\n", 0o755).unwrap();
        std::os::unix::fs::symlink("/usr/local/bin/hello", root.join("usr/bin-link")).unwrap();
        let reg = dir.path().join("reg");
        build_image(&root, &reg, "web", "1.2").unwrap();
        let skein = read_to_string(&reg.join("web_1.2.xz.skein")).unwrap();
        let xz = std::fs::read(reg.join("web_1.2.xz")).unwrap();
        assert_eq!(skein, skein1024_hex(&[&xz, b"-\n"]));

        let cache = dir.path().join("cache");
        let url = format!("file://{}", reg.display());
        fetch_image(&url, &cache, "web", "1.2", &mut |_| panic!("meta exists")).unwrap();
        let dest = dir.path().join("m");
        unpack(&cache, "web", "1.2", &dest).unwrap();
        let exe = dest.join("usr/local/bin/hello");
        assert_eq!(std::fs::read(&exe).unwrap(), b"#!/bin/sh\necho hi\n");
        assert_eq!(std::fs::metadata(&exe).unwrap().permissions().mode() & 0o777, 0o755);
        assert_eq!(
            std::fs::read_link(dest.join("usr/bin-link")).unwrap(),
            PathBuf::from("/usr/local/bin/hello")
        );
    }

    #[test]
    fn corrupt_image_or_foreign_url_fails() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        write_file(&root.join("f"), b"x", 0o644).unwrap();
        let reg = dir.path().join("reg");
        build_image(&root, &reg, "p", "t").unwrap();
        std::fs::write(reg.join("p_t.xz.meta"), "tampered\n").unwrap();
        let url = format!("file://{}", reg.display());
        let cache = dir.path().join("cache");
        assert!(matches!(
            fetch_image(&url, &cache, "p", "t", &mut |_| ()),
            Err(FetchError::HashMismatch)
        ));
        let r =
            fetch_image("https://example.invalid/x", &dir.path().join("c2"), "p", "t", &mut |_| ());
        assert!(matches!(r, Err(FetchError::UnsupportedUrl(_))));
    }

    #[test]
    fn meta_parent() {
        assert_eq!(parse_meta("-\n"), None);
        assert_eq!(parse_meta(""), None);
        assert_eq!(parse_meta("freebsd:13.1@1699\n"), Some(("freebsd".into(), "13.1".into())));
    }
}
