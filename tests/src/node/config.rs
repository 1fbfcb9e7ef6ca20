//! containerd and CNI configuration of a node (containerd 1.7: config version 2; 2.x and
//! 2.3: version 3), with two runtime handlers: `runc` (default) and `nri-chaos` (the shim
//! wrapper in front of the same runc shim and options).

use anyhow::Result;

use super::Node;
use crate::images::PAUSE_IMAGE;
use crate::runtime::{try_shim_wrapper_binary, workspace_root, SHIM_WRAPPER_BIN};

/// The CRI runtime handler that runs pods through the shim wrapper.
pub const SHIM_HANDLER: &str = "nri-chaos";

impl Node {
    pub(super) fn write_config(&self) -> Result<()> {
        let d = &self.dir;
        for sub in [
            "root",
            "state",
            "pods",
            "runc",
            "opt",
            "cni/conf",
            "cni/ipam",
            "nri/plugins",
            "nri/conf.d",
        ] {
            std::fs::create_dir_all(d.join(sub))?;
        }
        let conflist = format!(
            r#"{{
  "cniVersion": "1.0.0",
  "name": "{net}",
  "plugins": [
    {{
      "type": "bridge",
      "bridge": "{bridge}",
      "isGateway": false,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {{
        "type": "host-local",
        "ranges": [[{{"subnet": "{subnet}"}}]],
        "routes": [{{"dst": "0.0.0.0/0"}}],
        "dataDir": "{ipam}"
      }}
    }}
  ]
}}
"#,
            net = self.net_name,
            bridge = self.bridge,
            subnet = self.subnet,
            ipam = d.join("cni/ipam").display()
        );
        std::fs::write(d.join("cni/conf/10-nri-chaos.conflist"), conflist)?;
        std::fs::write(d.join("config.toml"), self.containerd_config())?;
        Ok(())
    }

    fn containerd_config(&self) -> String {
        let d = self.dir.display();
        let runc = self.runtime.runc();
        let runc = runc.display();
        let cni_bin = self.runtime.cni_dir();
        let cni_bin = cni_bin.display();
        let common = format!(
            r#"root = "{d}/root"
state = "{d}/state"
oom_score = 0

[grpc]
  address = "{d}/containerd.sock"

[ttrpc]
  address = "{d}/containerd.sock.ttrpc"

[debug]
  address = ""
  level = "info"

[metrics]
  address = ""

[plugins."io.containerd.nri.v1.nri"]
  disable = false
  disable_connections = false
  socket_path = "{d}/nri.sock"
  plugin_path = "{d}/nri/plugins"
  plugin_config_path = "{d}/nri/conf.d"
  plugin_registration_timeout = "5s"
  plugin_request_timeout = "2s"

[plugins."io.containerd.internal.v1.opt"]
  path = "{d}/opt"
"#
        );
        // The shim wrapper's handler; when the wrapper is not built the path still names
        // where it would be, and a pod on the handler fails with containerd's "not found".
        let wrapper = try_shim_wrapper_binary()
            .unwrap_or_else(|_| workspace_root().join("target/debug").join(SHIM_WRAPPER_BIN));
        let wrapper = wrapper.display();
        let runc_opts = format!(
            r#"        BinaryName = "{runc}"
        Root = "{d}/runc"
        SystemdCgroup = false
"#
        );
        match self.version {
            v if !v.config_v3() => format!(
                r#"version = 2
{common}
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  disable_apparmor = true
  disable_tcp_service = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_cdi = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
{runc_opts}    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.{SHIM_HANDLER}]
      runtime_type = "io.containerd.runc.v2"
      runtime_path = "{wrapper}"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.{SHIM_HANDLER}.options]
{runc_opts}  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{cni_bin}"
    conf_dir = "{d}/cni/conf"
    max_conf_num = 1
"#
            ),
            _ => format!(
                r#"version = 3
{common}
[plugins."io.containerd.image-verifier.v1.bindir"]
  bin_dir = "{d}/opt/image-verifier/bin"

[plugins."io.containerd.grpc.v1.cri"]
  disable_tcp_service = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"

[plugins."io.containerd.cri.v1.images"]
  snapshotter = "overlayfs"
  [plugins."io.containerd.cri.v1.images".pinned_images]
    sandbox = "{PAUSE_IMAGE}"

[plugins."io.containerd.cri.v1.runtime"]
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  disable_apparmor = true
  enable_cdi = false
  [plugins."io.containerd.cri.v1.runtime".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
{runc_opts}    [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.{SHIM_HANDLER}]
      runtime_type = "io.containerd.runc.v2"
      runtime_path = "{wrapper}"
      [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.{SHIM_HANDLER}.options]
{runc_opts}  [plugins."io.containerd.cri.v1.runtime".cni]
    bin_dirs = ["{cni_bin}"]
    conf_dir = "{d}/cni/conf"
    max_conf_num = 1
"#
            ),
        }
    }
}
