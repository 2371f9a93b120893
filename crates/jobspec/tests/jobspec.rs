//! The jobspec crate through its public API: job files in, canonical JSON or rendered
//! diagnostics out. One integration-test binary with a module per concern.

use expect_test::{expect, Expect};
use jobspec::{format_source, parse_file, parse_str, ParseOptions};
use std::path::PathBuf;

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Parses with default options and renders either the canonical job as JSON or the diagnostics.
fn render(src: &str, opts: &ParseOptions) -> String {
    match parse_str("test.nomad", src, opts) {
        Ok(job) => serde_json::to_string_pretty(&job).unwrap(),
        Err(diags) => diags.to_string(),
    }
}

fn check_err(src: &str, expect: Expect) {
    let out = match parse_str("test.nomad", src, &ParseOptions::default()) {
        Ok(_) => "parsed without errors".to_string(),
        Err(diags) => diags.to_string(),
    };
    expect.assert_eq(&out);
}

/// The value at a JSON pointer of the canonical job, pretty-printed.
fn json_at(src: &str, opts: &ParseOptions, pointer: &str) -> String {
    match parse_str("test.nomad", src, opts) {
        Ok(job) => {
            let v = serde_json::to_value(&job).unwrap();
            let at = v.pointer(pointer).unwrap_or_else(|| panic!("no {pointer} in {v}"));
            serde_json::to_string_pretty(at).unwrap()
        }
        Err(diags) => diags.to_string(),
    }
}

/// A minimal pot task body, so error cases can focus on one thing.
const POT_CONFIG: &str = r#"
      config {
        image = "https://potluck.honeyguide.net/nginx-nomad"
        pot   = "nginx-nomad-amd64-13_1"
        tag   = "1.1.13"
      }"#;

mod corpus {
    use super::*;

    fn corpus_dir() -> PathBuf {
        let dir = manifest_dir().join("../../../shared/corpus/potluck");
        assert!(
            dir.is_dir(),
            "the job-file corpus is missing: expected {} (clone the shared directory beside the repository)",
            dir.display()
        );
        dir
    }

    #[test]
    fn every_well_formed_corpus_file_parses_and_validates() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(corpus_dir())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "nomad"))
            .filter(|p| !p.ends_with("rsnapshot-nomad.nomad"))
            .collect();
        files.sort();
        assert_eq!(files.len(), 18, "expected 18 well-formed corpus files, found {files:?}");
        for file in &files {
            let job = parse_file(file, &ParseOptions::default())
                .unwrap_or_else(|e| panic!("{} failed:\n{e}", file.display()));
            assert!(!job.task_groups.is_empty(), "{}", file.display());
            let task = &job.task_groups[0].tasks[0];
            assert_eq!(task.driver, "pot", "{}", file.display());
            assert!(task.config.contains_key("image"), "{}", file.display());
        }
    }

    #[test]
    fn rsnapshot_fails_at_its_missing_comma() {
        let file = corpus_dir().join("rsnapshot-nomad.nomad");
        let err = parse_file(&file, &ParseOptions::default()).unwrap_err();
        assert_eq!(err.0.len(), 1);
        let d = &err.0[0];
        assert_eq!((d.line, d.col), (22, 11));
        expect![[r#"
            error: missing comma between list elements
              --> rsnapshot.nomad:22:11
               |
            22 |           "/mnt/id_rsa:/root/.ssh/id_rsa",
               |           ^
               = help: separate list elements with commas: add `,` after the element on line 21"#]]
        .assert_eq(
            &jobspec::Diagnostics(vec![jobspec::Diagnostic {
                file: "rsnapshot.nomad".into(),
                ..d.clone()
            }])
            .to_string(),
        );
    }

    #[test]
    fn corpus_details_survive_parsing() {
        let dir = corpus_dir();
        let postfix =
            parse_file(&dir.join("postfix-backupmx-nomad.nomad"), &ParseOptions::default())
                .unwrap();
        let task = &postfix.task_groups[0].tasks[0];
        let args: Vec<&str> =
            task.config["args"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
        assert_eq!(args[5], r"'mx2.example1.com ESMTP \$mail_name'");
        let net = &task.resources.as_ref().unwrap().networks[0];
        assert_eq!(
            (net.mbits, net.reserved_ports[0].label.as_str(), net.reserved_ports[0].value),
            (10, "smtp", 25000)
        );

        let minio = parse_file(&dir.join("minio-nomad.nomad"), &ParseOptions::default()).unwrap();
        let tpl = &minio.task_groups[0].tasks[0].templates[0];
        assert!(tpl.envvars);
        assert_eq!(tpl.dest_path, "secrets/file.env");
        assert!(tpl.embedded_tmpl.starts_with("MINIO_ACCESS_KEY=\"superSecretMinioAccessKey\"\n"));

        let nextcloud =
            parse_file(&dir.join("nextcloud-nginx-nomad.nomad"), &ParseOptions::default()).unwrap();
        let restart = nextcloud.task_groups[0].tasks[0].restart_policy.clone().unwrap();
        assert_eq!(
            (restart.attempts, restart.delay.as_secs(), restart.interval.as_secs()),
            (3, 30, 1800)
        );
        let check = &nextcloud.task_groups[0].tasks[0].services[0].checks[0];
        assert_eq!(check.check_restart.as_ref().unwrap().grace.as_secs(), 60);

        let minipot =
            parse_file(&dir.join("minipot-nginx-full.nomad"), &ParseOptions::default()).unwrap();
        let update = minipot.task_groups[0].update.clone().unwrap();
        assert_eq!(
            (update.healthy_deadline.as_secs(), update.auto_revert, update.stagger.as_secs()),
            (480, true, 30)
        );
    }

    #[test]
    fn formatting_the_corpus_is_idempotent_and_keeps_meaning() {
        let dir = corpus_dir();
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.ends_with("rsnapshot-nomad.nomad") {
                continue;
            }
            let src = std::fs::read_to_string(&path).unwrap();
            let name = path.display().to_string();
            let once = format_source(&name, &src).unwrap();
            assert_eq!(
                format_source(&name, &once).unwrap(),
                once,
                "{name} is not stable under fmt"
            );
            let before = parse_str(&name, &src, &ParseOptions::default()).unwrap();
            let after = parse_str(&name, &once, &ParseOptions::default()).unwrap();
            assert_eq!(before, after, "{name} changed meaning under fmt");
            assert!(!once.contains('\t'), "{name}: tabs survived fmt");
        }
    }
}

mod seed {
    use super::*;

    fn fixture() -> String {
        std::fs::read_to_string(manifest_dir().join("tests/fixtures/seed-nginx-typographic.job"))
            .unwrap()
    }

    /// The job code block of the seed article, with its common one-space indentation removed.
    fn extract_from_article() -> String {
        let article = std::fs::read_to_string(
            manifest_dir().join("../../../shared/seed/000_63e2c22a3838aaf6.txt"),
        )
        .expect("the seed article is missing: clone the shared directory beside the repository");
        let lines: Vec<&str> = article.lines().collect();
        let fences: Vec<usize> =
            lines.iter().enumerate().filter(|(_, l)| l.trim() == "```").map(|(i, _)| i).collect();
        let block = &lines[fences[0] + 1..fences[1]];
        let indent = block
            .iter()
            .filter(|l| !l.trim().is_empty())
            .map(|l| l.len() - l.trim_start_matches(' ').len())
            .min()
            .unwrap();
        let mut out: String =
            block.iter().map(|l| format!("{}\n", l.get(indent..).unwrap_or(""))).collect();
        out.truncate(out.trim_end().len());
        out.push('\n');
        out
    }

    #[test]
    fn the_fixture_is_the_article_job() {
        assert_eq!(extract_from_article(), fixture());
    }

    #[test]
    fn typographic_quotes_fail_at_1_5_with_the_straight_quote_hint() {
        for src in [fixture(), extract_from_article()] {
            let err = parse_str("nginx.job", &src, &ParseOptions::default()).unwrap_err();
            let first = &err.0[0];
            assert_eq!((first.line, first.col), (1, 5));
            assert!(
                first.message.contains("U+201C LEFT DOUBLE QUOTATION MARK “"),
                "{}",
                first.message
            );
            assert!(first
                .hint
                .as_deref()
                .unwrap()
                .contains("replace typographic quotes with straight ASCII quotes (\")"));
        }
        expect![[r#"
            error: typographic quote U+201C LEFT DOUBLE QUOTATION MARK “ is not valid HCL
             --> nginx.job:1:5
              |
            1 | job “nginx-minipot” {
              |     ^
              = help: replace typographic quotes with straight ASCII quotes ("), e.g. `job "nginx-minipot" {`; this usually comes from copying a job out of a PDF or a word processor

            error: typographic quote U+201C LEFT DOUBLE QUOTATION MARK “ is not valid HCL
             --> nginx.job:2:18
              |
            2 |   datacenters = [“minipot”]
              |                  ^
              = help: replace typographic quotes with straight ASCII quotes ("), e.g. `datacenters = ["minipot"]`; this usually comes from copying a job out of a PDF or a word processor

            error: typographic quote U+201C LEFT DOUBLE QUOTATION MARK “ is not valid HCL
             --> nginx.job:3:10
              |
            3 |   type = “service”
              |          ^
              = help: replace typographic quotes with straight ASCII quotes ("), e.g. `type = "service"`; this usually comes from copying a job out of a PDF or a word processor

            error: typographic quote U+201C LEFT DOUBLE QUOTATION MARK “ is not valid HCL
             --> nginx.job:4:9
              |
            4 |   group “group1” {
              |         ^
              = help: replace typographic quotes with straight ASCII quotes ("), e.g. `group "group1" {`; this usually comes from copying a job out of a PDF or a word processor

            error: typographic quote U+201C LEFT DOUBLE QUOTATION MARK “ is not valid HCL
             --> nginx.job:7:12
              |
            7 |       port “http” {}
              |            ^
              = help: replace typographic quotes with straight ASCII quotes ("), e.g. `port "http" {}`; this usually comes from copying a job out of a PDF or a word processor (15 more lines have typographic quotes)

            5 errors in nginx.job"#]]
        .assert_eq(&parse_str("nginx.job", &fixture(), &ParseOptions::default()).unwrap_err().to_string());
    }

    #[test]
    fn the_seed_job_with_straight_quotes_parses() {
        let straight: String = fixture()
            .chars()
            .map(|c| match c {
                '“' | '”' => '"',
                '’' => '\'',
                c => c,
            })
            .collect();
        let job = parse_str("nginx.job", &straight, &ParseOptions::default()).unwrap();
        assert_eq!(job.id, "nginx-minipot");
        let task = &job.task_groups[0].tasks[0];
        assert_eq!(task.config["args"], serde_json::json!(["-g", "'daemon off;'"]));
        assert_eq!(task.services[0].name, "hello-web");
    }

    #[test]
    fn repository_examples_parse() {
        let dir = manifest_dir().join("../../examples");
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            // Job files only: examples/ also holds agent configuration (`client.hcl`), which the
            // agent's own tests parse.
            if path.extension().is_some_and(|e| e == "job" || e == "nomad") {
                parse_file(&path, &ParseOptions::default())
                    .unwrap_or_else(|e| panic!("{}:\n{e}", path.display()));
                seen += 1;
            }
        }
        assert!(seen >= 1, "no examples found in {}", dir.display());
    }
}

mod canonical {
    use super::*;

    #[test]
    fn minimal_service_job_gets_every_default() {
        let src = r#"
job "web" {
  group "g" {
    task "t" {
      driver = "raw_exec"
      config {
        command = "/bin/sleep"
        args    = ["600"]
      }
    }
  }
}
"#;
        expect![[r#"
            {
              "Region": "global",
              "Namespace": "default",
              "ID": "web",
              "Name": "web",
              "Type": "service",
              "Priority": 50,
              "AllAtOnce": false,
              "Datacenters": [
                "*"
              ],
              "NodePool": "default",
              "Constraints": [],
              "Affinities": [],
              "Spreads": [],
              "TaskGroups": [
                {
                  "Name": "g",
                  "Count": 1,
                  "Constraints": [],
                  "Affinities": [],
                  "Spreads": [],
                  "Tasks": [
                    {
                      "Name": "t",
                      "Driver": "raw_exec",
                      "User": "",
                      "Lifecycle": null,
                      "Config": {
                        "args": [
                          "600"
                        ],
                        "command": "/bin/sleep"
                      },
                      "Constraints": [],
                      "Affinities": [],
                      "Env": {},
                      "Services": [],
                      "Resources": {
                        "CPU": 100,
                        "Cores": 0,
                        "MemoryMB": 300,
                        "MemoryMaxMB": 0,
                        "DiskMB": 0,
                        "Networks": []
                      },
                      "RestartPolicy": {
                        "Interval": 1800000000000,
                        "Attempts": 2,
                        "Delay": 15000000000,
                        "Mode": "fail",
                        "RenderTemplates": false
                      },
                      "Meta": {},
                      "KillTimeout": 5000000000,
                      "LogConfig": {
                        "MaxFiles": 10,
                        "MaxFileSizeMB": 10,
                        "Disabled": false
                      },
                      "Artifacts": [],
                      "Templates": [],
                      "Leader": false,
                      "ShutdownDelay": 0,
                      "KillSignal": "SIGINT"
                    }
                  ],
                  "RestartPolicy": {
                    "Interval": 1800000000000,
                    "Attempts": 2,
                    "Delay": 15000000000,
                    "Mode": "fail",
                    "RenderTemplates": false
                  },
                  "ReschedulePolicy": {
                    "Attempts": 0,
                    "Interval": 0,
                    "Delay": 30000000000,
                    "DelayFunction": "exponential",
                    "MaxDelay": 3600000000000,
                    "Unlimited": true
                  },
                  "EphemeralDisk": {
                    "Sticky": false,
                    "Migrate": false,
                    "SizeMB": 300
                  },
                  "Update": {
                    "Stagger": 30000000000,
                    "MaxParallel": 1,
                    "HealthCheck": "checks",
                    "MinHealthyTime": 10000000000,
                    "HealthyDeadline": 300000000000,
                    "ProgressDeadline": 600000000000,
                    "Canary": 0,
                    "AutoRevert": false,
                    "AutoPromote": false
                  },
                  "Migrate": {
                    "MaxParallel": 1,
                    "HealthCheck": "checks",
                    "MinHealthyTime": 10000000000,
                    "HealthyDeadline": 300000000000
                  },
                  "Networks": [],
                  "Meta": {},
                  "Services": [],
                  "ShutdownDelay": 0,
                  "Scaling": null
                }
              ],
              "Update": {
                "Stagger": 30000000000,
                "MaxParallel": 1,
                "HealthCheck": "checks",
                "MinHealthyTime": 10000000000,
                "HealthyDeadline": 300000000000,
                "ProgressDeadline": 600000000000,
                "Canary": 0,
                "AutoRevert": false,
                "AutoPromote": false
              },
              "Reschedule": null,
              "Migrate": null,
              "Meta": {},
              "Stop": false,
              "Status": "pending",
              "StatusDescription": "",
              "Stable": false,
              "Version": 0,
              "SubmitTime": 0,
              "CreateIndex": 0,
              "ModifyIndex": 0,
              "JobModifyIndex": 0
            }"#]]
        .assert_eq(&render(src, &ParseOptions::default()));
    }

    #[test]
    fn the_canonical_pot_job_in_full() {
        let path = manifest_dir().join("../../../shared/corpus/potluck/nginx-nomad.nomad");
        let src = std::fs::read_to_string(&path).expect("corpus directory beside the repository");
        expect![[r#"
            {
              "Region": "global",
              "Namespace": "default",
              "ID": "example",
              "Name": "example",
              "Type": "service",
              "Priority": 50,
              "AllAtOnce": false,
              "Datacenters": [
                "datacenter"
              ],
              "NodePool": "default",
              "Constraints": [],
              "Affinities": [],
              "Spreads": [],
              "TaskGroups": [
                {
                  "Name": "group1",
                  "Count": 1,
                  "Constraints": [],
                  "Affinities": [],
                  "Spreads": [],
                  "Tasks": [
                    {
                      "Name": "www1",
                      "Driver": "pot",
                      "User": "",
                      "Lifecycle": null,
                      "Config": {
                        "args": [
                          "-g",
                          "'daemon off;'"
                        ],
                        "command": "nginx",
                        "copy": [
                          "/mnt/s3/web/nginx.conf:/usr/local/etc/nginx/nginx.conf"
                        ],
                        "image": "https://potluck.honeyguide.net/nginx-nomad",
                        "mount": [
                          "/mnt/s3/web/www:/mnt"
                        ],
                        "port_map": {
                          "http": "80"
                        },
                        "pot": "nginx-nomad-amd64-13_1",
                        "tag": "1.1.13"
                      },
                      "Constraints": [],
                      "Affinities": [],
                      "Env": {},
                      "Services": [
                        {
                          "Name": "nginx-example-service",
                          "Tags": [
                            "nginx",
                            "www"
                          ],
                          "CanaryTags": [],
                          "EnableTagOverride": false,
                          "PortLabel": "http",
                          "AddressMode": "auto",
                          "Address": "",
                          "Checks": [
                            {
                              "Name": "tcp",
                              "Type": "tcp",
                              "Command": "",
                              "Args": [],
                              "Path": "",
                              "Protocol": "",
                              "PortLabel": "",
                              "AddressMode": "",
                              "Interval": 60000000000,
                              "Timeout": 30000000000,
                              "InitialStatus": "",
                              "TLSSkipVerify": false,
                              "TLSServerName": "",
                              "Method": "",
                              "Header": {},
                              "Body": "",
                              "CheckRestart": null,
                              "TaskName": "",
                              "SuccessBeforePassing": 0,
                              "FailuresBeforeCritical": 0,
                              "FailuresBeforeWarning": 0,
                              "OnUpdate": "require_healthy"
                            }
                          ],
                          "CheckRestart": null,
                          "Meta": {},
                          "CanaryMeta": {},
                          "TaskName": "",
                          "OnUpdate": "require_healthy",
                          "Provider": "consul"
                        }
                      ],
                      "Resources": {
                        "CPU": 200,
                        "Cores": 0,
                        "MemoryMB": 64,
                        "MemoryMaxMB": 0,
                        "DiskMB": 0,
                        "Networks": []
                      },
                      "RestartPolicy": {
                        "Interval": 1800000000000,
                        "Attempts": 2,
                        "Delay": 15000000000,
                        "Mode": "fail",
                        "RenderTemplates": false
                      },
                      "Meta": {},
                      "KillTimeout": 5000000000,
                      "LogConfig": {
                        "MaxFiles": 10,
                        "MaxFileSizeMB": 10,
                        "Disabled": false
                      },
                      "Artifacts": [],
                      "Templates": [],
                      "Leader": false,
                      "ShutdownDelay": 0,
                      "KillSignal": "SIGINT"
                    }
                  ],
                  "RestartPolicy": {
                    "Interval": 1800000000000,
                    "Attempts": 2,
                    "Delay": 15000000000,
                    "Mode": "fail",
                    "RenderTemplates": false
                  },
                  "ReschedulePolicy": {
                    "Attempts": 0,
                    "Interval": 0,
                    "Delay": 30000000000,
                    "DelayFunction": "exponential",
                    "MaxDelay": 3600000000000,
                    "Unlimited": true
                  },
                  "EphemeralDisk": {
                    "Sticky": false,
                    "Migrate": false,
                    "SizeMB": 300
                  },
                  "Update": {
                    "Stagger": 30000000000,
                    "MaxParallel": 1,
                    "HealthCheck": "checks",
                    "MinHealthyTime": 10000000000,
                    "HealthyDeadline": 300000000000,
                    "ProgressDeadline": 600000000000,
                    "Canary": 0,
                    "AutoRevert": false,
                    "AutoPromote": false
                  },
                  "Migrate": {
                    "MaxParallel": 1,
                    "HealthCheck": "checks",
                    "MinHealthyTime": 10000000000,
                    "HealthyDeadline": 300000000000
                  },
                  "Networks": [
                    {
                      "Mode": "host",
                      "Device": "",
                      "CIDR": "",
                      "IP": "",
                      "Hostname": "",
                      "MBits": 0,
                      "ReservedPorts": [
                        {
                          "Label": "http",
                          "Value": 12000,
                          "To": 0,
                          "HostNetwork": ""
                        }
                      ],
                      "DynamicPorts": []
                    }
                  ],
                  "Meta": {},
                  "Services": [],
                  "ShutdownDelay": 0,
                  "Scaling": null
                }
              ],
              "Update": {
                "Stagger": 30000000000,
                "MaxParallel": 1,
                "HealthCheck": "checks",
                "MinHealthyTime": 10000000000,
                "HealthyDeadline": 300000000000,
                "ProgressDeadline": 600000000000,
                "Canary": 0,
                "AutoRevert": false,
                "AutoPromote": false
              },
              "Reschedule": null,
              "Migrate": null,
              "Meta": {},
              "Stop": false,
              "Status": "pending",
              "StatusDescription": "",
              "Stable": false,
              "Version": 0,
              "SubmitTime": 0,
              "CreateIndex": 0,
              "ModifyIndex": 0,
              "JobModifyIndex": 0
            }"#]]
        .assert_eq(&render(&src, &ParseOptions::default()));
    }

    #[test]
    fn batch_job_merges_restart_and_reschedule_over_type_defaults() {
        let src = r#"
job "report" {
  type        = "batch"
  datacenters = ["dc1", "dc2"]
  priority    = 70
  meta {
    owner = "ops"
  }
  reschedule {
    attempts = 3
  }
  group "run" {
    count = 2
    restart {
      attempts = 5
    }
    task "main" {
      driver = "raw_exec"
      restart {
        delay = "1m"
      }
      config {
        command = "/usr/local/bin/report"
      }
      kill_timeout = "30s"
      logs {
        max_files     = 3
        max_file_size = 5
      }
    }
  }
}
"#;
        expect![[r#"
            {
              "Name": "run",
              "Count": 2,
              "Constraints": [],
              "Affinities": [],
              "Spreads": [],
              "Tasks": [
                {
                  "Name": "main",
                  "Driver": "raw_exec",
                  "User": "",
                  "Lifecycle": null,
                  "Config": {
                    "command": "/usr/local/bin/report"
                  },
                  "Constraints": [],
                  "Affinities": [],
                  "Env": {},
                  "Services": [],
                  "Resources": {
                    "CPU": 100,
                    "Cores": 0,
                    "MemoryMB": 300,
                    "MemoryMaxMB": 0,
                    "DiskMB": 0,
                    "Networks": []
                  },
                  "RestartPolicy": {
                    "Interval": 86400000000000,
                    "Attempts": 5,
                    "Delay": 60000000000,
                    "Mode": "fail",
                    "RenderTemplates": false
                  },
                  "Meta": {},
                  "KillTimeout": 30000000000,
                  "LogConfig": {
                    "MaxFiles": 3,
                    "MaxFileSizeMB": 5,
                    "Disabled": false
                  },
                  "Artifacts": [],
                  "Templates": [],
                  "Leader": false,
                  "ShutdownDelay": 0,
                  "KillSignal": "SIGINT"
                }
              ],
              "RestartPolicy": {
                "Interval": 86400000000000,
                "Attempts": 5,
                "Delay": 15000000000,
                "Mode": "fail",
                "RenderTemplates": false
              },
              "ReschedulePolicy": {
                "Attempts": 3,
                "Interval": 86400000000000,
                "Delay": 5000000000,
                "DelayFunction": "constant",
                "MaxDelay": 0,
                "Unlimited": false
              },
              "EphemeralDisk": {
                "Sticky": false,
                "Migrate": false,
                "SizeMB": 300
              },
              "Update": null,
              "Migrate": null,
              "Networks": [],
              "Meta": {},
              "Services": [],
              "ShutdownDelay": 0,
              "Scaling": null
            }"#]]
        .assert_eq(&json_at(src, &ParseOptions::default(), "/TaskGroups/0"));
        expect!["null"].assert_eq(&json_at(src, &ParseOptions::default(), "/Update"));
    }

    #[test]
    fn placement_rules_and_sugar() {
        let src = r#"
job "p" {
  constraint {
    attribute = "${attr.kernel.name}"
    value     = "freebsd"
  }
  constraint {
    distinct_hosts = true
  }
  constraint {
    distinct_hosts = false
  }
  constraint {
    attribute = "${attr.os.version}"
    version   = ">= 13.1"
  }
  constraint {
    distinct_property = "${meta.rack}"
    value             = "2"
  }
  constraint {
    attribute = meta.pool
    regexp    = "^(a|b)$"
  }
  constraint {
    attribute    = "${meta.features}"
    set_contains = "zfs,vnet"
  }
  constraint {
    attribute = "${meta.gpu}"
    operator  = "is_not_set"
  }
  affinity {
    attribute = "${node.datacenter}"
    value     = "dc1"
  }
  affinity {
    attribute = "${meta.ssd}"
    value     = "true"
    weight    = -30
  }
  spread {
    attribute = "${node.datacenter}"
    target "dc1" {
      percent = 70
    }
    target "dc2" {
      percent = 30
    }
  }
  group "g" {
    task "t" {
      driver = "raw_exec"
      config {
        command = "/bin/true"
      }
    }
  }
}
"#;
        let opts = ParseOptions::default();
        expect![[r#"
            [
              {
                "LTarget": "${attr.kernel.name}",
                "RTarget": "freebsd",
                "Operand": "="
              },
              {
                "LTarget": "",
                "RTarget": "",
                "Operand": "distinct_hosts"
              },
              {
                "LTarget": "${attr.os.version}",
                "RTarget": ">= 13.1",
                "Operand": "version"
              },
              {
                "LTarget": "${meta.rack}",
                "RTarget": "2",
                "Operand": "distinct_property"
              },
              {
                "LTarget": "${meta.pool}",
                "RTarget": "^(a|b)$",
                "Operand": "regexp"
              },
              {
                "LTarget": "${meta.features}",
                "RTarget": "zfs,vnet",
                "Operand": "set_contains"
              },
              {
                "LTarget": "${meta.gpu}",
                "RTarget": "",
                "Operand": "is_not_set"
              }
            ]"#]]
        .assert_eq(&json_at(src, &opts, "/Constraints"));
        expect![[r#"
            [
              {
                "LTarget": "${node.datacenter}",
                "RTarget": "dc1",
                "Operand": "=",
                "Weight": 50
              },
              {
                "LTarget": "${meta.ssd}",
                "RTarget": "true",
                "Operand": "=",
                "Weight": -30
              }
            ]"#]]
        .assert_eq(&json_at(src, &opts, "/Affinities"));
        expect![[r#"
            [
              {
                "Attribute": "${node.datacenter}",
                "Weight": 50,
                "SpreadTarget": [
                  {
                    "Value": "dc1",
                    "Percent": 70
                  },
                  {
                    "Value": "dc2",
                    "Percent": 30
                  }
                ]
              }
            ]"#]]
        .assert_eq(&json_at(src, &opts, "/Spreads"));
    }

    #[test]
    fn runtime_interpolation_is_kept_verbatim_and_variables_are_substituted() {
        let src = r#"
variable "dc" {
  type    = string
  default = "eu-1"
}
variable "ports" {
  type    = list(string)
  default = ["http", "admin"]
}
locals {
  name   = "${upper(var.dc)}-web"
  labels = join(",", [for p in var.ports : "port-${p}"])
}
job "interp" {
  datacenters = [var.dc]
  group "g" {
    network {
      dynamic "port" {
        for_each = var.ports
        labels   = [port.value]
        content {
          to = 8000 + port.key
        }
      }
    }
    task "t" {
      driver = "raw_exec"
      config {
        command = "/bin/echo"
        args = [
          "${NOMAD_PORT_http}",
          "${attr.kernel.name}",
          "${node.unique.id}",
          "${meta.x}",
          "${env["X"]}",
          "with spaces ${   root.  field[  "FOO"].5  }",
          "${local.name}:${NOMAD_ALLOC_INDEX}",
          local.labels,
          meta.mytest,
          format("%s-%03d", var.dc, 7),
        ]
      }
      env {
        ADDR = "${NOMAD_IP_http}:${NOMAD_PORT_http}"
        DC   = var.dc
      }
    }
  }
}
"#;
        let opts = ParseOptions::default();
        expect![[r#"
            [
              "${NOMAD_PORT_http}",
              "${attr.kernel.name}",
              "${node.unique.id}",
              "${meta.x}",
              "${env[\"X\"]}",
              "with spaces ${   root.  field[  \"FOO\"].5  }",
              "EU-1-web:${NOMAD_ALLOC_INDEX}",
              "port-http,port-admin",
              "${meta.mytest}",
              "eu-1-007"
            ]"#]]
        .assert_eq(&json_at(src, &opts, "/TaskGroups/0/Tasks/0/Config/args"));
        expect![[r#"
            {
              "ADDR": "${NOMAD_IP_http}:${NOMAD_PORT_http}",
              "DC": "eu-1"
            }"#]]
        .assert_eq(&json_at(src, &opts, "/TaskGroups/0/Tasks/0/Env"));
        expect![[r#"
            [
              {
                "Label": "http",
                "Value": 0,
                "To": 8000,
                "HostNetwork": ""
              },
              {
                "Label": "admin",
                "Value": 0,
                "To": 8001,
                "HostNetwork": ""
              }
            ]"#]]
        .assert_eq(&json_at(src, &opts, "/TaskGroups/0/Networks/0/DynamicPorts"));
    }

    #[test]
    fn services_checks_and_task_features() {
        let src = r#"
job "svc" {
  type = "system"
  update {
    max_parallel = 2
  }
  group "g" {
    network {
      mode = "host"
      port "http" {
        static = 8080
        to     = 80
      }
      port "metrics" {}
    }
    update {
      canary = 1
    }
    service {
      port     = "http"
      provider = "orc"
      tags     = ["web"]
      check {
        type     = "http"
        path     = "/health"
        interval = "10s"
        timeout  = "2s"
        header {
          X-Probe = ["orc"]
        }
      }
    }
    task "t" {
      driver = "pot"
      leader = true
      config {
        image    = "https://potluck.honeyguide.net/nginx-nomad"
        pot      = "nginx-nomad-amd64-13_1"
        tag      = "1.1.13"
        port_map = { http = "80" }
      }
      service {
        name     = "${TASK}-metrics"
        port     = "metrics"
        provider = "nomad"
        check_restart {
          limit = 3
        }
        check {
          type     = "tcp"
          interval = "30s"
          timeout  = "5s"
        }
      }
      lifecycle {
        hook    = "poststart"
        sidecar = true
      }
      template {
        data        = "addr={{ env \"NOMAD_ADDR_http\" }}"
        destination = "local/app.env"
        env         = true
        perms       = "600"
        wait {
          min = "2s"
          max = "10s"
        }
      }
      artifact {
        source      = "https://example.com/app.tar.gz"
        destination = "local/app"
        options {
          checksum = "sha256:abcd"
        }
      }
      resources {
        cores      = 2
        memory     = 256
        memory_max = 512
      }
    }
  }
}
"#;
        let opts = ParseOptions::default();
        expect![[r#"
            [
              {
                "Name": "svc-g",
                "Tags": [
                  "web"
                ],
                "CanaryTags": [],
                "EnableTagOverride": false,
                "PortLabel": "http",
                "AddressMode": "auto",
                "Address": "",
                "Checks": [
                  {
                    "Name": "service: \"svc-g\" check",
                    "Type": "http",
                    "Command": "",
                    "Args": [],
                    "Path": "/health",
                    "Protocol": "http",
                    "PortLabel": "",
                    "AddressMode": "",
                    "Interval": 10000000000,
                    "Timeout": 2000000000,
                    "InitialStatus": "pending",
                    "TLSSkipVerify": false,
                    "TLSServerName": "",
                    "Method": "GET",
                    "Header": {
                      "X-Probe": [
                        "orc"
                      ]
                    },
                    "Body": "",
                    "CheckRestart": null,
                    "TaskName": "",
                    "SuccessBeforePassing": 0,
                    "FailuresBeforeCritical": 0,
                    "FailuresBeforeWarning": 0,
                    "OnUpdate": "require_healthy"
                  }
                ],
                "CheckRestart": null,
                "Meta": {},
                "CanaryMeta": {},
                "TaskName": "",
                "OnUpdate": "require_healthy",
                "Provider": "nomad"
              }
            ]"#]]
        .assert_eq(&json_at(src, &opts, "/TaskGroups/0/Services"));
        expect![[r#"
            [
              {
                "Name": "t-metrics",
                "Tags": [],
                "CanaryTags": [],
                "EnableTagOverride": false,
                "PortLabel": "metrics",
                "AddressMode": "auto",
                "Address": "",
                "Checks": [
                  {
                    "Name": "service: \"t-metrics\" check",
                    "Type": "tcp",
                    "Command": "",
                    "Args": [],
                    "Path": "",
                    "Protocol": "",
                    "PortLabel": "",
                    "AddressMode": "",
                    "Interval": 30000000000,
                    "Timeout": 5000000000,
                    "InitialStatus": "pending",
                    "TLSSkipVerify": false,
                    "TLSServerName": "",
                    "Method": "",
                    "Header": {},
                    "Body": "",
                    "CheckRestart": {
                      "Limit": 3,
                      "Grace": 1000000000,
                      "IgnoreWarnings": false
                    },
                    "TaskName": "",
                    "SuccessBeforePassing": 0,
                    "FailuresBeforeCritical": 0,
                    "FailuresBeforeWarning": 0,
                    "OnUpdate": "require_healthy"
                  }
                ],
                "CheckRestart": {
                  "Limit": 3,
                  "Grace": 1000000000,
                  "IgnoreWarnings": false
                },
                "Meta": {},
                "CanaryMeta": {},
                "TaskName": "",
                "OnUpdate": "require_healthy",
                "Provider": "nomad"
              }
            ]"#]]
        .assert_eq(&json_at(src, &opts, "/TaskGroups/0/Tasks/0/Services"));
        expect![[r#"
            [
              {
                "SourcePath": "",
                "DestPath": "local/app.env",
                "EmbeddedTmpl": "addr={{ env \"NOMAD_ADDR_http\" }}",
                "ChangeMode": "restart",
                "ChangeSignal": "",
                "Splay": 5000000000,
                "Perms": "0600",
                "Uid": null,
                "Gid": null,
                "LeftDelim": "{{",
                "RightDelim": "}}",
                "Envvars": true,
                "ErrMissingKey": false,
                "Once": false,
                "Wait": {
                  "Min": 2000000000,
                  "Max": 10000000000
                }
              }
            ]"#]]
        .assert_eq(&json_at(src, &opts, "/TaskGroups/0/Tasks/0/Templates"));
        expect![[r#"
            [
              {
                "GetterSource": "https://example.com/app.tar.gz",
                "GetterOptions": {
                  "checksum": "sha256:abcd"
                },
                "GetterHeaders": {},
                "GetterMode": "any",
                "RelativeDest": "local/app",
                "Chown": false
              }
            ]"#]]
        .assert_eq(&json_at(src, &opts, "/TaskGroups/0/Tasks/0/Artifacts"));
        expect![[r#"
            {
              "CPU": 0,
              "Cores": 2,
              "MemoryMB": 256,
              "MemoryMaxMB": 512,
              "DiskMB": 0,
              "Networks": []
            }"#]]
        .assert_eq(&json_at(src, &opts, "/TaskGroups/0/Tasks/0/Resources"));
        expect![[r#"
            {
              "Stagger": 30000000000,
              "MaxParallel": 2,
              "HealthCheck": "checks",
              "MinHealthyTime": 10000000000,
              "HealthyDeadline": 300000000000,
              "ProgressDeadline": 600000000000,
              "Canary": 1,
              "AutoRevert": false,
              "AutoPromote": false
            }"#]]
        .assert_eq(&json_at(src, &opts, "/TaskGroups/0/Update"));
        let job = parse_str("t", src, &opts).unwrap();
        assert!(
            job.task_groups[0].reschedule_policy.is_none(),
            "system jobs are never rescheduled"
        );
        assert!(job.task_groups[0].migrate.is_none());
        assert_eq!(job.task_groups[0].networks[0].reserved_ports[0].value, 8080);
    }

    #[test]
    fn a_task_directly_in_a_job_becomes_a_group_and_scaling_sets_count() {
        let src = r#"
job "lone" {
  id   = "lone-id"
  name = "Lone job"
  task "solo" {
    driver = "raw_exec"
    config {
      command = "/bin/true"
    }
  }
  group "scaled" {
    scaling {
      min = 3
      max = 10
    }
    task "t" {
      driver = "raw_exec"
      config {
        command = "/bin/true"
      }
    }
  }
}
"#;
        let job = parse_str("t", src, &ParseOptions::default()).unwrap();
        assert_eq!((job.id.as_str(), job.name.as_str()), ("lone-id", "Lone job"));
        let names: Vec<(&str, u32, &str)> = job
            .task_groups
            .iter()
            .map(|g| (g.name.as_str(), g.count, g.tasks[0].name.as_str()))
            .collect();
        assert_eq!(names, vec![("solo", 1, "solo"), ("scaled", 3, "t")]);
        assert_eq!(job.task_groups[1].scaling.as_ref().unwrap().min, Some(3));
    }

    #[test]
    fn meta_and_env_accept_map_attributes() {
        let src = r#"
job "m" {
  meta = { "team.name" = "ops", level = 3 }
  group "g" {
    task "t" {
      driver = "raw_exec"
      env    = { PATH = "/bin", DEBUG = true }
      config {
        command = "/bin/true"
      }
    }
  }
}
"#;
        let opts = ParseOptions::default();
        expect![[r#"
            {
              "level": "3",
              "team.name": "ops"
            }"#]]
        .assert_eq(&json_at(src, &opts, "/Meta"));
        expect![[r#"
            {
              "DEBUG": "true",
              "PATH": "/bin"
            }"#]]
        .assert_eq(&json_at(src, &opts, "/TaskGroups/0/Tasks/0/Env"));
    }
}

mod diagnostics {
    use super::*;

    fn pot_job(task_body: &str) -> String {
        format!(
            "job \"j\" {{\n  group \"g\" {{\n    network {{\n      port \"http\" {{}}\n    }}\n    task \"t\" {{\n      driver = \"pot\"\n{task_body}\n    }}\n  }}\n}}\n"
        )
    }

    #[test]
    fn unknown_pot_config_key_lists_valid_keys() {
        let src = r#"job "nginx" {
  group "g" {
    network {
      port "http" {}
    }

    task "www1" {
      driver = "pot"

      config {
        image = "https://potluck.honeyguide.net/nginx-nomad"
        imagee = "https://..."
        pot    = "nginx-nomad-amd64-13_1"
        tag    = "1.1.13"
      }
    }
  }
}
"#;
        let err = parse_str("nginx.job", src, &ParseOptions::default()).unwrap_err();
        expect![[r#"
            error: unknown attribute "imagee" in pot task config
              --> nginx.job:12:9
               |
            12 |         imagee = "https://..."
               |         ^^^^^^
               = help: did you mean "image"? valid keys are: args, attributes, command, copy, extra_hosts, image, mount, mount_read_only, network_mode, port_map, pot, tag"#]].assert_eq(&err.to_string());
    }

    #[test]
    fn several_errors_are_all_reported() {
        check_err(
            r#"
job "many" {
  priority = 101
  type     = "service"
  group "g" {
    count = -1
    task "t" {
      config {
        command = "/bin/true"
      }
      kill_timeout = "5 seconds"
    }
    vault {
      policies = ["x"]
    }
  }
  grup "typo" {}
}
"#,
            expect![[r#"
                error: priority must be between 1 and 100, got 101
                 --> test.nomad:3:14
                  |
                3 |   priority = 101
                  |              ^^^

                error: count must be at least 0, got -1
                 --> test.nomad:6:13
                  |
                6 |     count = -1
                  |             ^^

                error: task "t" has no driver
                 --> test.nomad:7:10
                  |
                7 |     task "t" {
                  |          ^^^
                  = help: add `driver = "pot"` (or "raw_exec")

                error: kill_timeout: invalid duration "5 seconds": unknown unit " seconds"; use one of ns, us, ms, s, m, h
                  --> test.nomad:11:22
                   |
                11 |       kill_timeout = "5 seconds"
                   |                      ^^^^^^^^^^^
                   = help: write a duration such as "500ms", "30s", "5m" or "1h30m"

                error: "vault" blocks are not supported by orc
                  --> test.nomad:13:5
                   |
                13 |     vault {
                   |     ^^^^^
                   = help: orc has no Vault integration; deliver secrets with a template block or env

                error: unknown block "grup" in job
                  --> test.nomad:17:3
                   |
                17 |   grup "typo" {}
                   |   ^^^^
                   = help: did you mean "group"? valid keys are: affinity, all_at_once, constraint, datacenters, group, id, meta, migrate, name, namespace, node_pool, priority, region, reschedule, spread, task, type, update

                6 errors in test.nomad"#]],
        );
    }

    #[test]
    fn unsupported_features_are_refused_by_name() {
        check_err(
            r#"
job "u" {
  type = "sysbatch"
  periodic {
    crons = ["@daily"]
  }
  multiregion {}
  parameterized {}
  group "g" {
    volume "data" {
      type   = "host"
      source = "data"
    }
    consul {}
    task "t" {
      driver = "raw_exec"
      config {
        command = "/bin/true"
      }
      volume_mount {
        volume      = "data"
        destination = "/data"
      }
      dispatch_payload {
        file = "x"
      }
      identity {}
      resources {
        device "nvidia/gpu" {}
      }
      service {
        port = 80
        connect {}
      }
    }
  }
}
"#,
            expect![[r#"
                error: sysbatch jobs are not supported by orc
                 --> test.nomad:3:10
                  |
                3 |   type = "sysbatch"
                  |          ^^^^^^^^^^
                  = help: use type = "batch" for run-to-completion work, or "system" to run on every node

                error: "periodic" blocks are not supported by orc
                 --> test.nomad:4:3
                  |
                4 |   periodic {
                  |   ^^^^^^^^
                  = help: orc does not run periodic jobs; start a batch job from cron with `orc job run` instead

                error: "multiregion" blocks are not supported by orc
                 --> test.nomad:7:3
                  |
                7 |   multiregion {}
                  |   ^^^^^^^^^^^
                  = help: orc runs a single region

                error: "parameterized" blocks are not supported by orc
                 --> test.nomad:8:3
                  |
                8 |   parameterized {}
                  |   ^^^^^^^^^^^^^
                  = help: orc does not dispatch parameterized jobs

                error: "volume" blocks are not supported by orc
                  --> test.nomad:10:5
                   |
                10 |     volume "data" {
                   |     ^^^^^^
                   = help: orc does not manage host or CSI volumes; mount host directories with the pot driver's `mount` option

                error: "consul" blocks are not supported by orc
                  --> test.nomad:14:5
                   |
                14 |     consul {}
                   |     ^^^^^^
                   = help: orc does not configure Consul per group or task; services use the agent's Consul settings

                error: "volume_mount" blocks are not supported by orc
                  --> test.nomad:20:7
                   |
                20 |       volume_mount {
                   |       ^^^^^^^^^^^^
                   = help: orc does not manage host or CSI volumes; mount host directories with the pot driver's `mount` option

                error: "dispatch_payload" blocks are not supported by orc
                  --> test.nomad:24:7
                   |
                24 |       dispatch_payload {
                   |       ^^^^^^^^^^^^^^^^
                   = help: orc does not dispatch parameterized jobs

                error: "identity" blocks are not supported by orc
                  --> test.nomad:27:7
                   |
                27 |       identity {}
                   |       ^^^^^^^^
                   = help: orc does not issue workload identities

                error: "device" blocks are not supported by orc
                  --> test.nomad:29:9
                   |
                29 |         device "nvidia/gpu" {}
                   |         ^^^^^^
                   = help: orc does not schedule devices

                error: "connect" blocks are not supported by orc
                  --> test.nomad:33:9
                   |
                33 |         connect {}
                   |         ^^^^^^^
                   = help: orc has no Consul Connect service mesh; expose the service on a host port instead

                11 errors in test.nomad"#]],
        );
    }

    #[test]
    fn checks_need_interval_and_timeout_of_at_least_a_second() {
        check_err(
            &pot_job(&format!(
                "{POT_CONFIG}\n      service {{\n        port = \"http\"\n        check {{\n          type = \"tcp\"\n          timeout = \"500ms\"\n        }}\n        check {{\n          type = \"grpc\"\n          interval = \"10\"\n          timeout = \"1s\"\n        }}\n      }}"
            )),
            expect![[r#"
                error: check block needs an interval
                  --> test.nomad:16:9
                   |
                16 |         check {
                   |         ^^^^^
                   = help: add `interval = "10s"`

                error: check timeout must be at least 1s, got 500ms
                  --> test.nomad:18:21
                   |
                18 |           timeout = "500ms"
                   |                     ^^^^^^^

                error: grpc checks are not supported by orc
                  --> test.nomad:21:18
                   |
                21 |           type = "grpc"
                   |                  ^^^^^^
                   = help: use an http or tcp check

                error: interval: invalid duration "10": missing unit; use one of ns, us, ms, s, m, h (e.g. "30s")
                  --> test.nomad:22:22
                   |
                22 |           interval = "10"
                   |                      ^^^^
                   = help: write a duration such as "500ms", "30s", "5m" or "1h30m"

                4 errors in test.nomad"#]],
        );
    }

    #[test]
    fn nomad_provider_rules() {
        check_err(
            &pot_job(&format!(
                "{POT_CONFIG}\n      service {{\n        provider = \"nomad\"\n        port = \"http\"\n        check {{\n          type = \"script\"\n          command = \"/bin/check\"\n          interval = \"10s\"\n          timeout = \"2s\"\n        }}\n      }}\n      service {{\n        provider = \"consul\"\n        port = \"http\"\n      }}"
            )),
            expect![[r#"
                error: the nomad service provider only runs http and tcp checks
                  --> test.nomad:18:18
                   |
                18 |           type = "script"
                   |                  ^^^^^^^^
                   = help: use type = "http" or "tcp", or provider = "consul"

                error: service provider "consul" differs from "nomad" used by another service in this group
                  --> test.nomad:25:20
                   |
                25 |         provider = "consul"
                   |                    ^^^^^^^^
                   = help: all services in a group must use the same provider

                2 errors in test.nomad"#]],
        );
    }

    #[test]
    fn port_labels_must_be_declared() {
        check_err(
            r#"
job "p" {
  group "g" {
    network {
      port "http" {}
    }
    service {
      port = "web"
    }
    task "t" {
      driver = "pot"
      config {
        image    = "https://potluck.honeyguide.net/nginx-nomad"
        pot      = "nginx-nomad-amd64-13_1"
        tag      = "1.1.13"
        port_map = { http = "80", admin = "8080" }
      }
      service {
        port = "http"
        check {
          type     = "http"
          port     = "metrics"
          path     = "/"
          interval = "10s"
          timeout  = "1s"
        }
      }
    }
  }
}
"#,
            expect![[r#"
                error: service refers to port "web", which is not declared
                 --> test.nomad:8:14
                  |
                8 |       port = "web"
                  |              ^^^^^
                  = help: declared ports are: http

                error: port_map refers to port "admin", which is not declared
                  --> test.nomad:16:20
                   |
                16 |         port_map = { http = "80", admin = "8080" }
                   |                    ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
                   = help: declared ports are: http

                error: check refers to port "metrics", which is not declared
                  --> test.nomad:22:22
                   |
                22 |           port     = "metrics"
                   |                      ^^^^^^^^^
                   = help: declared ports are: http

                3 errors in test.nomad"#]],
        );
    }

    #[test]
    fn affinity_weight_and_constraint_operators() {
        check_err(
            r#"
job "a" {
  affinity {
    attribute = "${node.class}"
    value     = "big"
    weight    = 0
  }
  affinity {
    attribute = "${node.class}"
    value     = "big"
    weight    = 101
  }
  constraint {
    attribute = "${attr.kernel.name}"
    operator  = "~="
    value     = "freebsd"
  }
  constraint {
    attribute = "${meta.x}"
    regexp    = "(unclosed"
  }
  constraint {
    value = "freebsd"
  }
  group "g" {
    task "t" {
      driver = "raw_exec"
      config {
        command = "/bin/true"
      }
    }
  }
}
"#,
            expect![[r#"
                error: affinity weight must not be 0
                 --> test.nomad:6:17
                  |
                6 |     weight    = 0
                  |                 ^
                  = help: use a weight between -100 and 100; negative weights repel

                error: weight must be between -100 and 100, got 101
                  --> test.nomad:11:17
                   |
                11 |     weight    = 101
                   |                 ^^^

                error: unknown constraint operator "~="
                  --> test.nomad:15:17
                   |
                15 |     operator  = "~="
                   |                 ^^^^
                   = help: operator must be one of: = == is != not < <= > >= regexp set_contains set_contains_all set_contains_any version semver is_set is_not_set distinct_hosts distinct_property

                error: invalid regular expression "(unclosed": unclosed group
                  --> test.nomad:20:17
                   |
                20 |     regexp    = "(unclosed"
                   |                 ^^^^^^^^^^^

                error: constraint needs an attribute
                  --> test.nomad:22:3
                   |
                22 |   constraint {
                   |   ^^^^^^^^^^
                   = help: add `attribute = "${attr.kernel.name}"` or similar

                5 errors in test.nomad"#]],
        );
    }

    #[test]
    fn logs_must_fit_the_ephemeral_disk() {
        check_err(
            r#"
job "l" {
  group "g" {
    ephemeral_disk {
      size = 100
    }
    task "a" {
      driver = "raw_exec"
      config {
        command = "/bin/true"
      }
      logs {
        max_files     = 10
        max_file_size = 10
      }
    }
  }
}
"#,
            expect![[r#"
                error: log storage of task "a" (100 MB) must be less than the group's ephemeral disk (100 MB)
                  --> test.nomad:12:7
                   |
                12 |       logs {
                   |       ^^^^
                   = help: raise the group's ephemeral_disk { size = ... } or lower logs { max_files, max_file_size }"#]],
        );
    }

    #[test]
    fn pot_config_rules() {
        check_err(
            r#"
job "pot" {
  group "g" {
    task "www.1" {
      driver = "pot"
      config {
        image           = "https://potluck.honeyguide.net/nginx-nomad"
        tag             = 1
        args            = ["-g", "daemon off;"]
        mount           = ["relative/dir:/mnt", "/a:/b:/c"]
        mount_read_only = "/tmp:/tmp"
        copy            = ["/etc/hosts:/etc/hosts:ro"]
        attributes      = ["devfs_ruleset"]
        extra_hosts     = ["db:10.0.0.2"]
        network_mode    = ["host"]
      }
    }
  }
}
"#,
            expect![[r#"
                error: task name "www.1" cannot be used with the pot driver
                 --> test.nomad:4:10
                  |
                4 |     task "www.1" {
                  |          ^^^^^^^
                  = help: pot replaces '.' with '_' in jail names, so the jail would not be found; rename the task, e.g. "www-1"

                error: pot task config needs "pot"
                 --> test.nomad:6:7
                  |
                6 |       config {
                  |       ^^^^^^
                  = help: add `pot = "nginx-nomad-amd64-13_1"`

                error: args needs a command
                 --> test.nomad:9:9
                  |
                9 |         args            = ["-g", "daemon off;"]
                  |         ^^^^
                  = help: pot joins args onto command; add `command = "..."`

                error: mount entry "relative/dir:/mnt": the host path "relative/dir" must be absolute
                  --> test.nomad:10:28
                   |
                10 |         mount           = ["relative/dir:/mnt", "/a:/b:/c"]
                   |                            ^^^^^^^^^^^^^^^^^^^
                   = help: paths must start with /

                error: mount entry "/a:/b:/c" must be "<host path>:<jail path>"
                  --> test.nomad:10:49
                   |
                10 |         mount           = ["relative/dir:/mnt", "/a:/b:/c"]
                   |                                                 ^^^^^^^^^^
                   = help: write `mount = ["/host/dir:/jail/dir"]`

                error: mount_read_only must be a list of strings, got a string
                  --> test.nomad:11:27
                   |
                11 |         mount_read_only = "/tmp:/tmp"
                   |                           ^^^^^^^^^^^
                   = help: write `mount_read_only = ["..."]`

                error: attributes entry "devfs_ruleset" must be "<attribute>:<value>"
                  --> test.nomad:13:28
                   |
                13 |         attributes      = ["devfs_ruleset"]
                   |                            ^^^^^^^^^^^^^^^

                error: network_mode must be a string, got a list
                  --> test.nomad:15:27
                   |
                15 |         network_mode    = ["host"]
                   |                           ^^^^^^^^

                8 errors in test.nomad"#]],
        );
    }

    #[test]
    fn pot_attributes_network_modes_and_mount_points() {
        check_err(
            r#"
job "pot" {
  group "g" {
    task "t" {
      driver = "pot"
      config {
        image           = "https://potluck.honeyguide.net/nginx-nomad"
        pot             = "nginx-nomad-amd64-13_1"
        tag             = "1.1.13"
        network_mode    = "private-bridge"
        attributes      = ["devfs_ruleset:4", "persistent:maybe", "sysvshm:new", "no-such:1", "exec_stop:/bin/stop"]
        mount           = ["/data:/"]
        mount_read_only = ["/data:/my data"]
        copy            = ["/etc/a.conf:/usr/local/etc/a:b.conf"]
        extra_hosts     = ["db:10.0.0.2", "v6:fd00::1", "bad:db.local"]
      }
    }
  }
}
"#,
            expect![[r#"
                error: network_mode "private-bridge" cannot be used: pot needs a bridge name (-B) for it, which the driver cannot pass
                  --> test.nomad:10:27
                   |
                10 |         network_mode    = "private-bridge"
                   |                           ^^^^^^^^^^^^^^^^
                   = help: use one of: public-bridge, host, inherit

                error: attributes entry "persistent:maybe": "persistent" takes YES or NO, got "maybe"
                  --> test.nomad:11:47
                   |
                11 |         attributes      = ["devfs_ruleset:4", "persistent:maybe", "sysvshm:new", "no-such:1", "exec_stop:/bin/stop"]
                   |                                               ^^^^^^^^^^^^^^^^^^

                error: attributes entry "no-such:1": pot has no attribute "no-such"
                  --> test.nomad:11:82
                   |
                11 |         attributes      = ["devfs_ruleset:4", "persistent:maybe", "sysvshm:new", "no-such:1", "exec_stop:/bin/stop"]
                   |                                                                                  ^^^^^^^^^^^
                   = help: valid attributes are: children, devfs_ruleset, early-start-at-boot, enforce_statfs, exec_stop, fdescfs, linprocfs, localhost-tunnel, mlock, mount, no-etc-hosts, no-rc-script, no-tmpfs, nullfs, persistent, procfs, prunable, raw_sockets, start-at-boot, stop_timeout, sysvmsg, sysvsem, sysvshm, tmpfs, zfs

                error: mount entry "/data:/": pot cannot mount onto "/"
                  --> test.nomad:12:28
                   |
                12 |         mount           = ["/data:/"]
                   |                            ^^^^^^^^^
                   = help: the jail path must not be / and must not contain spaces

                error: mount_read_only entry "/data:/my data": pot cannot mount onto "/my data"
                  --> test.nomad:13:28
                   |
                13 |         mount_read_only = ["/data:/my data"]
                   |                            ^^^^^^^^^^^^^^^^
                   = help: the jail path must not be / and must not contain spaces

                error: extra_hosts entry "bad:db.local": "db.local" is not an IP address
                  --> test.nomad:15:57
                   |
                15 |         extra_hosts     = ["db:10.0.0.2", "v6:fd00::1", "bad:db.local"]
                   |                                                         ^^^^^^^^^^^^^^

                6 errors in test.nomad"#]],
        );
    }

    #[test]
    fn raw_exec_and_unknown_drivers() {
        check_err(
            r#"
job "r" {
  group "g" {
    task "a" {
      driver = "raw_exec"
      config {
        args = "not-a-list"
      }
    }
    task "b" {
      driver = "docker"
      config {
        image = "nginx"
      }
    }
    task "c" {
      config {
        command = "/bin/true"
      }
    }
  }
}
"#,
            expect![[r#"
                error: raw_exec task config needs "command"
                 --> test.nomad:6:7
                  |
                6 |       config {
                  |       ^^^^^^
                  = help: add `command = "/usr/local/bin/app"`

                error: args must be a list of strings, got a string
                 --> test.nomad:7:16
                  |
                7 |         args = "not-a-list"
                  |                ^^^^^^^^^^^^
                  = help: write `args = ["..."]`

                error: unknown driver "docker"
                  --> test.nomad:11:16
                   |
                11 |       driver = "docker"
                   |                ^^^^^^^^
                   = help: orc's drivers are: pot, raw_exec

                error: task "c" has no driver
                  --> test.nomad:16:10
                   |
                16 |     task "c" {
                   |          ^^^
                   = help: add `driver = "pot"` (or "raw_exec")

                4 errors in test.nomad"#]],
        );
    }

    #[test]
    fn wrong_types_and_duplicates() {
        check_err(
            r#"
job "w" {
  datacenters = "dc1"
  all_at_once = "yes"
  group "g" {
    count = "three"
    restart {
      mode     = "sometimes"
      attempts = 3
      interval = "10s"
      delay    = "15s"
    }
    update {
      min_healthy_time = "10m"
      healthy_deadline = "5m"
    }
    task "t" {
      driver = "raw_exec"
      config {
        command = "/bin/true"
      }
      resources {
        cpu    = 100
        cores  = 2
        memory = 5
      }
    }
    task "t" {
      driver = "raw_exec"
      config {
        command = "/bin/true"
      }
    }
  }
}
"#,
            expect![[r#"
                error: datacenters must be a list of strings, got "dc1"
                 --> test.nomad:3:17
                  |
                3 |   datacenters = "dc1"
                  |                 ^^^^^

                error: all_at_once must be a bool (true or false), got "yes"
                 --> test.nomad:4:17
                  |
                4 |   all_at_once = "yes"
                  |                 ^^^^^

                error: count must be a whole number, got "three"
                 --> test.nomad:6:13
                  |
                6 |     count = "three"
                  |             ^^^^^^^

                error: cannot restart 3 times in an interval of 10s with a delay of 15s
                 --> test.nomad:7:5
                  |
                7 |     restart {
                  |     ^^^^^^^
                  = help: raise interval, or lower attempts or delay

                error: invalid mode "sometimes"
                 --> test.nomad:8:18
                  |
                8 |       mode     = "sometimes"
                  |                  ^^^^^^^^^^^
                  = help: mode must be one of "fail", "delay"

                error: min_healthy_time (600s) must be less than healthy_deadline (300s)
                  --> test.nomad:14:26
                   |
                14 |       min_healthy_time = "10m"
                   |                          ^^^^^

                error: cpu and cores cannot both be set
                  --> test.nomad:23:9
                   |
                23 |         cpu    = 100
                   |         ^^^
                   = help: cores reserves whole cores; cpu asks for MHz

                error: memory must be at least 10, got 5
                  --> test.nomad:25:18
                   |
                25 |         memory = 5
                   |                  ^

                error: task "t" is defined twice in group "g" (first on line 17)
                  --> test.nomad:28:10
                   |
                28 |     task "t" {
                   |          ^^^

                9 errors in test.nomad"#]],
        );
    }

    #[test]
    fn syntax_errors_point_at_the_problem() {
        check_err(
            "job \"x\" {\n  group \"g\" {\n    count = \n  }\n}\n",
            expect![[r#"
            error: expected a value
             --> test.nomad:3:13
              |
            3 |     count =
              |             ^
              = help: write a string ("..."), number, bool, list ([...]), map ({...}) or expression after `=`"#]],
        );
        check_err(
            "job \"x\" {\n  name = \"unterminated\n}\n",
            expect![[r#"
            error: unterminated string
             --> test.nomad:2:3
              |
            2 |   name = "unterminated
              |   ^
              = help: close the string with a straight quote (") on the same line; use a <<EOT heredoc for multi-line text"#]],
        );
        check_err(
            "job \"x\" {\n  group \"g\" {\n",
            expect![[r#"
                error: unexpected end of file: a block or bracket is not closed
                 --> test.nomad:2:14
                  |
                2 |   group "g" {
                  |              ^
                  = help: add the missing `}` (or `]`) at the end; every `{` needs a matching `}`"#]],
        );
        check_err(
            "job \"x\" {\n  group \"g\" {\n    count = 1\n    count = 2\n  }\n}\n",
            expect![[r#"
                error: attribute "count" is set twice in this block
                 --> test.nomad:4:5
                  |
                4 |     count = 2
                  |     ^^^^^
                  = help: remove one of the two; an attribute can be set only once"#]],
        );
        check_err(
            "job \"x\" {\n  args = [\"a\" \"b\"]\n}\n",
            expect![[r#"
            error: missing comma between list elements
             --> test.nomad:2:15
              |
            2 |   args = ["a" "b"]
              |               ^
              = help: separate list elements with commas: add `,` after the element on line 2"#]],
        );
        check_err(
            "",
            expect![[r#"
            error: no job block found
             --> test.nomad:1:1
              |
            1 | 
              | ^
              = help: a job file needs `job "name" { group "name" { task "name" { ... } } }`"#]],
        );
    }

    #[test]
    fn blocks_refused_by_job_type_and_no_cascaded_errors() {
        check_err(
            r#"
job "b" {
  type = "batch"
  update {
    max_parallel = 2
  }
  group "g" {
    migrate {
      max_parallel = 1
    }
    task "t" {
      driver = "pot"
      config {
        image = var.missing
        pot   = "p"
        tag   = "1"
      }
      template {
        data        = "x"
        destination = "local/x"
        change_mode = "script"
      }
    }
  }
}
"#,
            expect![[r#"
                error: job type "batch" does not allow update blocks
                 --> test.nomad:4:3
                  |
                4 |   update {
                  |   ^^^^^^
                  = help: rolling updates apply to service and system jobs; remove this block

                error: job type "batch" does not allow migrate blocks
                 --> test.nomad:8:5
                  |
                8 |     migrate {
                  |     ^^^^^^^
                  = help: migrate applies to service jobs only; remove this block

                error: undeclared variable var.missing
                  --> test.nomad:14:17
                   |
                14 |         image = var.missing
                   |                 ^^^^^^^^^^^
                   = help: declare it with a `variable "missing" {}` block

                error: change_mode "script" is not supported by orc
                  --> test.nomad:21:23
                   |
                21 |         change_mode = "script"
                   |                       ^^^^^^^^
                   = help: orc does not run template change scripts; use change_mode = "restart" or "signal"

                4 errors in test.nomad"#]],
        );
    }

    #[test]
    fn ports_are_unique_per_group_and_group_script_checks_name_a_task() {
        check_err(
            r#"
job "d" {
  group "g" {
    network {
      port "http" {
        static = 8080
      }
    }
    service {
      port = "http"
      check {
        type     = "script"
        command  = "/bin/check"
        interval = "10s"
        timeout  = "2s"
      }
    }
    task "t" {
      driver = "raw_exec"
      config {
        command = "/bin/true"
      }
      resources {
        network {
          port "http" {}
          port "admin" {
            static = 8080
          }
        }
      }
    }
  }
}
"#,
            expect![[r#"
                error: script checks in a group service need a task
                  --> test.nomad:11:7
                   |
                11 |       check {
                   |       ^^^^^
                   = help: add `task = "<task name>"` to the check or the service

                error: port "http" is already declared in this group (line 5)
                  --> test.nomad:25:16
                   |
                25 |           port "http" {}
                   |                ^^^^^^

                error: static port 8080 is already reserved by port "http" (line 5)
                  --> test.nomad:26:16
                   |
                26 |           port "admin" {
                   |                ^^^^^^^
                   = help: each static port can be reserved once per group

                3 errors in test.nomad"#]],
        );
    }

    #[test]
    fn a_missing_file_is_reported_without_a_position() {
        let err =
            parse_file(std::path::Path::new("/nonexistent/job.nomad"), &ParseOptions::default())
                .unwrap_err();
        assert_eq!(err.0[0].line, 0);
        expect![[r#"
            error: cannot read job file: No such file or directory (os error 2)
              --> /nonexistent/job.nomad"#]]
        .assert_eq(&err.to_string());
    }

    #[test]
    fn a_broken_interpolation_suggests_escaping() {
        check_err(
            "job \"x\" {\n  name = \"a ${b c}\"\n}\n",
            expect![[r#"
            error: invalid expression inside ${ ... }
             --> test.nomad:2:17
              |
            2 |   name = "a ${b c}"
              |                 ^
              = help: `${ ... }` holds an HCL expression; to write a literal `${` (for a shell or a template), escape it as `$${`"#]],
        );
        check_err(
            "job \"x\" {\n  task \"t\" {\n    template {\n      data = <<EOT\nPORT=${PORT:-8080}\nEOT\n    }\n  }\n}\n",
            expect![[r#"
                error: invalid expression inside ${ ... }
                 --> test.nomad:5:12
                  |
                5 | PORT=${PORT:-8080}
                  |            ^
                  = help: `${ ... }` holds an HCL expression; to write a literal `${` (for a shell or a template), escape it as `$${`"#]],
        );
    }

    #[test]
    fn expressions_that_cannot_be_evaluated() {
        check_err(
            r#"
job "e" {
  region = uper("x")
  datacenters = [var.nope]
  group "g" {
    count = node.count + 1
    task "t" {
      driver = "raw_exec"
      config {
        command = "cmd-${[1, 2]}"
      }
    }
  }
}
"#,
            expect![[r#"
                error: unknown function uper()
                 --> test.nomad:3:12
                  |
                3 |   region = uper("x")
                  |            ^^^^^^^^^
                  = help: did you mean upper()?

                error: undeclared variable var.nope
                 --> test.nomad:4:18
                  |
                4 |   datacenters = [var.nope]
                  |                  ^^^^^^^^
                  = help: declare it with a `variable "nope" {}` block

                error: `node.count` is only known when the task runs, so it cannot be used in an expression
                 --> test.nomad:6:13
                  |
                6 |     count = node.count + 1
                  |             ^^^^^^^^^^
                  = help: runtime values can only appear inside strings, as "${node.count}"

                error: cannot include a list in a string template
                  --> test.nomad:10:24
                   |
                10 |         command = "cmd-${[1, 2]}"
                   |                        ^^^^^^^^^
                   = help: only strings, numbers and bools can be interpolated; use join() or jsonencode() for collections

                4 errors in test.nomad"#]],
        );
    }
}

mod variables {
    use super::*;

    const JOB: &str = r#"
variable "dc" {
  type        = string
  description = "where to run"
  default     = "from-default"
}
variable "count" {
  type    = number
  default = 1
  validation {
    condition     = var.count >= 1 && var.count <= 5
    error_message = "count must be between 1 and 5"
  }
}
variable "tags" {
  type    = list(string)
  default = ["a"]
}
variables {
  image = "https://potluck.honeyguide.net/nginx-nomad"
}
locals {
  suffix = "-${var.dc}"
  name   = "web${local.suffix}"
}
job "v" {
  datacenters = [var.dc]
  group "g" {
    count = var.count
    task "t" {
      driver = "raw_exec"
      config {
        command = "/bin/echo"
        args    = concat([local.name, var.image], var.tags)
      }
    }
  }
}
"#;

    fn summary(opts: &ParseOptions) -> String {
        match parse_str("vars.nomad", JOB, opts) {
            Ok(job) => format!(
                "dc={} count={} args={}",
                job.datacenters[0],
                job.task_groups[0].count,
                serde_json::to_string(&job.task_groups[0].tasks[0].config["args"]).unwrap()
            ),
            Err(e) => e.to_string(),
        }
    }

    fn write_temp(name: &str, text: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("jobspec-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn defaults_apply_without_inputs() {
        expect![[r#"dc=from-default count=1 args=["web-from-default","https://potluck.honeyguide.net/nginx-nomad","a"]"#]]
            .assert_eq(&summary(&ParseOptions::default()));
    }

    #[test]
    fn precedence_is_default_env_file_then_cli() {
        let env_only = ParseOptions {
            env: [
                ("NOMAD_VAR_dc".to_string(), "from-env".to_string()),
                ("NOMAD_VAR_tags".into(), r#"["x", "y"]"#.into()),
            ]
            .into_iter()
            .collect(),
            ..ParseOptions::default()
        };
        expect![[r#"dc=from-env count=1 args=["web-from-env","https://potluck.honeyguide.net/nginx-nomad","x","y"]"#]]
            .assert_eq(&summary(&env_only));

        let file = write_temp("vars.hcl", "dc = \"from-file\"\ncount = 3\n");
        let with_file = ParseOptions { var_files: vec![file.clone()], ..env_only.clone() };
        expect![[r#"dc=from-file count=3 args=["web-from-file","https://potluck.honeyguide.net/nginx-nomad","x","y"]"#]]
            .assert_eq(&summary(&with_file));

        let json_file = write_temp("vars.json", r#"{"count": 4}"#);
        let with_cli = ParseOptions {
            vars: vec![("dc".into(), "from-cli-1".into()), ("dc".into(), "from-cli-2".into())],
            var_files: vec![file, json_file],
            ..env_only
        };
        expect![[r#"dc=from-cli-2 count=4 args=["web-from-cli-2","https://potluck.honeyguide.net/nginx-nomad","x","y"]"#]]
            .assert_eq(&summary(&with_cli));
    }

    #[test]
    fn validation_failures_and_bad_values_are_reported() {
        let opts = ParseOptions {
            vars: vec![("count".into(), "9".into()), ("nope".into(), "1".into())],
            ..ParseOptions::default()
        };
        expect![[r#"
            error: -var nope=...: variable "nope" is not declared in the job file
              --> vars.nomad
               = help: declare it with `variable "nope" {}`

            error: invalid value for variable "count": count must be between 1 and 5
              --> vars.nomad:11:21
               |
            11 |     condition     = var.count >= 1 && var.count <= 5
               |                     ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
               = help: this check comes from the variable's validation block

            2 errors in vars.nomad"#]]
        .assert_eq(&summary(&opts));
        let opts =
            ParseOptions { vars: vec![("count".into(), "many".into())], ..ParseOptions::default() };
        expect![[r#"
            error: invalid value for variable "count": expected number, got string "many"
             --> vars.nomad:7:10
              |
            7 | variable "count" {
              |          ^^^^^^^"#]]
        .assert_eq(&summary(&opts));
    }

    #[test]
    fn unset_variables_and_var_file_errors() {
        check_err(
            r#"
variable "region" {}
job "x" {
  region = var.region
  group "g" {
    task "t" {
      driver = "raw_exec"
      config {
        command = "/bin/true"
      }
    }
  }
}
"#,
            expect![[r#"
                error: Unset variable "region"
                 --> test.nomad:2:10
                  |
                2 | variable "region" {}
                  |          ^^^^^^^^
                  = help: give it a value with -var region=..., a var file, or the environment variable NOMAD_VAR_region, or add a default"#]],
        );
        let bad = write_temp("bad.hcl", "dc = \"x\"\nunknown = 1\nbroken = [\n");
        let opts = ParseOptions { var_files: vec![bad], ..ParseOptions::default() };
        let out = summary(&opts);
        assert!(out.contains("bad.hcl:3:"), "{out}");
        let undeclared = write_temp("undeclared.hcl", "dc = \"x\"\nunknown = 1\n");
        let opts = ParseOptions { var_files: vec![undeclared], ..ParseOptions::default() };
        let out = summary(&opts);
        assert!(
            out.contains(
                "variable \"unknown\" is set in the var file but not declared in the job file"
            ),
            "{out}"
        );
        assert!(out.contains("undeclared.hcl:2:1"), "{out}");
    }

    #[test]
    fn filesystem_functions_need_allow_fs() {
        let data = write_temp("motd.txt", "hello\n");
        let src = format!(
            r#"
job "fs" {{
  group "g" {{
    task "t" {{
      driver = "raw_exec"
      config {{
        command = "/bin/echo"
        args    = [chomp(file("{path}")), basename("{path}"), filebase64("{path}")]
      }}
    }}
  }}
}}
"#,
            path = data.display()
        );
        let allowed = ParseOptions { allow_fs: true, ..ParseOptions::default() };
        let job = parse_str("fs.nomad", &src, &allowed).unwrap();
        assert_eq!(
            job.task_groups[0].tasks[0].config["args"],
            serde_json::json!(["hello", "motd.txt", "aGVsbG8K"])
        );
        let err = parse_str("fs.nomad", &src, &ParseOptions::default()).unwrap_err();
        assert_eq!(err.0[0].message, "unknown function file()");
        assert_eq!(
            err.0[0].hint.as_deref(),
            Some("filesystem functions are only available when filesystem access is allowed")
        );
    }

    #[test]
    fn locals_cycles_and_var_in_defaults_are_errors() {
        check_err(
            r#"
variable "a" {
  default = var.b
}
locals {
  x = local.y
  y = local.x
}
job "x" {
  group "g" {
    task "t" {
      driver = "raw_exec"
      config {
        command = "/bin/true"
      }
    }
  }
}
"#,
            expect![[r#"
                error: var.* cannot be used here
                 --> test.nomad:3:13
                  |
                3 |   default = var.b
                  |             ^^^^^
                  = help: variable defaults and var files may only contain literal values and function calls

                error: local value "x" is part of a reference cycle
                 --> test.nomad:6:3
                  |
                6 |   x = local.y
                  |   ^
                  = help: these locals refer to each other in a circle: x, y

                error: local value "y" is part of a reference cycle
                 --> test.nomad:7:3
                  |
                7 |   y = local.x
                  |   ^
                  = help: these locals refer to each other in a circle: x, y

                3 errors in test.nomad"#]],
        );
    }
}

mod formatting {
    use super::*;

    #[test]
    fn fmt_aligns_indents_and_keeps_comments() {
        let src = "# A job.\njob \"x\" {\n\tdatacenters=[\"dc1\",\"dc2\"] # where\n  type = \"service\"\n\n\n  // the group\n  group \"g\" {\n    count=1\n    network {\n       port \"http\" { static = 8080 }\n    }\n    task \"t\" {\n      driver = \"raw_exec\"\n      config {\n        command = \"/bin/sh\"\n        args = [\n        \"-c\",\n            \"echo hi\", # greet\n        ]\n        port_map = { http = \"80\", https = \"443\" }\n      }\n      template {\n        data = <<EOT\n  keep   this\n EOT\n        destination = \"local/x\"\n      }\n    }\n  }\n}\n";
        let once = format_source("x.nomad", src).unwrap();
        expect![[r##"
            # A job.
            job "x" {
              datacenters = ["dc1", "dc2"] # where
              type        = "service"

              // the group
              group "g" {
                count = 1
                network {
                  port "http" { static = 8080 }
                }
                task "t" {
                  driver = "raw_exec"
                  config {
                    command = "/bin/sh"
                    args    = [
                      "-c",
                      "echo hi", # greet
                    ]
                    port_map = { http = "80", https = "443" }
                  }
                  template {
                    data = <<EOT
              keep   this
             EOT
                    destination = "local/x"
                  }
                }
              }
            }
        "##]]
        .assert_eq(&once);
        assert_eq!(format_source("x.nomad", &once).unwrap(), once);
    }

    #[test]
    fn fmt_keeps_comments_everywhere_and_is_stable() {
        let src = r##"/* block comment
   spanning */
job "x" {
  meta = {
    # leading
    a = "1" # trailing a
    "b.c" = 2
  }
  args = [ # after bracket
    "a",
    /* inline */ "b"
  ]
  empty = []
  obj = {}
  nested = { a = [1,2], b = { c = 3 } }
  multi = [
    { a = 1 },
    {
      b = 2
    },
  ]
  cond = var.x > 1 ? "a" : "b"
  tpl = <<-EOT
    indented
      more
    EOT
  f = upper(  "x"  )
  group "g" {

    # comment at start

    count = 1


    # comment before end

  }
  # end of job
}
# end of file
job "y" {
  args = [
    /* multi
       line */
    "a",
  ]
  group "g" {
    /* nested
         keep */
    count = 1
  }
}
"##;
        let once = format_source("c.nomad", src).unwrap();
        expect![[r#"
            /* block comment
               spanning */
            job "x" {
              meta = {
                # leading
                a     = "1" # trailing a
                "b.c" = 2
              }
              args = [
                # after bracket
                "a",
                /* inline */
                "b"
              ]
              empty  = []
              obj    = {}
              nested = { a = [1, 2], b = { c = 3 } }
              multi  = [
                { a = 1 },
                {
                  b = 2
                },
              ]
              cond = var.x > 1 ? "a" : "b"
              tpl  = <<-EOT
                indented
                  more
                EOT
              f = upper(  "x"  )
              group "g" {
                # comment at start

                count = 1
                # comment before end
              }
              # end of job
            }
            # end of file
            job "y" {
              args = [
                /* multi
                   line */
                "a",
              ]
              group "g" {
                /* nested
                     keep */
                count = 1
              }
            }
        "#]]
        .assert_eq(&once);
        assert_eq!(format_source("c.nomad", &once).unwrap(), once);
        let comments = |text: &str| text.matches('#').count() + text.matches("/*").count();
        assert_eq!(comments(&once), comments(src), "a comment was lost");
    }

    #[test]
    fn fmt_reports_syntax_errors_and_typographic_quotes() {
        let err = format_source("x.nomad", "job \"x\" {\n").unwrap_err();
        assert_eq!((err.0[0].line, err.0[0].col), (1, 10));
        let err = format_source("x.nomad", "job “x” {}\n").unwrap_err();
        assert_eq!((err.0[0].line, err.0[0].col), (1, 5));
    }
}

/// model → JSON → model is the identity, for generated jobs and for every parsed corpus job.
mod roundtrip {
    use super::*;
    use model::*;
    use proptest::collection::{btree_map, vec};
    use proptest::option;
    use proptest::prelude::*;
    use std::collections::BTreeMap;
    use std::time::Duration;

    fn name() -> impl Strategy<Value = String> {
        "[a-z0-9_.${}-]{0,10}"
    }

    fn duration() -> BoxedStrategy<Duration> {
        prop_oneof![Just(Duration::ZERO), (0u64..=i64::MAX as u64).prop_map(Duration::from_nanos)]
            .boxed()
    }

    fn string_map() -> impl Strategy<Value = BTreeMap<String, String>> {
        btree_map(name(), name(), 0..3)
    }

    fn json_value() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            any::<i64>().prop_map(serde_json::Value::from),
            any::<bool>().prop_map(serde_json::Value::from),
            name().prop_map(serde_json::Value::from),
            Just(serde_json::Value::Null),
        ];
        leaf.prop_recursive(3, 16, 4, |inner| {
            prop_oneof![
                vec(inner.clone(), 0..4).prop_map(serde_json::Value::Array),
                btree_map(name(), inner, 0..4)
                    .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }

    fn constraint() -> impl Strategy<Value = Constraint> {
        (name(), name(), name()).prop_map(|(ltarget, rtarget, operand)| Constraint {
            ltarget,
            rtarget,
            operand,
        })
    }

    fn affinity() -> impl Strategy<Value = Affinity> {
        (name(), name(), name(), any::<i8>()).prop_map(|(ltarget, rtarget, operand, weight)| {
            Affinity { ltarget, rtarget, operand, weight }
        })
    }

    fn spread() -> impl Strategy<Value = Spread> {
        (
            name(),
            any::<i8>(),
            vec(
                (name(), any::<u8>()).prop_map(|(value, percent)| SpreadTarget { value, percent }),
                0..3,
            ),
        )
            .prop_map(|(attribute, weight, spread_target)| Spread {
                attribute,
                weight,
                spread_target,
            })
    }

    fn restart() -> impl Strategy<Value = RestartPolicy> {
        (duration(), any::<u32>(), duration(), name(), any::<bool>()).prop_map(
            |(interval, attempts, delay, mode, render_templates)| RestartPolicy {
                interval,
                attempts,
                delay,
                mode,
                render_templates,
            },
        )
    }

    fn reschedule() -> impl Strategy<Value = ReschedulePolicy> {
        (any::<u32>(), duration(), duration(), name(), duration(), any::<bool>()).prop_map(
            |(attempts, interval, delay, delay_function, max_delay, unlimited)| ReschedulePolicy {
                attempts,
                interval,
                delay,
                delay_function,
                max_delay,
                unlimited,
            },
        )
    }

    fn update() -> impl Strategy<Value = UpdateStrategy> {
        (
            (duration(), any::<u32>(), name(), duration()),
            (duration(), duration(), any::<u32>(), any::<bool>(), any::<bool>()),
        )
            .prop_map(
                |(
                    (stagger, max_parallel, health_check, min_healthy_time),
                    (healthy_deadline, progress_deadline, canary, auto_revert, auto_promote),
                )| {
                    UpdateStrategy {
                        stagger,
                        max_parallel,
                        health_check,
                        min_healthy_time,
                        healthy_deadline,
                        progress_deadline,
                        canary,
                        auto_revert,
                        auto_promote,
                    }
                },
            )
    }

    fn migrate() -> impl Strategy<Value = MigrateStrategy> {
        (any::<u32>(), name(), duration(), duration()).prop_map(
            |(max_parallel, health_check, min_healthy_time, healthy_deadline)| MigrateStrategy {
                max_parallel,
                health_check,
                min_healthy_time,
                healthy_deadline,
            },
        )
    }

    fn port() -> impl Strategy<Value = Port> {
        (name(), any::<u16>(), any::<i32>(), name())
            .prop_map(|(label, value, to, host_network)| Port { label, value, to, host_network })
    }

    fn network() -> impl Strategy<Value = NetworkResource> {
        (
            (name(), name(), name(), name(), name()),
            any::<u32>(),
            vec(port(), 0..3),
            vec(port(), 0..3),
        )
            .prop_map(
                |((mode, device, cidr, ip, hostname), mbits, reserved_ports, dynamic_ports)| {
                    NetworkResource {
                        mode,
                        device,
                        cidr,
                        ip,
                        hostname,
                        mbits,
                        reserved_ports,
                        dynamic_ports,
                    }
                },
            )
    }

    fn check_restart() -> impl Strategy<Value = CheckRestart> {
        (any::<u32>(), duration(), any::<bool>()).prop_map(|(limit, grace, ignore_warnings)| {
            CheckRestart { limit, grace, ignore_warnings }
        })
    }

    fn check() -> impl Strategy<Value = ServiceCheck> {
        (
            (name(), name(), name(), vec(name(), 0..3), name(), name(), name(), name()),
            (duration(), duration(), name(), any::<bool>(), name(), name()),
            (
                btree_map(name(), vec(name(), 0..2), 0..2),
                name(),
                option::of(check_restart()),
                name(),
            ),
            (any::<u32>(), any::<u32>(), any::<u32>(), name()),
        )
            .prop_map(|(a, b, c, d)| ServiceCheck {
                name: a.0,
                check_type: a.1,
                command: a.2,
                args: a.3,
                path: a.4,
                protocol: a.5,
                port_label: a.6,
                address_mode: a.7,
                interval: b.0,
                timeout: b.1,
                initial_status: b.2,
                tls_skip_verify: b.3,
                tls_server_name: b.4,
                method: b.5,
                header: c.0,
                body: c.1,
                check_restart: c.2,
                task_name: c.3,
                success_before_passing: d.0,
                failures_before_critical: d.1,
                failures_before_warning: d.2,
                on_update: d.3,
            })
    }

    fn service() -> impl Strategy<Value = Service> {
        (
            (name(), vec(name(), 0..3), vec(name(), 0..2), any::<bool>(), name(), name(), name()),
            (vec(check(), 0..2), option::of(check_restart()), string_map(), string_map()),
            (name(), name(), name()),
        )
            .prop_map(|(a, b, c)| Service {
                name: a.0,
                tags: a.1,
                canary_tags: a.2,
                enable_tag_override: a.3,
                port_label: a.4,
                address_mode: a.5,
                address: a.6,
                checks: b.0,
                check_restart: b.1,
                meta: b.2,
                canary_meta: b.3,
                task_name: c.0,
                on_update: c.1,
                provider: c.2,
            })
    }

    fn template() -> impl Strategy<Value = Template> {
        (
            (name(), name(), name(), name(), name(), duration(), name()),
            (
                option::of(any::<i32>()),
                option::of(any::<i32>()),
                name(),
                name(),
                any::<bool>(),
                any::<bool>(),
                any::<bool>(),
            ),
            option::of(
                (option::of(duration()), option::of(duration()))
                    .prop_map(|(min, max)| WaitConfig { min, max }),
            ),
        )
            .prop_map(|(a, b, wait)| Template {
                source_path: a.0,
                dest_path: a.1,
                embedded_tmpl: a.2,
                change_mode: a.3,
                change_signal: a.4,
                splay: a.5,
                perms: a.6,
                uid: b.0,
                gid: b.1,
                left_delim: b.2,
                right_delim: b.3,
                envvars: b.4,
                error_on_missing_key: b.5,
                once: b.6,
                wait,
            })
    }

    fn artifact() -> impl Strategy<Value = Artifact> {
        (name(), string_map(), string_map(), name(), name(), any::<bool>()).prop_map(
            |(getter_source, getter_options, getter_headers, getter_mode, relative_dest, chown)| {
                Artifact {
                    // orc accepts http and https sources only.
                    getter_source: format!("https://{getter_source}"),
                    getter_options,
                    getter_headers,
                    getter_mode,
                    relative_dest,
                    chown,
                }
            },
        )
    }

    fn resources() -> impl Strategy<Value = Resources> {
        (any::<u32>(), any::<u32>(), any::<u32>(), any::<u32>(), any::<u32>(), vec(network(), 0..2))
            .prop_map(|(cpu, cores, memory_mb, memory_max_mb, disk_mb, networks)| Resources {
                cpu,
                cores,
                memory_mb,
                memory_max_mb,
                disk_mb,
                networks,
            })
    }

    fn task() -> impl Strategy<Value = Task> {
        (
            (
                name(),
                name(),
                name(),
                option::of(
                    (name(), any::<bool>()).prop_map(|(hook, sidecar)| Lifecycle { hook, sidecar }),
                ),
            ),
            (
                btree_map(name(), json_value(), 0..4),
                vec(constraint(), 0..2),
                vec(affinity(), 0..2),
                string_map(),
            ),
            (
                vec(service(), 0..2),
                option::of(resources()),
                option::of(restart()),
                string_map(),
                option::of(duration()),
            ),
            (
                option::of((any::<u32>(), any::<u32>(), any::<bool>()).prop_map(
                    |(max_files, max_file_size_mb, disabled)| LogConfig {
                        max_files,
                        max_file_size_mb,
                        disabled,
                    },
                )),
                vec(artifact(), 0..2),
                vec(template(), 0..2),
                any::<bool>(),
                option::of(duration()),
                name(),
            ),
        )
            .prop_map(|(a, b, c, d)| Task {
                name: a.0,
                driver: a.1,
                user: a.2,
                lifecycle: a.3,
                config: b.0,
                constraints: b.1,
                affinities: b.2,
                env: b.3,
                services: c.0,
                resources: c.1,
                restart_policy: c.2,
                meta: c.3,
                kill_timeout: c.4,
                log_config: d.0,
                artifacts: d.1,
                templates: d.2,
                leader: d.3,
                shutdown_delay: d.4,
                kill_signal: d.5,
            })
    }

    fn group() -> impl Strategy<Value = TaskGroup> {
        (
            (
                name(),
                any::<u32>(),
                vec(constraint(), 0..2),
                vec(affinity(), 0..2),
                vec(spread(), 0..2),
                vec(task(), 0..3),
            ),
            (
                option::of(restart()),
                option::of(reschedule()),
                option::of((any::<bool>(), any::<bool>(), any::<u32>()).prop_map(
                    |(sticky, migrate, size_mb)| EphemeralDisk { sticky, migrate, size_mb },
                )),
            ),
            (
                option::of(update()),
                option::of(migrate()),
                vec(network(), 0..2),
                string_map(),
                vec(service(), 0..2),
            ),
            (
                option::of(duration()),
                option::of(
                    (option::of(any::<u32>()), any::<u32>(), any::<bool>())
                        .prop_map(|(min, max, enabled)| Scaling { min, max, enabled }),
                ),
            ),
        )
            .prop_map(|(a, b, c, d)| TaskGroup {
                name: a.0,
                count: a.1,
                constraints: a.2,
                affinities: a.3,
                spreads: a.4,
                tasks: a.5,
                restart_policy: b.0,
                reschedule_policy: b.1,
                ephemeral_disk: b.2,
                update: c.0,
                migrate: c.1,
                networks: c.2,
                meta: c.3,
                services: c.4,
                shutdown_delay: d.0,
                scaling: d.1,
            })
    }

    fn job() -> impl Strategy<Value = Job> {
        (
            (
                name(),
                name(),
                name(),
                name(),
                prop_oneof![Just(JobType::Service), Just(JobType::Batch), Just(JobType::System)],
                any::<i32>(),
            ),
            (
                any::<bool>(),
                vec(name(), 0..3),
                name(),
                vec(constraint(), 0..2),
                vec(affinity(), 0..2),
                vec(spread(), 0..2),
            ),
            (
                vec(group(), 0..3),
                option::of(update()),
                option::of(reschedule()),
                option::of(migrate()),
                string_map(),
            ),
            (
                any::<bool>(),
                name(),
                name(),
                any::<bool>(),
                any::<u64>(),
                any::<i64>(),
                any::<u64>(),
                any::<u64>(),
                any::<u64>(),
            ),
        )
            .prop_map(|(a, b, c, d)| Job {
                region: a.0,
                namespace: a.1,
                id: a.2,
                name: a.3,
                job_type: a.4,
                priority: a.5,
                all_at_once: b.0,
                datacenters: b.1,
                node_pool: b.2,
                constraints: b.3,
                affinities: b.4,
                spreads: b.5,
                task_groups: c.0,
                update: c.1,
                reschedule: c.2,
                migrate: c.3,
                meta: c.4,
                stop: d.0,
                status: d.1,
                status_description: d.2,
                stable: d.3,
                version: d.4,
                submit_time: d.5,
                create_index: d.6,
                modify_index: d.7,
                job_modify_index: d.8,
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        #[test]
        fn model_json_model_is_identity(job in job()) {
            let json = serde_json::to_string(&job).unwrap();
            let back: Job = serde_json::from_str(&json).unwrap();
            prop_assert_eq!(back, job);
        }

        #[test]
        fn canonicalize_is_idempotent(job in job()) {
            let mut once = job;
            once.canonicalize();
            let mut twice = once.clone();
            twice.canonicalize();
            prop_assert_eq!(twice, once);
        }
    }

    #[test]
    fn parsed_jobs_round_trip_through_json() {
        let dir = manifest_dir().join("../../../shared/corpus/potluck");
        for entry in std::fs::read_dir(&dir).expect("corpus directory beside the repository") {
            let path = entry.unwrap().path();
            let Ok(job) = parse_file(&path, &ParseOptions::default()) else { continue };
            let back: Job = serde_json::from_str(&serde_json::to_string(&job).unwrap()).unwrap();
            assert_eq!(back, job, "{}", path.display());
        }
    }
}

/// Damaged job files produce diagnostics, never panics, and every diagnostic points into the file.
mod robustness {
    use super::*;
    use proptest::prelude::*;

    fn corpus_texts() -> Vec<String> {
        let dir = manifest_dir().join("../../../shared/corpus/potluck");
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .expect("corpus directory beside the repository")
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        files.iter().map(|p| std::fs::read_to_string(p).unwrap()).collect()
    }

    /// Characters that tend to break HCL in interesting ways.
    const NOISE: &[&str] = &[
        "\"", "{", "}", "[", "]", "=", ",", "\n", "${", "%{", "<<EOT\n", "#", "“", "’", "var.",
        "node.", "\t", "é",
    ];

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        #[test]
        fn damaged_files_never_panic(file in 0usize..19, edits in proptest::collection::vec((any::<prop::sample::Index>(), 0usize..NOISE.len(), any::<bool>()), 1..4)) {
            let texts = corpus_texts();
            let mut text = texts[file % texts.len()].clone();
            for (at, noise, delete) in edits {
                let mut i = at.index(text.len().max(1)).min(text.len());
                while !text.is_char_boundary(i) {
                    i -= 1;
                }
                if delete {
                    let end = text[i..].char_indices().nth(1).map_or(text.len(), |(j, _)| i + j);
                    text.replace_range(i..end, "");
                } else {
                    text.insert_str(i, NOISE[noise]);
                }
            }
            let lines = text.lines().count().max(1);
            if let Err(diags) = parse_str("damaged.nomad", &text, &ParseOptions::default()) {
                prop_assert!(!diags.0.is_empty());
                for d in &diags.0 {
                    prop_assert!(d.line >= 1 && d.line <= lines + 1, "line {} of {lines}: {d}", d.line);
                    prop_assert!(d.col >= 1);
                    let _ = d.to_string();
                }
            }
            if let Ok(formatted) = format_source("damaged.nomad", &text) {
                prop_assert_eq!(format_source("damaged.nomad", &formatted).ok(), Some(formatted));
            }
        }
    }
}

mod udp_ports {
    use super::*;

    const JOB: &str = r#"job "dns" {
  group "g" {
    network {
      port "dns" {}
    }
    task "unbound" {
      driver = "pot"
      config {
        image    = "https://potluck.honeyguide.net/unbound"
        pot      = "unbound-amd64-14_1"
        tag      = "1.0"
        port_map = { dns = "PORT" }
      }
    }
  }
}
"#;

    #[test]
    fn pot_port_map_accepts_a_protocol_prefix() {
        for ok in ["udp:53", "tcp:53", "53"] {
            let job = parse_str("dns.nomad", &JOB.replace("PORT", ok), &ParseOptions::default());
            assert!(job.is_ok(), "{ok}: {}", job.unwrap_err());
        }
        check_err(
            &JOB.replace("PORT", "sctp:53"),
            expect![[r#"
                error: port_map.dns must be a port number between 1 and 65535, got "sctp:53"
                  --> test.nomad:12:20
                   |
                12 |         port_map = { dns = "sctp:53" }
                   |                    ^^^^^^^^^^^^^^^^^^^
                   = help: write the port inside the pot, e.g. "80", or "udp:53" for UDP"#]],
        );
    }
}
