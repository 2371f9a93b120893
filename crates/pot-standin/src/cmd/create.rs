//! `prepare`, `import` and `clone`: making pots. It owns the name rules, the import pipeline calls and
//! the pot.conf a new pot starts with; it does not run anything.
//!
//! Nesting follows pot's shell semantics, where prepare calls import and clone as functions in the same
//! shell: their failures use `exit`, so a failed import or clone ends `prepare` with that exit code at
//! once (prepare's own "pot import failed" and "Not able to clone" branches are unreachable in pot
//! 0.16.0), while set-cmd, set-attribute and export-ports use `return`, so their failures are only
//! reported ("- ignoring") and prepare still exits 0.

use std::net::Ipv4Addr;

use super::{every, has, last, parse, print_help, words, Parsed};
use crate::image::{self, FetchError};
use crate::potconf::PotConf;
use crate::state::{self, PotPaths};
use crate::{net, Ctx};

const NETWORK_TYPES: &[&str] = &["inherit", "alias", "public-bridge", "private-bridge"];

/// `tr . _`.
fn undot(s: &str) -> String {
    s.replace('.', "_")
}

/// Checks a `-d` value; `Err` carries the message. pot's prepare prints `'${OPTART}'` (a typo for
/// OPTARG) and so always shows `''`; the stand-in keeps that.
fn check_dns(value: &str, typo: bool) -> Result<(), String> {
    match value {
        "inherit" | "pot" | "off" => Ok(()),
        v if v.starts_with("custom:") => {
            let file = &v["custom:".len()..];
            if std::fs::File::open(file).is_ok() {
                Ok(())
            } else {
                Err(format!("The file {file} is not valid or readable"))
            }
        }
        v => Err(if typo {
            "'' is not a valid dns option".to_string()
        } else {
            format!("'{v}' is not a valid dns option")
        }),
    }
}

/// `pot prepare`.
pub fn prepare(ctx: &mut Ctx, args: &[String]) -> i32 {
    let (opts, _) = match parse(ctx, "prepare", "hvp:U:t:c:e:a:n:sN:i:B:S:d:C:", args) {
        Parsed::Args(o, r) => (o, r),
        Parsed::Exit(c) => return c,
    };
    // pot validates -e, -N, -S and -d inside its getopts loop, so the first bad one (in order) wins.
    let mut network_type: Option<String> = None;
    for o in &opts {
        let arg = o.arg.clone().unwrap_or_default();
        match o.letter {
            'e' if net::parse_export(&arg).is_none() => {
                ctx.error(format!("{arg} is not a valid port number"));
                print_help(ctx, "prepare");
                return 1;
            }
            'N' => {
                let t = if arg == "host" { "inherit".to_string() } else { arg };
                if !NETWORK_TYPES.contains(&t.as_str()) {
                    ctx.error(format!("Network type {t} not recognized"));
                    print_help(ctx, "prepare");
                    return 1;
                }
                network_type = Some(t);
            }
            'S' if !["ipv4", "ipv6", "dual"].contains(&arg.as_str()) => {
                ctx.error(format!("Network stack {arg} not valid"));
                print_help(ctx, "prepare");
                return 1;
            }
            'd' => {
                if let Err(m) = check_dns(&arg, true) {
                    ctx.error(m);
                    if !arg.starts_with("custom:") {
                        print_help(ctx, "prepare");
                    }
                    return 1;
                }
            }
            _ => {}
        }
    }
    let pot = last(&opts, 'p').unwrap_or_default();
    let tag = last(&opts, 't').unwrap_or_default();
    let alloc = last(&opts, 'a').unwrap_or_default();
    let bridge = last(&opts, 'B').unwrap_or_default();
    for (empty, msg) in [
        (pot.is_empty(), "A pot name is mandatory"),
        (tag.is_empty(), "A tag is mandatory"),
        (alloc.is_empty(), "An allocation id is mandatory"),
        (
            network_type.as_deref() == Some("private-bridge") && bridge.is_empty(),
            "A bridge name has to be provided if private-bridge is selected as network-type",
        ),
    ] {
        if empty {
            ctx.error(msg);
            print_help(ctx, "prepare");
            return 1;
        }
    }
    let imported = undot(&format!("{pot}_{tag}"));
    let base_name = last(&opts, 'n').filter(|n| !n.is_empty()).unwrap_or_else(|| imported.clone());
    let new = undot(&format!("{base_name}_{alloc}"));
    if state::is_pot(&ctx.config, &new) {
        ctx.error(format!("A pot with name {new} already exists"));
        print_help(ctx, "prepare");
        return 1;
    }
    if !state::is_pot(&ctx.config, &imported) {
        let url = last(&opts, 'U').unwrap_or_default();
        let mut a = words(&["-U", &url, "-t", &tag, "-p", &pot]);
        if let Some(key) = last(&opts, 'C') {
            a.extend(words(&["-C", &key]));
        }
        let code = import(ctx, &a);
        if code != 0 {
            return code;
        }
    } else {
        ctx.debug(format!("pot {imported} already imported - reusing it"));
    }
    let mut clone_args = words(&["-P", &imported, "-p", &new]);
    if let Some(t) = &network_type {
        clone_args.extend(words(&["-N", t]));
        if t == "private-bridge" {
            clone_args.extend(words(&["-B", &bridge]));
        }
    }
    // pot word-splits its space-joined -i list, so each word becomes one `-i`.
    for ip in every(&opts, 'i')
        .iter()
        .flat_map(|i| i.split_whitespace().map(str::to_string).collect::<Vec<_>>())
    {
        clone_args.extend(words(&["-i", &ip]));
    }
    if let Some(s) = last(&opts, 'S') {
        clone_args.extend(words(&["-S", &s]));
    }
    if let Some(d) = last(&opts, 'd') {
        clone_args.extend(words(&["-d", &d]));
    }
    let code = clone(ctx, &clone_args);
    if code != 0 {
        return code;
    }
    if let Some(cmd) = last(&opts, 'c').filter(|c| !c.is_empty()) {
        if super::settings::set_cmd(ctx, &words(&["-p", &new, "-c", &cmd])) != 0 {
            ctx.error(format!("Couldn't set the command {cmd} ot the pot - ignoring"));
        }
    }
    for (attr, value, msg) in [
        ("persistent", "OFF", "Couldn't disable the persistent attribute - ignoring"),
        ("no-rc-script", "ON", "Couldn't enable the no-rc-script attribute - ignoring"),
        // pot prints the no-rc-script message for prunable too.
        ("prunable", "ON", "Couldn't enable the no-rc-script attribute - ignoring"),
        ("localhost-tunnel", "YES", "Couldn't enable the localhost-tunnel attribute - ignoring"),
        ("no-etc-hosts", "YES", "Couldn't disable the enrichment of /etc/hosts - ignoring"),
        ("no-tmpfs", "YES", "Couldn't disable tmpfs for /tmp - ignoring"),
    ] {
        if super::settings::set_attribute(ctx, &words(&["-A", attr, "-V", value, "-p", &new])) != 0
        {
            ctx.error(msg);
        }
    }
    let ports = every(&opts, 'e');
    if !ports.is_empty() {
        // pot prepends each port, so export-ports sees them in reverse order.
        let mut a = words(&["-p", &new]);
        for p in ports.iter().rev() {
            a.extend(words(&["-e", p]));
        }
        if super::settings::export_ports(ctx, &a) != 0 {
            ctx.error(format!("Couldn't export ports {} - ignoring", ports.join(" ")));
        }
    }
    if has(&opts, 's') {
        ctx.debug(format!("Auto starting the pot {new}"));
        // Like pot, this blocks for the life of a non-persistent pot (and holds the global lock).
        if super::lifecycle::start(ctx, &words(&[&new])) != 0 {
            ctx.error(format!("pot {new} failed to start"));
            super::lifecycle::stop(ctx, &words(&[&new]));
            return 1;
        }
    } else {
        ctx.info(format!("Prepared the pot {new}"));
    }
    0
}

/// `pot import`.
pub fn import(ctx: &mut Ctx, args: &[String]) -> i32 {
    let (opts, _) = match parse(ctx, "import", "hvp:t:U:C:", args) {
        Parsed::Args(o, r) => (o, r),
        Parsed::Exit(c) => return c,
    };
    if opts.iter().any(|o| o.letter == 'U' && o.arg.as_deref() == Some("")) {
        ctx.error("Argument of -U cannot be empty");
        print_help(ctx, "import");
        return 1;
    }
    let pot = last(&opts, 'p').unwrap_or_default();
    let tag = last(&opts, 't').unwrap_or_default();
    if pot.is_empty() {
        ctx.error("A remote pot name is mandatory");
        print_help(ctx, "import");
        return 1;
    }
    if tag.is_empty() {
        ctx.error("A tag name is mandatory");
        print_help(ctx, "import");
        return 1;
    }
    let local = undot(&format!("{pot}_{tag}"));
    if state::is_pot(&ctx.config, &local) {
        ctx.error(format!("pot {local} is already present"));
        print_help(ctx, "import");
        return 1;
    }
    if let Some(key) = last(&opts, 'C').filter(|k| !k.is_empty()) {
        if std::fs::File::open(&key).is_err() {
            ctx.error(format!("Public key {key} not found"));
        } else {
            ctx.error("Could not find 'signify', signature verification is not supported by the pot stand-in");
        }
        return 1;
    }
    // pot's fetch with no -U fetches from `file://` (the relative current directory); keep that.
    let url = last(&opts, 'U').unwrap_or_else(|| "file://".to_string());
    ctx.info(format!("importing {pot} @ {tag} as {local}"));
    let cache = ctx.config.cache.clone();
    let fetch = |ctx: &mut Ctx| {
        let mut no_meta = None;
        let r = image::fetch_image(&url, &cache, &pot, &tag, &mut |p| {
            no_meta = Some(p.display().to_string())
        });
        if let Some(p) = no_meta {
            ctx.info(format!("No {p}, ignoring"));
        }
        r
    };
    if let Err(first) = fetch(ctx) {
        report_fetch(ctx, &first);
        image::remove_cached(&cache, &pot, &tag);
        if let Err(second) = fetch(ctx) {
            report_fetch(ctx, &second);
            return 1;
        }
    }
    let meta =
        std::fs::read_to_string(cache.join(format!("{}.meta", image::image_file_name(&pot, &tag))))
            .unwrap_or_default();
    let parent = image::parse_meta(&meta);
    if let Some((ppot, ptag)) = &parent {
        let origin = undot(&format!("{ppot}_{ptag}"));
        ctx.info(format!("Pot {local} depends on {origin}"));
        if !state::is_pot(&ctx.config, &origin) {
            ctx.info(format!("Installing dependency {origin}"));
            let code = import(ctx, &words(&["-p", ppot, "-t", ptag, "-U", &url]));
            if code != 0 {
                return code;
            }
        } else {
            ctx.info(format!("{origin} already installed"));
        }
    } else {
        ctx.info(format!("Pot {local} has no dependencies"));
    }
    match receive(ctx, &local, &pot, &tag, parent.as_ref().map(|(p, t)| undot(&format!("{p}_{t}"))))
    {
        Ok(()) => 0,
        Err(e) => {
            ctx.error(format!("Failed to import {local}: {e}"));
            let _ = std::fs::remove_dir_all(PotPaths::new(&ctx.config, &local).dir);
            1
        }
    }
}

fn report_fetch(ctx: &mut Ctx, e: &FetchError) {
    ctx.error(e.to_string());
}

/// The `zfs receive` step: the parent's root (if any) is copied, then the image's tar is unpacked over
/// it, and a pot.conf is written (the stand-in's images carry only the jail root; see `image`).
fn receive(
    ctx: &mut Ctx,
    local: &str,
    pot: &str,
    tag: &str,
    origin: Option<String>,
) -> std::io::Result<()> {
    let paths = PotPaths::new(&ctx.config, local);
    std::fs::create_dir_all(paths.conf_dir())?;
    if let Some(o) = &origin {
        image::copy_tree(&PotPaths::new(&ctx.config, o).root(), &paths.root())?;
    }
    image::unpack(&ctx.config.cache, pot, tag, &paths.root())?;
    let ip =
        next_free_ip(ctx).ok_or_else(|| std::io::Error::other("no free IP left in POT_NETWORK"))?;
    let host = hostname();
    let mut conf = PotConf::default();
    conf.push("pot.level", "1");
    conf.push("pot.type", "single");
    conf.push("pot.base", "");
    conf.push("pot.potbase", "");
    conf.push("pot.dns", "inherit");
    conf.push("pot.cmd", "sh /etc/rc");
    conf.push("osrelease", "\"13.1-RELEASE\"");
    conf.push("pot.stack", "ipv4");
    conf.push("network_type", "public-bridge");
    conf.push("vnet", "true");
    conf.push("ip", &ip.to_string());
    // pot appends the host name twice here (import.sh: `${_hostname}.$( hostname )`); kept as is.
    conf.push("host.hostname", &format!("\"{local}.{host}.{host}\""));
    conf.save(&paths.pot_conf())?;
    ctx.info(format!("Assigning new IP: {ip}"));
    Ok(())
}

/// The host name, for `host.hostname`.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| {
            std::process::Command::new("hostname")
                .output()
                .ok()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        })
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

/// IPs already used by pots.
fn used_ips(ctx: &Ctx) -> Vec<Ipv4Addr> {
    state::pot_names(&ctx.config)
        .iter()
        .filter_map(|n| PotConf::load(&PotPaths::new(&ctx.config, n).pot_conf()).ok())
        .flat_map(|c| {
            c.get("ip").map(|v| {
                v.split_whitespace()
                    .filter_map(|w| w.rsplit('|').next()?.parse().ok())
                    .collect::<Vec<_>>()
            })
        })
        .flatten()
        .collect()
}

/// `potnet next`.
fn next_free_ip(ctx: &Ctx) -> Option<Ipv4Addr> {
    net::next_ip(ctx.config.network, &used_ips(ctx))
}

/// `potnet validate -H ip`: inside POT_NETWORK, not the network/gateway/broadcast address, not in use.
fn validate_ip(ctx: &Ctx, ip: &str) -> bool {
    let Ok(ip) = ip.parse::<Ipv4Addr>() else { return false };
    let (base, len) = ctx.config.network;
    let size = 1u32 << (32 - u32::from(len));
    let start = u32::from(base) & !(size - 1);
    let n = u32::from(ip);
    n >= start + 2 && n < start + size - 1 && !used_ips(ctx).contains(&ip)
}

/// `pot clone` (internal to prepare in practice).
pub fn clone(ctx: &mut Ctx, args: &[String]) -> i32 {
    let (opts, _) = match parse(ctx, "clone", "hvp:i:P:FN:B:S:f:ks:d:", args) {
        Parsed::Args(o, r) => (o, r),
        Parsed::Exit(c) => return c,
    };
    for o in &opts {
        let arg = o.arg.clone().unwrap_or_default();
        let err = match o.letter {
            'p' if !state::is_valid_potname(&arg) => Some(format!(
                "{arg} is not a valid name for a pot ('.' is the only character not allowed)"
            )),
            'N' if !NETWORK_TYPES.contains(&arg.as_str()) => {
                Some(format!("Network type {arg} not recognized"))
            }
            'S' if !["ipv4", "ipv6", "dual"].contains(&arg.as_str()) => {
                Some(format!("Network stack {arg} not valid"))
            }
            'f' => Some(format!("Flavour {arg} not found")),
            'd' => check_dns(&arg, false).err(),
            _ => None,
        };
        if let Some(e) = err {
            ctx.error(e);
            print_help(ctx, "clone");
            return 1;
        }
    }
    let name = last(&opts, 'p').unwrap_or_default();
    let base = last(&opts, 'P').unwrap_or_default();
    if name.is_empty() {
        ctx.error("pot name is missing (option -p)");
        print_help(ctx, "clone");
        return 1;
    }
    if base.is_empty() {
        ctx.error("reference pot name is missing (option -P)");
        print_help(ctx, "clone");
        return 1;
    }
    if !state::is_pot(&ctx.config, &base) {
        ctx.error(format!("reference pot {base} not found"));
        print_help(ctx, "clone");
        return 1;
    }
    if state::is_pot(&ctx.config, &name) {
        ctx.error(format!("pot {name} already exists"));
        print_help(ctx, "clone");
        return 1;
    }
    if let Some(snap) = last(&opts, 's') {
        if has(&opts, 'F') {
            ctx.error("-s and -F are incompatible - which snapshot should I use");
        } else {
            // The stand-in keeps no snapshots.
            ctx.error(format!("snapshot {snap} not found"));
        }
        print_help(ctx, "clone");
        return 1;
    }
    let base_paths = PotPaths::new(&ctx.config, &base);
    let Ok(base_conf) = PotConf::load(&base_paths.pot_conf()) else {
        ctx.error(format!("reference pot {base} not found"));
        return 1;
    };
    let network_type = match last(&opts, 'N')
        .or_else(|| base_conf.get("network_type").filter(|t| !t.is_empty()))
    {
        Some(t) => t,
        None => {
            ctx.error(format!("Configuration file for {base} contains obsolete elements"));
            ctx.error(format!("Please run pot update-config -p {base} to fix"));
            return 1;
        }
    };
    let stack = last(&opts, 'S')
        .or_else(|| base_conf.get("pot.stack"))
        .unwrap_or_else(|| "ipv4".to_string());
    let bridge = last(&opts, 'B').unwrap_or_default();
    let ip_arg = every(&opts, 'i').join(" ");
    let ip = match validate_network_param(ctx, &network_type, &ip_arg, &bridge, &stack) {
        Ok(ip) => ip,
        Err(e) => {
            ctx.error(e);
            print_help(ctx, "clone");
            return 1;
        }
    };
    let dns = last(&opts, 'd').or_else(|| base_conf.get("pot.dns")).unwrap_or_default();
    let paths = PotPaths::new(&ctx.config, &name);
    if let Err(e) = clone_files(
        &base_paths,
        &paths,
        &base_conf,
        &name,
        &network_type,
        &ip,
        &bridge,
        &stack,
        &dns,
    ) {
        ctx.error(format!("Not able to clone {base} as {name}: {e}"));
        let _ = std::fs::remove_dir_all(&paths.dir);
        return 1;
    }
    0
}

/// `_validate_network_param`: the IP (or IP list) the new pot gets, or the error message.
fn validate_network_param(
    ctx: &Ctx,
    network_type: &str,
    ip: &str,
    bridge: &str,
    stack: &str,
) -> Result<String, String> {
    match network_type {
        "inherit" => Ok(String::new()),
        "alias" => {
            if ip.is_empty() {
                return Err("option -i is mandatory with network type is alias".into());
            }
            if ip == "auto" {
                return Err("-i auto not usable with network type alias - a real IP address has to be provided".into());
            }
            let ok = ip.split_whitespace().all(|w| {
                w.rsplit('|').next().is_some_and(|a| a.parse::<std::net::IpAddr>().is_ok())
            });
            if !ok {
                return Err(format!("{ip} is not a valid alias configuration"));
            }
            Ok(ip.to_string())
        }
        "public-bridge" | "private-bridge" => {
            if network_type == "private-bridge" {
                if stack == "ipv6" {
                    return Err(
                        "private-bridge network type is not supported on ipv6 stack only".into()
                    );
                }
                if bridge.is_empty() {
                    return Err("private-bridge network type requires -B option, to specify which private bridge to use".into());
                }
                if !ctx.config.fs_root.join("bridges").join(bridge).is_file() {
                    return Err(format!(
                        "bridge {bridge} is not valid. Have you already created it?"
                    ));
                }
            }
            if ip.is_empty() || ip == "auto" {
                next_free_ip(ctx)
                    .map(|i| i.to_string())
                    .ok_or_else(|| "potnet next: no free IP address left".to_string())
            } else if validate_ip(ctx, ip) {
                Ok(ip.to_string())
            } else {
                Err(format!(
                    "The {ip} IP is not valid - run potnet validate -H {ip} for more information"
                ))
            }
        }
        other => Err(format!("Network type {other} not recognized")),
    }
}

/// `_cj_zfs` + `_cj_conf`: copy the root (a `zfs clone` in pot), rewrite the network keys of pot.conf,
/// copy hooks and resolv.conf.
#[allow(clippy::too_many_arguments)]
fn clone_files(
    base: &PotPaths,
    new: &PotPaths,
    base_conf: &PotConf,
    name: &str,
    network_type: &str,
    ip: &str,
    bridge: &str,
    stack: &str,
    dns: &str,
) -> std::io::Result<()> {
    image::copy_tree(&base.root(), &new.root())?;
    std::fs::create_dir_all(new.conf_dir())?;
    let mut conf = PotConf::default();
    // pot uses `grep -vE '^(host.hostname|bridge|ip|vnet|network_type|pot.stack|pot.dns)'`: a prefix match.
    let dropped = ["host.hostname", "bridge", "ip", "vnet", "network_type", "pot.stack", "pot.dns"];
    for line in base_conf.lines() {
        if !dropped.iter().any(|d| line.starts_with(d)) {
            let (k, v) = line.split_once('=').unwrap_or((line, ""));
            conf.push(k, v);
        }
    }
    conf.push("host.hostname", &format!("\"{}\"", usable_hostname(name)));
    conf.push("pot.stack", stack);
    conf.push("network_type", network_type);
    match network_type {
        "inherit" => conf.push("vnet", "false"),
        "alias" => {
            conf.push("vnet", "false");
            conf.push("ip", ip);
        }
        "public-bridge" => {
            conf.push("vnet", "true");
            conf.push("ip", ip);
        }
        _ => {
            conf.push("vnet", "true");
            conf.push("ip", ip);
            conf.push("bridge", bridge);
        }
    }
    let (dns, custom) = match dns.strip_prefix("custom:") {
        Some(file) => ("custom", Some(file)),
        None => (dns, None),
    };
    conf.push("pot.dns", dns);
    conf.save(&new.pot_conf())?;
    if let Some(file) = custom {
        std::fs::copy(file, new.conf_dir().join("resolv.conf"))?;
    }
    for f in
        ["prestart.sh", "poststart.sh", "prestop.sh", "poststop.sh", "resolv.conf", "fscomp.conf"]
    {
        let src = base.conf_dir().join(f);
        if src.exists() && !(f == "resolv.conf" && custom.is_some()) {
            std::fs::copy(src, new.conf_dir().join(f))?;
        }
    }
    Ok(())
}

/// `_get_usable_hostname`: `<name>.<host>` unless that exceeds 64 characters.
fn usable_hostname(name: &str) -> String {
    if name.len() > 64 {
        return name[..64].to_string();
    }
    let full = format!("{name}.{}", hostname());
    if full.len() > 64 {
        name.to_string()
    } else {
        full
    }
}
