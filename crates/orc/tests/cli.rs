//! The `orc` command line, driven as a user drives it: argv in, stdout/stderr/exit code out.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

#[path = "cli/agent.rs"]
mod agent;
#[path = "cli/cluster.rs"]
mod cluster;
#[path = "cli/dev_agent.rs"]
mod dev_agent;
#[path = "cli/python_nomad.rs"]
mod python_nomad;
#[path = "cli/services.rs"]
mod services;
#[path = "cli/templates.rs"]
mod templates;
#[path = "cli/walkthrough.rs"]
mod walkthrough;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

fn corpus() -> PathBuf {
    let dir = repo().join("../shared/corpus/potluck");
    assert!(
        dir.is_dir(),
        "the job-file corpus must be at {} (CI lays ../shared beside the clone)",
        dir.display()
    );
    dir
}

fn orc(args: &[&str]) -> Output {
    orc_in(&repo(), args, &[])
}

fn orc_in(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_orc"));
    cmd.current_dir(dir).args(args).env_remove("NOMAD_VAR_count");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn every_example_validates() {
    let mut files: Vec<String> = std::fs::read_dir(repo().join("examples"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "job" || e == "nomad"))
        .map(|p| p.display().to_string())
        .collect();
    files.sort();
    assert!(files.len() >= 2, "examples/ should hold the bundled jobs");
    let args: Vec<&str> =
        ["job", "validate"].into_iter().chain(files.iter().map(String::as_str)).collect();
    let out = orc(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).lines().count(), files.len());
}

#[test]
fn corpus_validates_and_the_broken_file_points_at_its_error() {
    let mut good = 0;
    for entry in std::fs::read_dir(corpus()).unwrap() {
        let path = entry.unwrap().path();
        let out = orc(&["job", "validate", path.to_str().unwrap()]);
        if path.file_name().unwrap() == "rsnapshot-nomad.nomad" {
            assert_eq!(out.status.code(), Some(1));
            let err = stderr(&out);
            assert!(err.contains("rsnapshot-nomad.nomad:22:"), "{err}");
            assert!(err.contains("missing comma"), "{err}");
        } else {
            assert!(out.status.success(), "{}: {}", path.display(), stderr(&out));
            assert_eq!(stdout(&out), "Job validation successful\n");
            good += 1;
        }
    }
    assert_eq!(good, 18);
}

#[test]
fn seed_job_with_typographic_quotes_fails_at_1_5() {
    let article =
        std::fs::read_to_string(repo().join("../shared/seed/000_63e2c22a3838aaf6.txt")).unwrap();
    let block: Vec<&str> = article.split("```").nth(1).unwrap().lines().skip(1).collect();
    let job: String =
        block.iter().map(|l| format!("{}\n", l.strip_prefix(' ').unwrap_or(l))).collect();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("seed.job"), job).unwrap();
    let out = orc_in(dir.path(), &["job", "validate", "seed.job"], &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.starts_with("error: typographic quote U+201C LEFT DOUBLE QUOTATION MARK “"),
        "{err}"
    );
    assert!(err.contains("--> seed.job:1:5\n"), "{err}");
    assert!(err.contains("straight ASCII quotes"), "{err}");
    assert!(err.ends_with("Job validation failed: seed.job\n"), "{err}");
}

#[test]
fn run_output_prints_nomads_register_json() {
    let out = orc(&["job", "run", "-output", "examples/nginx.job"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.starts_with("{\n    \"Job\": {\n        \"Region\": \"global\","),
        "four-space indent as nomad prints it:\n{text}"
    );
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let job = &v["Job"];
    assert_eq!(job["ID"], "nginx-minipot");
    assert_eq!(job["Datacenters"], serde_json::json!(["minipot"]));
    let group = &job["TaskGroups"][0];
    assert_eq!(group["Count"], 1);
    assert_eq!(group["Networks"][0]["DynamicPorts"][0]["Label"], "http");
    assert_eq!(group["RestartPolicy"]["Attempts"], 2);
    assert_eq!(group["RestartPolicy"]["Delay"], 15_000_000_000i64);
    assert_eq!(group["ReschedulePolicy"]["DelayFunction"], "exponential");
    let task = &group["Tasks"][0];
    assert_eq!(task["Config"]["args"], serde_json::json!(["-g", "'daemon off;'"]));
    assert_eq!(task["Config"]["port_map"], serde_json::json!({ "http": "80" }));
    assert_eq!(task["KillTimeout"], 5_000_000_000i64);
    assert_eq!(task["Resources"]["CPU"], 200);
    assert_eq!(task["Resources"]["MemoryMB"], 64);
    assert_eq!(task["Services"][0]["Name"], "hello-web");
    assert_eq!(task["Services"][0]["Checks"][0]["Interval"], 5_000_000_000i64);
    assert_eq!(task["Services"][0]["Checks"][0]["Timeout"], 2_000_000_000i64);

    // Both flag spellings work, as with Go's flag package.
    let double = orc(&["job", "run", "--output", "examples/nginx.job"]);
    assert_eq!(stdout(&double), text);
    let alias = orc(&["run", "-output", "examples/nginx.job"]);
    assert_eq!(stdout(&alias), text);
}

#[test]
fn variables_come_from_flags_files_and_environment() {
    let dir = tempfile::tempdir().unwrap();
    let job = r#"variable "count" {
  type    = number
  default = 1
}

job "vars" {
  group "g" {
    count = var.count
    task "t" {
      driver = "raw_exec"
      config {
        command = "/bin/true"
      }
    }
  }
}
"#;
    std::fs::write(dir.path().join("vars.job"), job).unwrap();
    std::fs::write(dir.path().join("prod.vars"), "count = 4\n").unwrap();
    let count = |args: &[&str], env: &[(&str, &str)]| -> serde_json::Value {
        let mut all = vec!["job", "run", "-output"];
        all.extend_from_slice(args);
        all.push("vars.job");
        let out = orc_in(dir.path(), &all, env);
        assert!(out.status.success(), "{}", stderr(&out));
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()["Job"]["TaskGroups"][0]
            ["Count"]
            .clone()
    };
    assert_eq!(count(&[], &[]), 1);
    assert_eq!(count(&[], &[("NOMAD_VAR_count", "2")]), 2);
    assert_eq!(count(&["-var-file", "prod.vars"], &[("NOMAD_VAR_count", "2")]), 4);
    assert_eq!(count(&["-var-file", "prod.vars", "-var", "count=7"], &[]), 7);

    let out = orc_in(dir.path(), &["job", "validate", "-var", "count", "vars.job"], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stderr(&out), "Error: -var \"count\" must have the form name=value\n");
}

#[test]
fn fmt_rewrites_and_checks() {
    let dir = tempfile::tempdir().unwrap();
    let messy = "job \"x\" {\ngroup \"g\" {\ncount=1\ntask \"t\" {\ndriver=\"raw_exec\"\nconfig {\ncommand=\"/bin/true\"\n}\n}\n}\n}\n";
    std::fs::write(dir.path().join("x.job"), messy).unwrap();
    let check = orc_in(dir.path(), &["fmt", "-check", "x.job"], &[]);
    assert_eq!(check.status.code(), Some(1));
    assert_eq!(stderr(&check), "x.job: not formatted\n");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("x.job")).unwrap(),
        messy,
        "-check never writes"
    );

    let write = orc_in(dir.path(), &["fmt", "x.job"], &[]);
    assert!(write.status.success(), "{}", stderr(&write));
    assert_eq!(stdout(&write), "x.job\n");
    let formatted = std::fs::read_to_string(dir.path().join("x.job")).unwrap();
    expect_test::expect![[r#"
        job "x" {
          group "g" {
            count = 1
            task "t" {
              driver = "raw_exec"
              config {
                command = "/bin/true"
              }
            }
          }
        }
    "#]]
    .assert_eq(&formatted);
    let again = orc_in(dir.path(), &["fmt", "-check", "x.job"], &[]);
    assert!(again.status.success(), "formatting is idempotent: {}", stderr(&again));
}

#[test]
fn errors_are_clear_and_exit_1() {
    let out = orc(&["job", "validate", "no-such.job"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("no-such.job"), "{}", stderr(&out));
    assert!(stderr(&out).contains("cannot read job file"), "{}", stderr(&out));

    let out =
        orc_in(&repo(), &["job", "run", "examples/nginx.job"], &[("ORC_ADDR", "127.0.0.1:9")]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out)
            .starts_with("Error: Error submitting job: no server answered at http://127.0.0.1:9"),
        "{}",
        stderr(&out)
    );

    let out = orc(&["job", "frobnicate"]);
    assert_eq!(out.status.code(), Some(2));
}
