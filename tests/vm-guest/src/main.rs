//! Runs inside the test VM (see tests/vm/): starts the real `safeguard`
//! binary with a policy, performs real syscalls from real programs, stops
//! the agent and checks what it reported. Prints one line per test:
//! `SGTEST PASS <name>` or `SGTEST FAIL <name> <reason>`.
//!
//! Usage: safeguard-vm-tests [--agent /bin/safeguard] [name-filter...]

mod cases;
mod dns_proxy;
mod file_rows;
mod guard_rows;
mod learn;
mod mount_rows;
mod net_rows;
mod operations;
mod pinning;
mod process_rows;
mod reload;
mod rows;

use std::process::ExitCode;

type Suite = fn(&str) -> Vec<(String, cases::TestResult)>;

/// Suites report one result per row.
const SUITES: &[(&str, Suite)] = &[
    ("files-block", file_rows::block),
    ("files-monitor", file_rows::monitor),
    ("process-block", process_rows::block),
    ("process-monitor", process_rows::monitor),
    ("process-audit-tier", process_rows::audit_tier),
    ("process-whitelist", process_rows::whitelist),
    ("mount-block", mount_rows::block),
    ("mount-monitor", mount_rows::monitor),
    ("network-block", net_rows::block),
    ("network-monitor", net_rows::monitor),
    ("protect-block", guard_rows::suite),
    ("protect-selfcheck", guard_rows::selfcheck),
];

fn main() -> ExitCode {
    let mut agent = "/bin/safeguard".to_string();
    let mut filters = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--agent" => agent = args.next().expect("--agent needs a path"),
            // A workload for tests that need a connect(2) from another
            // process (another user): TCP to ADDRESS:PORT within 2 s.
            // Exits 0 if it connected or the peer refused it (ECONNREFUSED:
            // nothing listens there, the connect itself went through),
            // else with the errno (1 for EPERM), the error on stderr.
            "--connect" => {
                let to = args.next().expect("--connect needs ADDRESS:PORT");
                let addr: std::net::SocketAddr = to.parse().expect("--connect needs ADDRESS:PORT");
                let timeout = std::time::Duration::from_secs(2);
                return match std::net::TcpStream::connect_timeout(&addr, timeout) {
                    Ok(_) => ExitCode::SUCCESS,
                    Err(e) if e.raw_os_error() == Some(libc::ECONNREFUSED) => ExitCode::SUCCESS,
                    Err(e) => {
                        eprintln!("connect {to}: {e}");
                        ExitCode::from(e.raw_os_error().unwrap_or(99) as u8)
                    }
                };
            }
            // A workload for the exec rows: execveat(2) of PROGRAM with
            // ARGS (argv[0] is PROGRAM); on refusal, the error on stderr
            // and exit 1.
            "--execveat" => {
                let argv: Vec<std::ffi::CString> = args
                    .map(|a| std::ffi::CString::new(a).expect("no NUL in arguments"))
                    .collect();
                let program = argv.first().expect("--execveat needs PROGRAM");
                let mut ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
                ptrs.push(std::ptr::null());
                let env: [*const libc::c_char; 1] = [std::ptr::null()];
                unsafe {
                    libc::syscall(
                        libc::SYS_execveat,
                        libc::AT_FDCWD,
                        program.as_ptr(),
                        ptrs.as_ptr(),
                        env.as_ptr(),
                        0,
                    )
                };
                eprintln!("execveat: {}", std::io::Error::last_os_error());
                return ExitCode::FAILURE;
            }
            // A workload for the network rows: with GID as its only
            // supplementary group (its own GID unchanged), connect to ADDR
            // over TCP; on refusal, the error on stderr and exit 1.
            "--groups-connect" => {
                let gid: libc::gid_t = args
                    .next()
                    .and_then(|g| g.parse().ok())
                    .expect("--groups-connect needs GID ADDR");
                let addr = args.next().expect("--groups-connect needs GID ADDR");
                if unsafe { libc::setgroups(1, &gid) } != 0 {
                    eprintln!("setgroups: {}", std::io::Error::last_os_error());
                    return ExitCode::FAILURE;
                }
                return match std::net::TcpStream::connect(addr.as_str()) {
                    Ok(_) => ExitCode::SUCCESS,
                    Err(e) => {
                        eprintln!("connect {addr}: {e}");
                        ExitCode::FAILURE
                    }
                };
            }
            // A workload for the mount rows: mount(2) of SOURCE on TARGET
            // with MS_BIND, from the working directory CWD; with `--fd`,
            // SOURCE is opened first and named as /proc/self/fd/N. On
            // refusal, the error on stderr and exit 1.
            "--bind-mount" => {
                let mut source = args.next().expect("--bind-mount needs SOURCE TARGET CWD");
                let target = args.next().expect("--bind-mount needs SOURCE TARGET CWD");
                let cwd = args.next().expect("--bind-mount needs SOURCE TARGET CWD");
                std::env::set_current_dir(&cwd).expect("chdir CWD");
                let _held;
                if args.next().as_deref() == Some("--fd") {
                    let dir = std::fs::File::open(&source).expect("open SOURCE");
                    source = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&dir));
                    _held = dir;
                }
                let (src, dst) = (
                    std::ffi::CString::new(source).unwrap(),
                    std::ffi::CString::new(target).unwrap(),
                );
                let rc = unsafe {
                    libc::mount(
                        src.as_ptr(),
                        dst.as_ptr(),
                        std::ptr::null(),
                        libc::MS_BIND,
                        std::ptr::null(),
                    )
                };
                if rc != 0 {
                    eprintln!("mount: {}", std::io::Error::last_os_error());
                    return ExitCode::FAILURE;
                }
                return ExitCode::SUCCESS;
            }
            // mount(2) of an overlay with OPTIONS on TARGET, from CWD
            // (inside ROOT, if given).
            "--overlay-mount" => {
                let options = args
                    .next()
                    .expect("--overlay-mount needs OPTIONS TARGET CWD");
                let target = args
                    .next()
                    .expect("--overlay-mount needs OPTIONS TARGET CWD");
                let cwd = args
                    .next()
                    .expect("--overlay-mount needs OPTIONS TARGET CWD");
                // Then, optionally, the root to chroot into first.
                if let Some(root) = args.next() {
                    std::os::unix::fs::chroot(&root).expect("chroot ROOT");
                }
                std::env::set_current_dir(&cwd).expect("chdir CWD");
                let (data, dst) = (
                    std::ffi::CString::new(options).unwrap(),
                    std::ffi::CString::new(target).unwrap(),
                );
                // SAFETY: valid C strings.
                let rc = unsafe {
                    libc::mount(
                        c"overlay".as_ptr(),
                        dst.as_ptr(),
                        c"overlay".as_ptr(),
                        0,
                        data.as_ptr().cast(),
                    )
                };
                if rc != 0 {
                    eprintln!("mount: {}", std::io::Error::last_os_error());
                    return ExitCode::FAILURE;
                }
                return ExitCode::SUCCESS;
            }
            // The new mount API's overlay: fsopen, fsconfig of each
            // KEY=VALUE, then fsmount and move_mount to TARGET.
            "--overlay-fsconfig" => {
                let target = args
                    .next()
                    .expect("--overlay-fsconfig needs TARGET KEY=VALUE...");
                let options: Vec<String> = args.by_ref().collect();
                return match mount_rows::overlay_fsconfig(&target, &options) {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(e) => {
                        eprintln!("{e}");
                        ExitCode::FAILURE
                    }
                };
            }
            // A workload for the exec rows: maps PATH readable, then
            // makes the mapping executable (mprotect), as a loader of its
            // own would; on refusal, the error on stderr and exit 1.
            "--map-exec" => {
                let path = args.next().expect("--map-exec needs PATH");
                let file = std::fs::File::open(&path).expect("open PATH");
                let fd = std::os::fd::AsRawFd::as_raw_fd(&file);
                let len = 4096;
                // SAFETY: a fresh private mapping of an open file.
                let at = unsafe {
                    libc::mmap(
                        std::ptr::null_mut(),
                        len,
                        libc::PROT_READ,
                        libc::MAP_PRIVATE,
                        fd,
                        0,
                    )
                };
                assert!(
                    at != libc::MAP_FAILED,
                    "mmap: {}",
                    std::io::Error::last_os_error()
                );
                // SAFETY: the mapping made above.
                if unsafe { libc::mprotect(at, len, libc::PROT_READ | libc::PROT_EXEC) } != 0 {
                    eprintln!("mprotect: {}", std::io::Error::last_os_error());
                    return ExitCode::FAILURE;
                }
                return ExitCode::SUCCESS;
            }
            // A workload for the exec rows: pinned to CPU 0, executes
            // PROGRAM with ARGS and ARGV0 as its argv[0], so that its exec
            // record and its loader's mappings share one CPU's scratch.
            "--pinned-exec" => {
                use std::os::unix::process::CommandExt;
                let argv0 = args.next().expect("--pinned-exec needs ARGV0 PROGRAM");
                let program = args.next().expect("--pinned-exec needs ARGV0 PROGRAM");
                // SAFETY: a zeroed cpu_set_t with CPU 0 set.
                unsafe {
                    let mut set: libc::cpu_set_t = std::mem::zeroed();
                    libc::CPU_SET(0, &mut set);
                    libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set);
                }
                let e = std::process::Command::new(&program)
                    .arg0(argv0)
                    .args(args)
                    .exec();
                eprintln!("exec {program}: {e}");
                return ExitCode::FAILURE;
            }
            // A workload for command rules: once WAIT_FILE exists (if
            // given), rename itself NAME (HOW: `prctl` or `proc`, writing
            // /proc/self/comm), then connect to ADDR over TCP; exits with
            // the errno, 0 on success.
            "--renamed-connect" => {
                let how = args.next().expect("--renamed-connect needs HOW NAME ADDR");
                let name = args.next().expect("--renamed-connect needs HOW NAME ADDR");
                let addr = args.next().expect("--renamed-connect needs HOW NAME ADDR");
                if let Some(wait) = args.next() {
                    while !std::path::Path::new(&wait).exists() {
                        std::thread::sleep(std::time::Duration::from_millis(20));
                    }
                }
                let renamed = match how.as_str() {
                    "prctl" => {
                        let c = std::ffi::CString::new(name).expect("no NUL in NAME");
                        unsafe { libc::prctl(libc::PR_SET_NAME, c.as_ptr()) == 0 }
                    }
                    _ => std::fs::write("/proc/self/comm", name).is_ok(),
                };
                assert!(renamed, "rename: {}", std::io::Error::last_os_error());
                return match std::net::TcpStream::connect(addr.as_str()) {
                    Ok(_) => ExitCode::SUCCESS,
                    Err(e) => ExitCode::from(e.raw_os_error().unwrap_or(99) as u8),
                };
            }
            // A workload for the exec rows: PROGRAM copied into a memfd
            // named `tool` and run from there (execveat with
            // AT_EMPTY_PATH) with ARGS; on refusal, the error on stderr
            // and exit 1.
            "--memfd-exec" => {
                let argv: Vec<std::ffi::CString> = args
                    .map(|a| std::ffi::CString::new(a).expect("no NUL in arguments"))
                    .collect();
                let program = argv.first().expect("--memfd-exec needs PROGRAM");
                let bytes = std::fs::read(program.to_str().unwrap()).expect("read PROGRAM");
                let fd = unsafe { libc::memfd_create(c"tool".as_ptr(), 0) };
                assert!(fd >= 0, "memfd_create: {}", std::io::Error::last_os_error());
                let mut memfd =
                    unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(fd) };
                std::io::Write::write_all(&mut memfd, &bytes).expect("fill the memfd");
                let mut ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
                ptrs.push(std::ptr::null());
                let env: [*const libc::c_char; 1] = [std::ptr::null()];
                unsafe {
                    libc::syscall(
                        libc::SYS_execveat,
                        fd,
                        c"".as_ptr(),
                        ptrs.as_ptr(),
                        env.as_ptr(),
                        libc::AT_EMPTY_PATH,
                    )
                };
                eprintln!("execveat: {}", std::io::Error::last_os_error());
                return ExitCode::FAILURE;
            }
            // A workload for the exec rows: execveat(2) of PROGRAM in DIR,
            // DIR opened one component at a time (so it may be longer
            // than PATH_MAX), with ARGS; on refusal, the error on stderr
            // and exit 1.
            "--execveat-at" => {
                let dir = args.next().expect("--execveat-at needs DIR PROGRAM");
                let argv: Vec<std::ffi::CString> = args
                    .map(|a| std::ffi::CString::new(a).expect("no NUL in arguments"))
                    .collect();
                let program = argv.first().expect("--execveat-at needs PROGRAM");
                let mut ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
                ptrs.push(std::ptr::null());
                let env: [*const libc::c_char; 1] = [std::ptr::null()];
                let mut fd = unsafe { libc::open(c"/".as_ptr(), libc::O_PATH | libc::O_DIRECTORY) };
                for part in dir.split('/').filter(|p| !p.is_empty()) {
                    let c = std::ffi::CString::new(part).expect("no NUL in DIR");
                    let next =
                        unsafe { libc::openat(fd, c.as_ptr(), libc::O_PATH | libc::O_DIRECTORY) };
                    if next < 0 {
                        eprintln!("open {part}: {}", std::io::Error::last_os_error());
                        return ExitCode::FAILURE;
                    }
                    unsafe { libc::close(fd) };
                    fd = next;
                }
                unsafe {
                    libc::syscall(
                        libc::SYS_execveat,
                        fd,
                        program.as_ptr(),
                        ptrs.as_ptr(),
                        env.as_ptr(),
                        0,
                    )
                };
                eprintln!("execveat: {}", std::io::Error::last_os_error());
                return ExitCode::FAILURE;
            }
            // A workload for the file rows: as uid 1000, in a user
            // namespace of its own (no other privilege), chroot to ROOT and
            // read PATH; on refusal, the error on stderr and exit 1.
            "--userns-chroot" => {
                let root = args.next().expect("--userns-chroot needs ROOT PATH");
                let path = args.next().expect("--userns-chroot needs ROOT PATH");
                return match userns_chroot_read(&root, &path) {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(e) => {
                        eprintln!("{e}");
                        ExitCode::FAILURE
                    }
                };
            }
            // A workload for the file rows: as a setuid-root program run by
            // uid 1000 is (real uid 1000, effective and saved uid 0), read
            // PATH; on refusal, the error on stderr and exit 1.
            "--setuid-read" => {
                let path = args.next().expect("--setuid-read needs PATH");
                // SAFETY: a plain syscall; single-threaded here.
                if unsafe { libc::setresuid(1000, 0, 0) } != 0 {
                    eprintln!("setresuid: {}", std::io::Error::last_os_error());
                    return ExitCode::FAILURE;
                }
                return match std::fs::read(&path) {
                    Ok(_) => ExitCode::SUCCESS,
                    Err(e) => {
                        eprintln!("read {path}: {e}");
                        ExitCode::FAILURE
                    }
                };
            }
            _ => filters.push(arg),
        }
    }

    let wanted =
        |name: &str| filters.is_empty() || filters.iter().any(|f| name.contains(f.as_str()));
    let mut failed = 0;
    let mut report = |name: &str, result: cases::TestResult| match result {
        Ok(()) => println!("SGTEST PASS {name}"),
        Err(reason) => {
            failed += 1;
            println!("SGTEST FAIL {name} {}", reason.replace('\n', " | "));
        }
    };
    for (name, case) in cases::ALL {
        if wanted(name) {
            report(name, case(&agent));
        }
    }
    for (name, suite) in SUITES {
        if wanted(name) {
            for (row, result) in suite(&agent) {
                report(&row, result);
            }
        }
    }
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// See `--userns-chroot`.
fn userns_chroot_read(root: &str, path: &str) -> Result<(), String> {
    let last = || std::io::Error::last_os_error();
    // SAFETY: plain syscalls; the process is single-threaded here.
    unsafe {
        if libc::setgid(1000) != 0 || libc::setuid(1000) != 0 {
            return Err(format!("drop to uid 1000: {}", last()));
        }
        // A change of uid makes the process undumpable, and its /proc files
        // root's: uid_map could not be written.
        libc::prctl(libc::PR_SET_DUMPABLE, 1);
        if libc::unshare(libc::CLONE_NEWUSER) != 0 {
            return Err(format!("unshare(CLONE_NEWUSER): {}", last()));
        }
    }
    std::fs::write("/proc/self/uid_map", "0 1000 1").map_err(|e| format!("uid_map: {e}"))?;
    std::os::unix::fs::chroot(root).map_err(|e| format!("chroot {root}: {e}"))?;
    std::env::set_current_dir("/").map_err(|e| format!("chdir /: {e}"))?;
    std::fs::read(path)
        .map(drop)
        .map_err(|e| format!("read {path}: {e}"))
}
