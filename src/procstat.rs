//! CPU time of the processes a benchmark run involves, read from `/proc`, so that
//! `kyc bench throughput` can say where the CPU goes per job (worker, PostgreSQL, RabbitMQ,
//! the S3 server, this process with the simulator) and for the whole machine. Linux only;
//! elsewhere every figure is absent and the benchmark says so.

use std::collections::BTreeMap;

/// Linux reports process times in USER_HZ ticks, 100 a second on every architecture it runs
/// on here.
const TICKS_PER_S: f64 = 100.0;

/// Which group a process belongs to, by its command name.
fn group_of(comm: &str) -> Option<&'static str> {
    match comm {
        "postgres" => Some("postgresql"),
        "beam.smp" | "erl_child_setup" | "epmd" | "inet_gethost" => Some("rabbitmq"),
        "s3s-fs" | "stunnel4" | "stunnel" | "minio" => Some("s3 server"),
        _ => None,
    }
}

/// CPU ticks per group at one instant, and the machine's busy ticks.
#[derive(Debug, Clone, Default)]
pub struct Sample {
    groups: BTreeMap<&'static str, u64>,
    busy: Option<u64>,
}

/// (comm, ppid, utime + stime, cutime + cstime) of one process.
fn stat_of(pid: u32) -> Option<(String, u32, u64, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces: split at the last ')'.
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = text[open + 1..close].to_string();
    let fields: Vec<&str> = text[close + 2..].split_whitespace().collect();
    // After the name: state(0) ppid(1) … utime(11) stime(12) cutime(13) cstime(14).
    let n = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
    Some((comm, n(1)? as u32, n(11)? + n(12)?, n(13)? + n(14)?))
}

/// Samples every process on the machine: `workers` (and their children) count as "worker",
/// this process as "bench + simulator", the services by name. A service's exited children
/// (PostgreSQL backends that closed) are counted through their parent's reaped-children
/// time, so a connection that ends mid-run does not take its CPU with it.
pub fn sample(workers: &[u32]) -> Sample {
    let me = std::process::id();
    let mut s = Sample::default();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return s;
    };
    let procs: Vec<(u32, String, u32, u64, u64)> = dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let (comm, ppid, own, children) = stat_of(pid)?;
            Some((pid, comm, ppid, own, children))
        })
        .collect();
    let comm_of: BTreeMap<u32, &str> = procs.iter().map(|(p, c, ..)| (*p, c.as_str())).collect();
    for (pid, comm, ppid, own, children) in &procs {
        let group = if workers.contains(pid) {
            Some("worker")
        } else if *pid == me {
            Some("bench + simulator")
        } else {
            group_of(comm)
        };
        let Some(group) = group else { continue };
        let mut ticks = *own;
        // A service's root process (its parent is not of the same service) also carries
        // the time of its children that have exited.
        let parent_same = comm_of.get(ppid).and_then(|c| group_of(c)) == Some(group);
        if !parent_same && group != "bench + simulator" {
            ticks += children;
        }
        *s.groups.entry(group).or_default() += ticks;
    }
    s.busy = std::fs::read_to_string("/proc/stat").ok().and_then(|t| {
        let line = t.lines().next()?;
        let v: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .filter_map(|f| f.parse().ok())
            .collect();
        // user nice system idle iowait irq softirq steal: busy is all but idle and iowait.
        Some(v.iter().take(8).sum::<u64>() - v.get(3)? - v.get(4)?)
    });
    s
}

/// CPU seconds per group between two samples, plus "whole machine".
pub fn spent(before: &Sample, after: &Sample) -> BTreeMap<&'static str, f64> {
    let mut out: BTreeMap<&'static str, f64> = after
        .groups
        .iter()
        .map(|(g, t)| {
            let t0 = before.groups.get(g).copied().unwrap_or(0);
            (*g, t.saturating_sub(t0) as f64 / TICKS_PER_S)
        })
        .collect();
    if let (Some(b), Some(a)) = (before.busy, after.busy) {
        out.insert("whole machine", a.saturating_sub(b) as f64 / TICKS_PER_S);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_found_and_its_cpu_time_grows_with_work() {
        let before = sample(&[]);
        // A fixed amount of work (tens of milliseconds of CPU at least, however busy the
        // machine), not a span of time.
        let mut x = 0u64;
        for i in 0..100_000_000u64 {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(i));
        }
        let after = sample(&[]);
        let spent = spent(&before, &after);
        assert!(
            spent["bench + simulator"] >= 0.02,
            "a hundred million multiplications counted as {spent:?}"
        );
        assert!(spent["whole machine"] >= spent["bench + simulator"] * 0.5);
    }

    #[test]
    fn names_with_spaces_and_parentheses_parse() {
        let me = std::process::id();
        let (comm, ppid, ..) = stat_of(me).unwrap();
        assert!(!comm.is_empty() && ppid > 0);
    }
}
