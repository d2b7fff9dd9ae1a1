//! Stable per-project secrets. A plugin asks `host.secret("password")`; the
//! answer is derived from a random key kept in the project folder, so the
//! same project, service and name give the same value on every run (a
//! database in a kept volume stays reachable), and different projects get
//! different values. Must not print: masking what is printed is the ui's.

use std::{
    fs,
    io::Write,
    path::{Path, PathBuf},
    sync::Mutex,
};

use hmac::{Hmac, Mac};
use miette::{IntoDiagnostic, WrapErr, miette};
use sha2::Sha256;

const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

pub struct Secrets {
    key: [u8; 32],
}

/// Every secret this process has seen (generated, or a plugin's secret
/// output): everything printed or emitted goes through `redact`, errors
/// and panics included, so none of them slips out in a message.
static KNOWN: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Remember a secret value, to be masked wherever it is printed. Values
/// shorter than 4 characters would mask ordinary text; they are not kept.
pub fn remember(value: &str) {
    let mut known = KNOWN.lock().unwrap_or_else(|p| p.into_inner());
    if value.len() >= 4 && !known.iter().any(|k| k == value) {
        known.push(value.to_string());
    }
}

/// Whether `text` holds a known secret (a URL with a password in it).
pub fn holds_secret(text: &str) -> bool {
    KNOWN.lock().unwrap_or_else(|p| p.into_inner()).iter().any(|k| text.contains(k.as_str()))
}

/// `text` with every known secret replaced by `••••••`.
pub fn redact(text: &str) -> String {
    let known = KNOWN.lock().unwrap_or_else(|p| p.into_inner());
    known.iter().fold(text.to_string(), |t, s| t.replace(s.as_str(), "••••••"))
}

impl Secrets {
    /// The key in `DIR/.provision/secret-key`, created on first use (mode
    /// 0600, with a .gitignore so it is never committed).
    pub fn for_project_dir(dir: &Path) -> miette::Result<Self> {
        let state = dir.join(".provision");
        let path = state.join("secret-key");
        let key = match provision_registry::files::read_regular_text(&path, 1024) {
            Ok(text) => parse_key(&text).ok_or_else(|| {
                miette!(help = "delete it to generate a new key (generated passwords will change)", "{} is damaged", path.display())
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => create_key(&state, &path)?,
            Err(e) => return Err(e).into_diagnostic().wrap_err_with(|| format!("cannot read the project's secret key {}", path.display())),
        };
        Ok(Secrets::from_key(key))
    }

    pub fn from_key(key: [u8; 32]) -> Self {
        Secrets { key }
    }

    /// 32 characters of [A-Za-z0-9], from HMAC-SHA256(key, project, service, name).
    pub fn derive(&self, project: &str, service: &str, name: &str) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("any key length");
        for part in [project, service, name] {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part.as_bytes());
        }
        let digest = mac.finalize().into_bytes();
        // 32 bytes → 32 characters; the modulo bias (256 % 62) is negligible
        // for a generated development password.
        let value: String = digest.iter().map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char).collect();
        remember(&value);
        value
    }
}

fn parse_key(text: &str) -> Option<[u8; 32]> {
    let mut key = [0u8; 32];
    hex::decode_to_slice(text.trim(), &mut key).ok()?;
    Some(key)
}

fn create_key(state: &Path, path: &PathBuf) -> miette::Result<[u8; 32]> {
    let mut key = [0u8; 32];
    getrandom::fill(&mut key).map_err(|e| miette!("no system randomness: {e}"))?;
    fs::create_dir_all(state).into_diagnostic().wrap_err_with(|| format!("cannot create {}", state.display()))?;
    let _ = fs::write(state.join(".gitignore"), "# provision's local state; never commit it\n*\n");
    // Written whole under another name (mode 0600), then linked into place:
    // a concurrent `up` in the same folder never reads it half-written.
    let write_error = || format!("cannot write the project's secret key {}", path.display());
    let mut file = tempfile::NamedTempFile::new_in(state).into_diagnostic().wrap_err_with(write_error)?;
    file.write_all(hex::encode(key).as_bytes()).into_diagnostic().wrap_err_with(write_error)?;
    match file.persist_noclobber(path) {
        Ok(_) => {}
        // Another process created it first: use theirs.
        Err(e) if e.error.kind() == std::io::ErrorKind::AlreadyExists => {
            let text = fs::read_to_string(path).into_diagnostic().wrap_err_with(write_error)?;
            return parse_key(&text).ok_or_else(|| miette!("{} is damaged", path.display()));
        }
        Err(e) => return Err(e.error).into_diagnostic().wrap_err_with(write_error),
    }
    Ok(key)
}
