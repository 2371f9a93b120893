//! The subcommands the driver uses, one function each, with pot's getopts strings, checks, messages and
//! exit codes. This module owns dispatch, the help texts and the shared option handling; the commands
//! live in `create` (prepare/import/clone), `settings` (the set-* family, mount-in, copy-in),
//! `lifecycle` (start/stop/destroy/signal/exec) and `query` (list/info/ps/…/version).

pub mod create;
pub mod lifecycle;
pub mod query;
pub mod settings;

use crate::getopts::{self, Opt};
use crate::Ctx;

/// The help text of each implemented subcommand (the usage lines of pot's `<cmd>-help`).
const HELP: &[(&str, &str)] = &[
    ("prepare", "pot prepare [-hvS] -p pot -U URL -t tag -a aID -n potname -c cmd\n            [-e [proto:]port[:pot_port]] [-N network-type]\n            [-i ipaddr] [-B bridge-name] [-C pubkey]\n  -d dns (inherit|pot|custom:<file>|off)  -s start immediately  -S stack (ipv4|ipv6|dual)"),
    ("import", "pot import [-hv] -p pot -t tag -U URL [-C pubkey]"),
    ("clone", "pot clone [-hvF] -p potname -P basepot [-i ipaddr] [-N network-type] [-B bridge]\n          [-S network-stack] [-d dns] [-s snapshot] [-f flavour] [-k]"),
    ("set-cmd", "pot set-cmd [-hv] -p pot -c cmd"),
    ("set-attribute", "pot set-attribute [-hv] -p pot -A attr -V value"),
    ("export-ports", "pot export-ports [-hv] -p pot [-S] -e [proto:]port[:pot_port] ..."),
    ("copy-in", "pot copy-in [-hv] -p pot -s source -d destination [-F] [-c]"),
    ("mount-in", "pot mount-in [-hvwr] -p pot -m mnt -f fscomp | -d directory | -z dataset"),
    ("set-env", "pot set-env [-hv] -p pot -E VAR=value ..."),
    ("set-hosts", "pot set-hosts [-hv] -p pot -H hostname:IP ..."),
    ("set-rss", "pot set-rss [-hv] -p pot [-C cpus] [-M memory]"),
    ("start", "pot start [-hvsS] [-p] potname"),
    ("stop", "pot stop [-hv] [-i interfaces] [-s] -p potname | potname"),
    ("destroy", "pot destroy [-hvFrq] [-p potname|-b basename|-f fscomp|-B bridge]"),
    ("list", "pot list [-hvbfFBaq]"),
    ("info", "pot info [-hvqrEs] [-p pname|-B bname]"),
    ("ps", "pot ps [-hvq]"),
    ("last-run-stats", "pot last-run-stats [-hv] -p pname"),
    ("get-rss", "pot get-rss [-hv] -p pot [-J]"),
    ("signal", "pot signal [-hvflC] [-s signal] [-P pid|-m pattern] -p pot"),
    ("exec", "pot exec [-hvdt] [-e var=value] [-u username|-U username] -p pot COMMAND [ARGS...]"),
    ("version", "pot version [-hvq]"),
];

/// Whether the stand-in implements `cmd` (after alias resolution).
pub fn is_known(cmd: &str) -> bool {
    HELP.iter().any(|(c, _)| *c == cmd)
}

/// The help text of `cmd`, for `pot help <cmd>` and `-h`.
pub fn help(cmd: &str) -> Option<&'static str> {
    let cmd = match cmd {
        "ls" => "list",
        "set-attr" => "set-attribute",
        other => other,
    };
    HELP.iter().find(|(c, _)| *c == cmd).map(|(_, h)| *h)
}

/// The commands pot runs under the global lock (`lockf -k /tmp/pot-lock-file`).
const LOCKED: &[&str] = &["prepare", "import", "clone", "copy-in"];

/// Runs an implemented subcommand; `cmd` is already resolved from aliases.
pub fn run(ctx: &mut Ctx, cmd: &str, args: &[String]) -> i32 {
    let _lock = if LOCKED.contains(&cmd) {
        match crate::state::global_lock(&ctx.config) {
            Ok(l) => Some(l),
            Err(e) => {
                ctx.error(format!("Not able to take the global lock: {e}"));
                return 1;
            }
        }
    } else {
        None
    };
    run_unlocked(ctx, cmd, args)
}

/// Runs a subcommand without taking the global lock: pot's nested `pot-cmd` calls (prepare → import,
/// clone, set-cmd, …) run with `_POT_RECURSIVE=1` and do not lock again.
pub fn run_unlocked(ctx: &mut Ctx, cmd: &str, args: &[String]) -> i32 {
    match cmd {
        "prepare" => create::prepare(ctx, args),
        "import" => create::import(ctx, args),
        "clone" => create::clone(ctx, args),
        "set-cmd" => settings::set_cmd(ctx, args),
        "set-attribute" => settings::set_attribute(ctx, args),
        "export-ports" => settings::export_ports(ctx, args),
        "copy-in" => settings::copy_in(ctx, args),
        "mount-in" => settings::mount_in(ctx, args),
        "set-env" => settings::set_env(ctx, args),
        "set-hosts" => settings::set_hosts(ctx, args),
        "set-rss" => settings::set_rss(ctx, args),
        "start" => lifecycle::start(ctx, args),
        "stop" => lifecycle::stop(ctx, args),
        "destroy" => lifecycle::destroy(ctx, args),
        "signal" => lifecycle::signal(ctx, args),
        "exec" => lifecycle::exec(ctx, args),
        "list" => query::list(ctx, args),
        "info" => query::info(ctx, args),
        "ps" => query::ps(ctx, args),
        "last-run-stats" => query::last_run_stats(ctx, args),
        "get-rss" => query::get_rss(ctx, args),
        "version" => query::version(ctx, args),
        _ => {
            ctx.print(crate::USAGE);
            1
        }
    }
}

/// The outcome of a command's option loop.
pub enum Parsed {
    /// Options other than `-h`/`-v`, and the operands.
    Args(Vec<Opt>, Vec<String>),
    /// `-h` was given or parsing failed: the command must exit with this code (help already printed).
    Exit(i32),
}

/// Runs getopts with `spec` the way every pot command's loop does: `-h` prints help and exits 0, `-v`
/// raises verbosity, an unknown option or missing argument prints help and exits 1 (the shell's own
/// getopts diagnostic goes to stderr).
pub fn parse(ctx: &mut Ctx, cmd: &str, spec: &str, args: &[String]) -> Parsed {
    match getopts::parse(spec, args) {
        Err(e) => {
            let _ = writeln!(ctx.err, "pot: {e}");
            print_help(ctx, cmd);
            Parsed::Exit(1)
        }
        Ok((opts, rest)) => {
            let mut kept = Vec::new();
            for o in opts {
                match o.letter {
                    // In pot, `-h` exits at once, in option order; options after it are not seen.
                    'h' => {
                        print_help(ctx, cmd);
                        return Parsed::Exit(0);
                    }
                    'v' => ctx.verbosity += 1,
                    _ => kept.push(o),
                }
            }
            Parsed::Args(kept, rest)
        }
    }
}

/// Prints a command's help text on stdout.
pub fn print_help(ctx: &mut Ctx, cmd: &str) {
    if let Some(h) = help(cmd) {
        ctx.print(h);
    }
}

/// The last value of option `letter` (shell variables are overwritten by a repeated option).
pub fn last(opts: &[Opt], letter: char) -> Option<String> {
    opts.iter().rev().find(|o| o.letter == letter).and_then(|o| o.arg.clone())
}

/// Every value of option `letter`, in order (for options pot accumulates, like `-e` and `-E`).
pub fn every(opts: &[Opt], letter: char) -> Vec<String> {
    opts.iter().filter(|o| o.letter == letter).filter_map(|o| o.arg.clone()).collect()
}

/// Whether flag `letter` was given.
pub fn has(opts: &[Opt], letter: char) -> bool {
    opts.iter().any(|o| o.letter == letter)
}

/// Words for a nested call, e.g. `words(&["-p", name])`.
pub fn words(w: &[&str]) -> Vec<String> {
    w.iter().map(|s| s.to_string()).collect()
}
