//! The image a container was made from, as its runtime recorded it on disk
//! when it made the container (before its cgroup, so before the first
//! record of its tasks):
//!
//! ```text
//! podman, CRI-O  /var/lib/containers/storage/<driver>-containers/containers.json
//!                (containers/storage: each container's "metadata" holds "image-name")
//! docker         /var/lib/docker/containers/<id>/config.v2.json  (Config.Image)
//! containerd     /run/containerd/io.containerd.runtime.v2.task/<namespace>/<id>/config.json
//!                (the OCI bundle: annotation io.kubernetes.cri.image-name)
//! ```
//!
//! Read from the files rather than asked of the runtimes: their clients are
//! whole API stacks (and docker's and containerd's need their sockets),
//! while the name is one field of a file each runtime keeps.

use std::path::{Path, PathBuf};

use serde_json::Value;

/// Where the runtimes keep what they know of each container.
#[derive(Debug, Clone)]
pub struct RuntimeRoots {
    /// containers/storage's graph roots (podman's and CRI-O's).
    pub containers_storage: Vec<PathBuf>,
    /// docker's `containers` directory.
    pub docker: PathBuf,
    /// containerd's runtime v2 task directory (one subdirectory per
    /// namespace: `k8s.io`, `moby`, `default`).
    pub containerd_tasks: PathBuf,
}

impl Default for RuntimeRoots {
    fn default() -> Self {
        Self {
            containers_storage: vec![PathBuf::from("/var/lib/containers/storage")],
            docker: PathBuf::from("/var/lib/docker/containers"),
            containerd_tasks: PathBuf::from("/run/containerd/io.containerd.runtime.v2.task"),
        }
    }
}

/// Annotation containerd's CRI plugin puts on a container's bundle.
const CRI_IMAGE_NAME: &str = "io.kubernetes.cri.image-name";
/// CRI-O's, in case containers/storage has no metadata for the container.
const CRIO_IMAGE_NAME: &str = "io.kubernetes.cri-o.ImageName";

impl RuntimeRoots {
    /// The image name of container `id` (64 hex digits), asking the runtime
    /// the cgroup path named first; `None` where no runtime's files say.
    pub fn image_name(&self, runtime: Option<&str>, id: &str) -> Option<String> {
        // An id names a directory below: nothing but hex digits gets there.
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let storage = || self.in_containers_storage(id);
        let docker = || self.in_docker(id);
        let containerd = || self.in_containerd(id);
        match runtime {
            Some("podman" | "cri-o") => storage(),
            Some("docker") => docker().or_else(containerd),
            Some("containerd") => containerd(),
            _ => storage().or_else(docker).or_else(containerd),
        }
        .filter(|name| !name.is_empty())
    }

    fn in_containers_storage(&self, id: &str) -> Option<String> {
        self.containers_storage.iter().find_map(|root| {
            // One `<driver>-containers` directory per storage driver used.
            let drivers = std::fs::read_dir(root).ok()?;
            drivers.flatten().find_map(|entry| {
                let name = entry.file_name();
                if !name.to_string_lossy().ends_with("-containers") {
                    return None;
                }
                let dir = entry.path();
                storage_image_name(&dir.join("containers.json"), id).or_else(|| {
                    annotation(&dir.join(id).join("userdata/config.json"), CRIO_IMAGE_NAME)
                })
            })
        })
    }

    fn in_docker(&self, id: &str) -> Option<String> {
        let config = read_json(&self.docker.join(id).join("config.v2.json"))?;
        config["Config"]["Image"].as_str().map(str::to_string)
    }

    fn in_containerd(&self, id: &str) -> Option<String> {
        let namespaces = std::fs::read_dir(&self.containerd_tasks).ok()?;
        namespaces
            .flatten()
            .find_map(|ns| annotation(&ns.path().join(id).join("config.json"), CRI_IMAGE_NAME))
    }
}

fn read_json(path: &Path) -> Option<Value> {
    let text = std::fs::read(path).ok()?;
    serde_json::from_slice(&text).ok()
}

/// An annotation of an OCI bundle's `config.json`.
fn annotation(config: &Path, key: &str) -> Option<String> {
    read_json(config)?["annotations"][key]
        .as_str()
        .map(str::to_string)
}

/// containers/storage's record of container `id`: its `metadata` is a JSON
/// document in a string, written by podman and CRI-O alike.
fn storage_image_name(containers_json: &Path, id: &str) -> Option<String> {
    let all = read_json(containers_json)?;
    let record = all.as_array()?.iter().find(|c| c["id"] == id)?;
    let metadata: Value = serde_json::from_str(record["metadata"].as_str()?).ok()?;
    metadata["image-name"].as_str().map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "3f1ca0c44b9e9d2fa0b0a6e4e1a5d3d6c1f8e7d2b9a4c5e6f7a8b9c0d1e2f3a4";
    const OTHER: &str = "0000000000000000000000000000000000000000000000000000000000000001";

    fn roots(dir: &Path) -> RuntimeRoots {
        RuntimeRoots {
            containers_storage: vec![dir.join("storage")],
            docker: dir.join("docker"),
            containerd_tasks: dir.join("containerd"),
        }
    }

    fn write(path: PathBuf, text: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    #[test]
    fn podman_and_cri_o_by_containers_storage() {
        let dir = tempfile::tempdir().unwrap();
        let metadata =
            serde_json::json!({"image-name": "localhost/app:1", "name": "x"}).to_string();
        let containers = serde_json::json!([
            {"id": OTHER, "metadata": "{\"image-name\":\"other:2\"}"},
            {"id": ID, "metadata": metadata},
        ]);
        write(
            dir.path()
                .join("storage/overlay-containers/containers.json"),
            &containers.to_string(),
        );
        let r = roots(dir.path());
        assert_eq!(
            r.image_name(Some("podman"), ID).as_deref(),
            Some("localhost/app:1")
        );
        assert_eq!(r.image_name(None, OTHER).as_deref(), Some("other:2"));
        assert_eq!(r.image_name(Some("podman"), &ID.replace('3', "4")), None);
    }

    #[test]
    fn docker_by_its_container_config() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path().join(format!("docker/{ID}/config.v2.json")),
            r#"{"Image":"sha256:abc","Config":{"Image":"nginx:1.27"}}"#,
        );
        let r = roots(dir.path());
        assert_eq!(
            r.image_name(Some("docker"), ID).as_deref(),
            Some("nginx:1.27")
        );
        assert_eq!(r.image_name(None, ID).as_deref(), Some("nginx:1.27"));
    }

    #[test]
    fn containerd_by_the_bundles_cri_annotation() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path()
                .join(format!("containerd/k8s.io/{ID}/config.json")),
            r#"{"annotations":{"io.kubernetes.cri.image-name":"registry.k8s.io/pause:3.9"}}"#,
        );
        let r = roots(dir.path());
        assert_eq!(
            r.image_name(Some("containerd"), ID).as_deref(),
            Some("registry.k8s.io/pause:3.9")
        );
    }

    #[test]
    fn nothing_recorded_or_not_an_id_is_no_name() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path()
                .join("storage/overlay-containers/containers.json"),
            "not json",
        );
        let r = roots(dir.path());
        assert_eq!(r.image_name(None, ID), None);
        assert_eq!(r.image_name(None, "../../etc"), None);
        assert_eq!(r.image_name(None, ""), None);
    }
}
