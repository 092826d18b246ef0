//! Reading the file: interpolation, strict deserialization, and errors with positions.
//!
//! The file is parsed once with `toml_edit`, which keeps the position of every key and value.
//! From that tree a plain `toml::Value` is built (with `${…}` references replaced) together with
//! an index from key path (`routes[2].notifier`) to position. Each section, and each element of
//! each list or map section, is then deserialized on its own so that one bad route does not
//! hide a bad notifier; within one element, an offending key is removed and the element tried
//! again, so every unknown key is reported, not just the first. Validation then runs on what
//! could be read, and its `(key path, message)` pairs are placed through the same index.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use toml_edit::{ImDocument, Item};

use super::interpolate::{interpolate, process_env, Resolver};
use super::validate::{index_path, key_path, path_prefixes};
use super::Config;

/// One problem in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
    /// Dotted key path, such as `routes[2].notifier`, when known.
    pub key: Option<String>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Line 0: the problem is the file as a whole (it cannot be read), not a place in it.
        if self.line == 0 {
            write!(f, "{}: ", self.file.display())?;
        } else {
            write!(f, "{}:{}:{}: ", self.file.display(), self.line, self.column)?;
        }
        if let Some(key) = &self.key {
            write!(f, "{key}: ")?;
        }
        f.write_str(&self.message)
    }
}

/// Every problem found in one file, in file order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// Reads, interpolates (from the process environment), deserializes and validates `path`.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors(vec![ConfigError {
            file: path.to_path_buf(),
            line: 0,
            column: 0,
            key: None,
            message: format!("cannot read the file: {e}"),
        }])
    })?;
    load_str(&text, path)
}

/// Like [`load`] for text already read; `path` names the file in errors and is the base
/// directory for relative `${file:…}` references.
pub fn load_str(text: &str, path: &Path) -> Result<Config, ConfigErrors> {
    load_str_with_env(text, path, &process_env)
}

/// Like [`load_str`] with `${env:…}` looked up through `env` instead of the process
/// environment (tests, embedding).
pub fn load_str_with_env(
    text: &str,
    path: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigErrors> {
    let doc = ImDocument::parse(text).map_err(|e| {
        let (line, column) = e.span().map(|s| line_col(text, s.start)).unwrap_or((1, 1));
        ConfigErrors(vec![ConfigError {
            file: path.to_path_buf(),
            line,
            column,
            key: None,
            message: syntax_message(e.message()),
        }])
    })?;

    let base_dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let resolver = Resolver { env, base_dir };
    let mut cx = Cx::default();
    let root = match cx.item(doc.as_item(), "", &resolver) {
        Some(toml::Value::Table(t)) => t,
        _ => toml::Table::new(),
    };

    let mut config = cx.assemble(root);
    config.path = path.to_path_buf();

    if let Err(found) = super::validate::validate(&config) {
        for (key, message) in found {
            let key = cx.original_path(&key);
            if cx.dropped_names.iter().any(|name| message.contains(&format!("{name:?}"))) {
                // A reference to an entry that failed to deserialize: already reported there.
                continue;
            }
            cx.report(key, At::Value, message);
        }
    }

    if cx.problems.is_empty() {
        Ok(config)
    } else {
        Err(cx.into_errors(text, path))
    }
}

/// One line, as the contract prints one error per line; `toml_edit` sometimes gives several
/// lines, sometimes none.
fn syntax_message(message: &str) -> String {
    let parts: Vec<&str> = message.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    if parts.is_empty() {
        "invalid TOML syntax".to_string()
    } else {
        format!("invalid TOML syntax: {}", parts.join("; "))
    }
}

pub(crate) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map(|l| l.chars().count()).unwrap_or(0) + 1;
    (line, column)
}

/// Which position of a key/value pair an error points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum At {
    Key,
    Value,
}

#[derive(Debug, Clone, Copy, Default)]
struct Spans {
    key: Option<usize>,
    value: Option<usize>,
}

#[derive(Debug)]
struct Problem {
    path: String,
    at: At,
    message: String,
}

/// One step of a key path inside a `toml::Value`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seg {
    Key(String),
    Index(usize),
}

fn join(base: &str, rel: &[Seg]) -> String {
    rel.iter().fold(base.to_string(), |acc, seg| match seg {
        Seg::Key(k) => key_path(&acc, k),
        Seg::Index(i) => index_path(&acc, *i),
    })
}

fn value_at<'v>(value: &'v toml::Value, rel: &[Seg]) -> Option<&'v toml::Value> {
    rel.iter().try_fold(value, |v, seg| match (seg, v) {
        (Seg::Key(k), toml::Value::Table(t)) => t.get(k),
        (Seg::Index(i), toml::Value::Array(a)) => a.get(*i),
        _ => None,
    })
}

fn remove_at(value: &mut toml::Value, rel: &[Seg]) -> bool {
    let Some((Seg::Key(last), parent)) = rel.split_last() else {
        return false;
    };
    let mut v = value;
    for seg in parent {
        v = match (seg, v) {
            (Seg::Key(k), toml::Value::Table(t)) => match t.get_mut(k) {
                Some(next) => next,
                None => return false,
            },
            (Seg::Index(i), toml::Value::Array(a)) => match a.get_mut(*i) {
                Some(next) => next,
                None => return false,
            },
            _ => return false,
        };
    }
    match v {
        toml::Value::Table(t) => t.remove(last).is_some(),
        _ => false,
    }
}

/// The name inside the backticks after `prefix`, as serde writes `unknown field `x``.
fn backticked<'m>(message: &'m str, prefix: &str) -> Option<&'m str> {
    let rest = message.strip_prefix(prefix)?;
    rest.split_once('`').map(|(name, _)| name)
}

fn is_within(path: &str, ancestor: &str) -> bool {
    path == ancestor
        || (path.starts_with(ancestor)
            && (ancestor.is_empty() || matches!(path.as_bytes().get(ancestor.len()), Some(b'.' | b'['))))
}

/// Bounds the remove-and-retry loop for one element; each round removes one key.
const MAX_ROUNDS: usize = 64;

/// Array sections whose elements are told apart by `name`.
const UNIQUE_NAMES: &[&str] = &["api_keys", "checks", "heartbeats", "webhooks", "rate_rules"];

#[derive(Default)]
struct Cx {
    spans: HashMap<String, Spans>,
    /// Every key path in file order, to find a key by name when serde lost the path.
    order: Vec<String>,
    /// Key paths whose strings came from `${…}`, with what was substituted.
    secrets: Vec<(String, Vec<String>)>,
    problems: Vec<Problem>,
    /// Paths already reported; later problems at or under them are consequences.
    failed: Vec<String>,
    /// Original indices of the elements kept from each array section.
    kept: HashMap<&'static str, Vec<usize>>,
    /// Names of map entries (`[notifiers.X]`) that could not be read.
    dropped_names: Vec<String>,
    /// The top-level keys `assemble` knows, for the message about one it does not.
    sections: Vec<&'static str>,
}

impl Cx {
    fn report(&mut self, path: String, at: At, message: String) {
        if self.failed.iter().any(|f| is_within(&path, f)) {
            return;
        }
        self.failed.push(path.clone());
        self.problems.push(Problem { path, at, message });
    }

    fn record(&mut self, path: &str, key: Option<usize>, value: Option<usize>) {
        self.spans.insert(path.to_string(), Spans { key, value });
        self.order.push(path.to_string());
    }

    /// Converts the `toml_edit` tree, recording spans and replacing references.
    fn item(&mut self, item: &Item, path: &str, resolver: &Resolver<'_>) -> Option<toml::Value> {
        match item {
            Item::None => None,
            Item::Value(v) => Some(self.value(v, path, resolver)),
            Item::Table(t) => {
                let mut out = toml::Table::new();
                for (k, child) in t.iter() {
                    let child_path = key_path(path, k);
                    let key_span = t.key(k).and_then(|key| key.span()).map(|s| s.start);
                    let value_span = match child {
                        Item::Value(v) => v.span(),
                        Item::Table(t) => t.span(),
                        Item::ArrayOfTables(a) => a.span(),
                        Item::None => None,
                    };
                    self.record(&child_path, key_span, value_span.map(|s| s.start));
                    if let Some(v) = self.item(child, &child_path, resolver) {
                        out.insert(k.to_string(), v);
                    }
                }
                Some(toml::Value::Table(out))
            }
            Item::ArrayOfTables(a) => {
                let mut out = Vec::new();
                for (i, t) in a.iter().enumerate() {
                    let elem_path = index_path(path, i);
                    self.record(&elem_path, None, t.span().map(|s| s.start));
                    let table = Item::Table(t.clone());
                    out.extend(self.item(&table, &elem_path, resolver));
                }
                Some(toml::Value::Array(out))
            }
        }
    }

    fn value(&mut self, v: &toml_edit::Value, path: &str, resolver: &Resolver<'_>) -> toml::Value {
        use toml_edit::Value as V;
        match v {
            V::String(s) => {
                let raw = s.value();
                match interpolate(raw, resolver) {
                    Ok(None) => toml::Value::String(raw.clone()),
                    Ok(Some(done)) => {
                        self.secrets.push((path.to_string(), done.substituted));
                        toml::Value::String(done.value)
                    }
                    Err(e) => {
                        self.report(path.to_string(), At::Value, e.to_string());
                        // Kept unresolved; later complaints about it are suppressed by `failed`.
                        toml::Value::String(raw.clone())
                    }
                }
            }
            V::Integer(i) => toml::Value::Integer(*i.value()),
            V::Float(f) => toml::Value::Float(*f.value()),
            V::Boolean(b) => toml::Value::Boolean(*b.value()),
            V::Datetime(d) => toml::Value::Datetime(*d.value()),
            V::Array(a) => {
                let mut out = Vec::with_capacity(a.len());
                for (i, elem) in a.iter().enumerate() {
                    let elem_path = index_path(path, i);
                    self.record(&elem_path, None, elem.span().map(|s| s.start));
                    out.push(self.value(elem, &elem_path, resolver));
                }
                toml::Value::Array(out)
            }
            V::InlineTable(t) => {
                let mut out = toml::Table::new();
                for (k, child) in t.iter() {
                    let child_path = key_path(path, k);
                    let key_span = t.key(k).and_then(|key| key.span()).map(|s| s.start);
                    self.record(&child_path, key_span, child.span().map(|s| s.start));
                    out.insert(k.to_string(), self.value(child, &child_path, resolver));
                }
                toml::Value::Table(out)
            }
        }
    }

    /// Builds the `Config` from whatever could be read; problems are collected on the way.
    fn assemble(&mut self, mut root: toml::Table) -> Config {
        // Listing every field in a struct literal makes the compiler point here when a section
        // is added to `Config`; each call consumes its key from `root`.
        let config = Config {
            server: self.section(&mut root, "server"),
            store: self.section(&mut root, "store"),
            log: self.section(&mut root, "log"),
            delivery: self.section(&mut root, "delivery"),
            templates: self.section(&mut root, "templates"),
            api_keys: self.array(&mut root, "api_keys"),
            notifiers: self.map(&mut root, "notifiers"),
            routes: self.array(&mut root, "routes"),
            default_route: self.optional(&mut root, "default_route"),
            alerts: self.section(&mut root, "alerts"),
            inhibit_rules: self.array(&mut root, "inhibit_rules"),
            maintenance: self.array(&mut root, "maintenance"),
            elasticsearch: self.map(&mut root, "elasticsearch"),
            checks: self.array(&mut root, "checks"),
            stripe: self.optional(&mut root, "stripe"),
            errors: self.section(&mut root, "errors"),
            scrub: self.section(&mut root, "scrub"),
            browser: self.section(&mut root, "browser"),
            client: self.section(&mut root, "client"),
            heartbeats: self.array(&mut root, "heartbeats"),
            webhooks: self.array(&mut root, "webhooks"),
            rate_rules: self.array(&mut root, "rate_rules"),
            path: PathBuf::new(),
        };
        let expected = self.sections.join(", ");
        for key in root.keys() {
            let message = format!("unknown section `{key}`, expected one of {expected}");
            self.report(key_path("", key), At::Key, message);
        }
        config
    }

    fn section<T: DeserializeOwned + Default>(&mut self, root: &mut toml::Table, key: &'static str) -> T {
        self.sections.push(key);
        match root.remove(key) {
            None => T::default(),
            Some(v) => self.element(v, key).unwrap_or_default(),
        }
    }

    fn optional<T: DeserializeOwned>(&mut self, root: &mut toml::Table, key: &'static str) -> Option<T> {
        self.sections.push(key);
        root.remove(key).and_then(|v| self.element(v, key))
    }

    fn array<T: DeserializeOwned>(&mut self, root: &mut toml::Table, key: &'static str) -> Vec<T> {
        self.sections.push(key);
        let mut out = Vec::new();
        let mut kept = Vec::new();
        match root.remove(key) {
            None => {}
            Some(toml::Value::Array(items)) => {
                let names: Vec<Option<String>> =
                    items.iter().map(|item| item.get("name").and_then(|n| n.as_str()).map(str::to_string)).collect();
                for (i, item) in items.into_iter().enumerate() {
                    if let Some(t) = self.element(item, &index_path(key, i)) {
                        out.push(t);
                        kept.push(i);
                    }
                }
                if UNIQUE_NAMES.contains(&key) {
                    self.duplicate_names(key, &names, &kept);
                }
            }
            Some(_) => self.report(key.to_string(), At::Value, format!("must be a list of tables, written [[{key}]]")),
        }
        self.kept.insert(key, kept);
        out
    }

    /// Names given twice where one of the two elements could not be read: the section's own
    /// validator only sees the elements that were, and would miss the pair.
    fn duplicate_names(&mut self, key: &str, names: &[Option<String>], kept: &[usize]) {
        for (i, name) in names.iter().enumerate() {
            let Some(name) = name else { continue };
            let Some(first) = names[..i].iter().position(|n| n.as_ref() == Some(name)) else { continue };
            if !kept.contains(&i) || !kept.contains(&first) {
                let message = format!("duplicate name {name:?}: {key}[{first}] already has it");
                self.report(key_path(&index_path(key, i), "name"), At::Value, message);
            }
        }
    }

    fn map<T: DeserializeOwned>(&mut self, root: &mut toml::Table, key: &'static str) -> BTreeMap<String, T> {
        self.sections.push(key);
        let mut out = BTreeMap::new();
        match root.remove(key) {
            None => {}
            Some(toml::Value::Table(entries)) => {
                for (name, v) in entries {
                    match self.element(v, &key_path(key, &name)) {
                        Some(t) => {
                            out.insert(name, t);
                        }
                        None => self.dropped_names.push(name),
                    }
                }
            }
            Some(_) => self.report(
                key.to_string(),
                At::Value,
                format!("must be a table of named entries, written [{key}.NAME]"),
            ),
        }
        out
    }

    /// Deserializes one element, reporting every problem serde finds in it: after each
    /// problem the offending key is removed and the element tried again. Returns the element
    /// when what remains is readable (so validation can still look at it).
    fn element<T: DeserializeOwned>(&mut self, mut value: toml::Value, base: &str) -> Option<T> {
        // serde would also read a struct from an array, positionally; the file format has no
        // such spelling.
        if !value.is_table() {
            let message = format!("must be a table, not {}", value.type_str());
            self.report(base.to_string(), At::Value, message);
            return None;
        }
        let mut removed: Vec<Vec<Seg>> = Vec::new();
        for _ in 0..MAX_ROUNDS {
            let err = match serde_path_to_error::deserialize::<_, T>(value.clone()) {
                Ok(t) => return Some(t),
                Err(e) => e,
            };
            let message = err.inner().message().trim_end().to_string();
            let mut rel: Vec<Seg> = err
                .path()
                .iter()
                .filter_map(|seg| match seg {
                    serde_path_to_error::Segment::Seq { index } => Some(Seg::Index(*index)),
                    serde_path_to_error::Segment::Map { key } => Some(Seg::Key(key.clone())),
                    serde_path_to_error::Segment::Enum { variant } => Some(Seg::Key(variant.clone())),
                    serde_path_to_error::Segment::Unknown => None,
                })
                .collect();
            // Enum variants and the like are not keys of the file; keep what the file has.
            while !rel.is_empty() && value_at(&value, &rel).is_none() {
                rel.pop();
            }

            if let Some(field) = backticked(&message, "unknown field `") {
                let field = field.to_string();
                if rel.last() != Some(&Seg::Key(field.clone())) {
                    rel.push(Seg::Key(field.clone()));
                }
                let path = self.locate(base, &rel, &field);
                self.report(path, At::Key, message);
                if !remove_at(&mut value, &rel) {
                    return None;
                }
                removed.push(rel);
                continue;
            }

            if let Some(field) = backticked(&message, "missing field `") {
                let mut missing = rel.clone();
                missing.push(Seg::Key(field.to_string()));
                if !removed.contains(&missing) {
                    self.report(join(base, &rel), At::Value, message);
                }
                return None;
            }

            // A bad value. Buffering deserializers (tagged enums) lose the path at the table;
            // find which key it was by taking keys away one at a time.
            if matches!(value_at(&value, &rel), Some(toml::Value::Table(_))) {
                if let Some(key) = culprit::<T>(&value, &rel, &message) {
                    rel.push(Seg::Key(key));
                }
            }
            self.report(join(base, &rel), At::Value, message);
            // Removing an array element would renumber its neighbours; remove the whole key.
            while matches!(rel.last(), Some(Seg::Index(_))) {
                rel.pop();
            }
            if !remove_at(&mut value, &rel) {
                return None;
            }
            removed.push(rel);
        }
        None
    }

    /// The full path of `rel` under `base`; when the file has no such key (serde lost part
    /// of the path), the first key named `field` under `base`.
    fn locate(&self, base: &str, rel: &[Seg], field: &str) -> String {
        let path = join(base, rel);
        if self.spans.contains_key(&path) {
            return path;
        }
        self.order
            .iter()
            .find(|p| {
                let parent = path_prefixes(p).last().copied().unwrap_or("");
                is_within(p, base) && key_path(parent, field) == **p
            })
            .cloned()
            .unwrap_or(path)
    }

    /// Maps a path of the partial config (where unreadable array elements are missing) back
    /// to the file's numbering.
    fn original_path(&self, path: &str) -> String {
        for (section, kept) in &self.kept {
            let Some(rest) = path.strip_prefix(section).and_then(|r| r.strip_prefix('[')) else {
                continue;
            };
            let Some((digits, tail)) = rest.split_once(']') else {
                continue;
            };
            if let Some(orig) = digits.parse::<usize>().ok().and_then(|i| kept.get(i)) {
                return format!("{section}[{orig}]{tail}");
            }
        }
        path.to_string()
    }

    fn offset(&self, path: &str, at: At) -> Option<usize> {
        let mut candidates = path_prefixes(path);
        candidates.push(path);
        candidates.into_iter().rev().find_map(|p| {
            let s = self.spans.get(p)?;
            match at {
                At::Key => s.key.or(s.value),
                At::Value => s.value.or(s.key),
            }
        })
    }

    fn scrub(&self, problem: &Problem) -> String {
        let mut message = problem.message.clone();
        for (path, substituted) in &self.secrets {
            for secret in substituted {
                // Short values are only scrubbed where they were used, so that an unrelated
                // message does not lose its letters.
                if !secret.is_empty() && (secret.len() >= 3 || is_within(&problem.path, path)) {
                    message = message.replace(secret.as_str(), "<redacted>");
                }
                // A message about the value itself may quote a part of it (the directory of a
                // database path, the host of a URL): those parts go too.
                if is_within(&problem.path, path) {
                    let parts = secret.split(['/', ':', '@', '?', '&', '=', ' ']);
                    // A scheme says nothing secret, and "https" is in the messages' own words.
                    let schemes = ["http", "https", "sqlite", "postgres", "postgresql"];
                    for part in parts.filter(|p| p.len() >= 3 && !schemes.contains(p)) {
                        message = message.replace(part, "<redacted>");
                    }
                }
            }
        }
        message
    }

    fn into_errors(self, text: &str, file: &Path) -> ConfigErrors {
        let mut errors: Vec<ConfigError> = self
            .problems
            .iter()
            .map(|p| {
                let (line, column) = self.offset(&p.path, p.at).map(|o| line_col(text, o)).unwrap_or((1, 1));
                ConfigError {
                    file: file.to_path_buf(),
                    line,
                    column,
                    key: (!p.path.is_empty()).then(|| p.path.clone()),
                    message: self.scrub(p),
                }
            })
            .collect();
        errors.sort_by_key(|e| (e.line, e.column));
        ConfigErrors(errors)
    }
}

/// The key of the table at `rel` whose removal makes `message` go away, if exactly one does
/// (preferring keys other than an enum tag, whose removal always changes the error).
fn culprit<T: DeserializeOwned>(value: &toml::Value, rel: &[Seg], message: &str) -> Option<String> {
    let Some(toml::Value::Table(table)) = value_at(value, rel) else {
        return None;
    };
    let candidates: Vec<&String> = table
        .keys()
        .filter(|key| {
            let mut without = value.clone();
            let mut at = rel.to_vec();
            at.push(Seg::Key((*key).clone()));
            remove_at(&mut without, &at);
            match serde_path_to_error::deserialize::<_, T>(without) {
                Ok(_) => true,
                Err(e) => e.inner().message().trim_end() != message,
            }
        })
        .collect();
    match candidates.as_slice() {
        [one] => Some((*one).clone()),
        many => {
            let untagged: Vec<_> = many.iter().filter(|k| k.as_str() != "type").collect();
            match untagged.as_slice() {
                [one] => Some((**one).clone()),
                _ => None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "HOOK" => Some("https://hooks.example/T0/B0/topsecret".to_string()),
            "DB_URL" => Some("sqlite:///no-such-dir-Pa55word/t.db".to_string()),
            _ => None,
        }
    }

    fn errors(text: &str) -> Vec<String> {
        match load_str_with_env(text, Path::new("t.toml"), &env) {
            Ok(_) => vec![],
            Err(e) => e.0.iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn an_empty_file_is_a_valid_config() {
        let c = load_str_with_env("", Path::new("t.toml"), &env).unwrap();
        assert_eq!(c.store.url, "sqlite://tocsin.db");
        assert_eq!(c.path, Path::new("t.toml"));
    }

    #[test]
    fn syntax_errors_have_a_position() {
        let e = errors("[server]\nlisten = \n");
        assert_eq!(e.len(), 1);
        assert!(e[0].starts_with("t.toml:2:"), "{e:?}");
    }

    #[test]
    fn syntax_messages_are_one_line() {
        let e = errors("a = [1,");
        assert_eq!(e, vec!["t.toml:1:8: invalid TOML syntax: invalid array; expected `]`".to_string()]);
        let e = errors("a = ");
        assert_eq!(e, vec!["t.toml:1:5: invalid TOML syntax".to_string()]);
    }

    #[test]
    fn line_col_counts_characters_and_never_splits_one() {
        assert_eq!(line_col("é = 1\nab", 9), (2, 3));
        assert_eq!(line_col("é", 1), (1, 1));
        assert_eq!(line_col("abc", 99), (1, 4));
    }

    #[test]
    fn every_unknown_key_in_one_table_is_reported() {
        let e = errors("[server]\nlistn = \"x\"\nport = 1\n");
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(e[0].starts_with("t.toml:2:1: server.listn: unknown field `listn`"), "{e:?}");
        assert!(e[1].starts_with("t.toml:3:1: server.port: unknown field `port`"), "{e:?}");
    }

    #[test]
    fn unknown_top_level_key() {
        let e = errors("\n[sever]\nlisten = \"x\"\n");
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].starts_with("t.toml:2:2: sever: unknown section `sever`, expected one of server, store,"),
            "{e:?}"
        );
    }

    #[test]
    fn tagged_enum_problems_point_inside_the_entry() {
        let text = "[notifiers.a]\ntype = \"console\"\nformat = \"xml\"\n\n[notifiers.b]\ntype = \"console\"\ncolour = 1\n\n[notifiers.c]\ntype = \"slak\"\n\n[notifiers.d]\ntype = \"webhook\"\n";
        let e = errors(text);
        assert_eq!(e.len(), 4, "{e:?}");
        assert!(e[0].starts_with("t.toml:3:10: notifiers.a.format: unknown variant `xml`"), "{e:?}");
        assert!(e[1].starts_with("t.toml:7:1: notifiers.b.colour: unknown field `colour`"), "{e:?}");
        assert!(e[2].starts_with("t.toml:10:8: notifiers.c.type: unknown variant `slak`"), "{e:?}");
        assert!(e[3].starts_with("t.toml:12:1: notifiers.d: missing field `url`"), "{e:?}");
    }

    #[test]
    fn a_bad_element_does_not_hide_the_next_one_and_indices_stay_the_file_s() {
        let text = "[notifiers.x]\ntype = \"console\"\n\n[[routes]]\nkinds = 3\n\n[[routes]]\nnotifier = \"nope\"\n";
        let e = errors(text);
        assert_eq!(e.len(), 3, "{e:?}");
        assert!(e[0].starts_with("t.toml:4:1: routes[0]: missing field `notifier`"), "{e:?}");
        assert!(e[1].starts_with("t.toml:5:9: routes[0].kinds: invalid type"), "{e:?}");
        assert!(e[2].starts_with("t.toml:8:12: routes[1].notifier: no notifier named \"nope\""), "{e:?}");
    }

    #[test]
    fn routes_to_an_unreadable_notifier_are_not_blamed_twice() {
        let text = "[notifiers.team]\ntype = \"webhook\"\n\n[[routes]]\nnotifier = \"team\"\n";
        let e = errors(text);
        assert_eq!(e.len(), 1, "{e:?}");
    }

    #[test]
    fn array_elements_have_positions() {
        let e = errors("[[api_keys]]\nname = \"a\"\nkey = \"k\"\nscopes = [\"events:write\", \"evil\"]\n");
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(e[0].starts_with("t.toml:4:27: api_keys[0].scopes[1]: unknown variant `evil`"), "{e:?}");
    }

    #[test]
    fn interpolated_values_never_appear_in_messages() {
        let text = "[server]\nlisten = \"${env:HOOK}\"\n[store]\nurl = \"x${env:HOOK}\"\n";
        let e = errors(text);
        assert_eq!(e.len(), 2, "{e:?}");
        for m in &e {
            assert!(!m.contains("topsecret"), "{m}");
        }
        assert!(e[0].starts_with("t.toml:2:10: server.listen"), "{e:?}");
    }

    #[test]
    fn a_bad_element_does_not_hide_a_name_given_twice() {
        let e = errors(
            "[[api_keys]]\nname = \"writer\"\nkey = \"k1\"\nscopes = [\"events:write\"]\n\
             [[api_keys]]\nname = \"writer\"\nkey = \"k2\"\nscopes = [\"events:wat\"]\n",
        );
        assert_eq!(e.len(), 2, "{e:?}");
        assert_eq!(e[0], "t.toml:6:8: api_keys[1].name: duplicate name \"writer\": api_keys[0] already has it");
        assert!(e[1].starts_with("t.toml:8:11: api_keys[1].scopes[0]: unknown variant `events:wat`"), "{e:?}");
    }

    #[test]
    fn listen_takes_the_forms_alertmanager_takes() {
        for (text, addr) in [
            ("127.0.0.1:9750", "127.0.0.1:9750"),
            (":9750", "0.0.0.0:9750"),
            ("localhost:9750", "127.0.0.1:9750"),
            ("[::1]:9750", "[::1]:9750"),
        ] {
            let c = load_str_with_env(&format!("[server]\nlisten = \"{text}\"\n"), Path::new("t.toml"), &env).unwrap();
            assert_eq!(c.server.listen.to_string(), addr);
        }
        let e = errors("[server]\nlisten = \"example.com:80\"\n");
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(e[0].starts_with("t.toml:2:10: server.listen: must be IP:PORT, :PORT or localhost:PORT"), "{e:?}");
    }

    #[test]
    fn a_message_quoting_part_of_an_interpolated_value_hides_that_part() {
        let e = errors("[store]\nurl = \"${env:DB_URL}\"\n");
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(e[0].starts_with("t.toml:2:7: store.url: the directory"), "{e:?}");
        assert!(!e[0].contains("Pa55word"), "{e:?}");
    }

    #[test]
    fn an_unresolved_reference_is_reported_once() {
        let e = errors("[server]\nlisten = \"${env:NOT_SET_ANYWHERE}\"\n");
        assert_eq!(e, vec!["t.toml:2:10: server.listen: environment variable NOT_SET_ANYWHERE is not set".to_string()]);
    }

    #[test]
    fn wrong_shapes_of_sections() {
        let e = errors("routes = 1\nnotifiers = \"x\"\nserver = []\n");
        assert_eq!(e.len(), 3, "{e:?}");
        assert!(e[0].starts_with("t.toml:1:10: routes: must be a list"), "{e:?}");
        assert!(e[1].starts_with("t.toml:2:13: notifiers: must be a table"), "{e:?}");
        assert!(e[2].starts_with("t.toml:3:10: server: must be a table, not array"), "{e:?}");
    }
}
