//! The project: where the sources, outputs and caches are.
//!
//! Created once per invocation and handed to every verb. All paths the
//! builder writes are below `images/` (outputs) and `images/.cache/`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::profile::Profile;

pub struct Project {
    /// Workspace root (holds Cargo.toml, builder/, kernel/, configs/, ...).
    pub root: PathBuf,
}

impl Project {
    /// The project this builder was compiled from.
    pub fn discover() -> Result<Project> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .context("builder has no parent directory")?
            .to_path_buf();
        anyhow::ensure!(
            root.join("configs").is_dir() && root.join("kernel").is_dir(),
            "{} does not look like the detlinux tree (no configs/ or kernel/)",
            root.display()
        );
        Ok(Project { root })
    }

    pub fn configs(&self) -> PathBuf {
        self.root.join("configs")
    }

    /// `images/`: everything the builder writes lives below it.
    pub fn images(&self) -> PathBuf {
        self.root.join("images")
    }

    /// `images/.cache/<what>`: caches keyed by their inputs.
    pub fn cache(&self, what: &str) -> PathBuf {
        self.images().join(".cache").join(what)
    }

    /// `images/<profile>/`: a profile's published outputs.
    pub fn output(&self, profile: &str) -> PathBuf {
        self.images().join(profile)
    }

    pub fn profile(&self, name: &str) -> Result<Profile> {
        Profile::load(&self.configs(), &self.root, name)
    }

    /// Path shown to users: relative to the project root where possible.
    pub fn show<'a>(&self, path: &'a Path) -> std::path::Display<'a> {
        path.strip_prefix(&self.root).unwrap_or(path).display()
    }
}
