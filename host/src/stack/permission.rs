//! What `allow = [...]` can grant a service: each power beyond an ordinary
//! container, parsed once from stack.toml and compared as a value
//! everywhere (the policy, import), never as text. SECURITY.md has the
//! table of what each grants.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Permission {
    /// Privileged mode: root on the host, in effect.
    Privileged,
    /// The added Linux capabilities the plan names.
    CapAdd,
    /// The host's network namespace.
    HostNetwork,
    /// The host's PID namespace.
    HostPid,
    /// The host devices the plan names.
    Devices,
    /// A bind of the engine's socket: root on the host, in effect.
    DockerSocket,
    /// Read-only binds and build contexts outside the project folder
    /// (writable only where the service's config names the path).
    BindOutsideProject,
    /// A plan past the per-service limits (`plan::policy::Limits`), up to
    /// their raised values.
    LargePlan,
}

impl Permission {
    /// Every permission, in the order the help lists them.
    pub const ALL: [Permission; 8] = [
        Permission::Privileged,
        Permission::CapAdd,
        Permission::HostNetwork,
        Permission::HostPid,
        Permission::Devices,
        Permission::DockerSocket,
        Permission::BindOutsideProject,
        Permission::LargePlan,
    ];

    /// As written in `allow`.
    pub fn name(self) -> &'static str {
        match self {
            Permission::Privileged => "privileged",
            Permission::CapAdd => "cap-add",
            Permission::HostNetwork => "host-network",
            Permission::HostPid => "host-pid",
            Permission::Devices => "devices",
            Permission::DockerSocket => "docker-socket",
            Permission::BindOutsideProject => "bind-outside-project",
            Permission::LargePlan => "large-plan",
        }
    }

    pub fn parse(text: &str) -> Option<Permission> {
        Permission::ALL.into_iter().find(|p| p.name() == text)
    }
}

// Sets of permissions sort by name, as `allow` lists were written (and as
// import's goldens hold them) when they were strings.
impl Ord for Permission {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.name().cmp(other.name())
    }
}

impl PartialOrd for Permission {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_permission_reads_back_as_written() {
        for p in Permission::ALL {
            assert_eq!(Permission::parse(p.name()), Some(p));
        }
        assert_eq!(Permission::parse("root"), None);
    }

    #[test]
    fn permissions_sort_by_name() {
        let mut all = Permission::ALL.to_vec();
        all.sort();
        let names: Vec<_> = all.iter().map(|p| p.name()).collect();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted);
    }
}
