//! The credentials `backfilld login` keeps, and where each client finds its key and token.
//!
//! One JSON file of the user's own (`backfilld/credentials.json` in their config folder,
//! which `cli::config_home` names), mode 0600, holding one entry per server base URL: the
//! session's OAuth token and the API key it logged in with. It is rewritten whole through a
//! temporary file in the same folder, created 0600 and renamed over it, so that a reader
//! sees the old file or the new one, never half of one, and the token is never readable by
//! others, not even for a moment.
//!
//! `resolve` is the one place a client command and the worker decide what they present: a
//! flag or environment variable first, else what a login stored for that server.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The largest credentials file read: a few hundred bytes an entry, so this holds thousands.
const MAX_FILE_BYTES: u64 = 1 << 20;

/// What a login keeps for one server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The session's OAuth token (the `token` inside the login's JWT): sent as `OAUTH-TOKEN`.
    pub token: String,
    /// The API key the login was made with, if any: sent as `X-API-KEY`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<String>,
    /// Who logged in, and until when the session lasts (UTC), for people reading the file.
    #[serde(default)]
    pub username: String,
    #[serde(default)]
    pub expires: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct File {
    /// Base URL (`http://host:port`) to its entry.
    #[serde(default)]
    servers: BTreeMap<String, Entry>,
}

/// The credentials file under a config folder.
pub fn path_in(config_home: &Path) -> PathBuf {
    config_home.join("backfilld").join("credentials.json")
}

fn read(path: &Path) -> Result<File, String> {
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(File::default()),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    let mut text = String::new();
    use std::io::Read;
    file.take(MAX_FILE_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if text.len() as u64 > MAX_FILE_BYTES {
        return Err(format!("{} is larger than {MAX_FILE_BYTES} bytes: not a credentials file", path.display()));
    }
    serde_json::from_str(&text)
        .map_err(|e| format!("{} is not a credentials file ({e}); remove it and log in again", path.display()))
}

/// Writes `file` whole: a temporary file created 0600 beside it, synced, renamed over it.
fn write(path: &Path, file: &File) -> Result<(), String> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let fail = |what: &str, e: std::io::Error| format!("cannot {what} {}: {e}", path.display());
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| fail("create the folder of", e))?;
    }
    let tmp = dir.join(format!(".credentials.json.{}.tmp", std::process::id()));
    let result = (|| {
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
        f.write_all(&serde_json::to_vec_pretty(file).unwrap_or_default())?;
        f.write_all(b"\n")?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(fail("write", e));
    }
    Ok(())
}

/// The entry a login stored for `base` (a base URL, `client::base_url`'s form).
pub fn get(path: &Path, base: &str) -> Result<Option<Entry>, String> {
    Ok(read(path)?.servers.remove(base))
}

/// Stores `entry` for `base`, replacing the one it had.
pub fn put(path: &Path, base: &str, entry: Entry) -> Result<(), String> {
    let mut file = read(path)?;
    file.servers.insert(base.to_string(), entry);
    write(path, &file)
}

/// Removes the entry of `base`: whether it had one.
pub fn remove(path: &Path, base: &str) -> Result<bool, String> {
    let mut file = read(path)?;
    let had = file.servers.remove(base).is_some();
    if had {
        write(path, &file)?;
    }
    Ok(had)
}

/// Where a client's credentials came from, for its log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A flag or an environment variable (`--token`, `BACKFILLD_TOKEN`, ...).
    Given,
    /// The credentials file `backfilld login` wrote.
    Login,
    None,
}

/// The API key and token a client presents to `base`: each from its flag (or environment
/// variable) when given, else from the entry a login stored for `base` (the key only when
/// the login stored one). With where each came from.
pub fn resolve(
    base: &str,
    api_key: Option<String>,
    token: Option<String>,
    file: Option<&Path>,
) -> Result<(Option<String>, Option<String>, Source, Source), String> {
    let blank = |v: Option<String>| v.filter(|v| !v.trim().is_empty());
    let (api_key, token) = (blank(api_key), blank(token));
    let stored = match (file, &api_key, &token) {
        (Some(path), None, _) | (Some(path), _, None) => get(path, base)?,
        _ => None,
    };
    let pick = |given: Option<String>, stored: Option<String>| match (given, stored) {
        (Some(v), _) => (Some(v), Source::Given),
        (None, Some(v)) => (Some(v), Source::Login),
        (None, None) => (None, Source::None),
    };
    let (key, key_from) = pick(api_key, stored.as_ref().and_then(|e| e.api_key.clone()));
    let (token, token_from) = pick(token, stored.map(|e| e.token));
    Ok((key, token, key_from, token_from))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn entry(token: &str, key: Option<&str>) -> Entry {
        Entry { token: token.into(), api_key: key.map(Into::into), username: "ada".into(), expires: String::new() }
    }

    #[test]
    fn entries_are_kept_per_server_in_a_file_of_the_user_s_own() {
        let dir = tempfile::tempdir().unwrap();
        let path = path_in(dir.path());
        assert_eq!(get(&path, "http://a:1").unwrap(), None, "no file yet");
        put(&path, "http://a:1", entry("ta", Some("k"))).unwrap();
        put(&path, "http://b:2", entry("tb", None)).unwrap();
        put(&path, "http://a:1", entry("ta2", Some("k"))).unwrap();
        assert_eq!(get(&path, "http://a:1").unwrap(), Some(entry("ta2", Some("k"))));
        assert_eq!(get(&path, "http://b:2").unwrap(), Some(entry("tb", None)));
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(path.parent().unwrap()), 0o700);
        assert!(remove(&path, "http://a:1").unwrap());
        assert!(!remove(&path, "http://a:1").unwrap());
        assert_eq!(get(&path, "http://b:2").unwrap(), Some(entry("tb", None)));
        // No temporary file is left beside it.
        assert_eq!(std::fs::read_dir(path.parent().unwrap()).unwrap().count(), 1);
    }

    #[test]
    fn a_damaged_file_is_named_with_a_way_out() {
        let dir = tempfile::tempdir().unwrap();
        let path = path_in(dir.path());
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, "{not json").unwrap();
        let e = get(&path, "http://a:1").unwrap_err();
        assert!(e.contains("credentials.json") && e.contains("log in again"), "{e}");
    }

    #[test]
    fn given_credentials_win_over_a_login_s_each_on_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let path = path_in(dir.path());
        put(&path, "http://a:1", entry("stored", Some("stored-key"))).unwrap();
        let r = |k: Option<&str>, t: Option<&str>, base: &str| {
            resolve(base, k.map(Into::into), t.map(Into::into), Some(&path)).unwrap()
        };
        use Source::{Given, Login};
        assert_eq!(r(None, None, "http://a:1"), (Some("stored-key".into()), Some("stored".into()), Login, Login));
        assert_eq!(r(Some("k"), None, "http://a:1"), (Some("k".into()), Some("stored".into()), Given, Login));
        assert_eq!(r(None, Some(" "), "http://a:1"), (Some("stored-key".into()), Some("stored".into()), Login, Login));
        assert_eq!(r(Some("k"), Some("t"), "http://a:1"), (Some("k".into()), Some("t".into()), Given, Given));
        assert_eq!(r(None, None, "http://b:2"), (None, None, Source::None, Source::None), "another server's");
        assert_eq!(
            resolve("http://a:1", None, None, None).unwrap(),
            (None, None, Source::None, Source::None),
            "no config folder"
        );
    }
}
