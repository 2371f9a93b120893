//! Fingerprinting: what this host offers (CPU, memory, disk, hostname, OS, kernel, arch, the
//! advertised IP) and which drivers work, turned into the `Node` the agent registers. Linux reads
//! `/proc`; FreeBSD asks `sysctl`, behind `cfg(target_os)`. Driver detection is the drivers'
//! business (`Driver::fingerprint`); this module only collects the results.

use model::{
    DriverInfo, Node, NodeCpuResources, NodeDiskResources, NodeMemoryResources, NodeResources,
    NodeStatus, SchedulingEligibility,
};
use std::collections::BTreeMap;
use std::path::Path;

/// Facts about the host.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HostFacts {
    pub hostname: String,
    /// `linux`, `freebsd`.
    pub kernel_name: String,
    pub kernel_version: String,
    pub arch: String,
    pub os_name: String,
    pub os_version: String,
    pub cores: u32,
    pub mhz_per_core: u64,
    pub cpu_model: String,
    pub memory_mb: u64,
    pub disk_mb: u64,
    pub ip: String,
}

/// What the operator configured about the node.
#[derive(Debug, Clone, Default)]
pub struct NodeConfig {
    pub id: String,
    /// Defaults to the hostname.
    pub name: Option<String>,
    pub datacenter: String,
    pub node_class: String,
    pub node_pool: String,
    pub meta: BTreeMap<String, String>,
    /// The interface whose address is advertised; the default route's if unset.
    pub network_interface: Option<String>,
    /// `host:port` of the agent's HTTP API.
    pub http_addr: String,
}

/// Reads the host's facts; `data_dir` decides which disk is measured.
pub fn host_facts(data_dir: &Path, interface: Option<&str>) -> HostFacts {
    let uname = rustix::system::uname();
    let text = |s: &std::ffi::CStr| s.to_string_lossy().into_owned();
    let kernel_name = text(uname.sysname()).to_ascii_lowercase();
    let (cores, mhz_per_core, cpu_model, memory_mb) = cpu_and_memory();
    let (os_name, os_version) = os_release(&kernel_name, &text(uname.release()));
    HostFacts {
        hostname: text(uname.nodename()),
        kernel_version: text(uname.release()),
        arch: normalise_arch(&text(uname.machine())),
        kernel_name,
        os_name,
        os_version,
        cores,
        mhz_per_core,
        cpu_model,
        memory_mb,
        disk_mb: rustix::fs::statvfs(data_dir)
            .map(|s| s.f_bavail.saturating_mul(s.f_frsize) / (1024 * 1024))
            .unwrap_or(0),
        ip: address(interface),
    }
}

fn normalise_arch(machine: &str) -> String {
    match machine {
        "x86_64" => "amd64".into(),
        "aarch64" => "arm64".into(),
        other => other.into(),
    }
}

#[cfg(target_os = "linux")]
fn cpu_and_memory() -> (u32, u64, String, u64) {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let (cores, mhz, model) = parse_cpuinfo(&cpuinfo);
    // Without "cpu MHz" (some VMs and ARM), the maximum frequency from cpufreq, or 1 GHz.
    let mhz = mhz.or_else(|| {
        std::fs::read_to_string("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq")
            .ok()?
            .trim()
            .parse::<u64>()
            .ok()
            .map(|khz| khz / 1000)
    });
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let memory_mb = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb / 1024);
    let cores = cores.max(std::thread::available_parallelism().map_or(1, |n| n.get() as u32));
    (cores, mhz.unwrap_or(1000), model, memory_mb)
}

#[cfg(target_os = "freebsd")]
fn cpu_and_memory() -> (u32, u64, String, u64) {
    let sysctl = |name: &str| {
        std::process::Command::new("/sbin/sysctl")
            .args(["-n", name])
            .env_clear()
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default()
    };
    let cores = sysctl("hw.ncpu").parse().unwrap_or(1);
    let mhz = sysctl("hw.clockrate").parse().unwrap_or(1000);
    let memory_mb = sysctl("hw.physmem").parse::<u64>().map_or(0, |b| b / (1024 * 1024));
    (cores, mhz, sysctl("hw.model"), memory_mb)
}

#[cfg(not(any(target_os = "linux", target_os = "freebsd")))]
fn cpu_and_memory() -> (u32, u64, String, u64) {
    (std::thread::available_parallelism().map_or(1, |n| n.get() as u32), 1000, String::new(), 0)
}

/// Logical CPUs, the first CPU's MHz and model name from `/proc/cpuinfo`.
pub fn parse_cpuinfo(text: &str) -> (u32, Option<u64>, String) {
    let mut cores = 0;
    let mut mhz = None;
    let mut model = String::new();
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else { continue };
        match key.trim() {
            "processor" => cores += 1,
            "cpu MHz" if mhz.is_none() => {
                mhz = value.trim().parse::<f64>().ok().map(|m| m.round() as u64)
            }
            "model name" if model.is_empty() => model = value.trim().to_string(),
            _ => {}
        }
    }
    (cores, mhz, model)
}

fn os_release(kernel: &str, release: &str) -> (String, String) {
    if kernel == "freebsd" {
        return ("freebsd".into(), release.into());
    }
    let text = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
    let field = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .map(|v| v.trim_matches('"').to_string())
            .unwrap_or_default()
    };
    (field("ID"), field("VERSION_ID"))
}

/// The advertised address: the interface's first IPv4 if one is named (asked of `ip` on Linux,
/// `ifconfig` elsewhere), otherwise the source address of the default route.
fn address(interface: Option<&str>) -> String {
    if let Some(iface) = interface {
        if iface == "lo" || iface == "lo0" {
            return "127.0.0.1".into();
        }
        let out = if cfg!(target_os = "linux") {
            std::process::Command::new("ip")
                .args(["-o", "-4", "addr", "show", "dev", iface])
                .output()
        } else {
            std::process::Command::new("/sbin/ifconfig").args([iface, "inet"]).output()
        };
        if let Ok(out) = out {
            let text = String::from_utf8_lossy(&out.stdout);
            let mut words = text.split_whitespace();
            while let Some(w) = words.next() {
                if w == "inet" {
                    if let Some(addr) = words.next() {
                        return addr.split('/').next().unwrap_or(addr).to_string();
                    }
                }
            }
        }
    }
    // Connecting a UDP socket sends nothing; it only picks the route's source address.
    std::net::UdpSocket::bind("0.0.0.0:0")
        .and_then(|s| s.connect("192.0.2.1:9").map(|()| s))
        .and_then(|s| s.local_addr())
        .map_or_else(|_| "127.0.0.1".into(), |a| a.ip().to_string())
}

/// The node the agent registers.
pub fn build_node(
    config: &NodeConfig,
    facts: &HostFacts,
    drivers: BTreeMap<String, DriverInfo>,
) -> Node {
    let mut attributes = BTreeMap::from([
        ("cpu.arch".to_string(), facts.arch.clone()),
        ("cpu.numcores".into(), facts.cores.to_string()),
        ("cpu.frequency".into(), facts.mhz_per_core.to_string()),
        ("cpu.totalcompute".into(), (facts.mhz_per_core * u64::from(facts.cores)).to_string()),
        ("cpu.modelname".into(), facts.cpu_model.clone()),
        ("memory.totalbytes".into(), (facts.memory_mb * 1024 * 1024).to_string()),
        ("kernel.name".into(), facts.kernel_name.clone()),
        ("kernel.version".into(), facts.kernel_version.clone()),
        ("os.name".into(), facts.os_name.clone()),
        ("os.version".into(), facts.os_version.clone()),
        ("unique.hostname".into(), facts.hostname.clone()),
        ("unique.network.ip-address".into(), facts.ip.clone()),
        ("nomad.version".into(), env!("CARGO_PKG_VERSION").into()),
        ("orc.version".into(), env!("CARGO_PKG_VERSION").into()),
    ]);
    for (name, info) in &drivers {
        attributes.insert(format!("driver.{name}"), "1".into());
        for (k, v) in &info.attributes {
            if k != &format!("driver.{name}") {
                attributes.insert(k.clone(), v.clone());
            }
        }
    }
    let mut node = Node {
        id: config.id.clone(),
        name: config.name.clone().unwrap_or_else(|| facts.hostname.clone()),
        datacenter: config.datacenter.clone(),
        node_class: config.node_class.clone(),
        node_pool: if config.node_pool.is_empty() {
            "default".into()
        } else {
            config.node_pool.clone()
        },
        http_addr: config.http_addr.clone(),
        attributes,
        meta: config.meta.clone(),
        node_resources: NodeResources {
            cpu: NodeCpuResources {
                cpu_shares: facts.mhz_per_core * u64::from(facts.cores),
                total_cpu_cores: facts.cores,
                reservable_cpu_cores: (0..facts.cores).collect(),
            },
            memory: NodeMemoryResources { memory_mb: facts.memory_mb },
            disk: NodeDiskResources { disk_mb: facts.disk_mb },
            min_dynamic_port: 20000,
            max_dynamic_port: 32000,
        },
        drivers,
        status: NodeStatus::Initializing,
        scheduling_eligibility: SchedulingEligibility::Eligible,
        ..Node::default()
    };
    node.computed_class = node.compute_class();
    node
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpuinfo_and_host_facts() {
        let text = "processor\t: 0\nmodel name\t: Test CPU\ncpu MHz\t\t: 2399.998\n\nprocessor\t: 1\ncpu MHz\t\t: 1200.0\n";
        assert_eq!(parse_cpuinfo(text), (2, Some(2400), "Test CPU".to_string()));
        let facts = host_facts(Path::new("/"), Some("lo"));
        assert!(facts.cores >= 1 && facts.memory_mb > 0 && facts.mhz_per_core > 0, "{facts:?}");
        assert_eq!(facts.ip, "127.0.0.1");
        assert!(!facts.hostname.is_empty());
        let node = build_node(
            &NodeConfig { id: "n1".into(), datacenter: "dc1".into(), ..NodeConfig::default() },
            &facts,
            BTreeMap::from([("raw_exec".to_string(), DriverInfo::default())]),
        );
        assert_eq!(node.attributes["driver.raw_exec"], "1");
        assert_eq!(node.attributes["kernel.name"], std::env::consts::OS);
        assert_eq!(node.node_resources.cpu.total_cpu_cores, facts.cores);
    }
}
