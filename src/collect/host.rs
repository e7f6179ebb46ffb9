//! Host metrics from sysinfo: one `System`, `Disks` and `Networks` reused forever,
//! refreshing only what is exported. Network totals come from `/proc/net/dev` where it
//! exists: one file for every interface, where sysinfo opens several per interface.

use std::collections::{HashMap, HashSet};

use sysinfo::{
    CpuRefreshKind, DiskRefreshKind, Disks, MemoryRefreshKind, Networks, RefreshKind, System,
};

use crate::metrics::SystemMetrics;

/// Re-list disks (new mounts) every this many collections.
const DISK_RELIST_EVERY: u64 = 60;

/// Samples CPU, load, memory, swap, disks and network into [`SystemMetrics`].
pub struct HostCollector {
    system: System,
    disks: Disks,
    networks: Networks,
    metrics: SystemMetrics,
    /// Last seen byte totals per interface, to turn totals into counter increments.
    net_last: HashMap<String, (u64, u64)>,
    mounts: HashSet<String>,
    cores: usize,
    ticks: u64,
}

impl HostCollector {
    /// A collector recording into `metrics`.
    pub fn new(metrics: SystemMetrics) -> Result<Self, sysinfo::Error> {
        let system = System::new_with_specifics(
            RefreshKind::nothing()
                .with_cpu(CpuRefreshKind::nothing().with_usage())
                .with_memory(MemoryRefreshKind::everything()),
        )?;
        let disks =
            Disks::new_with_refreshed_list_specifics(DiskRefreshKind::nothing().with_storage())?;
        let networks = Networks::new()?; // listed only where /proc/net/dev is missing
        Ok(Self {
            system,
            disks,
            networks,
            metrics,
            net_last: HashMap::new(),
            mounts: HashSet::new(),
            cores: 0,
            ticks: 0,
        })
    }

    /// Takes one sample of everything.
    pub fn collect(&mut self) {
        self.collect_cpu();
        self.collect_memory();
        self.collect_disks();
        self.collect_network();
        if let Ok(uptime) = System::uptime() {
            self.metrics.uptime.set(uptime as i64);
        }
        self.ticks += 1;
    }

    fn collect_cpu(&mut self) {
        self.system.refresh_cpu_usage();
        let m = &self.metrics;
        m.cpu_usage.set(ratio(self.system.global_cpu_usage()));
        let cpus = self.system.cpus();
        if cpus.len() != self.cores {
            m.cpu_core_usage.reset();
            self.cores = cpus.len();
        }
        for (i, cpu) in cpus.iter().enumerate() {
            m.cpu_core_usage
                .with_label_values(&[&i.to_string()])
                .set(ratio(cpu.usage()));
        }
        if let Ok(load) = System::load_average() {
            m.load1.set(load.one);
            m.load5.set(load.five);
            m.load15.set(load.fifteen);
        }
    }

    fn collect_memory(&mut self) {
        self.system.refresh_memory();
        let m = &self.metrics;
        m.memory_total.set(self.system.total_memory() as i64);
        m.memory_used.set(self.system.used_memory() as i64);
        m.memory_available
            .set(self.system.available_memory() as i64);
        m.swap_total.set(self.system.total_swap() as i64);
        m.swap_used.set(self.system.used_swap() as i64);
    }

    fn collect_disks(&mut self) {
        let relist = self.ticks.is_multiple_of(DISK_RELIST_EVERY);
        self.disks
            .refresh_specifics(relist, DiskRefreshKind::nothing().with_storage());
        let mut seen = HashSet::with_capacity(self.mounts.len());
        for disk in self.disks.iter() {
            let mount = disk.mount_point().to_string_lossy().into_owned();
            if !seen.insert(mount.clone()) {
                continue; // the same mount listed twice (bind mounts)
            }
            let total = disk.total_space();
            let used = total.saturating_sub(disk.available_space());
            self.metrics
                .disk_total
                .with_label_values(&[&mount])
                .set(total as i64);
            self.metrics
                .disk_used
                .with_label_values(&[&mount])
                .set(used as i64);
        }
        for gone in self.mounts.difference(&seen) {
            let _ = self.metrics.disk_total.remove_label_values(&[gone]);
            let _ = self.metrics.disk_used.remove_label_values(&[gone]);
        }
        self.mounts = seen;
    }

    fn collect_network(&mut self) {
        let totals = match std::fs::read_to_string(PROC_NET_DEV) {
            Ok(text) => proc_net_dev(&text),
            Err(_) => {
                self.networks.refresh(true);
                self.networks
                    .iter()
                    .map(|(name, d)| {
                        let name = name.to_string_lossy().into_owned();
                        (name, d.total_received(), d.total_transmitted())
                    })
                    .collect()
            }
        };
        let mut seen = HashSet::with_capacity(self.net_last.len());
        for (name, rx, tx) in totals {
            let (last_rx, last_tx) = self.net_last.get(&name).copied().unwrap_or((0, 0));
            // A total going down means the interface was reset: count from zero again.
            let drx = if rx >= last_rx { rx - last_rx } else { rx };
            let dtx = if tx >= last_tx { tx - last_tx } else { tx };
            self.metrics
                .net_received
                .with_label_values(&[&name])
                .inc_by(drx);
            self.metrics
                .net_transmitted
                .with_label_values(&[&name])
                .inc_by(dtx);
            self.net_last.insert(name.clone(), (rx, tx));
            seen.insert(name);
        }
        self.net_last.retain(|name, _| {
            let keep = seen.contains(name);
            if !keep {
                let _ = self.metrics.net_received.remove_label_values(&[name]);
                let _ = self.metrics.net_transmitted.remove_label_values(&[name]);
            }
            keep
        });
    }
}

/// Every interface's received and transmitted byte totals (Linux).
const PROC_NET_DEV: &str = "/proc/net/dev";

/// `(interface, received bytes, transmitted bytes)` of each line of `/proc/net/dev`.
fn proc_net_dev(text: &str) -> Vec<(String, u64, u64)> {
    text.lines()
        .filter_map(|line| {
            let (name, fields) = line.split_once(':')?;
            let mut f = fields.split_ascii_whitespace();
            let rx = f.next()?.parse().ok()?;
            let tx = f.nth(7)?.parse().ok()?;
            Some((name.trim().to_string(), rx, tx))
        })
        .collect()
}

/// sysinfo reports percent (0–100); Prometheus convention is a 0–1 ratio.
fn ratio(percent: f32) -> f64 {
    (f64::from(percent) / 100.0).clamp(0.0, 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;

    #[test]
    fn reads_proc_net_dev() {
        let text = "Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo: 16773432139 7628542    0    0    0     0          0         0 16773432139 7628542    0    0    0     0       0          0
  eth0: 1112766264   56280    0    0    0     0          0         0  3453417   35533    0    0    0     0       0          0
";
        assert_eq!(
            proc_net_dev(text),
            [
                ("lo".to_string(), 16773432139, 16773432139),
                ("eth0".to_string(), 1112766264, 3453417)
            ]
        );
    }

    #[test]
    fn collects_every_system_family() {
        let m = Metrics::new().unwrap();
        let mut c = HostCollector::new(m.system.clone()).unwrap();
        c.collect();
        c.collect();
        assert!(m.system.memory_total.get() > 0);
        assert!(m.system.memory_used.get() > 0);
        assert!(m.system.memory_used.get() <= m.system.memory_total.get());
        let u = m.system.cpu_usage.get();
        assert!((0.0..=1.0).contains(&u));
        let text = crate::metrics::encode_text(&m.gather());
        for name in [
            "system_cpu_core_usage_ratio{core=\"0\"}",
            "system_load1 ",
            "system_network_received_bytes_total{",
        ] {
            assert!(text.contains(name), "{name} missing");
        }
    }
}
