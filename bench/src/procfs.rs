//! Linux /proc readers: server RSS and CPU time, PID lookup by listening
//! port, CPU pinning of whole processes, and a description of the machine.

use std::fs;
use std::io;

use serde::Serialize;

/// Resident set size of a process in bytes (`VmRSS` in /proc/PID/status).
pub fn rss_bytes(pid: i32) -> io::Result<u64> {
    Ok(status_kb(pid)?.vm_rss * 1024)
}

/// Memory fields of /proc/PID/status, in KiB.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct StatusKb {
    pub vm_rss: u64,
    pub rss_anon: u64,
    pub rss_file: u64,
    pub vm_hwm: u64,
    pub threads: u64,
}

pub fn status_kb(pid: i32) -> io::Result<StatusKb> {
    let text = fs::read_to_string(format!("/proc/{pid}/status"))?;
    Ok(parse_status(&text))
}

fn parse_status(text: &str) -> StatusKb {
    let mut s = StatusKb::default();
    for line in text.lines() {
        let mut it = line.split_whitespace();
        let (Some(key), Some(val)) = (it.next(), it.next()) else {
            continue;
        };
        let v: u64 = val.parse().unwrap_or(0);
        match key {
            "VmRSS:" => s.vm_rss = v,
            "RssAnon:" => s.rss_anon = v,
            "RssFile:" => s.rss_file = v,
            "VmHWM:" => s.vm_hwm = v,
            "Threads:" => s.threads = v,
            _ => {}
        }
    }
    s
}

/// Clock ticks per second for /proc/PID/stat times.
pub fn clk_tck() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as u64
    } else {
        100
    }
}

/// User + system CPU time of a whole process (all threads), in seconds.
pub fn cpu_seconds(pid: i32) -> io::Result<f64> {
    let (user, sys) = cpu_split(pid)?;
    Ok(user + sys)
}

/// User and system CPU time of a whole process (all threads), in seconds,
/// from /proc/PID/stat fields 14 and 15. Kept apart because over loopback
/// the system part includes the receiver's TCP stack (see `floor`).
pub fn cpu_split(pid: i32) -> io::Result<(f64, f64)> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let (user, sys) = parse_stat_ticks(&text)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "bad /proc/PID/stat"))?;
    let hz = clk_tck() as f64;
    Ok((user as f64 / hz, sys as f64 / hz))
}

fn parse_stat_ticks(text: &str) -> Option<(u64, u64)> {
    // comm (field 2) may contain spaces and parentheses: split after the last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state); utime is field 14, stime field 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime, stime))
}

/// User and system CPU time of the calling thread, in seconds (microsecond
/// resolution, unlike /proc's clock ticks).
pub fn thread_cpu_split() -> (f64, f64) {
    // SAFETY: getrusage writes into the struct we pass.
    unsafe {
        let mut r: libc::rusage = std::mem::zeroed();
        if libc::getrusage(libc::RUSAGE_THREAD, &mut r) != 0 {
            return (0.0, 0.0);
        }
        let s = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
        (s(r.ru_utime), s(r.ru_stime))
    }
}

/// Pins the calling thread to `core`.
pub fn pin_current_thread(core: usize) -> io::Result<()> {
    // 0 = the calling thread.
    pin_thread(0, core)
}

/// Finds the PID of the process holding a listening TCP socket on `port`
/// (IPv4 or IPv6), via /proc/net/tcp{,6} inodes and /proc/*/fd links.
pub fn find_listener_pid(port: u16) -> Option<i32> {
    let mut inodes = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        if let Ok(text) = fs::read_to_string(table) {
            inodes.extend(listening_inodes(&text, port));
        }
    }
    if inodes.is_empty() {
        return None;
    }
    let me = std::process::id() as i32;
    let targets: Vec<String> = inodes.iter().map(|i| format!("socket:[{i}]")).collect();
    for entry in fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(fds) = fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if let Ok(link) = fs::read_link(fd.path()) {
                if targets.iter().any(|t| link.as_os_str() == t.as_str()) {
                    return Some(pid);
                }
            }
        }
    }
    None
}

fn listening_inodes(table: &str, port: u16) -> Vec<u64> {
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let local = f.get(1)?;
            let st = f.get(3)?;
            let inode: u64 = f.get(9)?.parse().ok()?;
            let p = u16::from_str_radix(local.rsplit(':').next()?, 16).ok()?;
            (p == port && *st == "0A" && inode != 0).then_some(inode)
        })
        .collect()
}

/// Thread ids of a process.
pub fn threads(pid: i32) -> Vec<i32> {
    fs::read_dir(format!("/proc/{pid}/task"))
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_string_lossy().parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Pins every thread of `pid` to `core` (threads created later inherit the
/// mask of their creator). Returns how many threads were pinned.
pub fn pin_process(pid: i32, core: usize) -> io::Result<usize> {
    let mut n = 0;
    for tid in threads(pid) {
        pin_thread(tid, core)?;
        n += 1;
    }
    Ok(n)
}

fn pin_thread(tid: i32, core: usize) -> io::Result<()> {
    // SAFETY: cpu_set_t is plain data; CPU_ZERO/CPU_SET write within it and
    // sched_setaffinity reads exactly size_of::<cpu_set_t>() bytes.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_ZERO(&mut set);
        libc::CPU_SET(core, &mut set);
        if libc::sched_setaffinity(tid, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Number of CPUs this thread may run on.
pub fn allowed_cpus() -> usize {
    // SAFETY: as in pin_thread; sched_getaffinity fills the set.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return 1;
        }
        (libc::CPU_COUNT(&set) as usize).max(1)
    }
}

/// Open-file limit of this process (soft).
pub fn nofile_limit() -> u64 {
    // SAFETY: getrlimit writes into the struct we pass.
    unsafe {
        let mut r: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) != 0 {
            return 0;
        }
        r.rlim_cur
    }
}

/// What the benchmark ran on.
#[derive(Clone, Debug, Serialize)]
pub struct Machine {
    pub cpu_model: String,
    pub logical_cores: usize,
    pub mem_total_mib: u64,
    pub kernel: String,
    pub nofile_limit: u64,
}

pub fn machine() -> Machine {
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu_model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    let logical_cores = cpuinfo
        .lines()
        .filter(|l| l.starts_with("processor"))
        .count();
    let mem_total_mib = fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
        })
        .map(|kb| kb / 1024)
        .unwrap_or(0);
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into());
    Machine {
        cpu_model,
        logical_cores,
        mem_total_mib,
        kernel,
        nofile_limit: nofile_limit(),
    }
}

/// Executable path and command name of a process.
pub fn describe(pid: i32) -> (String, String) {
    let exe = fs::read_link(format!("/proc/{pid}/exe"))
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let comm = fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    (exe, comm)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_ticks_with_spaces_in_comm() {
        let line = "1234 (my (weird) proc) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 3 0 1000 1000000 500";
        assert_eq!(parse_stat_ticks(line), Some((250, 75)));
    }

    #[test]
    fn status_fields() {
        let s = parse_status(
            "Name:\tx\nVmHWM:\t  2048 kB\nVmRSS:\t  1024 kB\nRssAnon:\t 800 kB\nRssFile:\t 224 kB\nThreads:\t3\n",
        );
        assert_eq!(s.vm_rss, 1024);
        assert_eq!(s.rss_anon, 800);
        assert_eq!(s.rss_file, 224);
        assert_eq!(s.vm_hwm, 2048);
        assert_eq!(s.threads, 3);
    }

    #[test]
    fn listening_inode_by_port() {
        let t = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 0100007F:1771 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1 0 100 0 0 10 0\n   1: 0100007F:1771 0100007F:9C40 01 00000000:00000000 00:00000000 00000000     0        0 4343 1 0 100 0 0 10 0\n";
        assert_eq!(listening_inodes(t, 6001), vec![4242]);
        assert!(listening_inodes(t, 6002).is_empty());
    }

    #[test]
    fn own_process_is_readable() {
        let me = std::process::id() as i32;
        assert!(rss_bytes(me).unwrap() > 0);
        assert!(cpu_seconds(me).unwrap() >= 0.0);
        assert!(!threads(me).is_empty());
        assert!(allowed_cpus() >= 1);
    }
}
