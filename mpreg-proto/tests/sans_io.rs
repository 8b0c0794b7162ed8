//! The core is sans-IO: no runtime crate in its dependency tree, no clock
//! reads and no global RNG in its source.

use std::path::Path;
use std::process::Command;

#[test]
fn no_runtime_crate_in_the_dependency_tree() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "tree",
            "-p",
            "mpreg-proto",
            "-e",
            "normal",
            "--prefix",
            "none",
            "--offline",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo tree runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tree = String::from_utf8_lossy(&out.stdout);
    assert!(tree.contains("postcard"), "unexpected tree:\n{tree}");
    for banned in [
        "tokio",
        "async-std",
        "async_std",
        "quinn",
        "tungstenite",
        "mio",
        "getrandom",
    ] {
        assert!(
            !tree.lines().any(|l| l.starts_with(banned)),
            "mpreg-proto depends on {banned}:\n{tree}"
        );
    }
}

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn no_clock_reads_or_global_randomness_in_the_source() {
    let mut files = Vec::new();
    rust_files(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &mut files,
    );
    assert!(files.len() > 10);
    let banned = [
        "Instant::now",
        "SystemTime",
        "thread_rng",
        "rand::rng()",
        "OsRng",
        "from_entropy",
        "from_os_rng",
        "getrandom",
        "RandomState",
        "std::net",
        "std::thread",
        "tokio::",
    ];
    for f in files {
        let src = std::fs::read_to_string(&f).unwrap();
        for b in banned {
            assert!(!src.contains(b), "{} uses {b}", f.display());
        }
    }
}
