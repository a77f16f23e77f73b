//! The password when the URL does not carry one, read at open: `password_file=PATH` (the file
//! holds only the password), or libpq's password file, `hostname:port:database:username:password`
//! lines that `passfile=PATH`, `PGPASSFILE` or `~/.pgpass` name (in that order). Like libpq, a
//! password file that is missing or open to other users is passed over (the latter with a
//! warning), and the first line that matches wins; `*` matches anything, `\` escapes `:` and `\`.

use std::path::{Path, PathBuf};

use super::url::Settings;
use crate::storage::tls::read_password_file;

/// Sets the client's password from `password_file` or the libpq password file, unless the URL
/// gave one (a URL with both was refused when parsed).
pub(super) fn resolve_password(settings: &mut Settings) -> anyhow::Result<()> {
    if let Some(path) = &settings.password_file {
        let password = read_password_file(path)?;
        settings.config.password(password);
        return Ok(());
    }
    if settings.config.get_password().is_some() {
        return Ok(());
    }
    let Some(path) = pgpass_path(settings.passfile.as_deref()) else {
        return Ok(());
    };
    if let Some(password) = lookup(&path, &settings.config)? {
        settings.config.password(password);
    }
    Ok(())
}

fn pgpass_path(from_url: Option<&Path>) -> Option<PathBuf> {
    if let Some(path) = from_url {
        return Some(path.to_owned());
    }
    if let Some(path) = std::env::var_os("PGPASSFILE").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(path));
    }
    std::env::var_os("HOME").map(|home| Path::new(&home).join(".pgpass"))
}

/// The password of the first line of `path` that matches the connection, if the file can be
/// used at all.
fn lookup(path: &Path, config: &postgres::Config) -> anyhow::Result<Option<String>> {
    let Ok(meta) = std::fs::metadata(path) else {
        return Ok(None);
    };
    if !meta.is_file() {
        tracing::warn!(
            "PostgreSQL password file {} is not a plain file; ignored",
            path.display()
        );
        return Ok(None);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            tracing::warn!(
                "PostgreSQL password file {} has group or world access (mode {mode:04o}); \
                 ignored, as libpq does: permissions should be u=rw (0600) or less",
                path.display()
            );
            return Ok(None);
        }
    }
    let Some(user) = config.get_user() else {
        return Ok(None);
    };
    let host = match config.get_hosts().first() {
        Some(postgres::config::Host::Tcp(name)) => name.clone(),
        // libpq matches a socket connection as `localhost`.
        #[cfg(unix)]
        Some(postgres::config::Host::Unix(_)) => "localhost".to_owned(),
        None => "localhost".to_owned(),
    };
    let port = config
        .get_ports()
        .first()
        .copied()
        .unwrap_or(5432)
        .to_string();
    let dbname = config.get_dbname().unwrap_or(user);
    let text = std::fs::read_to_string(path).map_err(|e| {
        anyhow::anyhow!(
            "cannot read the PostgreSQL password file {}: {e}",
            path.display()
        )
    })?;
    Ok(text
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(split_line)
        .find(|fields| {
            let wanted = [host.as_str(), port.as_str(), dbname, user];
            fields[..4]
                .iter()
                .zip(wanted)
                .all(|(field, want)| field == "*" || field == want)
        })
        .map(|mut fields| fields.swap_remove(4)))
}

/// The five fields of a line, unescaped; `None` for a line that has fewer.
fn split_line(line: &str) -> Option<Vec<String>> {
    let mut fields = vec![String::new()];
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => fields.last_mut()?.push(chars.next().unwrap_or('\\')),
            // The password is the rest of the line: later `:` belong to it (as in libpq).
            ':' if fields.len() < 5 => fields.push(String::new()),
            _ => fields.last_mut()?.push(c),
        }
    }
    (fields.len() == 5).then_some(fields)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(url: &str) -> Settings {
        super::super::url::parse_url(url).expect("valid URL")
    }

    fn write_private(path: &Path, text: &str) {
        std::fs::write(path, text).expect("write");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        }
    }

    #[test]
    fn the_first_matching_pgpass_line_gives_the_password() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("pgpass");
        write_private(
            &file,
            "# comment\n\
             otherhost:*:*:*:wrong\n\
             h:5432:db:app:a\\:b\\\\c:d\n\
             *:*:*:*:fallback\n",
        );
        let url = |rest: &str| format!("postgres://{rest}&passfile={}", file.display());
        let mut s = settings(&url("app@h/db?schema=x"));
        resolve_password(&mut s).expect("resolved");
        assert_eq!(s.config.get_password(), Some(&b"a:b\\c:d"[..]));
        let mut s = settings(&url("app@h:6000/db?schema=x"));
        resolve_password(&mut s).expect("resolved");
        assert_eq!(s.config.get_password(), Some(&b"fallback"[..]));
        // A password in the URL wins over the file.
        let mut s = settings(&url("app:inline@h/db?schema=x"));
        resolve_password(&mut s).expect("resolved");
        assert_eq!(s.config.get_password(), Some(&b"inline"[..]));
    }

    #[cfg(unix)]
    #[test]
    fn a_pgpass_file_open_to_others_is_ignored_as_libpq_does() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("pgpass");
        write_private(&file, "*:*:*:*:pw\n");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o640)).expect("chmod");
        let mut s = settings(&format!("postgres://app@h/db?passfile={}", file.display()));
        resolve_password(&mut s).expect("resolved");
        assert_eq!(s.config.get_password(), None);
    }

    #[test]
    fn password_file_holds_the_password_alone() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("pw");
        write_private(&file, "p:w@/#?\n");
        let mut s = settings(&format!(
            "postgres://app@h/db?password_file={}",
            file.display()
        ));
        resolve_password(&mut s).expect("resolved");
        assert_eq!(s.config.get_password(), Some(&b"p:w@/#?"[..]));
    }
}
