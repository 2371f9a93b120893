//! A stand-in for FreeBSD's `pot` jail CLI (0.16.0) that runs on Linux without jails, ZFS or pf, so orc's
//! pot driver can be tested against the exact argv grammar, exit codes, stdout messages and on-disk state
//! that real pot has. It owns the command dispatch and the message format; the subcommands live in `cmd`.
//!
//! What differs from real pot, on purpose (each module says more):
//! - no root needed (real pot refuses most commands without uid 0); no jail: the pot's command runs as an
//!   ordinary process group with cwd = the jail root `m/` and an environment made only of `pot.env`,
//!   `_POT_NAME`, `_POT_IP` and a PATH that prefers the jail's bin dirs; absolute paths are the host's;
//! - images are xz-compressed tars of the jail root instead of ZFS streams; only `file://` URLs;
//! - `mount-in -d` becomes a symlink at start (read-only is recorded, not enforced);
//! - pf `rdr` becomes a user-space TCP/UDP forwarder inside `pot start`; each pot gets a loopback IP;
//! - the status file is never treated as stale after a reboot; rctl limits are recorded, not enforced.

pub mod cmd;
pub mod config;
pub mod getopts;
pub mod image;
pub mod jail;
pub mod net;
pub mod potconf;
pub mod state;

use std::io::Write;

pub use config::Config;

/// The pot version the stand-in reports; `POT_STANDIN_VERSION` overrides it for fingerprint tests.
pub const POT_VERSION: &str = "0.16.0";

/// What one command invocation works with: the configuration, the verbosity and the output streams.
pub struct Ctx<'a> {
    pub config: Config,
    /// pot's `_POT_VERBOSITY`: 1 by default, +1 per `-v`. Errors show at 0 and above.
    pub verbosity: u32,
    pub out: &'a mut dyn Write,
    pub err: &'a mut dyn Write,
}

impl Ctx<'_> {
    /// `###>  msg` (pot writes `echo "###> " "$@"`, hence two spaces).
    pub fn error(&mut self, msg: impl AsRef<str>) {
        let _ = writeln!(self.out, "###>  {}", msg.as_ref());
    }
    /// `===>  msg`, shown at verbosity 1 and above.
    pub fn info(&mut self, msg: impl AsRef<str>) {
        if self.verbosity >= 1 {
            let _ = writeln!(self.out, "===>  {}", msg.as_ref());
        }
    }
    /// `=====>  msg`, shown with `-v`.
    pub fn debug(&mut self, msg: impl AsRef<str>) {
        if self.verbosity >= 2 {
            let _ = writeln!(self.out, "=====>  {}", msg.as_ref());
        }
    }
    /// Plain output line (query results).
    pub fn print(&mut self, line: impl AsRef<str>) {
        let _ = writeln!(self.out, "{}", line.as_ref());
    }
    pub fn flush(&mut self) {
        let _ = self.out.flush();
        let _ = self.err.flush();
    }
}

/// pot's top-level usage text (bin/pot `usage`).
pub const USAGE: &str = "Usage: pot command [options]

Commands:
    help    -- Show help
    version -- Show version of the pot command
    config  -- Show pot framework configuration
    ls/list -- List of the installed pots
    show    -- Show information on pots
    info    -- Print minimal information on a pot
    top     -- Run top(1) inside the pot
    ps      -- Show running pots
    init    -- Initialize the ZFS layout
    de-init -- Remove pot from your system
    vnet-start -- Start vnet configuration
    create-base -- Create a new base image
    create-fscomp -- Create a new fs component
    create-private-bridge -- Create a new private bridge
    create -- Create a new pot (jail)
    clone -- Clone a pot, creating a new one
    clone-fscomp -- Clone an fscomp
    rename -- Rename a pot
    destroy -- Destroy a pot
    prune   -- Destroy non-running, prunable pots
    copy-in -- Copy a file or a directory into a pot
    copy-out -- Copy a file or a directory out of a pot
    mount-in -- Mount directory, ZFS dataset, or fscomp into a pot
    mount-out -- Unmount directory, ZFS dataset, or fscomp from a pot
    add-dep -- Add a dependency
    set-rss -- Set a resource constraint
    get-rss -- Get the current resource usage
    set-cmd -- Set the command to start the pot
    set-env -- Set environment variables inside a pot
    set-hosts -- Set /etc/hosts entries inside a pot
    set-hook -- Set hook scripts for a pot
    set-attribute/set-attr -- Set an attribute on a pot
    get-attribute/set-attr -- Get an attribute from a pot
    export-ports -- Allows exposing tcp and udp ports
    start -- Start a pot (jail)
    stop -- Stop a pot (jail)
    term -- Open terminal inside of a pot
    run -- Same as term, but start pot if it is not running
    snap/snapshot -- Take a snapshot of a pot
    rollback/revert -- Restore the latest snapshot
    purge-snapshots -- Remove old/all snapshots
    export -- Export a pot to a file
    import -- Import a pot from a file or a URL
    prepare -- Import and prepare a pot, used by orchestrators
    update-config -- Update the configuration of a pot
    last-run-stats -- Get statistics about a pot's last run
    signal -- Send signal to pot
    exec -- Execute a progam inside of a pot";

/// Subcommands real pot has that the stand-in does not implement; they fail with a clear message
/// instead of the usage text, so a test hitting one knows why.
const NOT_IMPLEMENTED: &[&str] = &[
    "show",
    "config",
    "top",
    "init",
    "de-init",
    "vnet-start",
    "create-base",
    "create-fscomp",
    "create",
    "create-private-bridge",
    "copy-out",
    "mount-out",
    "prune",
    "set-hook",
    "add-dep",
    "export",
    "get-attribute",
    "term",
    "rename",
    "clone-fscomp",
    "promote",
    "snapshot",
    "revert",
    "purge-snapshots",
    "update-config",
    "set-status",
    "run",
];

/// Runs one `pot` invocation (`args` without the program name) and returns its exit code. Messages go
/// to `out` (pot prints even errors on stdout); `err` only gets what pot sends to stderr.
pub fn run(args: &[String], out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    let config = Config::from_env();
    run_with(config, args, out, err)
}

/// `run` with an explicit configuration, for in-process tests.
pub fn run_with(config: Config, args: &[String], out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    let mut ctx = Ctx { config, verbosity: 1, out, err };
    let code = dispatch(&mut ctx, args);
    ctx.flush();
    code
}

fn dispatch(ctx: &mut Ctx, args: &[String]) -> i32 {
    let Some((cmd, rest)) = args.split_first() else {
        ctx.print(USAGE);
        return 1;
    };
    let cmd = match cmd.as_str() {
        "ls" => "list",
        "set-attr" => "set-attribute",
        "get-attr" => "get-attribute",
        "snap" => "snapshot",
        "rollback" => "revert",
        other => other,
    };
    if cmd == "help" {
        match rest.first() {
            Some(sub) => match cmd::help(sub) {
                Some(h) => ctx.print(h),
                None => {
                    ctx.error(format!("Fatal error! {sub} implementation not found!"));
                    return 1;
                }
            },
            None => ctx.print(USAGE),
        }
        return 0;
    }
    if !cmd::is_known(cmd) && !NOT_IMPLEMENTED.contains(&cmd) {
        ctx.print(USAGE);
        return 1;
    }
    if cmd != "version" {
        // pot-cmd: the only messages pot writes to stderr.
        let root = ctx.config.fs_root.clone();
        if !root.is_dir() {
            let _ =
                writeln!(ctx.err, "###>  {} does not exist, please run 'pot init'", root.display());
            return 1;
        }
        if std::fs::read_dir(&root).is_err() {
            let _ =
                writeln!(ctx.err, "###>  Current user has no read access to {}", root.display());
            return 1;
        }
    }
    if NOT_IMPLEMENTED.contains(&cmd) {
        ctx.error(format!("pot {cmd} is not implemented by the pot stand-in"));
        return 1;
    }
    cmd::run(ctx, cmd, rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_in(config: &Config, args: &[&str]) -> (i32, String, String) {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = run_with(config.clone(), &args, &mut out, &mut err);
        (code, String::from_utf8(out).unwrap(), String::from_utf8(err).unwrap())
    }

    #[test]
    fn runs_in_process_with_an_explicit_config() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config::under(dir.path());
        // No POT_FS_ROOT yet: pot-cmd's check writes to stderr.
        let (code, out, err) = run_in(&config, &["ls", "-q"]);
        assert_eq!((code, out.as_str()), (1, ""));
        assert!(
            err.starts_with("###>  ") && err.contains("does not exist, please run 'pot init'"),
            "{err}"
        );
        std::fs::create_dir_all(dir.path().join("pot/jails")).unwrap();
        assert_eq!(
            run_in(&config, &["ls"]),
            (0, "No pot created yet...\n".to_string(), String::new())
        );
        assert_eq!(run_in(&config, &["ps", "-q"]), (0, String::new(), String::new()));
        let (code, out, _) = run_in(&config, &["bogus"]);
        assert_eq!(code, 1);
        assert!(out.starts_with("Usage: pot command [options]"));
        let (code, out, _) = run_in(&config, &["set-env", "-p", "x", "-E", "A"]);
        assert_eq!(code, 1);
        assert!(
            out.starts_with("###>  A not in a valid form\n###>  VARIABLE=value is accetped\n"),
            "{out}"
        );
    }
}
