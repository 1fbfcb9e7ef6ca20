//! The VM node tier: a whole containerd node INSIDE the qemu VM of the VM tier (Debian's cloud
//! kernel with sch_netem, cgroup v2 only, `-accel tcg`), one VM boot per suite of the
//! `nri-chaos-vm-node` binary (see `nri_chaos_tests::vm::node_suite`). Every `ASSERT` line a
//! suite prints must be ok, and each name listed here must be among them.
//!
//! Needs root. Build the plugin and the hook first:
//! `cargo build -p nri-chaos-plugin -p nri-chaos-oci-hooks`.

use std::path::Path;
use std::time::Duration;

use anyhow::Result;
use nri_chaos_tests::require_root;
use nri_chaos_tests::vm::node_suite::NodeSuite;

const NODE_BINARY: &str = env!("CARGO_BIN_EXE_nri-chaos-vm-node");

#[test]
fn vm_node_netem_first_packet_freeze_stress_on_cgroup_v2() -> Result<()> {
    require_root()?;
    NodeSuite {
        node_binary: Path::new(NODE_BINARY),
        suite: "base",
        extra_modules: &[],
        iptables: false,
        expected: &[
            "plugin_registered",
            "netem_pod_tc_delay_100ms",
            "netem_pod_tc_all_params",
            "first_packet_rtt_ge_100ms",
            "netem_pod_rtt_100ms",
            "freeze_pod_events_frozen_1",
            "stress_pod_cpu_load_50pct",
            "netem_pod_removed_after_duration",
        ],
        // The whole run takes about 80 s under TCG.
        timeout: Duration::from_secs(300),
    }
    .run()?;
    Ok(())
}

#[test]
fn vm_node_net_partition_netem_to_bandwidth_crash_recovery() -> Result<()> {
    require_root()?;
    NodeSuite {
        node_binary: Path::new(NODE_BINARY),
        suite: "net",
        extra_modules: &[
            "sch_prio",
            "sch_tbf",
            "sch_ingress",
            "cls_u32",
            "act_gact",
            "act_mirred",
            "ifb",
            // The figures' iptables + ipset baseline (legacy iptables, as Chaos Mesh runs it).
            "ip_tables",
            "iptable_filter",
            "ip_set_hash_net",
            "xt_set",
        ],
        iptables: true,
        expected: &[
            "plugin_registered",
            "partition_tree_installed",
            "partition_a_to_b_times_out",
            "partition_a_to_c_works",
            "partition_egress_b_to_a_arrives",
            "partition_removed_at_duration",
            "ingress_ifb_created",
            "ingress_from_c_dropped",
            "ingress_from_b_arrives",
            "ingress_ifb_gone_at_duration",
            "netem_to_b8080_plus_100ms",
            "netem_to_others_unaffected",
            "netem_to_survives_containerd_restart",
            "netem_to_nothing_left_after_containerd_restart",
            "bandwidth_tbf_installed",
            "bandwidth_to_b_within_10pct",
            "bandwidth_to_c_unlimited",
            "crash_tree_with_foreign_below",
            "crash_tree_outlives_sigkill",
            "crash_nothing_left",
            "crash_foreign_root_byte_for_byte",
        ],
        // About 4 minutes under TCG.
        timeout: Duration::from_secs(480),
    }
    .run()?;
    Ok(())
}

#[test]
fn vm_node_crash_rounds_and_netem_through_restarts() -> Result<()> {
    require_root()?;
    NodeSuite {
        node_binary: Path::new(NODE_BINARY),
        suite: "crash",
        extra_modules: &[],
        iptables: false,
        expected: &[
            "crash_node_ready",
            "netem_60s_applied",
            "netem_60s_held_at_30s",
            "netem_60s_gone_after_60s",
            "crash_rounds_clean",
            "crash_rounds_ge_10",
        ],
        // The 60 s netem proof, then 10 rounds of 3 pods. Seen here on a 2-core host shared
        // with 3 other builds (load 8-12): about 8 min, a pod sandbox costing 8-20 s under TCG.
        timeout: Duration::from_secs(900),
    }
    .run()?;
    Ok(())
}
