use which::which;

/// The programs are linked by `bpf-linker`, which cargo does not know about:
/// rebuild when it changes.
fn main() {
    match which("bpf-linker") {
        Ok(path) => println!("cargo:rerun-if-changed={}", path.display()),
        Err(err) => println!("cargo:warning=bpf-linker not found ({err}); run `make setup`"),
    }
}
