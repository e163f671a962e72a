//! Layered, typed configuration that fails loudly.
//!
//! [`load`] builds a config struct from three layers, each overriding the one before:
//!
//! 1. the struct's `Default`;
//! 2. a TOML file, if one is given (a given file that does not exist is an error);
//! 3. environment variables `SWITCHBOARD_<SECTION>__<KEY>`: the prefix, then the key path in
//!    upper case with `__` between levels (`SWITCHBOARD_DATABASE__URL` sets `database.url`).
//!    Variables without `__` (`SWITCHBOARD_CONFIG`, `SWITCHBOARD_TEST_ZK`, ...) are not config
//!    keys and are ignored unless they name a top-level key of the struct. Values are parsed
//!    like TOML values (`20` is a number, `true` a boolean, anything unparseable a string).
//!
//! Errors name the key, what was expected and where the bad value came from.
//!
//! Secrets are [`Secret`]s: they print as `***` everywhere (`Debug`, `Display`, `Serialize`) and
//! are read with [`Secret::expose`]. A secret is given either inline, as a string, or through a
//! file whose trimmed contents are the secret (`*_FILE` indirection), as a table with one key,
//! `file`:
//!
//! ```toml
//! [database]
//! password = { file = "/run/secrets/pg-password" }
//! ```
//!
//! or in the environment, one level further down: `SWITCHBOARD_DATABASE__PASSWORD__FILE=/run/...`.

use std::cell::Cell;
use std::fmt;
use std::path::{Path, PathBuf};

use figment::error::Kind;
use figment::providers::{Format, Toml};
use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider, Source};
use serde::de::{self, DeserializeOwned, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Prefix of every configuration environment variable.
pub const ENV_PREFIX: &str = "SWITCHBOARD_";
/// Separator between key levels in environment variable names.
pub const ENV_SEPARATOR: &str = "__";

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {} does not exist", .0.display())]
    FileNotFound(PathBuf),
    #[error("invalid configuration: {}", list(.0))]
    Invalid(Vec<Problem>),
    #[error("cannot render the configuration as TOML: {0}")]
    Render(#[from] toml::ser::Error),
}

/// One thing wrong with the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Dotted key path, e.g. `coord.backend`; empty when the problem is not about one key
    /// (e.g. a TOML syntax error).
    pub key: String,
    /// What is wrong and what was expected.
    pub message: String,
    /// Where the value came from (`environment variable SWITCHBOARD_...`, `file ...`), if known.
    pub origin: Option<String>,
}

impl Problem {
    /// A problem found by validation after loading (a value of the right type but out of range).
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Problem { key: key.into(), message: message.into(), origin: None }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.key.is_empty() {
            write!(f, "{}: ", self.key)?;
        }
        f.write_str(&self.message)?;
        if let Some(origin) = &self.origin {
            write!(f, " (from {origin})")?;
        }
        Ok(())
    }
}

fn list(problems: &[Problem]) -> String {
    match problems {
        [one] => one.to_string(),
        many => many.iter().map(|p| format!("\n  - {p}")).collect::<String>(),
    }
}

/// Loads `T`: its `Default`, then `file` (TOML), then `SWITCHBOARD_*` environment variables.
pub fn load<T>(file: Option<&Path>) -> Result<T, ConfigError>
where
    T: DeserializeOwned + Serialize + Default,
{
    let vars = std::env::vars_os().filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)));
    load_from(file, vars)
}

/// [`load`] with the environment given as `(name, value)` pairs.
fn load_from<T>(file: Option<&Path>, vars: impl IntoIterator<Item = (String, String)>) -> Result<T, ConfigError>
where
    T: DeserializeOwned + Serialize + Default,
{
    let defaults = reveal_secrets(|| Value::serialize(T::default()).map_err(|e| ConfigError::Invalid(problems(e))))?;
    let defaults = defaults.into_dict().ok_or_else(|| {
        ConfigError::Invalid(vec![Problem::new("", "the configuration type does not serialize to a table")])
    })?;
    let env = EnvVars::new(vars, |key| defaults.contains_key(key));

    let mut figment = Figment::from(Defaults(defaults));
    if let Some(path) = file {
        if !path.exists() {
            return Err(ConfigError::FileNotFound(path.to_owned()));
        }
        figment = figment.merge(Toml::file_exact(path));
    }
    figment.merge(env).extract().map_err(|e| ConfigError::Invalid(problems(e)))
}

/// The environment layer: `SWITCHBOARD_A__B=v` becomes `a.b = v`, `v` parsed like a TOML value.
///
/// A variable is a key if its name has a `__` (a nested key) or names a top-level key; the
/// others (`SWITCHBOARD_CONFIG`, `SWITCHBOARD_TEST_ZK`, ...) belong to scripts and tests.
struct EnvVars(Dict);

impl EnvVars {
    fn new(vars: impl IntoIterator<Item = (String, String)>, is_top_level_key: impl Fn(&str) -> bool) -> Self {
        let mut dict = Dict::new();
        let mut vars: Vec<(String, String)> = vars
            .into_iter()
            .filter_map(|(name, value)| {
                let key = name.strip_prefix(ENV_PREFIX)?.to_ascii_lowercase();
                let nested = key.contains(ENV_SEPARATOR);
                (nested || is_top_level_key(&key)).then_some((key, value))
            })
            .collect();
        // A deterministic result if both `A__B` and `A__B__C` are set.
        vars.sort();
        for (key, value) in vars {
            let path: Vec<&str> = key.split(ENV_SEPARATOR).collect();
            if path.iter().any(|segment| segment.is_empty()) {
                continue;
            }
            let value: Value = value.parse().unwrap_or_else(|never| match never {});
            insert(&mut dict, &path, value);
        }
        EnvVars(dict)
    }
}

fn insert(dict: &mut Dict, path: &[&str], value: Value) {
    match path {
        [] => {}
        [last] => {
            dict.insert((*last).to_owned(), value);
        }
        [first, rest @ ..] => {
            let entry = dict.entry((*first).to_owned()).or_insert_with(|| Value::from(Dict::new()));
            if entry.as_dict().is_none() {
                *entry = Value::from(Dict::new());
            }
            if let Value::Dict(_, inner) = entry {
                insert(inner, rest, value);
            }
        }
    }
}

impl Provider for EnvVars {
    fn metadata(&self) -> Metadata {
        Metadata::named(ENV_METADATA)
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        Ok(Profile::Default.collect(self.0.clone()))
    }
}

const ENV_METADATA: &str = "environment variables";

/// Renders a configuration as TOML, secrets masked.
pub fn render<T: Serialize>(config: &T) -> Result<String, ConfigError> {
    Ok(toml::to_string(config)?)
}

/// The built-in defaults, as a provider with a name errors can show.
struct Defaults(Dict);

impl Provider for Defaults {
    fn metadata(&self) -> Metadata {
        Metadata::named("built-in defaults")
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        Ok(Profile::Default.collect(self.0.clone()))
    }
}

fn problems(error: figment::Error) -> Vec<Problem> {
    error
        .into_iter()
        .map(|e| {
            let path = &e.path;
            let message = match &e.kind {
                Kind::UnknownVariant(found, expected) => {
                    format!("unknown value `{found}`, expected {}", one_of(expected))
                }
                Kind::UnknownField(_, expected) => {
                    format!("unknown key, expected {} here", one_of(expected))
                }
                kind => kind.to_string(),
            };
            let origin = e.metadata.as_ref().map(|md| match &md.source {
                Some(Source::File(file)) => format!("file {}", file.display()),
                _ if md.name == ENV_METADATA => {
                    format!("environment variable {ENV_PREFIX}{}", path.join(ENV_SEPARATOR).to_ascii_uppercase())
                }
                _ => md.name.to_string(),
            });
            Problem { key: path.join("."), message, origin }
        })
        .collect()
}

/// "`a`", "`a` or `b`", "`a`, `b` or `c`".
fn one_of(names: &[&str]) -> String {
    match names.split_last() {
        None => "nothing".to_owned(),
        Some((last, [])) => format!("`{last}`"),
        Some((last, rest)) => {
            let rest: Vec<String> = rest.iter().map(|n| format!("`{n}`")).collect();
            format!("{} or `{last}`", rest.join(", "))
        }
    }
}

thread_local! {
    /// Set only while [`load`] serializes the defaults, which must carry the real secrets.
    static REVEAL: Cell<bool> = const { Cell::new(false) };
}

fn reveal_secrets<R>(f: impl FnOnce() -> R) -> R {
    struct Reset(bool);
    impl Drop for Reset {
        fn drop(&mut self) {
            REVEAL.with(|r| r.set(self.0));
        }
    }
    let _reset = Reset(REVEAL.with(|r| r.replace(true)));
    f()
}

/// A secret string: prints as `***`, read with [`Secret::expose`].
///
/// Deserializes from a string, or from `{ file = "/path" }`, whose trimmed contents become the
/// secret. Serializes as `***`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Secret(value)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if REVEAL.with(Cell::get) { serializer.serialize_str(&self.0) } else { serializer.serialize_str("***") }
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(SecretVisitor)
    }
}

struct SecretVisitor;

impl SecretVisitor {
    fn not_a_string<E: de::Error>(found: de::Unexpected<'_>) -> E {
        E::invalid_value(
            found,
            &"a string or { file = \"/path\" } (in an environment variable, quote a value \
              that looks like a number or boolean, '\"...\"', or name a file with ..__FILE)",
        )
    }
}

impl<'de> Visitor<'de> for SecretVisitor {
    type Value = Secret;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string or { file = \"/path\" }")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Secret, E> {
        Ok(Secret(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Secret, E> {
        Ok(Secret(v))
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Secret, E> {
        Err(Self::not_a_string(de::Unexpected::Bool(v)))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Secret, E> {
        Err(Self::not_a_string(de::Unexpected::Signed(v)))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Secret, E> {
        Err(Self::not_a_string(de::Unexpected::Unsigned(v)))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Secret, E> {
        Err(Self::not_a_string(de::Unexpected::Float(v)))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Secret, A::Error> {
        let mut file: Option<PathBuf> = None;
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "file" if file.is_none() => file = Some(map.next_value()?),
                "file" => return Err(de::Error::duplicate_field("file")),
                other => return Err(de::Error::unknown_field(other, &["file"])),
            }
        }
        let path = file.ok_or_else(|| de::Error::missing_field("file"))?;
        let contents = std::fs::read_to_string(&path)
            .map_err(|e| de::Error::custom(format!("cannot read secret file {}: {e}", path.display())))?;
        let secret = contents.trim();
        if secret.is_empty() {
            return Err(de::Error::custom(format!("secret file {} is empty", path.display())));
        }
        Ok(Secret(secret.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Default, Serialize, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Config {
        database: Database,
        http: Http,
    }

    #[derive(Debug, Serialize, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Database {
        url: String,
        max_connections: u32,
        password: Option<Secret>,
        token: Secret,
    }

    impl Default for Database {
        fn default() -> Self {
            Database {
                url: "postgres://localhost/db".into(),
                max_connections: 20,
                password: None,
                token: Secret::new("built-in"),
            }
        }
    }

    #[derive(Debug, Serialize, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Http {
        bind: String,
    }

    impl Default for Http {
        fn default() -> Self {
            Http { bind: "127.0.0.1:8080".into() }
        }
    }

    /// A fake environment: the process environment is shared by tests running in parallel
    /// (and cannot be changed without `unsafe`, which the workspace forbids).
    #[derive(Default)]
    struct TestEnv(Vec<(String, String)>);

    impl TestEnv {
        fn new() -> Self {
            Self::default()
        }

        fn set(&mut self, name: &str, value: &str) {
            self.0.push((format!("{ENV_PREFIX}{name}"), value.to_owned()));
        }

        fn load<T: DeserializeOwned + Serialize + Default>(&self, file: Option<&Path>) -> Result<T, ConfigError> {
            load_from(file, self.0.clone())
        }
    }

    fn temp_file(name: &str, contents: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("ops-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, contents).unwrap();
        path
    }

    #[test]
    fn defaults_when_nothing_is_given() {
        let config: Config = TestEnv::new().load(None).unwrap();
        assert_eq!(config, Config::default());
        assert_eq!(config.database.token.expose(), "built-in");
    }

    #[test]
    fn file_overrides_defaults_and_keeps_the_rest() {
        let path =
            temp_file("file_overrides.toml", "[database]\nmax_connections = 5\n[http]\nbind = \"0.0.0.0:9000\"\n");
        let config: Config = TestEnv::new().load(Some(&path)).unwrap();
        assert_eq!(config.database.max_connections, 5);
        assert_eq!(config.database.url, "postgres://localhost/db");
        assert_eq!(config.http.bind, "0.0.0.0:9000");
    }

    #[test]
    fn a_missing_given_file_is_an_error_naming_it() {
        let path = Path::new("/nonexistent/switchboard.toml");
        let err = TestEnv::new().load::<Config>(Some(path)).unwrap_err();
        assert!(matches!(err, ConfigError::FileNotFound(_)));
        assert_eq!(err.to_string(), "config file /nonexistent/switchboard.toml does not exist");
    }

    #[test]
    fn a_toml_syntax_error_names_the_file() {
        let path = temp_file("syntax.toml", "[database\n");
        let err = TestEnv::new().load::<Config>(Some(&path)).unwrap_err();
        assert!(err.to_string().contains("syntax.toml"), "{err}");
    }

    #[test]
    fn environment_overrides_file() {
        let path = temp_file("env_over_file.toml", "[database]\nmax_connections = 5\n");
        let mut env = TestEnv::new();
        env.set("DATABASE__MAX_CONNECTIONS", "7");
        env.set("HTTP__BIND", "127.0.0.1:0");
        let config: Config = env.load(Some(&path)).unwrap();
        assert_eq!(config.database.max_connections, 7);
        assert_eq!(config.http.bind, "127.0.0.1:0");
    }

    #[test]
    fn variables_that_are_not_keys_are_ignored() {
        let mut env = TestEnv::new();
        env.set("CONFIG", "/etc/switchboard.toml");
        env.set("TEST_DATABASE_URL", "postgres://elsewhere/postgres");
        let config: Config = env.load(None).unwrap();
        assert_eq!(config, Config::default());
    }

    #[test]
    fn a_wrong_type_names_the_key_the_expectation_and_the_variable() {
        let mut env = TestEnv::new();
        env.set("DATABASE__MAX_CONNECTIONS", "many");
        let err = env.load::<Config>(None).unwrap_err();
        let ConfigError::Invalid(problems) = &err else { panic!("{err}") };
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].key, "database.max_connections");
        assert!(problems[0].message.contains("u32"), "{}", problems[0]);
        assert_eq!(problems[0].origin.as_deref(), Some("environment variable SWITCHBOARD_DATABASE__MAX_CONNECTIONS"));
    }

    #[test]
    fn a_wrong_type_in_the_file_names_the_file() {
        let path = temp_file("wrong_type.toml", "[database]\nmax_connections = \"x\"\n");
        let err = TestEnv::new().load::<Config>(Some(&path)).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("database.max_connections"), "{msg}");
        assert!(msg.contains("wrong_type.toml"), "{msg}");
    }

    #[test]
    fn an_unknown_nested_key_is_an_error() {
        let mut env = TestEnv::new();
        env.set("DATABASE__URLL", "x");
        let msg = env.load::<Config>(None).unwrap_err().to_string();
        assert_eq!(
            msg,
            "invalid configuration: database.urll: unknown key, expected `url`, \
             `max_connections`, `password` or `token` here \
             (from environment variable SWITCHBOARD_DATABASE__URLL)"
        );
    }

    #[test]
    fn an_unknown_enum_value_lists_the_known_ones() {
        #[derive(Debug, Default, Serialize, Deserialize)]
        struct Coord {
            backend: Backend,
        }
        #[derive(Debug, Default, Serialize, Deserialize)]
        #[serde(rename_all = "lowercase")]
        enum Backend {
            #[default]
            Zookeeper,
            Local,
        }
        #[derive(Debug, Default, Serialize, Deserialize)]
        struct WithEnum {
            coord: Coord,
        }
        let mut env = TestEnv::new();
        env.set("COORD__BACKEND", "etcd");
        let msg = env.load::<WithEnum>(None).unwrap_err().to_string();
        assert_eq!(
            msg,
            "invalid configuration: coord.backend: unknown value `etcd`, expected `zookeeper` \
             or `local` (from environment variable SWITCHBOARD_COORD__BACKEND)"
        );
    }

    #[test]
    fn secrets_never_print() {
        let secret = Secret::new("hunter2");
        assert_eq!(format!("{secret}"), "***");
        assert_eq!(format!("{secret:?}"), "***");
        assert_eq!(serde_json::to_string(&secret).unwrap(), "\"***\"");
        assert_eq!(secret.expose(), "hunter2");
    }

    #[test]
    fn secret_inline_from_file_and_from_env() {
        let path = temp_file("inline.toml", "[database]\npassword = \"p4ss\"\n");
        let config: Config = TestEnv::new().load(Some(&path)).unwrap();
        assert_eq!(config.database.password.unwrap().expose(), "p4ss");

        let secret = temp_file("secret.txt", "  from-a-file\n");
        let toml = format!("[database]\npassword = {{ file = \"{}\" }}\n", secret.display());
        let path = temp_file("indirect.toml", &toml);
        let config: Config = TestEnv::new().load(Some(&path)).unwrap();
        assert_eq!(config.database.password.unwrap().expose(), "from-a-file");

        let mut env = TestEnv::new();
        env.set("DATABASE__TOKEN__FILE", &secret.display().to_string());
        let config: Config = env.load(None).unwrap();
        assert_eq!(config.database.token.expose(), "from-a-file");
    }

    #[test]
    fn a_missing_secret_file_names_key_and_file() {
        let mut env = TestEnv::new();
        env.set("DATABASE__PASSWORD__FILE", "/nonexistent/pw");
        let msg = env.load::<Config>(None).unwrap_err().to_string();
        assert!(msg.contains("database.password"), "{msg}");
        assert!(msg.contains("/nonexistent/pw"), "{msg}");
    }

    #[test]
    fn a_secret_that_parses_as_a_number_is_refused_not_mangled() {
        let mut env = TestEnv::new();
        env.set("DATABASE__PASSWORD", "0123");
        let msg = env.load::<Config>(None).unwrap_err().to_string();
        assert!(msg.contains("database.password"), "{msg}");
        let mut env = TestEnv::new();
        env.set("DATABASE__PASSWORD", "\"0123\"");
        let config: Config = env.load(None).unwrap();
        assert_eq!(config.database.password.unwrap().expose(), "0123");
    }

    #[test]
    fn render_masks_secrets() {
        let mut config = Config::default();
        config.database.password = Some(Secret::new("hunter2"));
        let text = render(&config).unwrap();
        assert!(!text.contains("hunter2"), "{text}");
        assert!(!text.contains("built-in"), "{text}");
        assert!(text.contains("password = \"***\""), "{text}");
        assert!(text.contains("max_connections = 20"), "{text}");
    }
}
