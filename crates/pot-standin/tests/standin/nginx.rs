//! The seed's nginx job, end to end on Linux: an `nginx-nomad-amd64-13_1` tag `1.1.13` image whose
//! `nginx` is a tiny python3 HTTP server
//! (`pot_standin::image::FAKE_NGINX`), prepared and started with exactly the argv nomad-pot-driver
//! builds, answering HTTP on its Nomad host port, two instances side by side, stopped by `signal` and by
//! `destroy -F`.

use std::time::Duration;

use crate::harness::{free_port, http_get, is_root, python3, read, wait_until, Env};

const IMAGE_POT: &str = pot_standin::image::NGINX_IMAGE.0;
const IMAGE_TAG: &str = pot_standin::image::NGINX_IMAGE.1;

/// One allocation of the seed job, created with the driver's command sequence (pot-contract §0, steps
/// 3, 6, 7, 10, 12). Returns the pot name and its host port.
fn create_alloc(env: &Env, alloc_id: &str, invocation: &str, pot_port: u16) -> (String, u16) {
    let host_port = free_port();
    let url = env.registry_url();
    let tag = format!("{invocation}_{alloc_id}");
    let export = format!("{pot_port}:{host_port}");
    // command = "nginx", args = ["-g","'daemon off;'"] → -c "\"nginx -g 'daemon off;'\"".
    env.pot(&[
        "prepare",
        "-U",
        &url,
        "-p",
        IMAGE_POT,
        "-t",
        IMAGE_TAG,
        "-c",
        "\"nginx -g 'daemon off;'\"",
        "-N",
        "public-bridge",
        "-i",
        "auto",
        "-e",
        &export,
        "-a",
        &tag,
        "-n",
        "www1",
        "-v",
    ])
    .code(0);
    let name = format!("www1_{tag}");
    let task_dir = env.dir.path().join(format!("alloc-{alloc_id}/www1"));
    for sub in ["local", "secrets"] {
        std::fs::create_dir_all(task_dir.join(sub)).unwrap();
        let d = task_dir.join(sub).display().to_string();
        env.pot(&["mount-in", "-p", &name, "-d", &d, "-m", &format!("/{sub}")]).code(0);
    }
    let host_port_env = format!("NOMAD_HOST_PORT_http={host_port}");
    let nginx_port_env = format!("NGINX_PORT={pot_port}");
    let task_dir_env = format!("NOMAD_TASK_DIR={}", task_dir.join("local").display());
    env.pot(&[
        "set-env",
        "-p",
        &name,
        "-E",
        "NOMAD_DC=minipot",
        "-E",
        &host_port_env,
        "-E",
        &nginx_port_env,
        "-E",
        &task_dir_env,
    ])
    .code(0);
    env.pot(&["set-rss", "-M", "64M", "-p", &name]).code(0);
    let conf = env.pot_conf(&name);
    assert!(conf.lines().any(|l| l == "pot.cmd=nginx -g 'daemon off;'"), "{conf}");
    assert!(conf.lines().any(|l| l == format!("pot.export.ports={export}")), "{conf}");
    (name, host_port)
}

/// Waits until `127.0.0.1:<port>` answers and returns the response.
fn get_when_up(port: u16) -> (u16, String) {
    let addr = format!("127.0.0.1:{port}");
    let mut resp = None;
    wait_until(Duration::from_secs(30), || {
        resp = http_get(&addr, "/");
        resp.is_some()
    });
    resp.unwrap()
}

#[test]
fn the_seed_nginx_job_serves_http_on_its_host_port() {
    if python3().is_none() {
        eprintln!("SKIPPED the_seed_nginx_job_serves_http_on_its_host_port: no python3 in /usr/local/bin, /usr/bin or /bin for the fake nginx");
        return;
    }
    // pot port 80 as in the seed needs root to bind on Linux; as non-root the fake nginx is told another
    // port through NGINX_PORT, and everything else stays the same.
    let pot_port = if is_root() {
        80
    } else {
        eprintln!("NOTE: not root, so the fake nginx listens on a high pot port instead of 80");
        free_port()
    };
    let mut env = Env::new();
    pot_standin::image::build_nginx_test_image(env.dir.path(), &env.registry()).unwrap();

    let (first, first_port) =
        create_alloc(&env, "cb34cd8f-388d-7a38-e3fe-e01b62c93aa2", "81ded15e", pot_port);
    let (second, second_port) =
        create_alloc(&env, "0f6c2a11-1111-2222-3333-444455556666", "9a0b1c2d", pot_port);
    // Both instances use the same pot port, each on its own IP.
    assert_ne!(
        env.pot_conf(&first).lines().find(|l| l.starts_with("ip=")),
        env.pot_conf(&second).lines().find(|l| l.starts_with("ip="))
    );

    let a = env.start_bg(&first);
    let b = env.start_bg(&second);
    let (status, body) = get_when_up(first_port);
    assert_eq!((status, body.as_str()), (200, format!("hello from {first}\n").as_str()));
    let (status, body) = get_when_up(second_port);
    assert_eq!((status, body.as_str()), (200, format!("hello from {second}\n").as_str()));
    env.pot(&["ps", "-q"]).code(0).line(&first).line(&second);
    // The driver's stats call.
    env.pot(&["get-rss", "-p", &first, "-J"]).code(0);

    // Nomad's kill: the driver sends a signal; the server dies of it, so start reports 125 and
    // last-run-stats has 128+15.
    env.pot(&["signal", "-s", "SIGTERM", "-p", &first]).code(0);
    let r = env.wait_start(a, Duration::from_secs(30));
    r.code(125).line(&format!("===>  Starting the pot {first}")).line("request GET /");
    env.pot(&["last-run-stats", "-p", &first]).code(0).line("{ \"ExitCode\": 143 }");
    assert_eq!(read(&env.jail(&first).join("conf/.last_run_stats")), "{ \"ExitCode\": 143 }\n");
    env.pot(&["destroy", "-p", &first, "-F"]).code(0);
    assert!(
        http_get(&format!("127.0.0.1:{first_port}"), "/").is_none(),
        "the forwarder went with its pot start"
    );

    // The second keeps serving until destroy -F, the driver's StopTask; start then returns 0.
    assert_eq!(get_when_up(second_port).0, 200);
    env.pot(&["destroy", "-p", &second, "-F"]).code(0);
    env.wait_start(b, Duration::from_secs(30)).code(0);

    env.pot(&["destroy", "-p", "nginx-nomad-amd64-13_1_1_1_13"]).code(0);
    let left: Vec<_> = std::fs::read_dir(env.root().join("jails")).unwrap().collect();
    assert!(left.is_empty(), "jails/ is empty: {left:?}");
    let tmp_left: Vec<String> = std::fs::read_dir(env.tmp())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("pot_status_") || n.starts_with("pot_main_pid_"))
        .collect();
    assert!(tmp_left.is_empty(), "{tmp_left:?}");
}
