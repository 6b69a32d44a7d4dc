use which::which;

/// The programs are linked by `bpf-linker`, which cargo does not know about:
/// rebuild when it changes.
fn main() {
    // Set by the agent's build script to the architecture the programs
    // will run on (aya-ebpf's bindings follow it too).
    println!(
        "cargo::rustc-check-cfg=cfg(bpf_target_arch, values(\"x86_64\", \"aarch64\", \"arm\", \"loongarch64\", \"mips\", \"mips64\", \"powerpc64\", \"riscv64\", \"s390x\"))"
    );
    match which("bpf-linker") {
        Ok(path) => println!("cargo:rerun-if-changed={}", path.display()),
        Err(err) => println!("cargo:warning=bpf-linker not found ({err}); run `make setup`"),
    }
}
