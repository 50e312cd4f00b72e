# stoker on Nomad: one agent per GPU client, as a system job.
#
# The image is the one scripts/image.sh builds; push it to the farm's
# registry (skopeo copy oci-archive:… docker://registry.example/stoker:0.1.0),
# set the studio below, then:
#   nomad job run deploy/nomad/stoker.nomad.hcl
#
# The state (identity, credentials, model cache) lives in the client's host
# volume "stoker-state" (client config: host_volume "stoker-state" { path =
# "/var/lib/stoker" }, owned by uid 10001, mode 0700), so a restart or an
# upgrade is the same approved worker. The GPU comes from Nomad's NVIDIA
# device plugin.
#
# Not run in this repository's CI (it has no Nomad cluster): the file is
# parsed as HCL and checked for the parts below (deploy/check).
# docs/operations.md, "Nomad", says more.
job "stoker" {
  type        = "system"
  datacenters = ["*"]

  update {
    max_parallel = 1
    stagger      = "30s"
  }

  group "stoker" {
    # The local API's port, on the node's network; the agent binds it on
    # loopback only (listen below).
    network {
      mode = "host"
      port "api" {
        static = 8710
      }
    }

    volume "state" {
      type      = "host"
      source    = "stoker-state"
      read_only = false
    }

    restart {
      attempts = 5
      interval = "10m"
      delay    = "10s"
      mode     = "delay"
    }

    # The checks run on the client itself, to 127.0.0.1: the local API
    # answers /healthz and /readyz to loopback peers without its token.
    service {
      name     = "stoker"
      provider = "nomad"
      port     = "api"
      address  = "127.0.0.1"

      check {
        name         = "healthz"
        type         = "http"
        path         = "/healthz"
        interval     = "10s"
        timeout      = "2s"
      }

      check {
        name         = "readyz"
        type         = "http"
        path         = "/readyz"
        interval     = "10s"
        timeout      = "2s"
        on_update    = "ignore_warnings"
      }
    }

    task "agent" {
      driver = "docker"

      config {
        image        = "registry.example/stoker:0.1.0"
        args         = ["agent", "-config", "/local/stoker.toml"]
        network_mode = "host"
        readonly_rootfs = true
      }

      # Above drain_timeout (60s) plus the 35s a cancelled job has to report.
      kill_timeout = "120s"
      kill_signal  = "SIGTERM"

      volume_mount {
        volume      = "state"
        destination = "/var/lib/stoker"
      }

      env {
        STOKER_MACHINE_NAME = "${node.unique.name}"
      }

      template {
        destination = "local/stoker.toml"
        data        = <<-TOML
          api_base_url = "https://studio.example/"
          state_dir = "/var/lib/stoker"
          vram_threshold_gb = 20
          log_json = true
          listen = "127.0.0.1:8710"
        TOML
      }

      resources {
        cpu    = 2000
        memory = 8192

        device "nvidia/gpu" {
          count = 1
        }
      }
    }
  }
}
