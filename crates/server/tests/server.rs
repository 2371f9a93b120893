//! Integration tests of `server` through its public API: real servers in-process, talking gRPC
//! over loopback TCP through passed-in listeners.

#[path = "server/cluster.rs"]
mod cluster;
#[path = "server/crash.rs"]
mod crash;
#[path = "server/drain.rs"]
mod drain;
#[path = "server/harness.rs"]
mod harness;
#[path = "server/http.rs"]
mod http;
#[path = "server/liveness.rs"]
mod liveness;
#[path = "server/node_watch.rs"]
mod node_watch;
#[path = "server/pipeline.rs"]
mod pipeline;
#[path = "server/processes.rs"]
mod processes;
#[path = "server/services.rs"]
mod services;
#[path = "server/single.rs"]
mod single;
