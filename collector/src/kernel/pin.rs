//! Pinning: the programs' links and the maps they share with the agent,
//! kept in a BPF filesystem so that enforcement goes on while the agent is
//! away (a restart, an upgrade), and the next agent takes over from them.
//!
//! Under the pin directory:
//!
//! ```text
//! maps/<MAP>            every map the programs share with the agent
//! links/<epoch>/<prog>  the links of one load of the programs
//! ```
//!
//! Taking over (`Kernel::start`): the epoch and policy set in force are read
//! from the pinned `POLICY_ACTIVE`; the new programs are loaded with the
//! next epoch onto the same maps (the ring buffer with the events that
//! waited in it, the counters, the sequence), attached while they stand
//! aside, the policy is written into the set not in force, and one write
//! switches epoch and set (`collector_common::active_value`). Only then are
//! the previous links removed. A crash at any step leaves exactly one epoch
//! judging: the old one before the switch, the new one after.

use std::{
    ffi::CString,
    io,
    path::{Path, PathBuf},
};

use aya::{
    maps::{Array, Map, MapData, MapInfo},
    programs::links::{FdLink, PinnedLink},
};
use collector_common::maps;
use tracing::{info, warn};

/// Every map the programs and the agent share, and so pinned and taken
/// over: the others are per-load scratch space.
pub fn shared_maps() -> impl Iterator<Item = &'static str> {
    [
        maps::EVENTS,
        maps::SEQUENCE,
        maps::DROPS,
        maps::POLICY_ACTIVE,
        maps::MODULE_CONFIG,
        maps::FILE_INODE_FILTER,
    ]
    .into_iter()
    .chain(
        [
            maps::FILE_RULES,
            maps::FILE_ANCESTORS,
            maps::FILE_INODES,
            maps::EXEC_PATH_RULES,
            maps::EXEC_NAME_RULES,
            maps::MOUNT_RULES,
            maps::MOUNT_ANCESTORS,
            maps::MOUNT_INODES,
            maps::NET_V4_RULES,
            maps::NET_V6_RULES,
            maps::NET_COMMAND_RULES,
            maps::NET_UID_RULES,
            maps::NET_GID_RULES,
        ]
        .into_iter()
        .flatten(),
    )
}

#[derive(Debug, thiserror::Error)]
pub enum PinError {
    #[error("kernel.pin_dir: {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "{0} is not on a BPF filesystem (kernel.pin_dir must be below a bpffs mount, usually /sys/fs/bpf)"
    )]
    NotBpffs(PathBuf),
    #[error("cannot read the pinned map {path}: {source}")]
    Map {
        path: PathBuf,
        #[source]
        source: aya::maps::MapError,
    },
    #[error("cannot pin link {path}: {source}")]
    Pin {
        path: PathBuf,
        #[source]
        source: aya::pin::PinError,
    },
}

/// How pinned maps do not fit this build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Misfit {
    NotInBuild(&'static str),
    Missing(PathBuf),
    Unreadable {
        path: PathBuf,
        error: String,
    },
    Differs {
        map: &'static str,
        measure: Measure,
        pinned: u32,
        ours: u32,
    },
}

/// What of a map's layout differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Measure {
    KeySize,
    ValueSize,
    Capacity,
}

impl std::fmt::Display for Misfit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Misfit::NotInBuild(name) => write!(f, "this build has no map {name}"),
            Misfit::Missing(path) => write!(f, "{} is missing", path.display()),
            Misfit::Unreadable { path, error } => write!(f, "{}: {error}", path.display()),
            Misfit::Differs {
                map,
                measure,
                pinned,
                ours,
            } => {
                let what = match measure {
                    Measure::KeySize => "key size",
                    Measure::ValueSize => "value size",
                    Measure::Capacity => "capacity",
                };
                write!(f, "map {map}: pinned {what} {pinned}, this build's {ours}")
            }
        }
    }
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> PinError + '_ {
    move |source| PinError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The pin directory and what is in it.
pub struct PinDir {
    dir: PathBuf,
}

/// What a previous agent left in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InForce {
    pub epoch: u32,
    pub set: u32,
}

impl PinDir {
    pub fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_path_buf(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    pub fn map_path(&self, name: &str) -> PathBuf {
        self.dir.join("maps").join(name)
    }

    fn links_dir(&self) -> PathBuf {
        self.dir.join("links")
    }

    /// The directories the pins of `epoch` are in, the pin directory
    /// first.
    pub fn dirs_of_epoch(&self, epoch: u32) -> Vec<PathBuf> {
        vec![
            self.dir.clone(),
            self.dir.join("maps"),
            self.links_dir(),
            self.links_dir().join(epoch.to_string()),
        ]
    }

    /// Anything pinned here at all (maps or links)?
    pub fn exists(&self) -> bool {
        self.dir.join("maps").exists() || self.links_dir().exists()
    }

    /// Makes the directory, mounting bpffs on /sys/fs/bpf first if that is
    /// where it goes and nothing is mounted there (minimal hosts).
    pub fn create(&self) -> Result<(), PinError> {
        let bpffs = Path::new("/sys/fs/bpf");
        if self.dir.starts_with(bpffs) && !is_bpffs(bpffs) {
            super::mounts::mount("bpf", bpffs).map_err(io_err(bpffs))?;
            info!("mounted a BPF filesystem on {}", bpffs.display());
        }
        // Checked on what exists before anything is made there.
        let existing = self.dir.ancestors().find(|p| p.exists());
        if !existing.is_some_and(is_bpffs) {
            return Err(PinError::NotBpffs(self.dir.clone()));
        }
        for dir in [self.dir.join("maps"), self.links_dir()] {
            std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        }
        Ok(())
    }

    /// The epoch and policy set in force, from the pinned `POLICY_ACTIVE`;
    /// `None` when nothing is pinned here.
    pub fn in_force(&self) -> Result<Option<InForce>, PinError> {
        let path = self.map_path(maps::POLICY_ACTIVE);
        if !path.exists() {
            return Ok(None);
        }
        let map_err = |source| PinError::Map {
            path: path.clone(),
            source,
        };
        let data = MapData::from_pin(&path).map_err(map_err)?;
        let active = Array::<_, u32>::try_from(Map::Array(data)).map_err(map_err)?;
        let value = active.get(&0, 0).map_err(map_err)?;
        Ok(Some(InForce {
            epoch: collector_common::active_epoch(value),
            set: collector_common::active_set(value),
        }))
    }

    /// Whether the pinned maps fit the programs about to be loaded: same
    /// key and value sizes and capacity (the ring buffer's size excepted:
    /// the pinned one is kept). `Err` says what differs.
    pub fn fits(&self, object: &aya_obj::Object) -> Result<(), Misfit> {
        for name in shared_maps() {
            let path = self.map_path(name);
            let Some(ours) = object.maps.get(name) else {
                return Err(Misfit::NotInBuild(name));
            };
            let pinned = match MapInfo::from_pin(&path) {
                Ok(info) => info,
                Err(_) if !path.exists() => return Err(Misfit::Missing(path)),
                Err(e) => {
                    return Err(Misfit::Unreadable {
                        path,
                        error: e.to_string(),
                    });
                }
            };
            let sizes = [
                (Measure::KeySize, pinned.key_size(), ours.key_size()),
                (Measure::ValueSize, pinned.value_size(), ours.value_size()),
                (Measure::Capacity, pinned.max_entries(), ours.max_entries()),
            ];
            for (measure, pinned, ours) in sizes {
                // The ring buffer keeps its pinned size (`Kernel::start`).
                let resizable = measure == Measure::Capacity && name == maps::EVENTS;
                if pinned != ours && !resizable {
                    return Err(Misfit::Differs {
                        map: name,
                        measure,
                        pinned,
                        ours,
                    });
                }
            }
        }
        Ok(())
    }

    /// The pinned ring buffer's size in bytes.
    pub fn ring_buffer_bytes(&self) -> Option<u32> {
        MapInfo::from_pin(self.map_path(maps::EVENTS))
            .ok()
            .map(|info| info.max_entries())
    }

    /// Pins `links` as the links of `epoch`. A link that cannot be pinned
    /// is an error: it would go with this agent.
    pub fn pin_links(
        &self,
        epoch: u32,
        links: Vec<(String, FdLink)>,
    ) -> Result<Vec<(PathBuf, PinnedLink)>, PinError> {
        let dir = self.links_dir().join(epoch.to_string());
        std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        links
            .into_iter()
            .map(|(name, link)| {
                let path = dir.join(&name);
                // A leftover of a crashed start with this epoch.
                let _ = std::fs::remove_file(&path);
                match link.pin(&path) {
                    Ok(pinned) => Ok((path, pinned)),
                    Err(source) => Err(PinError::Pin { path, source }),
                }
            })
            .collect()
    }

    /// Removes the links of every epoch but `keep`: their programs detach
    /// (no one else holds them). Returns how many links went.
    pub fn remove_links_except(&self, keep: Option<u32>) -> Result<usize, PinError> {
        let root = self.links_dir();
        let mut removed = 0;
        let Ok(entries) = std::fs::read_dir(&root) else {
            return Ok(0);
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let epoch = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok());
            if epoch.is_some() && epoch == keep {
                continue;
            }
            removed += remove_dir_of_pins(&path)?;
        }
        Ok(removed)
    }

    /// Removes everything pinned here, and the directory: programs no one
    /// else holds detach, maps no one else holds go.
    pub fn remove_all(&self) -> Result<usize, PinError> {
        let links = self.remove_links_except(None)?;
        let _ = std::fs::remove_dir(self.links_dir());
        remove_dir_of_pins(&self.dir.join("maps"))?;
        match std::fs::remove_dir(&self.dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => warn!("cannot remove {}: {e}", self.dir.display()),
        }
        Ok(links)
    }
}

/// Unlinks every pin in `dir`, then `dir`. Returns how many pins went.
fn remove_dir_of_pins(dir: &Path) -> Result<usize, PinError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(io_err(dir)(e)),
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let path = entry.path();
        std::fs::remove_file(&path).map_err(io_err(&path))?;
        removed += 1;
    }
    std::fs::remove_dir(dir).map_err(io_err(dir))?;
    Ok(removed)
}

/// `statfs(2)` says the path is on a BPF filesystem.
fn is_bpffs(path: &Path) -> bool {
    const BPF_FS_MAGIC: i64 = 0xcafe_4a11;
    let Ok(c) = CString::new(path.as_os_str().as_encoded_bytes()) else {
        return false;
    };
    let mut stat: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: valid NUL-terminated path and a statfs buffer.
    unsafe { libc::statfs(c.as_ptr(), &mut stat) == 0 && stat.f_type as i64 == BPF_FS_MAGIC }
}
