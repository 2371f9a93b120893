//! Parse-and-validate throughput of job files: generates 1,000 distinct, realistic jobs (pot and
//! raw_exec tasks, services with checks, variables, templates, constraints) and times
//! `jobspec::parse_str` over all of them. Run with `cargo bench -p jobspec --bench parse`.
//! It prints figures; it asserts nothing about time.

use std::time::{Duration, Instant};

const JOBS: usize = 1_000;
const ROUNDS: usize = 5;

/// One job file; `i` varies names, ports, counts and which optional parts appear.
fn job_source(i: usize) -> String {
    let extra_group = if i % 3 == 0 {
        format!(
            r#"
  group "worker-{i}" {{
    count = {count}
    restart {{
      attempts = 5
      delay    = "20s"
    }}
    task "work" {{
      driver = "raw_exec"
      config {{
        command = "/usr/local/bin/worker"
        args    = ["--queue", "q-${{NOMAD_ALLOC_INDEX}}", "--id", "{i}"]
      }}
      template {{
        data        = <<EOT
QUEUE={{{{ env "NOMAD_ALLOC_INDEX" }}}}
EOT
        destination = "local/worker.env"
        env         = true
      }}
      resources {{
        cpu    = 250
        memory = 128
      }}
    }}
  }}"#,
            count = i % 5 + 1
        )
    } else {
        String::new()
    };
    format!(
        r#"# generated job {i}
variable "dc" {{
  type    = string
  default = "dc{dc}"
}}
locals {{
  image = "https://potluck.honeyguide.net/nginx-nomad"
}}
job "web-{i}" {{
  datacenters = [var.dc]
  type        = "service"
  priority    = {priority}
  constraint {{
    attribute = "${{attr.kernel.name}}"
    value     = "freebsd"
  }}
  update {{
    max_parallel     = 1
    min_healthy_time = "10s"
    healthy_deadline = "5m"
  }}
  group "web" {{
    count = {count}
    network {{
      port "http" {{
        static = {port}
      }}
      port "metrics" {{}}
    }}
    task "nginx" {{
      driver = "pot"
      service {{
        name = "web-{i}"
        tags = ["nginx", "www", "shard-{shard}"]
        port = "http"
        check {{
          type     = "tcp"
          interval = "10s"
          timeout  = "2s"
        }}
        check_restart {{
          limit = 3
          grace = "30s"
        }}
      }}
      config {{
        image    = local.image
        pot      = "nginx-nomad-amd64-13_1"
        tag      = "1.1.{i}"
        command  = "nginx"
        args     = ["-g", "'daemon off;'"]
        copy     = ["/mnt/s3/web/nginx.conf:/usr/local/etc/nginx/nginx.conf"]
        mount    = ["/mnt/s3/web/www:/mnt"]
        port_map = {{
          http = "80"
        }}
      }}
      env {{
        SHARD = "{shard}"
        ADDR  = "${{NOMAD_IP_http}}:${{NOMAD_PORT_http}}"
      }}
      resources {{
        cpu    = 200
        memory = 64
      }}
    }}
  }}{extra_group}
}}
"#,
        dc = i % 4,
        priority = 40 + i % 50,
        count = i % 3 + 1,
        port = 20_000 + i,
        shard = i % 16,
    )
}

fn main() {
    let sources: Vec<String> = (0..JOBS).map(job_source).collect();
    let bytes: usize = sources.iter().map(String::len).sum();
    let opts = jobspec::ParseOptions::default();
    // Every generated job must be valid, or the benchmark would time error paths.
    for (i, src) in sources.iter().enumerate() {
        if let Err(e) = jobspec::parse_str(&format!("job-{i}.nomad"), src, &opts) {
            panic!("generated job {i} does not parse:\n{e}");
        }
    }
    let mut best = Duration::MAX;
    for _ in 0..ROUNDS {
        let start = Instant::now();
        let mut groups = 0usize;
        for src in &sources {
            let job = jobspec::parse_str("job.nomad", src, &opts).expect("validated above");
            groups += job.task_groups.len();
        }
        let elapsed = start.elapsed();
        assert!(groups >= JOBS);
        best = best.min(elapsed);
    }
    let per_job = best / JOBS as u32;
    println!("command: cargo bench -p jobspec --bench parse");
    println!(
        "parsed and validated {JOBS} jobs ({:.1} KiB of HCL) in {:.1} ms (best of {ROUNDS}); mean {:.1} µs per job",
        bytes as f64 / 1024.0,
        best.as_secs_f64() * 1e3,
        per_job.as_secs_f64() * 1e6
    );
    let fmt_start = Instant::now();
    for src in &sources {
        jobspec::format_source("job.nomad", src).expect("formats");
    }
    println!("formatted the same {JOBS} jobs in {:.1} ms", fmt_start.elapsed().as_secs_f64() * 1e3);
}
