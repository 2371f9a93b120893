//! On-disk state: what prepare, import, clone and the mutators leave in `jails/<name>/conf/`, POT_CACHE
//! and POT_TMP, asserted line by line. It does not run pots (see `lifecycle`).

use crate::harness::{read, Env};

#[test]
fn prepare_imports_clones_and_configures_like_pot() {
    let env = Env::new();
    env.image("nginx-nomad-amd64-13_1", "1.1.13", crate::harness::APP_FILES);
    let url = env.registry_url();
    let r = env.pot(&[
        "prepare",
        "-U",
        &url,
        "-p",
        "nginx-nomad-amd64-13_1",
        "-t",
        "1.1.13",
        "-c",
        "\"nginx -g 'daemon off;'\"",
        "-N",
        "public-bridge",
        "-i",
        "auto",
        "-e",
        "80:23456",
        "-e",
        "udp:53:23457",
        "-a",
        "81ded15e_cb34cd8f-388d-7a38-e3fe-e01b62c93aa2",
        "-n",
        "www1",
        "-v",
    ]);
    r.code(0)
        .line("===>  importing nginx-nomad-amd64-13_1 @ 1.1.13 as nginx-nomad-amd64-13_1_1_1_13")
        .line("===>  Pot nginx-nomad-amd64-13_1_1_1_13 has no dependencies")
        .line("===>  Prepared the pot www1_81ded15e_cb34cd8f-388d-7a38-e3fe-e01b62c93aa2");
    let name = "www1_81ded15e_cb34cd8f-388d-7a38-e3fe-e01b62c93aa2";
    assert_eq!(
        env.pot(&["ls", "-q"]).code(0).stdout,
        format!("nginx-nomad-amd64-13_1_1_1_13\n{name}\n")
    );

    // The image files went through the cache, as pot's fetch leaves them.
    for f in ["", ".skein", ".meta"] {
        assert!(
            env.dir.path().join(format!("cache/nginx-nomad-amd64-13_1_1.1.13.xz{f}")).is_file(),
            "{f}"
        );
    }
    let (net, _) = env.network.split_once(".0/").unwrap();
    let base_conf = env.pot_conf("nginx-nomad-amd64-13_1_1_1_13");
    assert!(base_conf.lines().any(|l| l == format!("ip={net}.2")), "{base_conf}");
    assert!(base_conf.lines().any(|l| l == "network_type=public-bridge"), "{base_conf}");

    let conf = env.pot_conf(name);
    let lines: Vec<&str> = conf.lines().collect();
    for expected in [
        "pot.level=1",
        "pot.type=single",
        "pot.cmd=nginx -g 'daemon off;'",
        "pot.stack=ipv4",
        "network_type=public-bridge",
        "vnet=true",
        &format!("ip={net}.3"),
        "pot.dns=inherit",
        "pot.attr.persistent=NO",
        "pot.attr.no-rc-script=YES",
        "pot.attr.prunable=YES",
        "pot.attr.localhost-tunnel=YES",
        "pot.attr.no-etc-hosts=YES",
        "pot.attr.no-tmpfs=YES",
        // prepare passes the -e values to export-ports in reverse order.
        "pot.export.ports=udp:53:23457 80:23456",
    ] {
        assert!(lines.contains(&expected), "missing {expected:?} in\n{conf}");
    }
    assert!(lines.iter().any(|l| l.starts_with(&format!("host.hostname=\"{name}"))), "{conf}");
    assert_eq!(lines.iter().filter(|l| l.starts_with("pot.cmd=")).count(), 1);
    // The clone has the image's root.
    assert!(env.jail(name).join("m/usr/local/bin/sleeper").is_file());

    // A second prepare of the same image reuses the imported pot and gets the next IP.
    let r = env.pot(&[
        "prepare",
        "-U",
        &url,
        "-p",
        "nginx-nomad-amd64-13_1",
        "-t",
        "1.1.13",
        "-a",
        "second",
        "-n",
        "www1",
        "-v",
    ]);
    r.code(0).line("=====>  pot nginx-nomad-amd64-13_1_1_1_13 already imported - reusing it");
    assert!(!r.stdout.contains("importing"), "{}", r.stdout);
    assert!(env.pot_conf("www1_second").lines().any(|l| l == format!("ip={net}.4")));
    // The same name again is refused.
    env.pot(&[
        "prepare",
        "-U",
        &url,
        "-p",
        "nginx-nomad-amd64-13_1",
        "-t",
        "1.1.13",
        "-a",
        "second",
        "-n",
        "www1",
    ])
    .code(1)
    .line("###>  A pot with name www1_second already exists");
}

#[test]
fn network_host_means_inherit_without_ip() {
    let env = Env::new();
    let name = env.prepared("web", "h1", "sleeper", &["-N", "host"]);
    let conf = env.pot_conf(&name);
    assert!(conf.lines().any(|l| l == "network_type=inherit"), "{conf}");
    assert!(conf.lines().any(|l| l == "vnet=false"), "{conf}");
    assert!(!conf.lines().any(|l| l.starts_with("ip=")), "{conf}");
    env.pot(&["info", "-p", &name, "-E"])
        .code(0)
        .line(&format!("export _POT_NAME={name}"))
        .line("export _POT_IP=");
    // pot's names change dots to `_`.
    env.prepared("we.b", "x.1", "sleeper", &[]);
    assert!(env.jail("we_b_x_1").is_dir());
    assert!(!env.jail("we.b_x.1").exists());
}

#[test]
fn alias_without_ip_is_a_clone_failure_that_fails_prepare() {
    // In pot, clone runs as a function of prepare's shell and its errors `exit 1`.
    let env = Env::new();
    env.image("app", "1.0", crate::harness::APP_FILES);
    let url = env.registry_url();
    env.pot(&["prepare", "-U", &url, "-p", "app", "-t", "1.0", "-a", "a1", "-N", "alias"])
        .code(1)
        .line("###>  option -i is mandatory with network type is alias");
    assert!(!env.jail("app_1_0_a1").exists());
    // With an IP it works, and the IP is used as given.
    env.pot(&[
        "prepare", "-U", &url, "-p", "app", "-t", "1.0", "-a", "a2", "-N", "alias", "-i",
        "10.0.0.9",
    ])
    .code(0);
    assert!(env.pot_conf("app_1_0_a2").lines().any(|l| l == "ip=10.0.0.9"));
}

#[test]
fn set_cmd_env_hosts_rss_attr_and_fscomp_lines() {
    let env = Env::new();
    let name = env.prepared("web", "a1", "sleeper", &[]);
    let n = name.as_str();
    env.pot(&["set-cmd", "-p", n, "-c", "\"echo \"hi\"\""]).code(0);
    env.pot(&["set-env", "-p", n, "-E", "A=1", "-E", "B=x y", "-E", "Q=say \"hi\"", "-E", "E="])
        .code(0);
    env.pot(&["set-env", "-p", n, "-E", "NOMAD_DC=dc1", "-E", "HOME=$HOME"]).code(0);
    env.pot(&["set-hosts", "-p", n, "-H", "db:10.0.0.5", "-H", "v6:fe80::1"]).code(0);
    env.pot(&["set-rss", "-M", "64M", "-p", n]).code(0);
    env.pot(&["set-rss", "-C", "2", "-p", n]).code(0);
    env.pot(&["set-attribute", "-p", n, "-A", "stop_timeout", "-V", "3"]).code(0);
    env.pot(&["set-attr", "-p", n, "-A", "mlock", "-V", "true"]).code(0);
    let conf = env.pot_conf(n);
    let lines: Vec<&str> = conf.lines().collect();
    for expected in [
        "pot.cmd=echo \"hi\"",
        "pot.env=\"NOMAD_DC=dc1\"",
        "pot.env=\"HOME=$HOME\"",
        "pot.hosts=10.0.0.5 db",
        "pot.hosts=fe80::1 v6",
        "pot.rss.memory=64M",
        "pot.rss.cpus=2",
        "pot.attr.stop_timeout=3",
        "pot.attr.mlock=YES",
    ] {
        assert!(lines.contains(&expected), "missing {expected:?} in\n{conf}");
    }
    // set-env replaced every earlier pot.env line.
    assert_eq!(lines.iter().filter(|l| l.starts_with("pot.env=")).count(), 2, "{conf}");
    // The first set-env's quoting rule, checked before it was replaced.
    env.pot(&["set-env", "-p", n, "-E", "Q=say \"hi\""]).code(0);
    assert!(env.pot_conf(n).lines().any(|l| l == r#"pot.env="Q=say \"hi\"""#));

    let local = env.dir.path().join("alloc/local");
    let secrets = env.dir.path().join("alloc/secrets");
    std::fs::create_dir_all(&local).unwrap();
    std::fs::create_dir_all(&secrets).unwrap();
    env.pot(&["mount-in", "-p", n, "-d", local.to_str().unwrap(), "-m", "/local"]).code(0);
    env.pot(&["mount-in", "-p", n, "-d", secrets.to_str().unwrap(), "-m", "/secrets/", "-r"])
        .code(0);
    assert_eq!(
        read(&env.jail(n).join("conf/fscomp.conf")),
        format!("{} /local\n{} /secrets ro\n", local.display(), secrets.display())
    );
    // The mount points exist in the jail root, empty until start.
    assert!(env.jail(n).join("m/local").is_dir() && env.jail(n).join("m/secrets").is_dir());
}

#[test]
fn tampered_images_fail_after_one_retry_and_a_missing_meta_is_tolerated() {
    let env = Env::new();
    env.image("app", "1.0", crate::harness::APP_FILES);
    let url = env.registry_url();
    // A corrupt copy in the cache is deleted and fetched again: the import succeeds.
    let cache = env.dir.path().join("cache");
    std::fs::write(cache.join("app_1.0.xz"), "garbage").unwrap();
    std::fs::copy(env.registry().join("app_1.0.xz.skein"), cache.join("app_1.0.xz.skein")).unwrap();
    let r = env.pot(&["import", "-p", "app", "-t", "1.0", "-U", &url]);
    r.code(0).line("###>  The image and its hash do not overlap");
    assert!(env.jail("app_1_0").join("m/usr/local/bin/sleeper").is_file());
    env.pot(&["import", "-p", "app", "-t", "1.0", "-U", &url])
        .code(1)
        .line("###>  pot app_1_0 is already present");

    // A corrupt registry fails both tries.
    env.image("bad", "2", crate::harness::APP_FILES);
    std::fs::write(env.registry().join("bad_2.xz.meta"), "changed\n").unwrap();
    let r = env.pot(&["import", "-p", "bad", "-t", "2", "-U", &url]);
    r.code(1);
    assert_eq!(
        r.stdout.matches("###>  The image and its hash do not overlap").count(),
        2,
        "{}",
        r.stdout
    );
    assert!(!env.jail("bad_2").exists());
    // prepare fails the same way (import exits prepare).
    env.pot(&["prepare", "-U", &url, "-p", "bad", "-t", "2", "-a", "a"]).code(1);

    // No .meta: pot creates an empty one and says so; the hash then covers the image alone.
    env.image("nometa", "1", crate::harness::APP_FILES);
    let xz = std::fs::read(env.registry().join("nometa_1.xz")).unwrap();
    std::fs::remove_file(env.registry().join("nometa_1.xz.meta")).unwrap();
    std::fs::write(
        env.registry().join("nometa_1.xz.skein"),
        pot_standin::image::skein1024_hex(&[&xz]),
    )
    .unwrap();
    let r = env.pot(&["import", "-p", "nometa", "-t", "1", "-U", &url]);
    r.code(0).line(&format!("===>  No {}/nometa_1.xz.meta, ignoring", cache.display()));
}

#[test]
fn images_with_a_parent_import_it_first() {
    let env = Env::new();
    let base_root = env.dir.path().join("base-root");
    pot_standin::image::write_file(&base_root.join("bin/base-tool"), b"#!/bin/sh\n", 0o755)
        .unwrap();
    pot_standin::image::build_image(&base_root, &env.registry(), "freebsd", "13.1").unwrap();
    let app_root = env.dir.path().join("app-root");
    pot_standin::image::write_file(&app_root.join("usr/local/bin/app"), b"#!/bin/sh\n", 0o755)
        .unwrap();
    pot_standin::image::build_image_with_meta(
        &app_root,
        &env.registry(),
        "app",
        "2",
        "freebsd:13.1@1700000000",
    )
    .unwrap();
    let r = env.pot(&["import", "-p", "app", "-t", "2", "-U", &env.registry_url()]);
    r.code(0)
        .line("===>  Pot app_2 depends on freebsd_13_1")
        .line("===>  Installing dependency freebsd_13_1");
    assert!(env.jail("freebsd_13_1").join("m/bin/base-tool").is_file());
    assert!(env.jail("app_2").join("m/bin/base-tool").is_file());
    assert!(env.jail("app_2").join("m/usr/local/bin/app").is_file());
}

#[test]
fn ls_info_and_last_run_stats_before_any_run() {
    let env = Env::new();
    let name = env.prepared("web", "a1", "sleeper", &[]);
    let (net, _) = env.network.split_once(".0/").unwrap();
    let r = env.pot(&["ls"]);
    r.code(0)
        .line(&format!("pot name : {name}"))
        .line("\tnetwork : public-bridge")
        .line(&format!("\tip : {net}.3"))
        .line("\tactive : false");
    env.pot(&["info", "-p", &name, "-q"]).code(0);
    assert!(env.pot(&["info", "-p", &name, "-q"]).stdout.is_empty());
    env.pot(&["info", "-p", &name, "-r"]).code(1);
    env.pot(&["info", "-p", &name, "-E"]).code(0).line(&format!("export _POT_IP={net}.3"));
    env.pot(&["info", "-p", &name]).code(0).line("\t\tpersistent: NO").line("\t\tstop_timeout: 10");
    env.pot(&["last-run-stats", "-p", &name]).code(0).line("{}");
    assert!(env.pot(&["ps", "-q"]).stdout.is_empty());
    // destroy of a stopped pot removes it.
    env.pot(&["destroy", "-p", &name]).code(0).line(&format!("===>  Destroying pot {name}"));
    assert!(!env.jail(&name).exists());
}
