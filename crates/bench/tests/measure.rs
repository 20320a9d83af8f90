//! The measuring wrapper against real child processes: this binary re-executes itself as the
//! child (modes chosen by an environment variable) and checks what the wrapper reports.
//! `harness = false` so that the wrapper and child modes can take over `main`.
#![allow(
    clippy::unwrap_used,
    reason = "a test binary without the libtest harness: failing loudly is the point"
)]

use std::process::Command;
use std::time::Duration;

use quest_bench::measure;

const MODE: &str = "QUEST_BENCH_TEST_CHILD";

fn child_mode(mode: &str) -> ! {
    match mode {
        "alloc" => {
            // Touch 64 MiB so that it is resident.
            let v = vec![1u8; 64 << 20];
            let sum: u64 = v.iter().step_by(4096).map(|b| u64::from(*b)).sum();
            println!("{sum}");
            std::process::exit(0);
        }
        "spin" => {
            // Busy until the process has had 150 ms of CPU (however loaded the machine is).
            let mut x = 0u64;
            while own_cpu_ticks() < 15 {
                for _ in 0..100_000 {
                    x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
                }
            }
            println!("{x}");
            std::process::exit(0);
        }
        "exit7" => {
            print!("out");
            eprint!("err");
            std::process::exit(7);
        }
        other => {
            eprintln!("unknown child mode {other}");
            std::process::exit(2);
        }
    }
}

fn child(mode: &str) -> Command {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.env(MODE, mode);
    cmd
}

/// User plus system CPU of this process so far, in clock ticks (10 ms), from `/proc/self/stat`.
fn own_cpu_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // Fields after the name start at `state` (field 3); utime and stime are fields 14 and 15.
    let tick = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    tick(11) + tick(12)
}

fn main() {
    quest_bench::wrapper_entry();
    if let Ok(mode) = std::env::var(MODE) {
        child_mode(&mode);
    }
    // Speak the listing protocol test runners use (`--list --format terse`), so that
    // `cargo nextest run` finds this single test and then runs it by name.
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--list") {
        if !args.iter().any(|a| a == "--ignored") {
            println!("measure: test");
        }
        return;
    }

    let run = measure(&child("exit7")).unwrap();
    assert_eq!(run.measurement.code, 7);
    assert_eq!(run.stdout, b"out");
    assert_eq!(run.stderr, b"err");
    println!("exit code and output passed through: ok");

    let run = measure(&child("alloc")).unwrap();
    assert_eq!(run.measurement.code, 0);
    assert!(
        run.measurement.maxrss_kib >= 64 * 1024,
        "{:?}",
        run.measurement
    );
    println!(
        "peak RSS of one child: ok ({} KiB)",
        run.measurement.maxrss_kib
    );

    let run = measure(&child("spin")).unwrap();
    assert_eq!(run.measurement.code, 0);
    let m = run.measurement;
    assert!(m.wall() >= Duration::from_millis(150), "{m:?}");
    // The child spun until it had 150 ms of CPU; the process's own ticks (10 ms resolution) are
    // seen too and cannot exceed the tree's total by more than a tick.
    assert!(m.cpu() >= Duration::from_millis(140), "{m:?}");
    assert!(m.self_cpu() >= Duration::from_millis(10), "{m:?}");
    assert!(m.self_cpu() <= m.cpu() + Duration::from_millis(10), "{m:?}");
    // The wrapper starts afresh each run: the 64 MiB child does not leak into this one.
    assert!(m.maxrss_kib < 64 * 1024, "{m:?}");
    println!("CPU time of one child: ok ({m:?})");
}
