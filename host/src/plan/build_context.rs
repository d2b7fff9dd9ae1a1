//! Dockerfile build contexts: the files `.dockerignore` lets through, hashed
//! (so an image is rebuilt, and its containers recreated, only when its
//! inputs change) and packed as the tar the engine's build API takes. Must
//! not talk to the engine: apply hands the tar over.

use std::{io::Read, path::Path};

use globset::{GlobSet, GlobSetBuilder};
use sha2::{Digest, Sha256};

use super::host_tree::{Filter, Kind, Limits, Tree};
use crate::desired::BuildSpec;

/// The most a Dockerfile or a .dockerignore may hold.
const MAX_SMALL_FILE: u64 = 1 << 20;

pub struct Context {
    tree: Tree,
    /// The Dockerfile's path in the context, and its text (read once).
    dockerfile: String,
    dockerfile_text: String,
}

impl Context {
    /// The context of `spec` at `root`, the folder `plan` resolved and
    /// checked its path to (`host_paths`), listed as `.dockerignore` leaves
    /// it — never the project's `.provision` or `.git`, whatever that says
    /// — with no link followed on the way (`host_tree`). Links inside it go
    /// to the engine as links; a FIFO or device in it is refused by name.
    pub fn load(root: &Path, spec: &BuildSpec) -> Result<Context, String> {
        let context = &spec.context;
        let written = spec.dockerfile.as_deref().unwrap_or("Dockerfile");
        // As the tree names it: `./docker/Dockerfile` is `docker/Dockerfile`.
        let mut parts = Vec::new();
        for part in Path::new(written).components() {
            match part {
                std::path::Component::Normal(part) => parts.push(part.to_string_lossy()),
                std::path::Component::CurDir => {}
                _ => return Err(format!("build context `{context}`: the Dockerfile {written:?} must be a path inside the context")),
            }
        }
        let dockerfile = parts.join("/");
        let dockerfile = dockerfile.as_str();
        let ignore = DockerIgnore::read(root).map_err(|e| format!("build context `{context}`: {e}"))?;
        // The Dockerfile and .dockerignore always go (Docker's own rule).
        let excluded = |path: &str| path != dockerfile && path != ".dockerignore" && ignore.excludes(path);
        let look_inside = |path: &str| ignore.may_reinclude_under(path);
        let filter = Filter { excluded: &excluded, look_inside: &look_inside };
        let tree = Tree::open(root, &filter, Limits::CONTEXT).map_err(|e| {
            format!(
                "build context `{context}`: {e}{}",
                if e.contains("more than") { "; leave out what the image does not need in its .dockerignore" } else { "" }
            )
        })?;
        let dockerfile_text = match tree.entries.iter().find(|e| e.path == dockerfile).map(|e| &e.kind) {
            Some(Kind::File { .. }) => {
                let (file, _) = tree.open_file(dockerfile).map_err(|e| format!("build context `{context}`: {e}"))?;
                let mut text = String::new();
                file.take(MAX_SMALL_FILE + 1).read_to_string(&mut text).map_err(|e| format!("build context `{context}`: {dockerfile}: {e}"))?;
                if text.len() as u64 > MAX_SMALL_FILE {
                    return Err(format!("build context `{context}`: {dockerfile} is larger than 1 MiB"));
                }
                text
            }
            Some(_) => return Err(format!("build context `{context}`: {dockerfile} is a link or a folder; name the file itself")),
            None => return Err(format!("build context `{context}` has no {dockerfile}")),
        };
        Ok(Context { tree, dockerfile: dockerfile.to_string(), dockerfile_text })
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
        self.tree.hash_into(&mut hasher).map_err(|e| format!("build context `{}`: {e}", spec.context))?;
        Ok(hex::encode(hasher.finalize()))
    }

    /// The context as a tar in a temporary file (it can be large), with the
    /// Dockerfile's base images substituted.
    pub fn tar(&self, spec: &BuildSpec) -> Result<tempfile::NamedTempFile, String> {
        let file = tempfile::NamedTempFile::new().map_err(|e| format!("a temporary file: {e}"))?;
        let mut archive = tar::Builder::new(std::io::BufWriter::new(file.as_file()));
        let dockerfile = (!spec.from_substitutes.is_empty()).then(|| substitute_from(&self.dockerfile_text, &spec.from_substitutes));
        let replace = dockerfile.as_deref().map(|text| (self.dockerfile.as_str(), text.as_bytes()));
        self.tree.append_to(&mut archive, "", false, replace).map_err(|e| format!("build context `{}`: {e}", spec.context))?;
        archive.into_inner().and_then(|mut w| std::io::Write::flush(&mut w)).map_err(|e| format!("writing the build context: {e}"))?;
        Ok(file)
    }
}

/// The project's hidden folders (`.provision`, `.git`) that a context at
/// `root` holds and its `.dockerignore` would send: what a tool other than
/// provision (compose, for an export) would put into the image.
pub fn sends_hidden(project_dir: &Path, root: &Path) -> Result<Vec<String>, String> {
    let ignore = DockerIgnore::read(root)?;
    let below = super::host_path::hidden_below(project_dir, root);
    Ok(below.iter().map(|p| p.to_string_lossy().replace('\\', "/")).filter(|p| !ignore.excludes(p)).collect())
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
        // Read like every file of the context: no link followed, a regular file.
        let text = match super::host_tree::Tree::open(&root.join(".dockerignore"), &Filter::ALL, Limits { bytes: MAX_SMALL_FILE, entries: 1 }) {
            Ok(tree) if tree.is_file() => {
                let mut text = String::new();
                tree.open_file("")?.0.read_to_string(&mut text).map_err(|e| format!(".dockerignore: {e}"))?;
                text
            }
            Ok(_) => return Err(".dockerignore is a folder".into()),
            Err(_) if !root.join(".dockerignore").exists() => String::new(),
            Err(e) => return Err(format!(".dockerignore: {e}")),
        };
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

    /// The context folder, resolved as `plan` pins it.
    fn root(dir: &tempfile::TempDir) -> std::path::PathBuf {
        dir.path().join("ctx").canonicalize().unwrap()
    }

    fn context(files: &[(&str, &str)], ignore: &str) -> (tempfile::TempDir, Context) {
        let dir = tempfile::tempdir().unwrap();
        for (path, text) in files {
            let path = dir.path().join("ctx").join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        std::fs::write(dir.path().join("ctx/.dockerignore"), ignore).unwrap();
        let ctx = Context::load(&root(&dir), &spec()).unwrap();
        (dir, ctx)
    }

    /// What the tar would hold: files and links.
    fn sent(ctx: &Context) -> Vec<&str> {
        ctx.tree.entries.iter().filter(|e| e.kind != Kind::Folder).map(|e| e.path.as_str()).collect()
    }

    #[test]
    fn dockerignore_excludes_files_and_folders_and_reincludes() {
        let files = [("Dockerfile", "FROM x"), ("app.rb", ""), ("log/dev.log", ""), ("tmp/a/b", ""), ("secret.key", ""), ("keep.key", "")];
        let (_dir, ctx) = context(&files, "# comment\nlog\n**/b\n*.key\n!keep.key\n");
        assert_eq!(sent(&ctx), [".dockerignore", "Dockerfile", "app.rb", "keep.key"]);
    }

    #[test]
    fn dockerignore_reincludes_inside_an_excluded_folder_as_docker_does() {
        let files = [("Dockerfile", "FROM x"), ("vendor/a.rb", ""), ("vendor/keep/b.rb", ""), ("vendor/deep/c.rb", ""), ("log/x", "")];
        let (_dir, ctx) = context(&files, "vendor\n!vendor/keep\n!**/c.rb\nlog\n");
        assert_eq!(sent(&ctx), [".dockerignore", "Dockerfile", "vendor/deep/c.rb", "vendor/keep/b.rb"]);
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
        assert_eq!(Context::load(&root(&dir), &spec).unwrap().input_hash(&spec).unwrap(), before, "ignored files do not count");
        std::fs::write(dir.path().join("ctx/a.txt"), "2").unwrap();
        assert_ne!(Context::load(&root(&dir), &spec).unwrap().input_hash(&spec).unwrap(), before);
    }

    #[test]
    fn the_project_state_never_goes_and_special_files_are_refused() {
        let files = [("Dockerfile", "FROM x\nCOPY . /app"), (".provision/secret-key", "k"), (".git/HEAD", "ref"), ("sub/.provision/x", "")];
        let (dir, ctx) = context(&files, "!.provision\n");
        assert_eq!(sent(&ctx), [".dockerignore", "Dockerfile"], ".provision and .git go nowhere, whatever .dockerignore says");
        let fifo = std::ffi::CString::new(root(&dir).join("pipe").into_os_string().into_encoded_bytes()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
        let err = Context::load(&root(&dir), &spec()).err().unwrap();
        assert!(err.contains("pipe is a FIFO"), "{err}");
        let mut inside_state = spec();
        inside_state.dockerfile = Some(".provision/secret-key".into());
        std::fs::remove_file(root(&dir).join("pipe")).unwrap();
        assert!(Context::load(&root(&dir), &inside_state).err().unwrap().contains("has no .provision/secret-key"));
        inside_state.dockerfile = Some("../Dockerfile".into());
        assert!(Context::load(&root(&dir), &inside_state).err().unwrap().contains("must be a path inside the context"));
    }
}
