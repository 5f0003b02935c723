//! The local stand-in for Nova's keypair: the public key is written into the
//! overlay's `~user/.ssh/authorized_keys` with libguestfs before the first boot.

use std::path::Path;

use guest_tools::{Accel, Drive, Session, SessionOptions};

use crate::error::{Error, Result};

/// A user's entry in `/etc/passwd`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PasswdEntry {
    pub(crate) uid: i32,
    pub(crate) gid: i32,
    pub(crate) home: String,
}

/// Find `user` in the text of an `/etc/passwd` (`name:x:uid:gid:gecos:home:shell`).
/// Lines that do not have seven fields or numeric ids are ignored.
pub(crate) fn find_user(passwd: &str, user: &str) -> Option<PasswdEntry> {
    passwd.lines().find_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() != 7 || f[0] != user {
            return None;
        }
        Some(PasswdEntry {
            uid: f[2].parse().ok()?,
            gid: f[3].parse().ok()?,
            home: f[5].to_string(),
        })
    })
}

/// Check an OpenSSH public key line (`type base64 [comment]`) and a user name
/// before anything is written. The error is the reason.
pub(crate) fn check_key(user: &str, key: &str) -> std::result::Result<(), String> {
    if user.is_empty()
        || user
            .chars()
            .any(|c| matches!(c, ':' | '/' | '\n' | '\0') || c.is_whitespace())
    {
        return Err(format!("`{user}` is not a user name"));
    }
    let key = key.trim();
    if key.contains('\n') || key.contains('\r') || key.contains('\0') {
        return Err("the public key must be a single line".into());
    }
    let mut fields = key.split_whitespace();
    let kind = fields.next().unwrap_or_default();
    let known = kind.starts_with("ssh-")
        || kind.starts_with("ecdsa-sha2-")
        || kind.starts_with("sk-ssh-")
        || kind.starts_with("sk-ecdsa-");
    if !known || fields.next().is_none() {
        return Err(format!(
            "not an OpenSSH public key line (`type base64 [comment]`), starts with `{}`",
            kind.chars().take(20).collect::<String>()
        ));
    }
    Ok(())
}

/// `existing` authorized_keys text with `key` appended unless already present.
pub(crate) fn merge_keys(existing: &str, key: &str) -> String {
    let key = key.trim();
    if existing.lines().any(|l| l.trim() == key) {
        return existing.to_string();
    }
    let mut out = existing.to_string();
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    out.push_str(key);
    out.push('\n');
    out
}

enum Outcome {
    Injected(PasswdEntry),
    NoOs,
    NoUser,
}

/// Write `key` into `~user/.ssh/authorized_keys` of the qcow2 `overlay`
/// (dir 700, file 600, both owned by the user's uid/gid from the image's
/// `/etc/passwd`). One libguestfs appliance launch.
#[tracing::instrument(skip_all, fields(vm = name, user))]
pub(crate) async fn inject_key(
    name: &str,
    overlay: &Path,
    user: &str,
    key: &str,
    accel: Accel,
) -> Result<()> {
    let gt = |op: &'static str| {
        let name = name.to_string();
        move |source| Error::GuestTools { name, op, source }
    };
    let session = Session::open(
        SessionOptions {
            drives: vec![Drive {
                path: overlay.to_path_buf(),
                format: Some("qcow2".into()),
                readonly: false,
            }],
            accel,
        },
        None,
    )
    .await
    .map_err(gt("launch the libguestfs appliance"))?;
    let (user_s, key_s) = (user.to_string(), key.to_string());
    let outcome = session
        .with_handle(move |g| {
            let Some(root) = g.inspect_os()?.into_iter().next() else {
                return Ok(Outcome::NoOs);
            };
            let mut mps: Vec<(String, String)> =
                g.inspect_get_mountpoints(&root)?.into_iter().collect();
            mps.sort_by_key(|(mp, _)| mp.len());
            for (mp, dev) in &mps {
                g.mount(dev, mp)?;
            }
            let passwd = g.cat("/etc/passwd")?;
            let Some(entry) = find_user(&passwd, &user_s) else {
                g.umount_all()?;
                return Ok(Outcome::NoUser);
            };
            let dir = format!("{}/.ssh", entry.home.trim_end_matches('/'));
            let file = format!("{dir}/authorized_keys");
            g.mkdir_p(&dir)?;
            g.chmod(0o700, &dir)?;
            g.chown(entry.uid, entry.gid, &dir)?;
            let existing = if g.exists(&file)? {
                g.cat(&file)?
            } else {
                String::new()
            };
            g.write(&file, merge_keys(&existing, &key_s).as_bytes())?;
            g.chmod(0o600, &file)?;
            g.chown(entry.uid, entry.gid, &file)?;
            g.sync()?;
            g.umount_all()?;
            Ok(Outcome::Injected(entry))
        })
        .await;
    let closed = session.close().await;
    match outcome.map_err(gt("write authorized_keys"))? {
        Outcome::NoOs => Err(Error::NoOs {
            name: name.to_string(),
            image: overlay.to_path_buf(),
        }),
        Outcome::NoUser => Err(Error::NoSuchUser {
            name: name.to_string(),
            user: user.to_string(),
            image: overlay.to_path_buf(),
        }),
        Outcome::Injected(e) => {
            closed.map_err(gt("close the libguestfs appliance"))?;
            tracing::info!(uid = e.uid, gid = e.gid, home = %e.home, "SSH key injected");
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/bash\n\
        broken line\n\
        nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n\
        debian:x:1000:1000::/home/debian:/bin/bash\n\
        support:x:1001:1002::/home/support/:/bin/bash\n\
        odd:x:abc:1:::/bin/sh\n";

    #[test]
    fn finds_users_with_their_ids_and_home() {
        assert_eq!(
            find_user(PASSWD, "debian"),
            Some(PasswdEntry {
                uid: 1000,
                gid: 1000,
                home: "/home/debian".into()
            })
        );
        assert_eq!(find_user(PASSWD, "support").unwrap().gid, 1002);
        assert_eq!(find_user(PASSWD, "root").unwrap().home, "/root");
        assert_eq!(find_user(PASSWD, "deb"), None);
        assert_eq!(find_user(PASSWD, "odd"), None, "non-numeric uid");
        assert_eq!(find_user("", "debian"), None);
    }

    #[test]
    fn keys_and_users_are_checked() {
        let key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE test@host";
        assert!(check_key("debian", key).is_ok());
        assert!(check_key("debian", "ecdsa-sha2-nistp256 AAAA").is_ok());
        assert!(check_key("", key).unwrap_err().contains("user name"));
        assert!(check_key("a:b", key).is_err());
        assert!(check_key("../x", key).is_err());
        assert!(check_key("debian", "ssh-ed25519 AAAA\nssh-rsa BBBB")
            .unwrap_err()
            .contains("single line"));
        assert!(check_key("debian", "ssh-ed25519")
            .unwrap_err()
            .contains("not an OpenSSH public key"));
        assert!(check_key("debian", "-----BEGIN OPENSSH PRIVATE KEY-----").is_err());
    }

    #[test]
    fn merging_appends_once() {
        let k = "ssh-ed25519 AAAA me";
        assert_eq!(merge_keys("", k), "ssh-ed25519 AAAA me\n");
        assert_eq!(
            merge_keys("ssh-rsa B x", k),
            "ssh-rsa B x\nssh-ed25519 AAAA me\n"
        );
        let once = merge_keys("ssh-rsa B x\n", k);
        assert_eq!(merge_keys(&once, &format!("{k}\n")), once);
    }
}
