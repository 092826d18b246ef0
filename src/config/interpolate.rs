//! `${env:NAME}` and `${file:PATH}` references inside string values.
//!
//! They exist so that no secret ever has to be written into the configuration file itself.
//! Consequently an error here names the variable or the file, never what it holds.

use std::path::{Path, PathBuf};

/// Where references are resolved: the environment, and the directory relative file paths are
/// read from (the configuration file's own, so the file can be started from any directory).
pub struct Resolver<'a> {
    pub env: &'a dyn Fn(&str) -> Option<String>,
    pub base_dir: PathBuf,
}

impl Resolver<'_> {
    fn file_path(&self, name: &str) -> PathBuf {
        let p = Path::new(name);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base_dir.join(p)
        }
    }
}

/// A string whose references were replaced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interpolated {
    pub value: String,
    /// What each reference was replaced with, so error messages can scrub them out.
    pub substituted: Vec<String>,
}

/// Why one string's references could not be resolved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InterpolateError {
    #[error("environment variable {0} is not set")]
    EnvMissing(String),
    #[error("environment variable {0} is not valid UTF-8")]
    EnvNotUnicode(String),
    #[error("cannot read the file {path:?} named by ${{file:…}}: {reason}")]
    File { path: String, reason: String },
    #[error("unterminated reference: \"${{\" has no closing \"}}\" (write \"$${{\" for a literal \"${{\")")]
    Unterminated,
    #[error("unknown reference \"${{{0}:…}}\"; use \"${{env:NAME}}\" or \"${{file:PATH}}\" (write \"$${{\" for a literal \"${{\")")]
    UnknownSource(String),
    #[error("empty name in \"${{{0}:}}\"")]
    EmptyName(String),
}

/// Replaces every reference in `s`. Returns `Ok(None)` when `s` contains no reference and no
/// escape, so untouched strings need no copy and are known not to hold secrets.
pub fn interpolate(s: &str, resolver: &Resolver<'_>) -> Result<Option<Interpolated>, InterpolateError> {
    if !s.contains("${") {
        return Ok(None);
    }
    let mut out = String::with_capacity(s.len());
    let mut substituted = Vec::new();
    let mut rest = s;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let tail = &rest[at..];
        if let Some(after) = tail.strip_prefix("$${") {
            out.push_str("${");
            rest = after;
        } else if let Some(after) = tail.strip_prefix("${") {
            let end = after.find('}').ok_or(InterpolateError::Unterminated)?;
            let value = resolve(&after[..end], resolver)?;
            out.push_str(&value);
            substituted.push(value);
            rest = &after[end + 1..];
        } else {
            out.push('$');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    Ok(Some(Interpolated { value: out, substituted }))
}

fn resolve(reference: &str, resolver: &Resolver<'_>) -> Result<String, InterpolateError> {
    let (source, name) =
        reference.split_once(':').ok_or_else(|| InterpolateError::UnknownSource(reference.to_string()))?;
    let (source, name) = (source.trim(), name.trim());
    match source {
        "env" | "file" if name.is_empty() => Err(InterpolateError::EmptyName(source.to_string())),
        "env" => match (resolver.env)(name) {
            Some(v) => Ok(v),
            None => Err(InterpolateError::EnvMissing(name.to_string())),
        },
        "file" => {
            let path = resolver.file_path(name);
            // The reason comes from the OS ("No such file or directory"), never from the content.
            let bytes = std::fs::read(&path)
                .map_err(|e| InterpolateError::File { path: path.display().to_string(), reason: e.to_string() })?;
            let mut text = String::from_utf8(bytes).map_err(|_| InterpolateError::File {
                path: path.display().to_string(),
                reason: "not valid UTF-8".into(),
            })?;
            // Editors and `echo` end files with a newline that is not part of the secret.
            if text.ends_with('\n') {
                text.pop();
                if text.ends_with('\r') {
                    text.pop();
                }
            }
            Ok(text)
        }
        other => Err(InterpolateError::UnknownSource(other.to_string())),
    }
}

/// The process environment, for real runs.
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "TOKEN" => Some("s3cr3t".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    fn resolver(dir: &Path) -> Resolver<'static> {
        Resolver { env: &env, base_dir: dir.to_path_buf() }
    }

    fn run(s: &str) -> Result<Option<String>, InterpolateError> {
        interpolate(s, &resolver(Path::new("/nonexistent"))).map(|o| o.map(|i| i.value))
    }

    #[test]
    fn plain_strings_are_untouched() {
        assert_eq!(run("hello $HOME {x} $"), Ok(None));
    }

    #[test]
    fn whole_and_embedded_env_references() {
        assert_eq!(run("${env:TOKEN}"), Ok(Some("s3cr3t".into())));
        assert_eq!(run("Bearer ${env:TOKEN}!"), Ok(Some("Bearer s3cr3t!".into())));
        assert_eq!(run("${env:TOKEN}${env:EMPTY}$"), Ok(Some("s3cr3t$".into())));
        let i = interpolate("a${env:TOKEN}", &resolver(Path::new("/"))).unwrap().unwrap();
        assert_eq!(i.substituted, vec!["s3cr3t".to_string()]);
    }

    #[test]
    fn escape_gives_a_literal() {
        assert_eq!(run("cost: $${env:TOKEN}"), Ok(Some("cost: ${env:TOKEN}".into())));
        assert_eq!(run("$$5"), Ok(None));
    }

    #[test]
    fn errors_name_the_reference() {
        assert_eq!(run("${env:NOPE}"), Err(InterpolateError::EnvMissing("NOPE".into())));
        assert_eq!(run("${env:}"), Err(InterpolateError::EmptyName("env".into())));
        assert_eq!(run("${vault:x}"), Err(InterpolateError::UnknownSource("vault".into())));
        assert_eq!(run("${env:TOKEN"), Err(InterpolateError::Unterminated));
        let e = run("${file:missing.txt}").unwrap_err();
        assert!(e.to_string().contains("/nonexistent/missing.txt"), "{e}");
    }

    #[test]
    fn files_are_read_relative_to_the_config_and_lose_one_newline() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("token"), "abc\n\n").unwrap();
        std::fs::write(dir.path().join("crlf"), "xyz\r\n").unwrap();
        let r = resolver(dir.path());
        assert_eq!(interpolate("${file:token}", &r).unwrap().unwrap().value, "abc\n");
        assert_eq!(interpolate("${file:crlf}", &r).unwrap().unwrap().value, "xyz");
        let abs = format!("${{file:{}}}", dir.path().join("token").display());
        assert_eq!(interpolate(&abs, &r).unwrap().unwrap().value, "abc\n");
    }
}
