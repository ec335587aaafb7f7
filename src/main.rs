//! The `ordersync` binary: parse arguments, run, print the error as one sentence, exit with its code.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    one_malloc_arena();
    let cli = ordersync::cli::Cli::parse();
    ordersync::cli::init_logging(cli.log_format);
    match ordersync::cli::run(cli) {
        Ok(code) => code,
        Err(f) => {
            eprintln!("ordersync: {:#}", f.error);
            ExitCode::from(f.code)
        }
    }
}

/// Pages are parsed on the runtime's worker threads and their rows freed on the store's thread.
/// glibc gives each thread an arena of its own and each keeps its own high-water mark, so a sync
/// of orders with SKU lines peaked at 31 MB; with one arena it stays at ~22 MB for no measurable
/// CPU cost (README "Performance"). `MALLOC_ARENA_MAX` in the environment still wins.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn one_malloc_arena() {
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: called first thing in main, before any other thread exists; mallopt only sets
        // an allocator parameter and reports failure by its return value, which is harmless here.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 1);
        }
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn one_malloc_arena() {}
