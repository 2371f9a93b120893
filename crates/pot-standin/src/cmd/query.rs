//! The read-only commands: `list`/`ls`, `info`, `ps`, `last-run-stats`, `get-rss`, `version`. It owns
//! their output formats; it changes nothing.

use super::{has, last, parse, print_help, Parsed};
use crate::potconf::{self, PotConf};
use crate::state::{self, PotPaths};
use crate::{jail, Ctx};

/// pot's `_is_verbose`: verbosity above the default.
fn verbose(ctx: &Ctx) -> bool {
    ctx.verbosity > 1
}

/// `pot list|ls [-hvbfFapqB]`. The stand-in has pots only, so bases, fscomps, flavours and bridges list
/// as empty.
pub fn list(ctx: &mut Ctx, args: &[String]) -> i32 {
    let opts = match parse(ctx, "list", "hvbfFapqB", args) {
        Parsed::Args(o, _) => o,
        Parsed::Exit(c) => return c,
    };
    let kinds: Vec<char> =
        opts.iter().map(|o| o.letter).filter(|c| "bpfFBa".contains(*c)).collect();
    if kinds.len() > 1 {
        ctx.error("Options -b -p -f -F -B -a are mutually exclusive");
        print_help(ctx, "list");
        return 1;
    }
    let quiet = has(&opts, 'q');
    let kind = kinds.first().copied().unwrap_or('p');
    if kind == 'a' && quiet {
        ctx.error("Options -a and -q are incompatible");
        print_help(ctx, "list");
        return 1;
    }
    if kind == 'p' || kind == 'a' {
        let names = state::pot_names(&ctx.config);
        if names.is_empty() && !quiet {
            ctx.print("No pot created yet...");
        }
        for n in names {
            if quiet {
                ctx.print(&n);
            } else {
                ls_info(ctx, &n);
            }
        }
    }
    0
}

fn ls_info(ctx: &mut Ctx, name: &str) {
    let conf = PotConf::load(&PotPaths::new(&ctx.config, name).pot_conf()).unwrap_or_default();
    let nt = conf.get("network_type").unwrap_or_default();
    ctx.print(format!("pot name : {name}"));
    ctx.print(format!("\tnetwork : {nt}"));
    if nt != "inherit" {
        ctx.print(format!("\tip : {}", jail::pot_ip(&conf)));
    }
    ctx.print(format!("\tactive : {}", state::is_running(&ctx.config, name)));
    if verbose(ctx) {
        ctx.print(format!("\tbase : {}", conf.get("pot.base").unwrap_or_default()));
        ctx.print(format!("\tlevel : {}", conf.get("pot.level").unwrap_or_default()));
        ctx.print("\tdatasets:");
        print_fscomp(ctx, name);
        ctx.print("\tsnapshot:");
    }
    ctx.print("");
}

fn print_fscomp(ctx: &mut Ctx, name: &str) {
    for e in potconf::load_fscomp(&PotPaths::new(&ctx.config, name).fscomp()).unwrap_or_default() {
        ctx.print(format!("\t\t{} => {}", e.source, e.mountpoint));
    }
}

/// `pot info [-hvqrEs] [-p pname|-B bname]`.
pub fn info(ctx: &mut Ctx, args: &[String]) -> i32 {
    let opts = match parse(ctx, "info", "hvqp:rB:Es", args) {
        Parsed::Args(o, _) => o,
        Parsed::Exit(c) => return c,
    };
    let name = last(&opts, 'p').unwrap_or_default();
    let bridge = last(&opts, 'B').unwrap_or_default();
    let quiet = has(&opts, 'q');
    if name.is_empty() && bridge.is_empty() {
        ctx.error("Option -p or -b are mandatory");
        print_help(ctx, "info");
        return 1;
    }
    if !name.is_empty() && !bridge.is_empty() {
        ctx.error("Option -p and -b are mutually exclusive");
        print_help(ctx, "info");
        return 1;
    }
    if quiet && verbose(ctx) {
        ctx.error("Option -q and -v are mutually exclusive");
        print_help(ctx, "info");
        return 1;
    }
    if has(&opts, 'E') && !bridge.is_empty() {
        ctx.error("Environment variable output available for pot only");
        print_help(ctx, "info");
        return 1;
    }
    if !bridge.is_empty() {
        if !quiet {
            ctx.error(format!("{bridge} is not a bridge"));
        }
        return 1;
    }
    if !state::is_pot(&ctx.config, &name) {
        if !quiet {
            ctx.error(format!("{name} is not a pot"));
            print_help(ctx, "info");
        }
        return 1;
    }
    if has(&opts, 'r') {
        return if state::is_running(&ctx.config, &name) { 0 } else { 1 };
    }
    if quiet {
        return 0;
    }
    let conf = PotConf::load(&PotPaths::new(&ctx.config, &name).pot_conf()).unwrap_or_default();
    if has(&opts, 's') {
        // No snapshots in the stand-in.
        return 0;
    }
    if has(&opts, 'E') {
        for l in jail::info_env_lines(&name, &conf) {
            ctx.print(l);
        }
        return 0;
    }
    let nt = conf.get("network_type").unwrap_or_default();
    ctx.print(format!("pot name : {name}"));
    ctx.print(format!("\ttype : {}", conf.get("pot.type").unwrap_or_default()));
    ctx.print(format!("\tbase : {}", conf.get("pot.base").unwrap_or_default()));
    ctx.print(format!("\tlevel : {}", conf.get("pot.level").unwrap_or_default()));
    ctx.print(format!("\tnetwork_type : {nt}"));
    if nt != "inherit" {
        ctx.print(format!("\tip : {}", jail::pot_ip(&conf)));
        if nt == "private-bridge" {
            ctx.print(format!("\tbridge : {}", conf.get("bridge").unwrap_or_default()));
        }
        if verbose(ctx) {
            match conf.raw("pot.export.ports").filter(|p| !p.is_empty()) {
                Some(p) => ctx.print(format!("\t\texported ports: {p}")),
                None => ctx.print("\t\tno ports exported"),
            }
        }
    }
    ctx.print(format!("\tactive : {}", state::is_running(&ctx.config, &name)));
    if verbose(ctx) {
        ctx.print("\tdatasets:");
        ctx.print(format!("\t\t{name}/m"));
        print_fscomp(ctx, &name);
        ctx.print("\tsnapshots:");
    }
    ctx.print("\tattributes:");
    for a in [
        "start-at-boot",
        "early-start-at-boot",
        "persistent",
        "no-rc-script",
        "prunable",
        "localhost-tunnel",
        "no-tmpfs",
        "no-etc-hosts",
        "to-be-pruned",
    ] {
        ctx.print(format!(
            "\t\t{a}: {}",
            conf.get(&format!("pot.attr.{a}"))
                .filter(|v| !v.is_empty())
                .unwrap_or_else(|| "NO".into())
        ));
    }
    ctx.print("\tjail attributes:");
    for (a, default) in [
        ("enforce_statfs", "2"),
        ("mount", "NO"),
        ("fdescfs", "NO"),
        ("linprocfs", "NO"),
        ("nullfs", "NO"),
        ("procfs", "NO"),
        ("tmpfs", "NO"),
        ("zfs", "NO"),
        ("raw_sockets", "NO"),
        ("sysvshm", "new"),
        ("sysvsem", "new"),
        ("sysvmsg", "new"),
        ("children", "0"),
        ("mlock", "NO"),
        ("devfs_ruleset", "4"),
        ("exec_stop", "NO"),
        ("stop_timeout", "10"),
    ] {
        let v = conf
            .get(&format!("pot.attr.{a}"))
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| default.into());
        ctx.print(format!("\t\t{a}: {v}"));
    }
    if verbose(ctx) {
        let cpus = conf.get("pot.rss.cpus").unwrap_or_default();
        let mem = conf.get("pot.rss.memory").unwrap_or_default();
        if !cpus.is_empty() || !mem.is_empty() {
            ctx.print("\tresource limits:");
            if !cpus.is_empty() {
                ctx.print(format!("\t\tmax amount cpus: {cpus}"));
            }
            if !mem.is_empty() {
                ctx.print(format!("\t\tmax amount memory: {mem}"));
            }
        }
    }
    ctx.print("");
    0
}

/// `pot ps [-hvq]`: the running pots. Without `-q` pot first reports the internal network; the
/// stand-in has none to inspect and says the network is up.
pub fn ps(ctx: &mut Ctx, args: &[String]) -> i32 {
    let opts = match parse(ctx, "ps", "hvq", args) {
        Parsed::Args(o, _) => o,
        Parsed::Exit(c) => return c,
    };
    if !has(&opts, 'q') {
        ctx.info("Internal network up");
    }
    for n in state::pot_names(&ctx.config) {
        if state::is_running(&ctx.config, &n) {
            ctx.print(n);
        }
    }
    0
}

/// `pot last-run-stats [-hv] -p pname`: `conf/.last_run_stats` verbatim, or `{}`.
pub fn last_run_stats(ctx: &mut Ctx, args: &[String]) -> i32 {
    let opts = match parse(ctx, "last-run-stats", "hvp:", args) {
        Parsed::Args(o, _) => o,
        Parsed::Exit(c) => return c,
    };
    let name = last(&opts, 'p').unwrap_or_default();
    if name.is_empty() {
        ctx.error("A pot name is mandatory");
        print_help(ctx, "last-run-stats");
        return 1;
    }
    if !state::is_pot(&ctx.config, &name) {
        ctx.error(format!("{name} is not a pot"));
        return 1;
    }
    match std::fs::read_to_string(PotPaths::new(&ctx.config, &name).last_run_stats()) {
        Ok(text) => {
            let _ = ctx.out.write_all(text.as_bytes());
        }
        Err(_) => ctx.print("{}"),
    }
    0
}

/// `pot get-rss [-hv] -p pot [-J]`. pot reads `rctl -u jail:NAME`; the stand-in reads the main process
/// from `/proc` (Linux only; elsewhere it fails like pot without racct). Swap is reported as 0.
pub fn get_rss(ctx: &mut Ctx, args: &[String]) -> i32 {
    let opts = match parse(ctx, "get-rss", "hvp:J", args) {
        Parsed::Args(o, _) => o,
        Parsed::Exit(c) => return c,
    };
    let name = last(&opts, 'p').unwrap_or_default();
    if name.is_empty() {
        ctx.error("A pot name is mandatory");
        print_help(ctx, "get-rss");
        return 1;
    }
    if !state::is_running(&ctx.config, &name) {
        ctx.error(format!("The pot {name} is not running"));
        return 1;
    }
    let Some(usage) = state::main_pid(&ctx.config, &name).and_then(usage_of) else {
        ctx.error("To get resource usage, rctl has to be enabled");
        return 1;
    };
    let clock_mhz = cpu_clock_mhz();
    // rctl reports pcpu as a whole percent, and pot computes the "ticks" with `bc` at scale 3, which
    // prints a plain `0` for zero.
    let pcpu = usage.pcpu.round() as u64;
    let ticks =
        if pcpu == 0 { "0".to_string() } else { format!("{:.3}", clock_mhz * pcpu as f64 / 100.0) };
    if has(&opts, 'J') {
        ctx.print(format!(
            "{{ \"ResourceUsage\": {{ \"MemoryStats\": {{ \"RSS\" : {}, \"Swap\" : 0 }}, \"CpuStats\": {{ \"TotalTicks\": {}, \"Percent\": {} }} }} }} ",
            usage.rss_bytes, ticks, pcpu
        ));
    } else {
        ctx.print(format!("Resource usage by the pot {name}"));
        ctx.print(format!("\tcpu time (ticks spent) : {}", usage.cpu_ticks));
        ctx.print(format!("\tcpu time (MHz)         : {ticks}"));
        ctx.print(format!("\tpcpu (%)               : {pcpu}"));
        ctx.print(format!("\tvirtual memory         : {}", usage.vsize_bytes));
        ctx.print(format!("\tphysical memory        : {}", usage.rss_bytes));
        ctx.print("\tswap memory            : 0");
    }
    0
}

/// What get-rss reports about a process.
#[derive(Debug, Clone, PartialEq)]
pub struct Usage {
    pub rss_bytes: u64,
    pub vsize_bytes: u64,
    pub cpu_ticks: u64,
    /// CPU percent averaged over the process's life, as `ps -o pcpu` computes it on Linux.
    pub pcpu: f64,
}

/// Reads `/proc/<pid>/stat` (Linux).
pub fn usage_of(pid: i32) -> Option<Usage> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces; the fields after its closing parenthesis are fixed.
    let after = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    // After the name: state is field 3 of stat(5), so index = field - 3.
    let num = |field: usize| -> Option<u64> { f.get(field - 3)?.parse().ok() };
    let (utime, stime, start, vsize, rss_pages) =
        (num(14)?, num(15)?, num(22)?, num(23)?, num(24)?);
    let hz = rustix::param::clock_ticks_per_second() as f64;
    let uptime: f64 =
        std::fs::read_to_string("/proc/uptime").ok()?.split_whitespace().next()?.parse().ok()?;
    let elapsed = (uptime - start as f64 / hz).max(0.01);
    let cpu_ticks = utime + stime;
    let pcpu = (cpu_ticks as f64 / hz / elapsed * 100.0).min(100.0 * available_cpus());
    Some(Usage {
        rss_bytes: rss_pages * rustix::param::page_size() as u64,
        vsize_bytes: vsize,
        cpu_ticks,
        pcpu,
    })
}

fn available_cpus() -> f64 {
    std::thread::available_parallelism().map(|n| n.get() as f64).unwrap_or(1.0)
}

/// `sysctl hw.clockrate`: the first `cpu MHz` of /proc/cpuinfo, else 1000.
fn cpu_clock_mhz() -> f64 {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("cpu MHz"))
                .and_then(|l| l.split(':').nth(1))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(1000.0)
}

/// `pot version [-hvq]`; `POT_STANDIN_VERSION` overrides the version for fingerprint tests.
pub fn version(ctx: &mut Ctx, args: &[String]) -> i32 {
    let opts = match parse(ctx, "version", "hvq", args) {
        Parsed::Args(o, _) => o,
        Parsed::Exit(c) => return c,
    };
    let v = std::env::var("POT_STANDIN_VERSION")
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| crate::POT_VERSION.to_string());
    if has(&opts, 'q') {
        ctx.print(v);
    } else {
        ctx.print(format!("pot version: {v}"));
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_of_self_is_sane() {
        let u = usage_of(std::process::id() as i32).expect("/proc is readable on Linux");
        assert!(u.rss_bytes > 0 && u.vsize_bytes >= u.rss_bytes, "{u:?}");
        assert!(u.pcpu >= 0.0);
    }
}
