//! The host side of the pod network: the bridge (made before the CNI plugin meets it, so the
//! API server and DNS can listen on its address from the start) and the one DNAT rule that
//! stands in for kube-proxy: the `kubernetes` Service's ClusterIP to the API server.

use std::process::Command;

use super::{API_PORT, API_SERVICE_IP, BRIDGE, HOST_IP, procs};
use crate::error::Result;

/// Our nat chain, jumped to from PREROUTING (pods) and OUTPUT (this machine).
pub const CHAIN: &str = "MCK-SERVICES";

pub fn up() -> Result<()> {
    if !link_exists(BRIDGE) {
        run(&["ip", "link", "add", BRIDGE, "type", "bridge"])?;
    }
    let addr = format!("{HOST_IP}/16");
    let shown = procs::output(Command::new("ip").args(["-4", "addr", "show", "dev", BRIDGE]))?;
    if !shown.contains(&format!("inet {addr}")) {
        run(&["ip", "addr", "add", &addr, "dev", BRIDGE])?;
    }
    run(&["ip", "link", "set", BRIDGE, "up"])?;
    run(&["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"])?;
    if !chain_exists("nat", CHAIN) {
        run(&["iptables", "-w", "-t", "nat", "-N", CHAIN])?;
        run(&[
            "iptables",
            "-w",
            "-t",
            "nat",
            "-A",
            CHAIN,
            "-d",
            &format!("{API_SERVICE_IP}/32"),
            "-p",
            "tcp",
            "--dport",
            "443",
            "-j",
            "DNAT",
            "--to-destination",
            &format!("{HOST_IP}:{API_PORT}"),
        ])?;
        for parent in ["PREROUTING", "OUTPUT"] {
            run(&["iptables", "-w", "-t", "nat", "-I", parent, "-j", CHAIN])?;
        }
    }
    Ok(())
}

/// Removes the DNAT chain and the bridge; what is already gone is fine.
pub fn down() {
    for parent in ["PREROUTING", "OUTPUT"] {
        while quiet(&["iptables", "-w", "-t", "nat", "-D", parent, "-j", CHAIN]) {}
    }
    quiet(&["iptables", "-w", "-t", "nat", "-F", CHAIN]);
    quiet(&["iptables", "-w", "-t", "nat", "-X", CHAIN]);
    if link_exists(BRIDGE) {
        quiet(&["ip", "link", "delete", BRIDGE]);
    }
}

pub fn link_exists(name: &str) -> bool {
    quiet(&["ip", "link", "show", name])
}

pub fn chain_exists(table: &str, chain: &str) -> bool {
    quiet(&["iptables", "-w", "-t", table, "-S", chain])
}

fn run(args: &[&str]) -> Result<()> {
    procs::output(Command::new(args[0]).args(&args[1..])).map(|_| ())
}

/// Runs a command whose failure is an answer, not an error.
fn quiet(args: &[&str]) -> bool {
    Command::new(args[0])
        .args(&args[1..])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}
