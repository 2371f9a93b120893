# A client agent on a FreeBSD jail host:  orc agent -config examples/client.hcl
# (with -dev, the same file adds its settings to the dev agent's client).
datacenter = "dc1"
data_dir   = "/var/db/orc"

client {
  enabled           = true
  servers           = ["10.0.0.1:4647", "10.0.0.2:4647", "10.0.0.3:4647"]
  node_class        = "jail"
  network_interface = "em0"
  meta {
    rack = "r1"
  }
}

# The pot driver is on when `pot version -q` answers; these are its defaults.
plugin "pot" {
  config {
    pot_path = "/usr/local/bin/pot"
  }
}

# raw_exec runs tasks as the agent's user on the host: off unless enabled.
plugin "raw_exec" {
  config {
    enabled = false
  }
}
