//! Builds the kernel programs (`collector-ebpf`) for the BPF target and puts
//! the object in OUT_DIR as `safeguard.bpf.o`, where `kernel` (the
//! agent's `kernel/mod.rs`) embeds it.
//!
//! This is aya-build's cargo-in-cargo approach, written out because
//! aya-build 0.2 fixes the rustflags and the programs need
//! `-C target-cpu=v3`: the sequence counter uses the BPF atomic
//! fetch-and-add, which older instruction sets lack (kernel 5.12+).

use std::{
    env,
    io::{BufRead as _, BufReader},
    path::PathBuf,
    process::{Command, Stdio},
};

use anyhow::{Context as _, anyhow, bail};

const EBPF_PACKAGE: &str = "collector-ebpf";

fn main() -> anyhow::Result<()> {
    let metadata = cargo_metadata::MetadataCommand::new()
        .no_deps()
        .exec()
        .context("cargo metadata")?;
    let ebpf = metadata
        .packages
        .iter()
        .find(|p| p.name.as_str() == EBPF_PACKAGE)
        .ok_or_else(|| anyhow!("{EBPF_PACKAGE} package not found"))?;
    let ebpf_dir = ebpf
        .manifest_path
        .parent()
        .ok_or_else(|| anyhow!("no parent for {}", ebpf.manifest_path))?;
    println!("cargo:rerun-if-changed={ebpf_dir}");
    println!(
        "cargo:rerun-if-changed={}",
        metadata.workspace_root.join("collector-common")
    );

    let out_dir = PathBuf::from(env::var_os("OUT_DIR").context("OUT_DIR not set")?);
    let arch = env::var("CARGO_CFG_TARGET_ARCH").context("CARGO_CFG_TARGET_ARCH not set")?;
    let target = match env::var("CARGO_CFG_TARGET_ENDIAN").as_deref() {
        Ok("little") => "bpfel-unknown-none",
        Ok("big") => "bpfeb-unknown-none",
        other => bail!("unsupported endianness {other:?}"),
    };

    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(ebpf_dir.as_std_path())
        .args(["build", "--package", EBPF_PACKAGE, "--bins", "--release"])
        .args(["--message-format=json", "--target", target])
        .args(["-Z", "build-std=core"])
        // A separate target dir: the outer cargo holds a lock on ours.
        .arg("--target-dir")
        .arg(out_dir.join("ebpf-target"))
        // -Z flags on a stable toolchain.
        .env("RUSTC_BOOTSTRAP", "1")
        .env(
            "CARGO_ENCODED_RUSTFLAGS",
            [
                &format!("--cfg=bpf_target_arch=\"{arch}\""),
                "-Ctarget-cpu=v3",
                "-Cdebuginfo=2",
                "-Clink-arg=--btf",
            ]
            .join("\x1f"),
        )
        .env_remove("RUSTC")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());

    let mut child = cmd.spawn().with_context(|| format!("spawn {cmd:?}"))?;
    let stderr = BufReader::new(child.stderr.take().expect("piped stderr"));
    // Cargo's progress lines: shown only if the build fails.
    let stderr =
        std::thread::spawn(move || stderr.lines().map_while(Result::ok).collect::<Vec<_>>());

    let mut object = None;
    let stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
    for message in cargo_metadata::Message::parse_stream(stdout) {
        match message.context("cargo's JSON output")? {
            cargo_metadata::Message::CompilerArtifact(artifact) => {
                if let Some(exe) = artifact.executable {
                    object = Some(exe.into_std_path_buf());
                }
            }
            cargo_metadata::Message::CompilerMessage(msg) => {
                for line in msg.message.rendered.unwrap_or_default().lines() {
                    println!("cargo:warning={line}");
                }
            }
            _ => {}
        }
    }
    let status = child.wait().context("wait for cargo")?;
    let progress = stderr.join().unwrap_or_default();
    if !status.success() {
        for line in progress {
            println!("cargo:warning={line}");
        }
        bail!("building the eBPF programs failed ({status}); see the warnings above");
    }
    let object = object.ok_or_else(|| anyhow!("cargo built no eBPF object"))?;
    let dst = out_dir.join("safeguard.bpf.o");
    std::fs::copy(&object, &dst)
        .with_context(|| format!("copy {} to {}", object.display(), dst.display()))?;
    Ok(())
}
