//! Argument handling: usage, unknown commands, required options, value validation, and messages on
//! stdout with pot's prefixes. It checks rejections only; lifecycle and files are tested elsewhere.

use crate::harness::{Env, POT};

#[test]
fn no_arguments_and_unknown_commands_print_usage_and_exit_1() {
    let env = Env::new();
    let r = env.pot(&[]);
    r.code(1).line("Usage: pot command [options]");
    let r = env.pot(&["frobnicate"]);
    r.code(1).line("Usage: pot command [options]");
    // `help` is a command: usage and 0; `help <cmd>` shows that command's help.
    env.pot(&["help"]).code(0).line("Usage: pot command [options]");
    env.pot(&["help", "set-rss"]).code(0).line("pot set-rss [-hv] -p pot [-C cpus] [-M memory]");
    env.pot(&["set-rss", "-h"]).code(0).line("pot set-rss [-hv] -p pot [-C cpus] [-M memory]");
    // A real pot command the stand-in lacks says so instead of pretending.
    env.pot(&["snapshot", "-p", "x"])
        .code(1)
        .line("###>  pot snapshot is not implemented by the pot stand-in");
}

#[test]
fn version_needs_no_root_dir_and_can_be_overridden() {
    let out = std::process::Command::new(POT)
        .args(["version"])
        .env("POT_FS_ROOT", "/nonexistent/pot-standin")
        .env_remove("POT_STANDIN_VERSION")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "pot version: 0.16.0\n");
    let env = Env::new();
    let r = env.command(&["version", "-q"]).env("POT_STANDIN_VERSION", "0.15.5").output().unwrap();
    assert_eq!(String::from_utf8_lossy(&r.stdout), "0.15.5\n");
    env.pot(&["version", "-x"]).code(1);
}

#[test]
fn a_missing_root_is_reported_on_stderr() {
    let out = std::process::Command::new(POT)
        .args(["ls", "-q"])
        .env("POT_FS_ROOT", "/nonexistent/pot-standin")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "###>  /nonexistent/pot-standin does not exist, please run 'pot init'\n"
    );
}

#[test]
fn prepare_requires_pot_tag_and_allocation() {
    let env = Env::new();
    let url = env.registry_url();
    env.pot(&["prepare", "-U", &url, "-t", "1.0", "-a", "a1", "-n", "t"])
        .code(1)
        .line("###>  A pot name is mandatory");
    env.pot(&["prepare", "-U", &url, "-p", "app", "-a", "a1"])
        .code(1)
        .line("###>  A tag is mandatory");
    env.pot(&["prepare", "-U", &url, "-p", "app", "-t", "1.0"])
        .code(1)
        .line("###>  An allocation id is mandatory");
    env.pot(&["prepare", "-p", "app", "-t", "1.0", "-a", "x", "-N", "private-bridge"])
        .code(1)
        .line(
            "###>  A bridge name has to be provided if private-bridge is selected as network-type",
        );
    // An option that needs an argument and has none, or an unknown option: help and 1.
    let r = env.pot(&["prepare", "-p"]);
    r.code(1);
    assert!(r.stdout.starts_with("pot prepare [-hvS]"), "{}", r.stdout);
    env.pot(&["prepare", "-Z"]).code(1);
    assert!(env.pot(&["ls", "-q"]).stdout.is_empty(), "nothing was created");
}

#[test]
fn prepare_validates_ports_network_types_stack_and_dns_in_option_order() {
    let env = Env::new();
    let base = ["prepare", "-U", "file:///x", "-p", "app", "-t", "1.0", "-a", "a1"];
    let with = |extra: &[&str]| {
        let mut a: Vec<&str> = base.to_vec();
        a.extend_from_slice(extra);
        env.pot(&a)
    };
    // What nomad-pot-driver sends for a port label with no Nomad port: `-e 80:`.
    with(&["-e", "80:"]).code(1).line("###>  80: is not a valid port number");
    with(&["-e", "0:8080"]).code(1).line("###>  0:8080 is not a valid port number");
    with(&["-e", "80:65536"]).code(1).line("###>  80:65536 is not a valid port number");
    with(&["-e", "sctp:80:8080"]).code(1).line("###>  sctp:80:8080 is not a valid port number");
    with(&["-N", "bridge"]).code(1).line("###>  Network type bridge not recognized");
    with(&["-S", "ipv5"]).code(1).line("###>  Network stack ipv5 not valid");
    // pot prints `'${OPTART}'`, a typo, so the value never shows.
    with(&["-d", "google"]).code(1).line("###>  '' is not a valid dns option");
    with(&["-d", "custom:/nonexistent/resolv"])
        .code(1)
        .line("###>  The file /nonexistent/resolv is not valid or readable");
    // The first bad option in argv order is the one reported.
    with(&["-N", "bogus", "-e", "x"]).code(1).line("###>  Network type bogus not recognized");
}

#[test]
fn import_failures() {
    let env = Env::new();
    env.pot(&["import", "-p", "app", "-t", "1.0", "-U", ""])
        .code(1)
        .line("###>  Argument of -U cannot be empty");
    env.pot(&["import", "-t", "1.0", "-U", "file:///x"])
        .code(1)
        .line("###>  A remote pot name is mandatory");
    env.pot(&["import", "-p", "app", "-U", "file:///x"])
        .code(1)
        .line("###>  A tag name is mandatory");
    let r = env.pot(&[
        "import",
        "-p",
        "app",
        "-t",
        "1.0",
        "-U",
        "https://potluck.honeyguide.net/nginx-nomad",
    ]);
    r.code(1).line("===>  importing app @ 1.0 as app_1_0");
    assert!(
        r.stdout.contains(
            "###>  fetch https://potluck.honeyguide.net/nginx-nomad/app_1.0.xz.skein failed"
        ),
        "{}",
        r.stdout
    );
    let r = env.pot(&["import", "-p", "app", "-t", "1.0", "-U", &env.registry_url()]);
    r.code(1);
    assert!(r.stdout.contains("app_1.0.xz.skein failed: no such file"), "{}", r.stdout);
}

#[test]
fn mutators_reject_what_pot_rejects() {
    let env = Env::new();
    let name = env.prepared("web", "a1", "sleeper", &[]);
    let n = name.as_str();
    env.pot(&["set-env", "-p", n, "-E", "NOEQUALS"])
        .code(1)
        .line("###>  NOEQUALS not in a valid form")
        .line("###>  VARIABLE=value is accetped");
    env.pot(&["set-env", "-p", n]).code(1).line("###>  A command is mandatory");
    env.pot(&["set-env", "-E", "A=1"]).code(1).line("###>  A pot name is mandatory");
    env.pot(&["set-env", "-p", "nope", "-E", "A=1"])
        .code(1)
        .line("###>  Pot nope not found")
        .line("###>  pot nope is not valid");
    for bad in ["0M", "64MB", "M", "-5", "1.5G"] {
        let r = env.pot(&["set-rss", "-M", bad, "-p", n]);
        r.code(1);
        assert!(r.stdout.starts_with("###>  "), "{bad}: {}", r.stdout);
    }
    env.pot(&["set-rss", "-M", "0M", "-p", n])
        .line("###>  Memory constraint has to be greater than zero");
    env.pot(&["set-rss", "-p", n])
        .code(1)
        .line("###>  One resource has to be specified (-C or -M)");
    env.pot(&["set-rss", "-C", "0", "-p", n])
        .code(1)
        .line("###>  0 is a not valid amount of CPUs!");
    env.pot(&["set-hosts", "-p", n, "-H", "nocolon"])
        .code(1)
        .line("###>  nocolon not in a valid form");
    env.pot(&["set-hosts", "-p", n, "-H", "db:"])
        .code(1)
        .line("###>  Submitted ip or hostname are empty");
    env.pot(&["set-hosts", "-p", n, "-H", "db:300.1.1.1"])
        .code(1)
        .line("###>  Submitted ip 300.1.1.1 is not a valid one");
    env.pot(&["set-attribute", "-p", n, "-A", "bogus", "-V", "1"])
        .code(1)
        .line("###>  bogus is not a valid attribute");
    env.pot(&["set-attr", "-p", n, "-A", "persistent", "-V", "maybe"])
        .code(1)
        .line("###>  value  is not a valid boolean value");
    env.pot(&["set-attr", "-p", n, "-A", "stop_timeout", "-V", "-1"])
        .code(1)
        .line("###>  value -1 is not a valid uint value");
    env.pot(&["set-attr", "-p", n, "-A", "sysvshm", "-V", "old"])
        .code(1)
        .line("###>  value must be one of 'new', 'inherit', 'disable'");
    env.pot(&["set-attr", "-p", n, "-A", "persistent"])
        .code(1)
        .line("###>  Option -V is mandatory");
    env.pot(&["set-cmd", "-p", n]).code(1).line("###>  A command is mandatory");
    env.pot(&["export-ports", "-p", n]).code(1).line("###>  One port has to be specified");
    env.pot(&["export-ports", "-p", n, "-e", "80:"])
        .code(1)
        .line("###>  80: is not a valid port number");
}

#[test]
fn mount_in_and_copy_in_rules() {
    let env = Env::new();
    let name = env.prepared("web", "a1", "sleeper", &[]);
    let n = name.as_str();
    let host = env.dir.path().join("hostdir");
    std::fs::create_dir_all(&host).unwrap();
    let h = host.to_str().unwrap();
    env.pot(&["mount-in", "-p", n, "-m", "/data"])
        .code(1)
        .line("###>  One of -f|-d|-z option has to be used");
    env.pot(&["mount-in", "-p", n, "-d", h]).code(1).line("###>  A mount point is mandatory");
    env.pot(&["mount-in", "-p", n, "-d", h, "-m", "data"])
        .code(1)
        .line("###>  The mount point has to be an absolute pathname");
    env.pot(&["mount-in", "-p", n, "-d", h, "-m", "/"])
        .code(1)
        .line("###>  / is not a valid mount point");
    env.pot(&["mount-in", "-p", n, "-d", h, "-m", "/a b"])
        .code(1)
        .line("###>  The mountpoint cannot contain spaces");
    env.pot(&["mount-in", "-p", n, "-d", "/nonexistent/dir", "-m", "/x"])
        .code(1)
        .line("###>  /nonexistent/dir is not a directory");
    env.pot(&["mount-in", "-p", n, "-d", h, "-m", "/x", "-w"])
        .code(1)
        .line("###>  Remount cannot be used with directories, but with fscomp only");
    env.pot(&["mount-in", "-p", n, "-f", "fs1", "-m", "/x"])
        .code(1)
        .line("###>  fscomp fs1 is not valid");
    env.pot(&["mount-in", "-p", n, "-d", h, "-m", "/data"]).code(0);
    // The same host directory twice (nomad-pot-driver's example.hcl does this) fails.
    env.pot(&["mount-in", "-p", n, "-d", h, "-m", "/data2", "-r"])
        .code(1)
        .line(&format!("###>  Directory {h} not valid, already used or already part of the pot"));
    let inside = env.jail(n).join("m/usr");
    env.pot(&["mount-in", "-p", n, "-d", inside.to_str().unwrap(), "-m", "/y"]).code(1);

    let file = host.join("f.txt");
    std::fs::write(&file, "hello").unwrap();
    let f = file.to_str().unwrap();
    env.pot(&["copy-in", "-p", n, "-s", f, "-d", "relative/f.txt"])
        .code(1)
        .line("###>  The destination has to be an absolute pathname");
    env.pot(&["copy-in", "-p", n, "-s", "/nonexistent/f", "-d", "/f"])
        .code(1)
        .line("###>  /nonexistent/f not valid");
    env.pot(&["copy-in", "-p", n, "-d", "/f"]).code(1).line("###>  A source is mandatory");
    env.pot(&["copy-in", "-p", n, "-s", f]).code(1).line("###>  A destination is mandatory");
    // Without -c the destination's parent must exist (nomad-pot-driver never passes -c).
    env.pot(&["copy-in", "-p", n, "-s", f, "-d", "/no/such/dir/f.txt"])
        .code(1)
        .line(&format!("###>  Source {f} NOT copied because of an error"));
    env.pot(&["copy-in", "-p", n, "-s", f, "-d", "/no/such/dir/f.txt", "-c"]).code(0);
    assert_eq!(std::fs::read_to_string(env.jail(n).join("m/no/such/dir/f.txt")).unwrap(), "hello");
}

#[test]
fn query_and_lifecycle_commands_on_unknown_pots() {
    let env = Env::new();
    // stop on an unknown pot is not an error.
    env.pot(&["stop", "ghost"]).code(0).line("###>  The pot ghost is not a valid pot");
    env.pot(&["start", "ghost"]).code(1).line("###>  Pot ghost not found");
    env.pot(&["start"]).code(1).line("###>  A pot name is mandatory");
    env.pot(&["destroy", "-p", "ghost"])
        .code(1)
        .line("###>  pot ghost not found or corrupted. Try to use the -F flag");
    env.pot(&["destroy"]).code(1).line("###>  -b or -p or -f or -B are missing");
    env.pot(&["destroy", "-p", "a", "-b", "b"])
        .code(1)
        .line("###>  -b, -p, -f and -B cannot be used at the same time");
    env.pot(&["info", "-p", "ghost", "-q"]).code(1);
    assert!(env.pot(&["info", "-p", "ghost", "-q"]).stdout.is_empty());
    env.pot(&["info", "-p", "ghost", "-r"]).code(1);
    env.pot(&["info"]).code(1).line("###>  Option -p or -b are mandatory");
    env.pot(&["last-run-stats", "-p", "ghost"]).code(1).line("###>  ghost is not a pot");
    env.pot(&["get-rss", "-p", "ghost", "-J"]).code(1).line("###>  The pot ghost is not running");
    env.pot(&["signal", "-p", "ghost", "-s", "SIGHUP"])
        .code(1)
        .line("###>  The pot is not running");
    env.pot(&["signal", "-p", "ghost", "-s", "SIGHUP", "-f"])
        .code(0)
        .line("===>  The pot is not running");
    env.pot(&["exec", "-p", "ghost", "true"]).code(1).line("###>  The pot is not running");
    env.pot(&["exec", "-p", "ghost"]).code(1).line("###>  A command is mandatory");
    env.pot(&["ls"]).code(0).line("No pot created yet...");
    env.pot(&["ls", "-a", "-q"]).code(1).line("###>  Options -a and -q are incompatible");
}

#[test]
fn signal_names_are_validated() {
    let env = Env::new();
    let r = env.pot(&["signal", "-p", "ghost", "-s", "SIGFOO"]);
    r.code(1);
    assert!(
        r.stdout.starts_with("###>  Invalid signal, valid signals: HUP INT QUIT"),
        "{}",
        r.stdout
    );
    env.pot(&["signal", "-p", "ghost", "-s", "15"]).code(1);
    env.pot(&["signal", "-p", "ghost", "-s", "HUP", "-P", "12", "-m", "x"])
        .code(1)
        .line("###>  Process ID and pattern match are mutually exclusive");
    env.pot(&["signal", "-p", "ghost", "-s", "HUP", "-P", "1x"]).code(1).line("###>  Invalid pid");
    env.pot(&["signal", "-s", "HUP"]).code(1).line("###>  A pot name is mandatory");
    let r = env.pot(&["signal", "-l"]);
    r.code(0);
    assert!(r.stdout.contains("TERM") && r.stdout.contains("INFO"), "{}", r.stdout);
}

#[test]
fn clone_rejects_dotted_names_and_missing_bases() {
    let env = Env::new();
    env.pot(&["clone", "-P", "base", "-p", "a.b"])
        .code(1)
        .line("###>  a.b is not a valid name for a pot ('.' is the only character not allowed)");
    env.pot(&["clone", "-p", "new"])
        .code(1)
        .line("###>  reference pot name is missing (option -P)");
    env.pot(&["clone", "-P", "base", "-p", "new"])
        .code(1)
        .line("###>  reference pot base not found");
}
