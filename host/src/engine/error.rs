//! What goes wrong at the engine, said so a user can act on it, and the
//! terminal-safe, bounded view of text a container wrote.

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum EngineError {
    #[error("no container engine answers at {endpoint}")]
    #[diagnostic(help("start Docker (e.g. `sudo systemctl start docker`, or `sudo dockerd &`), or point DOCKER_HOST at a running engine"))]
    Unreachable {
        endpoint: String,
        #[source]
        source: BoxError,
    },
    #[error("image {image} is not on the engine and could not be pulled")]
    #[diagnostic(help("if no registry is reachable, map it to a local image in [images] or with --images"))]
    Image {
        image: String,
        #[source]
        source: BoxError,
    },
    #[error("building {tag} failed: {}", bounded(message))]
    Build { tag: String, message: String },
    #[error("this engine is not a Swarm manager (its swarm state: {state})")]
    #[diagnostic(help(
        "point DOCKER_HOST at a manager of the cluster, make this engine one with `docker swarm init` (or `scripts/swarm up` for a local three-node swarm), or leave out --engine swarm"
    ))]
    NotSwarmManager { state: String },
    #[error("pushing image {image} to {registry} failed: {}", bounded(message))]
    #[diagnostic(help(
        "the swarm's nodes pull the stack's images from `[engine.swarm] registry`; check that it runs and that this engine may push to it"
    ))]
    Push { image: String, registry: String, message: String },
    #[error("{what}, which {engine} cannot do")]
    #[diagnostic(help("run this stack on one Docker engine (leave out --engine), or drop that option"))]
    Unsupported { what: String, engine: &'static str },
    #[error(
        "network `{name}` was not removed: the engine still counts an endpoint on it, though no container is attached (a Docker bug, moby/moby#42119); everything else was removed"
    )]
    #[diagnostic(help(
        "restart the engine (e.g. `sudo systemctl restart docker`) and the network can be removed; until then `up` of this project uses it as it is"
    ))]
    StaleNetwork { name: String },
    #[error("copying into {target} failed: {message}")]
    #[diagnostic(help("the host copies a bind whose folder lies inside one a container can write; check that it is there and readable"))]
    Copy { target: String, message: String },
    #[error("lost the connection to the container engine ({0})")]
    #[diagnostic(help(
        "what was done so far is recorded; once the engine answers again, run `provision up` to finish (or `provision down` to remove it)"
    ))]
    Lost(BoxError),
    /// What the engine answered (its message says it all), cut to
    /// `TAIL_BYTES`: it can echo a command's whole output.
    #[error("{}", bounded(&.0.to_string()))]
    Api(BoxError),
}

/// Text from plugins or containers made safe for a terminal: control
/// characters (escape sequences that clear the screen or write the
/// clipboard) shown as `\u{1b}`, newlines and tabs kept.
pub fn plain(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() && c != '\n' && c != '\t' {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    out
}

/// At most `TAIL_BYTES` of `text`, on a character boundary.
pub fn bounded(text: &str) -> String {
    if text.len() <= TAIL_BYTES {
        return text.to_string();
    }
    let end = (0..=TAIL_BYTES).rev().find(|i| text.is_char_boundary(*i)).unwrap_or(0);
    format!("{}… [{} more bytes cut]", &text[..end], text.len() - end)
}

impl EngineError {
    pub fn api(e: impl Into<BoxError>) -> Self {
        EngineError::Api(e.into())
    }
}

pub type Result<T> = std::result::Result<T, EngineError>;

/// How much of a command's output or a log the host keeps: the end of it.
pub const TAIL_BYTES: usize = 8 << 10;

/// The last `TAIL_BYTES` of a stream of bytes.
#[derive(Default)]
pub struct Tail {
    bytes: std::collections::VecDeque<u8>,
    total: usize,
}

impl Tail {
    pub fn push(&mut self, chunk: &[u8]) {
        self.total += chunk.len();
        let chunk = &chunk[chunk.len().saturating_sub(TAIL_BYTES)..];
        let over = (self.bytes.len() + chunk.len()).saturating_sub(TAIL_BYTES);
        self.bytes.drain(..over);
        self.bytes.extend(chunk);
    }

    pub fn text(&self) -> String {
        let text = String::from_utf8_lossy(&self.bytes.iter().copied().collect::<Vec<u8>>()).into_owned();
        if self.total > TAIL_BYTES { format!("[{} earlier bytes cut] {text}", self.total - self.bytes.len()) } else { text }
    }
}
