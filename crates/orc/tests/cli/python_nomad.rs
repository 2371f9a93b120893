//! python-nomad 2.1.0 (the Python client many operators script with) against an orc server:
//! runs tests/python-nomad/test_orc.py with pytest. The job it registers is the JSON that
//! `orc job run -output examples/nginx.job` prints. Against one dev server, and through a
//! follower of three.

use super::walkthrough::{start_servers, Cluster};
use super::{orc, repo, stderr, stdout};
use std::process::Command;

fn require_python_nomad() {
    let probe = Command::new("python3")
        .args([
            "-c",
            "import importlib.metadata as m, pytest, nomad; print(m.version('python-nomad'))",
        ])
        .output()
        .expect("python3 must be installed to run the python-nomad compatibility suite");
    assert!(
        probe.status.success() && stdout(&probe).trim() == "2.1.0",
        "python-nomad 2.1.0 and pytest must be importable by python3 \
         (pip install python-nomad==2.1.0 pytest; .ci/run does this): {}{}",
        stdout(&probe),
        stderr(&probe)
    );
}

/// Runs the Python suite against `c`, which has `servers` servers.
fn run_suite(c: &Cluster, servers: usize) {
    let job = orc(&["job", "run", "-output", "examples/nginx.job"]);
    assert!(job.status.success(), "{}", stderr(&job));
    let dir = tempfile::tempdir().unwrap();
    let job_path = dir.path().join("nginx.json");
    std::fs::write(&job_path, &job.stdout).unwrap();

    let out = Command::new("python3")
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/python-nomad/test_orc.py"])
        .current_dir(repo())
        .env("NOMAD_ADDR", c.addr())
        .env("ORC_TEST_JOB_JSON", &job_path)
        .env("ORC_TEST_SERVERS", servers.to_string())
        .env_remove("NOMAD_TOKEN")
        .env_remove("NOMAD_NAMESPACE")
        .env_remove("NOMAD_REGION")
        .output()
        .unwrap();
    assert!(out.status.success(), "pytest failed:\n{}{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains("7 passed"), "{}", stdout(&out));
}

#[test]
fn python_nomad_client_works_against_a_dev_server() {
    require_python_nomad();
    run_suite(&start_servers(1, 2), 1);
}

/// The same suite through a follower of three servers: reads answered there, writes forwarded.
#[test]
fn python_nomad_client_works_against_three_servers() {
    require_python_nomad();
    run_suite(&start_servers(3, 2), 3);
}
