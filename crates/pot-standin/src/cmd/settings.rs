//! The commands that change a prepared pot's configuration: `set-cmd`, `set-attribute`, `export-ports`,
//! `set-env`, `set-hosts`, `set-rss`, `mount-in` and `copy-in`. It owns their validation and the lines
//! they write to pot.conf/fscomp.conf; it does not enforce anything at run time (see `lifecycle`).

use std::path::{Path, PathBuf};

use super::{every, has, last, parse, print_help, Parsed};
use crate::potconf::{self, FsEntry, PotConf};
use crate::state::{self, PotPaths};
use crate::{jail, net, Ctx};

/// pot's `_is_pot` without `quiet`: prints why the name is not a pot.
pub(crate) fn check_pot(ctx: &mut Ctx, name: &str) -> bool {
    if state::is_pot(&ctx.config, name) {
        return true;
    }
    let p = PotPaths::new(&ctx.config, name);
    if name.is_empty() || !p.dir.is_dir() {
        ctx.error(format!("Pot {name} not found"));
    } else {
        ctx.error(format!("Some component of the pot {name} is missing"));
    }
    false
}

/// Loads a pot's pot.conf, reporting a failure as pot would report an unreadable file.
pub(crate) fn load_conf(ctx: &mut Ctx, name: &str) -> Option<PotConf> {
    match PotConf::load(&PotPaths::new(&ctx.config, name).pot_conf()) {
        Ok(c) => Some(c),
        Err(e) => {
            ctx.error(format!("pot {name}: cannot read pot.conf: {e}"));
            None
        }
    }
}

fn save_conf(ctx: &mut Ctx, name: &str, conf: &PotConf) -> i32 {
    match conf.save(&PotPaths::new(&ctx.config, name).pot_conf()) {
        Ok(()) => 0,
        Err(e) => {
            ctx.error(format!("pot {name}: cannot write pot.conf: {e}"));
            1
        }
    }
}

/// Prints `msg` and the help of `cmd`, and gives pot's failure code.
fn fail(ctx: &mut Ctx, cmd: &str, msg: impl AsRef<str>) -> i32 {
    ctx.error(msg);
    print_help(ctx, cmd);
    1
}

/// `pot set-cmd`: one leading and one trailing `"` are removed (common.sh `_set_command`), which undoes
/// nomad-pot-driver's `-c "\"cmd args\""` quoting. The trailing one only goes if a leading one did.
pub fn set_cmd(ctx: &mut Ctx, args: &[String]) -> i32 {
    let opts = match parse(ctx, "set-cmd", "hvp:c:", args) {
        Parsed::Args(o, _) => o,
        Parsed::Exit(c) => return c,
    };
    let name = last(&opts, 'p').unwrap_or_default();
    let cmd = last(&opts, 'c').unwrap_or_default();
    if name.is_empty() {
        return fail(ctx, "set-cmd", "A pot name is mandatory");
    }
    if cmd.is_empty() {
        return fail(ctx, "set-cmd", "A command is mandatory");
    }
    if !check_pot(ctx, &name) {
        return fail(ctx, "set-cmd", format!("pot {name} is not valid"));
    }
    let Some(mut conf) = load_conf(ctx, &name) else { return 1 };
    conf.set("pot.cmd", &strip_cmd_quotes(&cmd));
    save_conf(ctx, &name, &conf)
}

/// `sed 's/^"//'` then, only if that changed something, `sed 's/"$//'`. Like `echo | sed`, it works
/// line by line on a multi-line command.
pub fn strip_cmd_quotes(cmd: &str) -> String {
    let per_line =
        |f: &dyn Fn(&str) -> String| cmd.split('\n').map(f).collect::<Vec<_>>().join("\n");
    let first = per_line(&|l| l.strip_prefix('"').unwrap_or(l).to_string());
    if first == cmd {
        return cmd.to_string();
    }
    first.split('\n').map(|l| l.strip_suffix('"').unwrap_or(l)).collect::<Vec<_>>().join("\n")
}

/// The value type of an attribute (common.sh `_POT_DEFAULT_<attr>_T`).
#[derive(Clone, Copy, PartialEq, Eq)]
enum AttrType {
    Bool,
    Uint,
    String,
    Sysvopt,
}

const POT_ATTRIBUTES: &[&str] = &[
    "start-at-boot",
    "early-start-at-boot",
    "persistent",
    "no-rc-script",
    "prunable",
    "localhost-tunnel",
    "no-tmpfs",
    "no-etc-hosts",
];

fn jail_attribute(attr: &str) -> Option<AttrType> {
    use AttrType::*;
    Some(match attr {
        "enforce_statfs" | "children" | "devfs_ruleset" | "stop_timeout" => Uint,
        "mount" | "fdescfs" | "linprocfs" | "nullfs" | "procfs" | "tmpfs" | "zfs"
        | "raw_sockets" | "mlock" => Bool,
        "sysvshm" | "sysvsem" | "sysvmsg" => Sysvopt,
        "exec_stop" => String,
        _ => return None,
    })
}

/// `_normalize_true_false`.
pub fn normalize_bool(v: &str) -> Option<&'static str> {
    match v.to_ascii_lowercase().as_str() {
        "yes" | "true" | "on" => Some("YES"),
        "no" | "false" | "off" => Some("NO"),
        _ => None,
    }
}

/// `pot set-attribute` / `set-attr`.
pub fn set_attribute(ctx: &mut Ctx, args: &[String]) -> i32 {
    let opts = match parse(ctx, "set-attribute", "hvp:A:V:", args) {
        Parsed::Args(o, _) => o,
        Parsed::Exit(c) => return c,
    };
    let name = last(&opts, 'p').unwrap_or_default();
    let attr = last(&opts, 'A').unwrap_or_default();
    let value = last(&opts, 'V').unwrap_or_default();
    if name.is_empty() {
        return fail(ctx, "set-attribute", "A pot name is mandatory");
    }
    if attr.is_empty() {
        return fail(ctx, "set-attribute", "Option -A is mandatory");
    }
    if value.is_empty() {
        return fail(ctx, "set-attribute", "Option -V is mandatory");
    }
    if !check_pot(ctx, &name) {
        return fail(ctx, "set-attribute", format!("{name} is not a valid pot"));
    }
    let ty = if POT_ATTRIBUTES.contains(&attr.as_str()) {
        AttrType::Bool
    } else if let Some(t) = jail_attribute(&attr) {
        t
    } else {
        return fail(ctx, "set-attribute", format!("{attr} is not a valid attribute"));
    };
    let Some(mut conf) = load_conf(ctx, &name) else { return 1 };
    if attr == "no-tmpfs" {
        if conf.get("pot.type").as_deref() != Some("single") {
            ctx.error("Attribute no-tmpfs is only usable with single type pot");
            return 1;
        }
        if state::is_running(&ctx.config, &name) {
            // pot prints this and then runs its unset `$_cmd`, i.e. the pot name as a command, which fails.
            ctx.error(format!("pot {name} is still running"));
            return 1;
        }
    }
    let stored = match ty {
        AttrType::Bool => match normalize_bool(&value) {
            Some(v) => v.to_string(),
            // pot assigns the failed `$(_normalize_true_false …)` to `_value` before printing it, so the
            // message never shows the value.
            None => return fail(ctx, "set-attribute", "value  is not a valid boolean value"),
        },
        AttrType::Uint => {
            if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
                return fail(
                    ctx,
                    "set-attribute",
                    format!("value {value} is not a valid uint value"),
                );
            }
            value
        }
        AttrType::Sysvopt => {
            if !["new", "inherit", "disable"].contains(&value.as_str()) {
                return fail(
                    ctx,
                    "set-attribute",
                    "value must be one of 'new', 'inherit', 'disable'",
                );
            }
            value
        }
        AttrType::String => value,
    };
    conf.set(&format!("pot.attr.{attr}"), &stored);
    save_conf(ctx, &name, &conf)
}

/// `pot export-ports`: stores `pot.export.ports=<specs separated by spaces>`.
pub fn export_ports(ctx: &mut Ctx, args: &[String]) -> i32 {
    let opts = match parse(ctx, "export-ports", "hvp:e:S", args) {
        Parsed::Args(o, _) => o,
        Parsed::Exit(c) => return c,
    };
    for e in every(&opts, 'e') {
        if net::parse_export(&e).is_none() {
            return fail(ctx, "export-ports", format!("{e} is not a valid port number"));
        }
    }
    let name = last(&opts, 'p').unwrap_or_default();
    if name.is_empty() {
        return fail(ctx, "export-ports", "A pot name is mandatory");
    }
    if !check_pot(ctx, &name) {
        return fail(ctx, "export-ports", format!("{name} is not a valid pot name"));
    }
    let ports = every(&opts, 'e');
    if ports.is_empty() {
        return fail(ctx, "export-ports", "One port has to be specified");
    }
    let Some(mut conf) = load_conf(ctx, &name) else { return 1 };
    let nt = conf.get("network_type").unwrap_or_default();
    if nt != "public-bridge" && nt != "private-bridge" {
        ctx.info("Only public-bridge and private-bridge network type can export ports - this setting will be ignored during start");
    }
    if conf.get("pot.stack").as_deref() == Some("ipv6") {
        ctx.info("Only ipv4 can export ports, on ipv6 the pot has already a unique address - this setting will be ignored during start");
    }
    ctx.debug(format!("Exporting the following ports: {}", ports.join(" ")));
    conf.set("pot.export.ports", &ports.join(" "));
    save_conf(ctx, &name, &conf)
}

/// `pot set-env`: every `-E` must contain `=`; the value is stored double-quoted with inner `"` escaped,
/// and all previous `pot.env` lines are replaced.
pub fn set_env(ctx: &mut Ctx, args: &[String]) -> i32 {
    let opts = match parse(ctx, "set-env", "hvp:E:", args) {
        Parsed::Args(o, _) => o,
        Parsed::Exit(c) => return c,
    };
    let mut env = Vec::new();
    for e in every(&opts, 'E') {
        if !e.contains('=') {
            ctx.error(format!("{e} not in a valid form"));
            return fail(ctx, "set-env", "VARIABLE=value is accetped");
        }
        env.push(format!("\"{}\"", e.replace('"', "\\\"")));
    }
    let name = last(&opts, 'p').unwrap_or_default();
    if name.is_empty() {
        return fail(ctx, "set-env", "A pot name is mandatory");
    }
    if env.is_empty() {
        return fail(ctx, "set-env", "A command is mandatory");
    }
    if !check_pot(ctx, &name) {
        return fail(ctx, "set-env", format!("pot {name} is not valid"));
    }
    let Some(mut conf) = load_conf(ctx, &name) else { return 1 };
    conf.remove("pot.env");
    for e in &env {
        conf.push("pot.env", e);
    }
    save_conf(ctx, &name, &conf)
}

/// `pot set-hosts`: `-H hostname:IP` (IP is everything after the first `:`), stored as
/// `pot.hosts=<IP> <hostname>`, replacing previous lines. `potnet ipcheck` becomes an IP parse.
pub fn set_hosts(ctx: &mut Ctx, args: &[String]) -> i32 {
    let opts = match parse(ctx, "set-hosts", "hvp:H:", args) {
        Parsed::Args(o, _) => o,
        Parsed::Exit(c) => return c,
    };
    let mut hosts = Vec::new();
    for h in every(&opts, 'H') {
        let Some((host, ip)) = h.split_once(':') else {
            ctx.error(format!("{h} not in a valid form"));
            return fail(ctx, "set-hosts", "hostname:IP is accepted");
        };
        if host.is_empty() || ip.is_empty() {
            return fail(ctx, "set-hosts", "Submitted ip or hostname are empty");
        }
        if ip.parse::<std::net::IpAddr>().is_err() {
            return fail(ctx, "set-hosts", format!("Submitted ip {ip} is not a valid one"));
        }
        hosts.push(format!("{ip} {host}"));
    }
    let name = last(&opts, 'p').unwrap_or_default();
    if name.is_empty() {
        return fail(ctx, "set-hosts", "A pot name is mandatory");
    }
    if !check_pot(ctx, &name) {
        return fail(ctx, "set-hosts", format!("pot {name} is not valid"));
    }
    let Some(mut conf) = load_conf(ctx, &name) else { return 1 };
    conf.remove("pot.hosts");
    for h in &hosts {
        conf.push("pot.hosts", h);
    }
    save_conf(ctx, &name, &conf)
}

/// `_memory_validation`: `^[0-9]+[bBkKmMgG]?$` and greater than zero. `Err` is pot's message.
pub fn validate_memory(m: &str) -> Result<(), String> {
    let number = m.strip_suffix(['b', 'B', 'k', 'K', 'm', 'M', 'g', 'G']).unwrap_or(m);
    if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{m} is not a valid memory constraint"));
    }
    if number.bytes().all(|b| b == b'0') {
        return Err("Memory constraint has to be greater than zero".to_string());
    }
    Ok(())
}

/// `pot set-rss`: `pot.rss.memory=` / `pot.rss.cpus=`.
pub fn set_rss(ctx: &mut Ctx, args: &[String]) -> i32 {
    let opts = match parse(ctx, "set-rss", "hvp:C:M:", args) {
        Parsed::Args(o, _) => o,
        Parsed::Exit(c) => return c,
    };
    for m in every(&opts, 'M') {
        if let Err(e) = validate_memory(&m) {
            return fail(ctx, "set-rss", e);
        }
    }
    let name = last(&opts, 'p').unwrap_or_default();
    if name.is_empty() {
        return fail(ctx, "set-rss", "A pot name is mandatory");
    }
    if !check_pot(ctx, &name) {
        return fail(ctx, "set-rss", format!("{name} is not a valid pot name"));
    }
    let cpus = last(&opts, 'C').unwrap_or_default();
    let memory = last(&opts, 'M').unwrap_or_default();
    if cpus.is_empty() && memory.is_empty() {
        return fail(ctx, "set-rss", "One resource has to be specified (-C or -M)");
    }
    let Some(mut conf) = load_conf(ctx, &name) else { return 1 };
    if !cpus.is_empty() {
        match cpus.parse::<u32>() {
            Ok(n) if n > 0 && cpus.bytes().all(|b| b.is_ascii_digit()) => {
                conf.set("pot.rss.cpus", &cpus)
            }
            _ => {
                ctx.error(format!("{cpus} is a not valid amount of CPUs!"));
                return 1;
            }
        }
    }
    if !memory.is_empty() {
        conf.set("pot.rss.memory", &memory);
    }
    save_conf(ctx, &name, &conf)
}

/// Normalizes an absolute jail path the way `realpath` inside the jail would for plain paths:
/// repeated and trailing slashes and `.` components go away.
fn normalize_jail_path(p: &str) -> String {
    let parts: Vec<&str> = p.split('/').filter(|c| !c.is_empty() && *c != ".").collect();
    format!("/{}", parts.join("/"))
}

/// `pot mount-in`. Only `-d` (host directory) is supported; `-f`/`-z` need ZFS, so their names never
/// validate, as for a missing fscomp/dataset in pot.
pub fn mount_in(ctx: &mut Ctx, args: &[String]) -> i32 {
    let opts = match parse(ctx, "mount-in", "hvf:d:z:p:m:wr", args) {
        Parsed::Args(o, _) => o,
        Parsed::Exit(c) => return c,
    };
    let name = last(&opts, 'p').unwrap_or_default();
    let fscomp = last(&opts, 'f').unwrap_or_default();
    let dir = last(&opts, 'd').unwrap_or_default();
    let dset = last(&opts, 'z').unwrap_or_default();
    let mnt = last(&opts, 'm').unwrap_or_default();
    let (readonly, remount) = (has(&opts, 'r'), has(&opts, 'w'));
    if name.is_empty() {
        return fail(ctx, "mount-in", "A pot name is mandatory");
    }
    if fscomp.is_empty() && dir.is_empty() && dset.is_empty() {
        return fail(ctx, "mount-in", "One of -f|-d|-z option has to be used");
    }
    if !fscomp.is_empty() && !dir.is_empty() {
        return fail(ctx, "mount-in", "-f and -d options are mutually exclusive");
    }
    if !fscomp.is_empty() && !dset.is_empty() {
        return fail(ctx, "mount-in", "-f and -z options are mutually exclusive");
    }
    if !dir.is_empty() && !dset.is_empty() {
        return fail(ctx, "mount-in", "-d and -z options are mutually exclusive");
    }
    if mnt.is_empty() {
        return fail(ctx, "mount-in", "A mount point is mandatory");
    }
    if mnt.chars().any(char::is_whitespace) {
        return fail(ctx, "mount-in", "The mountpoint cannot contain spaces");
    }
    if !mnt.starts_with('/') {
        return fail(ctx, "mount-in", "The mount point has to be an absolute pathname");
    }
    if mnt == "/" {
        return fail(ctx, "mount-in", "/ is not a valid mount point");
    }
    if remount && !dir.is_empty() {
        return fail(
            ctx,
            "mount-in",
            "Remount cannot be used with directories, but with fscomp only",
        );
    }
    if remount && readonly {
        ctx.info(
            "Readonly and remount are mutually exclusive: readonly considered, remount ignored",
        );
    }
    if !fscomp.is_empty() {
        return fail(ctx, "mount-in", format!("fscomp {fscomp} is not valid"));
    }
    if !dset.is_empty() {
        return fail(ctx, "mount-in", format!("dataset {dset} is not valid"));
    }
    let mut dir_path = PathBuf::from(&dir);
    if !dir_path.is_dir() {
        return fail(ctx, "mount-in", format!("{dir} is not a directory"));
    }
    if !dir_path.is_absolute() {
        match std::fs::canonicalize(&dir_path) {
            Ok(p) => dir_path = p,
            Err(_) => {
                return fail(
                    ctx,
                    "mount-in",
                    format!("Not able to convert {dir} as an absolute pathname"),
                )
            }
        }
    }
    let dir = dir_path.display().to_string();
    let paths = PotPaths::new(&ctx.config, &name);
    let fscomp_text = std::fs::read_to_string(paths.fscomp()).unwrap_or_default();
    // `_directory_validation`: not inside the pot, and `grep -q "$_dir " fscomp.conf` finds nothing.
    let inside = dir_path.starts_with(&paths.dir);
    if inside || fscomp_text.lines().any(|l| l.contains(&format!("{dir} "))) {
        ctx.error(format!("Directory {dir} not valid, already used or already part of the pot"));
        return 1;
    }
    if !check_pot(ctx, &name) {
        return fail(ctx, "mount-in", format!("pot {name} is not valid"));
    }
    let real_mnt = normalize_jail_path(&mnt);
    // `_is_mountpoint_used` greps for ` <pot root>/<mnt>`, which mount-in's own `<dir> /<mnt>` lines never
    // contain; the stand-in keeps that check as it is, so a mount point may be used twice, as in pot.
    let proot = paths.root().display().to_string();
    let used = format!(" {proot}{real_mnt}");
    if fscomp_text.lines().any(|l| l.ends_with(&used) || l.contains(&format!("{used} "))) {
        ctx.error(format!("The mount point {mnt} is already in use"));
        ctx.error("The mountpoint is not valid!");
        return 1;
    }
    let at = jail::jail_join(&paths.root(), &real_mnt);
    if std::fs::symlink_metadata(&at).is_err() {
        if let Err(e) = std::fs::create_dir_all(&at) {
            ctx.error(format!("{e}"));
            ctx.error("The mountpoint is not valid!");
            return 1;
        }
    }
    let entry = FsEntry {
        source: dir.clone(),
        mountpoint: real_mnt,
        option: readonly.then(|| "ro".to_string()),
    };
    ctx.debug(format!(
        "add directory:{dir} mnt_p:{} opt:{}",
        entry.mountpoint,
        entry.option.clone().unwrap_or_default()
    ));
    if let Err(e) = potconf::append_fscomp(&paths.fscomp(), &entry) {
        ctx.error(format!("cannot write fscomp.conf: {e}"));
        return 1;
    }
    if state::is_running(&ctx.config, &name) {
        if let Err(e) = jail::mount_fscomp(&paths.root(), std::slice::from_ref(&entry)) {
            ctx.error(format!("Error mounting {dir} on {name}: {e}"));
        } else {
            ctx.debug(format!("Mounted {dir} on {name}"));
        }
    }
    0
}

/// `pot copy-in`: `cp -a <source> <dest>` inside the pot root; `-c` creates the destination's parent.
pub fn copy_in(ctx: &mut Ctx, args: &[String]) -> i32 {
    let opts = match parse(ctx, "copy-in", "hvs:d:p:Fc", args) {
        Parsed::Args(o, _) => o,
        Parsed::Exit(c) => return c,
    };
    let name = last(&opts, 'p').unwrap_or_default();
    let source = last(&opts, 's').unwrap_or_default();
    let dest = last(&opts, 'd').unwrap_or_default();
    if name.is_empty() {
        return fail(ctx, "copy-in", "A pot name is mandatory");
    }
    if source.is_empty() {
        return fail(ctx, "copy-in", "A source is mandatory");
    }
    if dest.is_empty() {
        return fail(ctx, "copy-in", "A destination is mandatory");
    }
    if !dest.starts_with('/') {
        ctx.error("The destination has to be an absolute pathname");
        return 1;
    }
    if !check_pot(ctx, &name) {
        return fail(ctx, "copy-in", format!("pot {name} is not valid"));
    }
    let src = Path::new(&source);
    if !(src.is_file() || src.is_dir()) {
        return fail(ctx, "copy-in", format!("{source} not valid"));
    }
    if std::fs::metadata(src).is_err() || (src.is_file() && std::fs::File::open(src).is_err()) {
        return fail(ctx, "copy-in", format!("{source} not readable"));
    }
    if state::is_running(&ctx.config, &name) {
        if !has(&opts, 'F') {
            ctx.error("Copying files on a running pot is discouraged, it can partially expose the host file system to the jail");
            ctx.info("Using the -F flag, the operation can be executed anyway, but we disagree");
            return 1;
        }
        ctx.debug("Copying files on a running pot allowed, because of the -F flag");
    }
    let root = PotPaths::new(&ctx.config, &name).root();
    let target = jail::jail_join(&root, &normalize_jail_path(&dest));
    if has(&opts, 'c') {
        if let Some(parent) = target.parent() {
            if std::fs::create_dir_all(parent).is_err() {
                ctx.error(format!("Destination path {dest} NOT created because of an error"));
                return 1;
            }
        }
        ctx.debug(format!("Destination path {dest} created in the pot {name}"));
    }
    // `cp -a src dest` copies into `dest/<basename>` when dest is an existing directory.
    let target = if target.is_dir() {
        match src.file_name() {
            Some(b) => target.join(b),
            None => target,
        }
    } else {
        target
    };
    let result = if src.is_dir() {
        crate::image::copy_tree(src, &target)
    } else {
        std::fs::copy(src, &target).map(|_| ())
    };
    if let Err(e) = result {
        ctx.error(format!("Source {source} NOT copied because of an error"));
        ctx.debug(format!("{e}"));
        return 1;
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cmd_quotes_are_stripped_once() {
        assert_eq!(strip_cmd_quotes("\"nginx -g 'daemon off;'\""), "nginx -g 'daemon off;'");
        assert_eq!(strip_cmd_quotes("nginx \"x\""), "nginx \"x\"");
        assert_eq!(strip_cmd_quotes("\"\"a\"\""), "\"a\"");
        assert_eq!(strip_cmd_quotes("\"open"), "open");
    }

    #[test]
    fn memory_rules() {
        assert!(validate_memory("64M").is_ok());
        assert!(validate_memory("1024").is_ok());
        assert!(validate_memory("2g").is_ok());
        assert_eq!(
            validate_memory("0M"),
            Err("Memory constraint has to be greater than zero".to_string())
        );
        assert!(validate_memory("64MB").is_err());
        assert!(validate_memory("M").is_err());
        assert!(validate_memory("-1").is_err());
    }

    #[test]
    fn booleans_and_paths() {
        assert_eq!(normalize_bool("On"), Some("YES"));
        assert_eq!(normalize_bool("FALSE"), Some("NO"));
        assert_eq!(normalize_bool("1"), None);
        assert_eq!(normalize_jail_path("//local/./x/"), "/local/x");
    }
}
