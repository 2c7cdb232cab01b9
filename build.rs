//! Has the linker place the functions a running server uses side by side, in the order of
//! tools/symbol-order.txt (written by tools/gen_symbol_order.sh). The kernel maps a binary's
//! code in runs of up to 64 KB around each page a process touches, so startup code scattered
//! over the text made 1.9 MB of it resident in an empty server; grouped, about 0.75 MB, and the
//! request path shares fewer pages with code that never runs.
//!
//! Only for x86_64 Linux (GNU) from Rust 1.90, which links with LLD by default: other linkers
//! do not know the option. Names the build no longer has (the file is older than a dependency
//! or the code) are skipped, so a stale file costs memory, never a failed build.

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=tools/symbol-order.txt");
    let target = std::env::var("TARGET").unwrap_or_default();
    if target == "x86_64-unknown-linux-gnu" && links_with_lld() {
        let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
        println!(
            "cargo:rustc-link-arg-bins=-Wl,--symbol-ordering-file={dir}/tools/symbol-order.txt"
        );
        println!("cargo:rustc-link-arg-bins=-Wl,--no-warn-symbol-ordering");
    }
}

/// Whether rustc is 1.90 or later, whose x86_64 Linux GNU target links with its own LLD.
fn links_with_lld() -> bool {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let Ok(output) = Command::new(rustc).arg("--version").output() else {
        return false;
    };
    // "rustc 1.95.0 (59807616e 2026-04-14)"
    let version = String::from_utf8_lossy(&output.stdout);
    let mut numbers = version
        .split_whitespace()
        .nth(1)
        .unwrap_or("")
        .split('.')
        .map(|n| n.parse::<u32>().unwrap_or(0));
    let (major, minor) = (numbers.next().unwrap_or(0), numbers.next().unwrap_or(0));
    (major, minor) >= (1, 90)
}
