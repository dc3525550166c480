//! The user an image runs as, resolved in its root filesystem.
//!
//! An image's `User` is `name`, `uid`, `name:group` or `uid:gid`; names are looked up in the
//! root filesystem's `/etc/passwd` and `/etc/group`, as runc does. The files are opened without
//! following symbolic links at any step (a container may have replaced them with links to the
//! host's), and a missing file is an empty one.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use rustix::fs::{Mode, OFlags};

use super::ImageError;

/// The largest `/etc/passwd` or `/etc/group` read.
const ACCOUNT_FILE_MAX: u64 = 4 * 1024 * 1024;

/// The numeric identity a container's process takes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UserIds {
    /// The user id.
    pub uid: u32,
    /// The primary group id.
    pub gid: u32,
    /// Supplementary group ids: the groups of `/etc/group` listing the user by name (when the
    /// user was given by a name found in `/etc/passwd` and no group was given).
    pub additional_gids: Vec<u32>,
}

/// Resolves an image's (or a container's) `user` in the root filesystem at `rootfs`.
///
/// An empty `user` is root (uid 0, gid 0). A numeric user that `/etc/passwd` does not list is
/// taken as is, with group 0.
///
/// # Errors
///
/// [`ImageError::UnknownUser`] when a name is not in `/etc/passwd` (or a group name not in
/// `/etc/group`), and [`ImageError::Io`] when those files cannot be read (a symbolic link or
/// something other than a regular file stands there).
///
/// # Examples
///
/// ```
/// use orchestra_runtime::image::resolve_user;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let rootfs = tempfile::tempdir()?;
/// std::fs::create_dir(rootfs.path().join("etc"))?;
/// std::fs::write(rootfs.path().join("etc/passwd"), "root:x:0:0::/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\n")?;
/// std::fs::write(rootfs.path().join("etc/group"), "root:x:0:\napp:x:1001:\nwheel:x:10:app\n")?;
/// let ids = resolve_user(rootfs.path(), "app")?;
/// assert_eq!((ids.uid, ids.gid, ids.additional_gids), (1000, 1001, vec![10]));
/// assert_eq!(resolve_user(rootfs.path(), "4242:wheel")?.gid, 10);
/// # Ok(())
/// # }
/// ```
pub fn resolve_user(rootfs: &Path, user: &str) -> Result<UserIds, ImageError> {
    let unknown = |reason: String| ImageError::UnknownUser {
        user: user.to_owned(),
        reason,
    };
    let (user_part, group_part) = match user.split_once(':') {
        Some((user_part, group_part)) => (user_part, Some(group_part)),
        None => (user, None),
    };
    let passwd = read_account_file(rootfs, "passwd")?;
    let numeric_uid = user_part.parse::<u32>().ok();
    let found = passwd
        .iter()
        .filter_map(|line| PasswdEntry::parse(line))
        .find(|entry| match (user_part, numeric_uid) {
            ("", _) => entry.uid == 0,
            (_, Some(uid)) => entry.uid == uid || entry.name == user_part,
            (name, None) => entry.name == name,
        });
    let mut ids = match (&found, numeric_uid) {
        (Some(entry), _) => UserIds {
            uid: entry.uid,
            gid: entry.gid,
            additional_gids: Vec::new(),
        },
        (None, Some(uid)) => UserIds {
            uid,
            ..UserIds::default()
        },
        (None, None) if user_part.is_empty() => UserIds::default(),
        (None, None) => {
            return Err(unknown(format!(
                "no user {user_part:?} in the image's /etc/passwd"
            )));
        }
    };
    let matched_name = found.as_ref().map(|entry| entry.name.clone());
    if group_part.is_none() && matched_name.is_none() {
        return Ok(ids);
    }
    let group = read_account_file(rootfs, "group")?;
    let groups = group.iter().filter_map(|line| GroupEntry::parse(line));
    match group_part {
        Some(group_part) => {
            let numeric_gid = group_part.parse::<u32>().ok();
            let found = groups
                .clone()
                .find(|entry| entry.name == group_part || Some(entry.gid) == numeric_gid);
            ids.gid = match (found, numeric_gid) {
                (Some(entry), _) => entry.gid,
                (None, Some(gid)) => gid,
                (None, None) => {
                    return Err(unknown(format!(
                        "no group {group_part:?} in the image's /etc/group"
                    )));
                }
            };
        }
        None => {
            if let Some(name) = matched_name {
                ids.additional_gids = groups
                    .filter(|entry| entry.members.contains(&name))
                    .map(|entry| entry.gid)
                    .collect();
            }
        }
    }
    Ok(ids)
}

struct PasswdEntry {
    name: String,
    uid: u32,
    gid: u32,
}

impl PasswdEntry {
    fn parse(line: &str) -> Option<PasswdEntry> {
        let mut fields = line.split(':');
        let name = fields.next()?.to_owned();
        let _password = fields.next()?;
        let uid = fields.next()?.parse().ok()?;
        let gid = fields.next()?.parse().ok()?;
        Some(PasswdEntry { name, uid, gid })
    }
}

#[derive(Clone)]
struct GroupEntry {
    name: String,
    gid: u32,
    members: Vec<String>,
}

impl GroupEntry {
    fn parse(line: &str) -> Option<GroupEntry> {
        let mut fields = line.split(':');
        let name = fields.next()?.to_owned();
        let _password = fields.next()?;
        let gid = fields.next()?.parse().ok()?;
        let members = fields
            .next()
            .unwrap_or_default()
            .split(',')
            .filter(|member| !member.is_empty())
            .map(str::to_owned)
            .collect();
        Some(GroupEntry { name, gid, members })
    }
}

/// The lines of `rootfs/etc/<name>`, read without following symbolic links; none when it does
/// not exist.
fn read_account_file(rootfs: &Path, name: &str) -> Result<Vec<String>, ImageError> {
    let path = rootfs.join("etc").join(name);
    let io_error = |source: std::io::Error| ImageError::Io {
        path: path.clone(),
        source,
    };
    let open = || -> std::io::Result<Option<File>> {
        let root = File::open(rootfs)?;
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK;
        let etc = match rustix::fs::openat(&root, "etc", flags | OFlags::DIRECTORY, Mode::empty()) {
            Ok(etc) => etc,
            Err(rustix::io::Errno::NOENT) => return Ok(None),
            Err(error) => return Err(error.into()),
        };
        match rustix::fs::openat(&etc, name, flags, Mode::empty()) {
            Ok(file) => Ok(Some(File::from(file))),
            Err(rustix::io::Errno::NOENT) => Ok(None),
            Err(error) => Err(error.into()),
        }
    };
    let Some(file) = open().map_err(io_error)? else {
        return Ok(Vec::new());
    };
    let file_type = file.metadata().map_err(io_error)?.file_type();
    if !file_type.is_file() {
        return Err(io_error(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "not a regular file",
        )));
    }
    let mut text = Vec::new();
    file.take(ACCOUNT_FILE_MAX)
        .read_to_end(&mut text)
        .map_err(io_error)?;
    Ok(String::from_utf8_lossy(&text)
        .lines()
        .filter(|line| !line.trim_start().starts_with('#'))
        .map(str::to_owned)
        .collect())
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    fn rootfs() -> std::io::Result<tempfile::TempDir> {
        let dir = tempfile::tempdir()?;
        fs::create_dir(dir.path().join("etc"))?;
        fs::write(
            dir.path().join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\n\
             # a comment\n\
             broken line\n\
             nobody:x:65534:65534::/:/sbin/nologin\n\
             app:x:1000:1000::/home/app:/bin/sh\n",
        )?;
        fs::write(
            dir.path().join("etc/group"),
            "root:x:0:\nnogroup:x:65534:\napp:x:1000:\nwheel:x:10:root,app\naudio:x:29:app\n",
        )?;
        Ok(dir)
    }

    #[test]
    fn users_resolve_by_name_or_number() -> Result<(), Box<dyn std::error::Error>> {
        let dir = rootfs()?;
        let root = dir.path();
        assert_eq!(
            resolve_user(root, "")?,
            UserIds {
                uid: 0,
                gid: 0,
                additional_gids: vec![10]
            }
        );
        assert_eq!(
            resolve_user(root, "app")?,
            UserIds {
                uid: 1000,
                gid: 1000,
                additional_gids: vec![10, 29]
            }
        );
        assert_eq!(resolve_user(root, "1000")?.gid, 1000);
        assert_eq!(
            resolve_user(root, "4242")?,
            UserIds {
                uid: 4242,
                gid: 0,
                additional_gids: vec![]
            }
        );
        let with_group = resolve_user(root, "nobody:wheel")?;
        assert_eq!((with_group.uid, with_group.gid), (65534, 10));
        assert!(with_group.additional_gids.is_empty());
        assert_eq!(
            resolve_user(root, "5:7")?,
            UserIds {
                uid: 5,
                gid: 7,
                additional_gids: vec![]
            }
        );
        assert!(matches!(
            resolve_user(root, "ghost"),
            Err(ImageError::UnknownUser { .. })
        ));
        assert!(matches!(
            resolve_user(root, "app:ghosts"),
            Err(ImageError::UnknownUser { .. })
        ));
        Ok(())
    }

    #[test]
    fn missing_files_are_empty_and_links_are_refused() -> Result<(), Box<dyn std::error::Error>> {
        let empty = tempfile::tempdir()?;
        assert_eq!(resolve_user(empty.path(), "")?, UserIds::default());
        assert_eq!(resolve_user(empty.path(), "12:34")?.gid, 34);
        assert!(resolve_user(empty.path(), "app").is_err());

        let linked = tempfile::tempdir()?;
        std::os::unix::fs::symlink("/etc", linked.path().join("etc"))?;
        assert!(matches!(
            resolve_user(linked.path(), "root"),
            Err(ImageError::Io { .. })
        ));
        let linked_file = rootfs()?;
        fs::remove_file(linked_file.path().join("etc/passwd"))?;
        std::os::unix::fs::symlink("/etc/passwd", linked_file.path().join("etc/passwd"))?;
        assert!(matches!(
            resolve_user(linked_file.path(), "root"),
            Err(ImageError::Io { .. })
        ));
        Ok(())
    }
}
