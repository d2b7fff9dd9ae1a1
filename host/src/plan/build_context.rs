//! Dockerfile build contexts: the files `.dockerignore` lets through, hashed
//! (so an image is rebuilt, and its containers recreated, only when its
//! inputs change) and packed as the tar the engine's build API takes. Must
//! not talk to the engine: apply hands the tar over.

use std::path::{Path, PathBuf};

use globset::{GlobSet, GlobSetBuilder};
use sha2::{Digest, Sha256};

use crate::desired::BuildSpec;

pub struct Context {
    root: PathBuf,
    /// The Dockerfile's path in the context, and its text (read once).
    dockerfile: String,
    dockerfile_text: String,
    /// Relative paths (with `/`), sorted.
    files: Vec<String>,
}

impl Context {
    /// The context of `spec`, relative to the stack's folder, resolved with
    /// links followed each time it is loaded (policy refuses one outside the
    /// project without `allow`). Links inside it go to the engine as links.
    pub fn load(project_dir: &Path, spec: &BuildSpec) -> Result<Context, String> {
        let root = super::host_path::resolve(project_dir, &spec.context).map_err(|e| format!("build context: {e}"))?.real;
        if !root.is_dir() {
            return Err(format!("build context `{}` is not a folder ({})", spec.context, root.display()));
        }
        let dockerfile = spec.dockerfile.as_deref().unwrap_or("Dockerfile");
        // Sent as text: it must not be a link to a file outside the context.
        let inside = root.join(dockerfile).canonicalize().is_ok_and(|real| real.starts_with(&root));
        let Some(dockerfile_text) = inside.then(|| std::fs::read_to_string(root.join(dockerfile)).ok()).flatten() else {
            return Err(format!("build context `{}` has no {dockerfile} (or it links outside the context)", spec.context));
        };
        let ignore = DockerIgnore::read(&root)?;
        let mut files = Vec::new();
        walk(&root, &root, &ignore, dockerfile, &mut files).map_err(|e| format!("cannot read build context `{}`: {e}", spec.context))?;
        files.sort();
        Ok(Context { root, dockerfile: dockerfile.to_string(), dockerfile_text, files })
    }

    /// The images the Dockerfile's `FROM` lines name (not earlier stages,
    /// not ones made of build arguments).
    pub fn base_images(&self) -> Vec<String> {
        let mut stages = Vec::new();
        let mut bases = Vec::new();
        for line in self.dockerfile_text.lines() {
            if let Some((image, stage)) = from_line(line) {
                if !stages.contains(&image.to_ascii_lowercase()) && !image.contains('$') && !bases.contains(&image.to_string()) {
                    bases.push(image.to_string());
                }
                stages.extend(stage.map(str::to_ascii_lowercase));
            }
        }
        bases
    }

    /// sha256 over the build's settings and every file's path, mode and bytes.
    pub fn input_hash(&self, spec: &BuildSpec) -> Result<String, String> {
        let mut hasher = Sha256::new();
        let settings = serde_json::json!([spec.dockerfile, spec.target, spec.args, spec.from_substitutes]);
        hasher.update(settings.to_string().as_bytes());
        for file in &self.files {
            let path = self.root.join(file);
            // A link is sent as a link: hash where it points, never what.
            let bytes = match std::fs::read_link(&path) {
                Ok(target) => target.to_string_lossy().into_owned().into_bytes(),
                Err(_) => std::fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?,
            };
            hasher.update((file.len() as u64).to_be_bytes());
            hasher.update(file.as_bytes());
            hasher.update(mode(&path).to_be_bytes());
            hasher.update((bytes.len() as u64).to_be_bytes());
            hasher.update(&bytes);
        }
        Ok(hex::encode(hasher.finalize()))
    }

    /// The context as a tar, with the Dockerfile's base images substituted.
    pub fn tar(&self, spec: &BuildSpec) -> std::io::Result<Vec<u8>> {
        let mut archive = tar::Builder::new(Vec::new());
        archive.follow_symlinks(false);
        for file in &self.files {
            let path = self.root.join(file);
            if *file == self.dockerfile && !spec.from_substitutes.is_empty() {
                let text = substitute_from(&self.dockerfile_text, &spec.from_substitutes);
                let mut header = tar::Header::new_gnu();
                header.set_size(text.len() as u64);
                header.set_mode(0o644);
                header.set_cksum();
                archive.append_data(&mut header, file, text.as_bytes())?;
            } else {
                archive.append_path_with_name(path, file)?;
            }
        }
        archive.into_inner()
    }
}

/// `FROM [--platform=…] IMAGE [AS NAME]` → (IMAGE, NAME).
fn from_line(line: &str) -> Option<(&str, Option<&str>)> {
    let mut words = line.split_whitespace();
    if !words.next()?.eq_ignore_ascii_case("FROM") {
        return None;
    }
    let mut words = words.skip_while(|w| w.starts_with("--"));
    let image = words.next()?;
    let stage = match (words.next(), words.next()) {
        (Some(r#as), Some(name)) if r#as.eq_ignore_ascii_case("AS") => Some(name),
        _ => None,
    };
    Some((image, stage))
}

fn substitute_from(dockerfile: &str, substitutes: &std::collections::BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(dockerfile.len());
    for line in dockerfile.lines() {
        match from_line(line).and_then(|(image, _)| substitutes.get(image).map(|s| (image, s))) {
            Some((image, substitute)) => out.push_str(&line.replacen(image, substitute, 1)),
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::symlink_metadata(path).map(|m| m.permissions().mode()).unwrap_or(0)
}

#[cfg(not(unix))]
fn mode(_: &Path) -> u32 {
    0
}

fn walk(root: &Path, dir: &Path, ignore: &DockerIgnore, dockerfile: &str, files: &mut Vec<String>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        let relative = path.strip_prefix(root).expect("inside the root").to_string_lossy().replace('\\', "/");
        // The Dockerfile and .dockerignore always go (Docker's own rule).
        let always = relative == dockerfile || relative == ".dockerignore";
        let excluded = !always && ignore.excludes(&relative);
        if entry.file_type()?.is_dir() {
            // Docker still looks inside an excluded folder when a later `!`
            // pattern could re-include something in it.
            if !excluded || ignore.may_reinclude_under(&relative) {
                walk(root, &path, ignore, dockerfile, files)?;
            }
        } else if !excluded {
            files.push(relative);
        }
    }
    Ok(())
}

/// `.dockerignore` as Docker reads it: patterns relative to the context
/// root, `*`, `?`, `**`; the last pattern that matches a path decides, so a
/// later `!` pattern re-includes; a pattern that matches a folder matches
/// everything in it (and `!dir/keep` re-includes a file in it).
struct DockerIgnore {
    rules: Vec<(GlobSet, bool)>,
    /// The literal folder prefix of each `!` pattern (up to its first
    /// wildcard), to know which excluded folders to walk into.
    reinclude_prefixes: Vec<String>,
}

impl DockerIgnore {
    fn read(root: &Path) -> Result<DockerIgnore, String> {
        let text = std::fs::read_to_string(root.join(".dockerignore")).unwrap_or_default();
        let mut rules = Vec::new();
        let mut reinclude_prefixes = Vec::new();
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
            let (pattern, include) = match line.strip_prefix('!') {
                Some(p) => (p.trim(), true),
                None => (line, false),
            };
            let pattern = pattern.trim_start_matches("./").trim_start_matches('/').trim_end_matches('/');
            let mut set = GlobSetBuilder::new();
            for p in [pattern.to_string(), format!("{pattern}/**")] {
                let glob = globset::GlobBuilder::new(&p).literal_separator(true).build().map_err(|e| format!(".dockerignore: {e}"))?;
                set.add(glob);
            }
            rules.push((set.build().map_err(|e| format!(".dockerignore: {e}"))?, include));
            if include {
                let literal = pattern.find(['*', '?', '[', '{']).map_or(pattern, |wild| &pattern[..wild]);
                reinclude_prefixes.push(literal.to_string());
            }
        }
        Ok(DockerIgnore { rules, reinclude_prefixes })
    }

    /// Whether some `!` pattern could match a path inside `dir`.
    fn may_reinclude_under(&self, dir: &str) -> bool {
        let dir = format!("{dir}/");
        self.reinclude_prefixes.iter().any(|prefix| prefix.starts_with(&dir) || dir.starts_with(prefix.as_str()))
    }

    fn excludes(&self, relative: &str) -> bool {
        let mut excluded = false;
        for (set, include) in &self.rules {
            if set.is_match(relative) {
                excluded = !include;
            }
        }
        excluded
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A build of the folder `ctx` with its Dockerfile and no settings.
    fn spec() -> BuildSpec {
        BuildSpec {
            context: "ctx".into(),
            dockerfile: None,
            target: None,
            args: Default::default(),
            input_hash: String::new(),
            from_substitutes: Default::default(),
        }
    }

    fn context(files: &[(&str, &str)], ignore: &str) -> (tempfile::TempDir, Context) {
        let dir = tempfile::tempdir().unwrap();
        for (path, text) in files {
            let path = dir.path().join("ctx").join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        std::fs::write(dir.path().join("ctx/.dockerignore"), ignore).unwrap();
        let ctx = Context::load(dir.path(), &spec()).unwrap();
        (dir, ctx)
    }

    #[test]
    fn dockerignore_excludes_files_and_folders_and_reincludes() {
        let files = [("Dockerfile", "FROM x"), ("app.rb", ""), ("log/dev.log", ""), ("tmp/a/b", ""), ("secret.key", ""), ("keep.key", "")];
        let (_dir, ctx) = context(&files, "# comment\nlog\n**/b\n*.key\n!keep.key\n");
        assert_eq!(ctx.files, [".dockerignore", "Dockerfile", "app.rb", "keep.key"]);
    }

    #[test]
    fn dockerignore_reincludes_inside_an_excluded_folder_as_docker_does() {
        let files = [("Dockerfile", "FROM x"), ("vendor/a.rb", ""), ("vendor/keep/b.rb", ""), ("vendor/deep/c.rb", ""), ("log/x", "")];
        let (_dir, ctx) = context(&files, "vendor\n!vendor/keep\n!**/c.rb\nlog\n");
        assert_eq!(ctx.files, [".dockerignore", "Dockerfile", "vendor/deep/c.rb", "vendor/keep/b.rb"]);
    }

    #[test]
    fn from_lines_name_base_images_and_take_substitutes() {
        let dockerfile = "FROM --platform=linux/amd64 ruby:3.1-slim AS base\nRUN x\nfrom base\nFROM ${IMAGE}\nFROM nginx:1 as web\n";
        let (_dir, ctx) = context(&[("Dockerfile", dockerfile)], "");
        assert_eq!(ctx.base_images(), ["ruby:3.1-slim", "nginx:1"]);
        let map = [("ruby:3.1-slim".to_string(), "standin/ruby:3".to_string())].into_iter().collect();
        let out = substitute_from(dockerfile, &map);
        assert_eq!(out.lines().next().unwrap(), "FROM --platform=linux/amd64 standin/ruby:3 AS base");
        assert_eq!(out.lines().skip(1).collect::<Vec<_>>(), dockerfile.lines().skip(1).collect::<Vec<_>>());
    }

    #[test]
    fn the_input_hash_follows_content_not_ignored_files() {
        let spec = spec();
        let (dir, ctx) = context(&[("Dockerfile", "FROM x"), ("a.txt", "1"), ("junk.log", "1")], "*.log\n");
        let before = ctx.input_hash(&spec).unwrap();
        std::fs::write(dir.path().join("ctx/junk.log"), "2").unwrap();
        assert_eq!(Context::load(dir.path(), &spec).unwrap().input_hash(&spec).unwrap(), before, "ignored files do not count");
        std::fs::write(dir.path().join("ctx/a.txt"), "2").unwrap();
        assert_ne!(Context::load(dir.path(), &spec).unwrap().input_hash(&spec).unwrap(), before);
    }
}
