//! Where the database is: a SQLite file (the default, one node) or a
//! PostgreSQL server (several nodes), as `database.url` names it.
//!
//! The URL of a PostgreSQL server may carry a password: it is never shown
//! as given. [`Location`]'s `Display` (what logs and errors print) replaces
//! the password with `***`.

use std::fmt;
use std::path::PathBuf;

use url::Url;

/// A database to open.
#[derive(Clone, PartialEq, Eq)]
pub enum Location {
    /// A SQLite file.
    Sqlite(PathBuf),
    /// A PostgreSQL URL (`postgres://user:password@host:port/db?sslmode=…`).
    Postgres(String),
}

impl Location {
    /// Reads a `database.url`: `sqlite://PATH` (or `sqlite:PATH`; a
    /// relative path is relative to the working directory, as
    /// `database.path` is) or `postgres://…` / `postgresql://…`. The error
    /// says what is wrong, without the password.
    pub fn parse(url: &str) -> Result<Location, String> {
        if let Some(path) = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
        {
            if path.is_empty() || path.contains('?') {
                return Err(
                    "a sqlite URL names a file: sqlite:///var/lib/tandem/tandem.db \
                     or sqlite://data/tandem.db (no query parameters)"
                        .into(),
                );
            }
            return Ok(Location::Sqlite(PathBuf::from(path)));
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let parsed = Url::parse(url)
                .map_err(|e| format!("not a valid PostgreSQL URL ({e}): {}", redacted(url)))?;
            if parsed.host_str().is_none_or(str::is_empty) && !has_host_parameter(&parsed) {
                return Err(format!(
                    "the PostgreSQL URL names no server: {}",
                    redacted(url)
                ));
            }
            return Ok(Location::Postgres(url.to_owned()));
        }
        Err(format!(
            "{} is neither a sqlite:// nor a postgres:// URL",
            redacted(url)
        ))
    }
}

/// A Unix socket directory given as `?host=/run/postgresql`.
fn has_host_parameter(url: &Url) -> bool {
    url.query_pairs().any(|(k, _)| k == "host")
}

/// `url` with its password, if any, replaced by `***`.
fn redacted(url: &str) -> String {
    match Url::parse(url) {
        Ok(mut parsed) => {
            if parsed.password().is_some() {
                let _ = parsed.set_password(Some("***"));
            }
            // A password given as a query parameter is hidden too.
            let pairs: Vec<(String, String)> = parsed
                .query_pairs()
                .map(|(k, v)| {
                    let v = if k == "password" { "***".into() } else { v };
                    (k.into_owned(), v.into_owned())
                })
                .collect();
            if !pairs.is_empty() {
                parsed.query_pairs_mut().clear().extend_pairs(pairs);
            }
            parsed.to_string()
        }
        // Unparseable: show only the scheme, never what might be a secret.
        Err(_) => format!("{}://…", url.split("://").next().unwrap_or("?")),
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Sqlite(path) => write!(f, "{}", path.display()),
            Location::Postgres(url) => f.write_str(&redacted(url)),
        }
    }
}

impl fmt::Debug for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Location({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_urls_name_a_file() {
        assert_eq!(
            Location::parse("sqlite:///var/lib/tandem/tandem.db").unwrap(),
            Location::Sqlite("/var/lib/tandem/tandem.db".into())
        );
        assert_eq!(
            Location::parse("sqlite://data/t.db").unwrap(),
            Location::Sqlite("data/t.db".into())
        );
        assert!(Location::parse("sqlite://").is_err());
    }

    #[test]
    fn a_password_is_never_shown() {
        let url = "postgres://tandem:s3cret@db.example:5432/tandem?sslmode=verify-full";
        let location = Location::parse(url).unwrap();
        assert_eq!(location, Location::Postgres(url.into()));
        for shown in [location.to_string(), format!("{location:?}")] {
            assert!(!shown.contains("s3cret"), "{shown}");
            assert!(shown.contains("db.example"), "{shown}");
        }
        let query = Location::parse("postgres://db/t?password=s3cret").unwrap();
        assert!(!query.to_string().contains("s3cret"));
        let bad = Location::parse("mysql://root:s3cret@h/db").unwrap_err();
        assert!(!bad.contains("s3cret"), "{bad}");
        assert!(Location::parse("postgres:///tandem?host=/run/postgresql").is_ok());
    }
}
