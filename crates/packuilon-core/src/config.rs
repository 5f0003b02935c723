//! `/etc/packer-utils/config.ini`: every key of the original tool, with its
//! default.
//!
//! Defaults the original left to its sample file are chosen here and
//! documented on each field. Keys of the `[rally-image-testing]` section are
//! read (so a config written for the original still loads) but nothing in
//! this crate runs Rally.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use ini_config::{Dialect, Ini};
pub use secret::Secret;

use crate::error::{Error, Result};

/// Where the original reads its configuration.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/packer-utils/config.ini";

/// How the original (Python 3's `configparser`, strict) read `config.ini`;
/// its keys are paths and URLs, read raw (no `%` interpolation).
pub const DIALECT: Dialect = Dialect::PYTHON3_RAW_STRICT;

/// `[global]`: the queue and the broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GlobalConfig {
    /// `QUEUE`, default `build-queue`.
    pub queue: String,
    /// `RABBIT_HOST`, default `localhost`.
    pub rabbit_host: String,
    /// `RABBIT_PORT`, default 5672.
    pub rabbit_port: u16,
    /// `RABBIT_USER`, default `guest` (RabbitMQ's default account).
    pub rabbit_user: String,
    /// `RABBIT_PW`, default `guest`; never printed.
    pub rabbit_pw: Secret,
    /// `SUCCESS_ADDRESS` (mail on success), optional.
    pub success_address: Option<String>,
    /// `FAILURE_ADDRESS` (mail on failure), optional.
    pub failure_address: Option<String>,
    /// `SLACK_SUCCESS_HOOK`, optional; its URL is a credential, never printed.
    pub slack_success_hook: Option<Secret>,
    /// `MAIL_COMMAND` (ours): a sendmail-compatible command reading the
    /// message on stdin, split on whitespace; default `/usr/sbin/sendmail -t -i`.
    pub mail_command: Vec<String>,
}

/// `[cdb2rabbit]`: where the Quattor profiles are published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cdb2RabbitConfig {
    /// `PROFILE_INFO_URL` (…/profiles-info.xml), optional until cdb2rabbit runs.
    pub profile_info_url: Option<String>,
    /// `PROFILE_DIR_URL`, optional until cdb2rabbit runs.
    pub profile_dir_url: Option<String>,
    /// `PROFILE_MATCH`, a substring of profile names; default empty (all match).
    pub profile_match: String,
    /// `CACHE_DIR`, default `/etc/packer-utils/profiles/`.
    pub cache_dir: PathBuf,
}

/// `[rabbit2packer]`: the build service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rabbit2PackerConfig {
    /// `THREAD_COUNT`, default 4; concurrent builds (and prefetch); at least 1.
    pub thread_count: u16,
    /// `LOG_DIR`, default `/var/log/packer-utils`.
    pub log_dir: PathBuf,
    /// `BUILD_FILE_DIR`, default `/etc/packer-utils/build`.
    pub build_file_dir: PathBuf,
    /// `PACKER_ADMIN_AUTH`, default `/etc/packer-utils/admin-auth.sh`
    /// (used by the templates' post-processors, not by this crate).
    pub packer_admin_auth: PathBuf,
    /// `PACKER_AUTH_FILE`, default `/etc/packer-utils/admin-openrc.sh`.
    pub packer_auth_file: PathBuf,
    /// `PACKER_TEMPLATE_MAP`, default `/etc/packer-utils/template-map.json`.
    pub packer_template_map: PathBuf,
    /// `IMAGES_CONFIG`, default `/etc/packer-utils/source-images.json`.
    pub images_config: PathBuf,
    /// `PACKER_PATH`, default `packer` (looked up on `PATH`).
    pub packer_path: PathBuf,
    /// `MAX_ATTEMPTS` (ours), default 3: builds of one message before it is
    /// parked on `<QUEUE>.failed`; at least 1.
    pub max_attempts: u32,
    /// `RETRY_DELAY` (ours), default 60: seconds before a failed build's
    /// message is published again.
    pub retry_delay: u64,
    /// `STATE_DIR` (ours), default `/var/lib/packer-utils`: where the record
    /// of builds done (`builds.json`) is kept.
    pub state_dir: PathBuf,
}

/// `[rally-image-testing]`: read for compatibility, unused.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RallyConfig {
    /// `DEPLOYMENT_UUID`.
    pub deployment_uuid: Option<String>,
    /// `RALLY_CODE_FOLDER`.
    pub rally_code_folder: Option<PathBuf>,
    /// `TASK_LOCATION`.
    pub task_location: Option<PathBuf>,
    /// `LOG_DIR`.
    pub log_dir: Option<PathBuf>,
}

pub use crate::gate::GateConfig;

/// The whole configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The file it was read from.
    pub path: PathBuf,
    /// `[global]`.
    pub global: GlobalConfig,
    /// `[cdb2rabbit]`.
    pub cdb2rabbit: Cdb2RabbitConfig,
    /// `[rabbit2packer]`.
    pub rabbit2packer: Rabbit2PackerConfig,
    /// `[rally-image-testing]`.
    pub rally: RallyConfig,
    /// `[rename-old-images]` (ours): the rotation `rabbit2packer` runs
    /// after a successful build; `None` when the section is absent (the
    /// templates' post-processors rotate, as in the original).
    pub rename: Option<crate::rotate::RenameSettings>,
    /// `[test-gate]` (ours): the test every new image must pass before the
    /// rotation; `None` when the section is absent (no gate, as the
    /// original whose Rally analysis always passed).
    pub gate: Option<GateConfig>,
    /// Keys read but not used, each with the reason (the original's
    /// undocumented Rally keys, the fork's `FLAVOR_NAME`/`NETWORK_ID`), as
    /// `[section] KEY: why`; the binary logs them as warnings.
    pub ignored: Vec<String>,
}

struct Reader<'a> {
    ini: &'a Ini,
}

impl Reader<'_> {
    fn opt(&self, section: &str, key: &str) -> Option<String> {
        self.ini.raw(section, key).map(|v| v.value.clone())
    }

    fn string(&self, section: &str, key: &str, default: &str) -> String {
        self.opt(section, key)
            .unwrap_or_else(|| default.to_string())
    }

    fn path(&self, section: &str, key: &str, default: &str) -> PathBuf {
        PathBuf::from(self.string(section, key, default))
    }

    /// `[section] KEY` as a number, `default` when absent. A value that does
    /// not parse or that `valid` refuses is recorded in `problems` with
    /// `message`, and `default` is used so that the other keys are still
    /// checked.
    fn number<T: FromStr>(
        &self,
        problems: &mut Vec<Error>,
        (section, key): (&str, &str),
        default: T,
        valid: fn(&T) -> bool,
        message: &str,
    ) -> T {
        let value = match self.opt(section, key) {
            None => return default,
            Some(v) => v.parse::<T>().ok().filter(valid),
        };
        value.unwrap_or_else(|| {
            problems.push(self.bad(section, key, message.into()));
            default
        })
    }

    fn bad(&self, section: &str, key: &str, message: String) -> Error {
        Error::ConfigValue {
            path: PathBuf::from(self.ini.source()),
            section: section.to_string(),
            key: format!("{key} (line {})", self.ini.line_of(section, key)),
            message,
        }
    }
}

/// `value`, or `default` after recording the error.
fn keep<T>(problems: &mut Vec<Error>, value: Result<T>, default: T) -> T {
    value.unwrap_or_else(|e| {
        problems.push(e);
        default
    })
}

impl Config {
    /// Read the configuration file at `path`.
    pub fn load(path: &Path) -> Result<Self> {
        let ini = Ini::load(path, DIALECT)?;
        Self::from_ini(&ini)
    }

    /// Parse configuration text; `path` names it in errors.
    pub fn parse(path: &Path, text: &str) -> Result<Self> {
        let ini = Ini::parse(path.display().to_string(), text, DIALECT)?;
        Self::from_ini(&ini)
    }

    /// Read the file and return the configuration with every bad value
    /// replaced by its default, together with the problems found (for
    /// `packuilon validate`, which goes on to check the other files).
    pub fn load_lenient(path: &Path) -> Result<(Self, Vec<Error>)> {
        let ini = Ini::load(path, DIALECT)?;
        Ok(Self::collect(&ini))
    }

    fn from_ini(ini: &Ini) -> Result<Self> {
        let (config, mut problems) = Self::collect(ini);
        match problems.len() {
            0 => Ok(config),
            1 => Err(problems.remove(0)),
            _ => Err(Error::ConfigProblems {
                path: PathBuf::from(ini.source()),
                problems: problems.iter().map(ToString::to_string).collect(),
            }),
        }
    }

    fn collect(ini: &Ini) -> (Self, Vec<Error>) {
        let r = Reader { ini };
        let mut problems: Vec<Error> = Vec::new();
        let port: u16 = r.number(
            &mut problems,
            ("global", "RABBIT_PORT"),
            5672,
            |p| *p >= 1,
            "not a port number (1-65535)",
        );
        let thread_count: u16 = keep(
            &mut problems,
            (|| -> Result<u16> {
                Ok(match r.opt("rabbit2packer", "THREAD_COUNT") {
                    None => 4,
                    Some(v) => match v.parse::<i64>() {
                        Ok(n) if n >= 1 => u16::try_from(n).map_err(|_| {
                            r.bad(
                                "rabbit2packer",
                                "THREAD_COUNT",
                                format!("more than {}", u16::MAX),
                            )
                        })?,
                        Ok(_) => {
                            return Err(r.bad(
                                "rabbit2packer",
                                "THREAD_COUNT",
                                "must be at least 1".into(),
                            ))
                        }
                        Err(_) => {
                            return Err(r.bad(
                                "rabbit2packer",
                                "THREAD_COUNT",
                                "not a whole number".into(),
                            ))
                        }
                    },
                })
            })(),
            4,
        );
        let max_attempts: u32 = r.number(
            &mut problems,
            ("rabbit2packer", "MAX_ATTEMPTS"),
            3,
            |n| *n >= 1,
            "not a whole number of at least 1",
        );
        let retry_delay: u64 = r.number(
            &mut problems,
            ("rabbit2packer", "RETRY_DELAY"),
            60,
            |_| true,
            "not a whole number of seconds",
        );
        let global = GlobalConfig {
            queue: r.string("global", "QUEUE", "build-queue"),
            rabbit_host: r.string("global", "RABBIT_HOST", "localhost"),
            rabbit_port: port,
            rabbit_user: r.string("global", "RABBIT_USER", "guest"),
            rabbit_pw: Secret::new(r.string("global", "RABBIT_PW", "guest")),
            success_address: r.opt("global", "SUCCESS_ADDRESS"),
            failure_address: r.opt("global", "FAILURE_ADDRESS"),
            slack_success_hook: r.opt("global", "SLACK_SUCCESS_HOOK").map(Secret::new),
            mail_command: r
                .string("global", "MAIL_COMMAND", "/usr/sbin/sendmail -t -i")
                .split_whitespace()
                .map(String::from)
                .collect(),
        };
        if global.queue.is_empty() {
            problems.push(r.bad("global", "QUEUE", "the queue name is empty".into()));
        }
        let cdb2rabbit = Cdb2RabbitConfig {
            profile_info_url: r.opt("cdb2rabbit", "PROFILE_INFO_URL"),
            profile_dir_url: r.opt("cdb2rabbit", "PROFILE_DIR_URL"),
            profile_match: r.string("cdb2rabbit", "PROFILE_MATCH", ""),
            cache_dir: r.path("cdb2rabbit", "CACHE_DIR", "/etc/packer-utils/profiles/"),
        };
        let s = "rabbit2packer";
        let rabbit2packer = Rabbit2PackerConfig {
            thread_count,
            log_dir: r.path(s, "LOG_DIR", "/var/log/packer-utils"),
            build_file_dir: r.path(s, "BUILD_FILE_DIR", "/etc/packer-utils/build"),
            // The 2019 rename script read PACKER_ADMIN_AUTH_FILE where the
            // sample config has PACKER_ADMIN_AUTH: either name works.
            packer_admin_auth: r.path(
                s,
                "PACKER_ADMIN_AUTH",
                &r.string(
                    s,
                    "PACKER_ADMIN_AUTH_FILE",
                    "/etc/packer-utils/admin-auth.sh",
                ),
            ),
            packer_auth_file: r.path(s, "PACKER_AUTH_FILE", "/etc/packer-utils/admin-openrc.sh"),
            packer_template_map: r.path(
                s,
                "PACKER_TEMPLATE_MAP",
                "/etc/packer-utils/template-map.json",
            ),
            images_config: r.path(s, "IMAGES_CONFIG", "/etc/packer-utils/source-images.json"),
            packer_path: r.path(s, "PACKER_PATH", "packer"),
            max_attempts,
            retry_delay,
            state_dir: r.path(s, "STATE_DIR", "/var/lib/packer-utils"),
        };
        let s = "rally-image-testing";
        let rally = RallyConfig {
            deployment_uuid: r.opt(s, "DEPLOYMENT_UUID"),
            rally_code_folder: r.opt(s, "RALLY_CODE_FOLDER").map(PathBuf::from),
            task_location: r.opt(s, "TASK_LOCATION").map(PathBuf::from),
            log_dir: r.opt(s, "LOG_DIR").map(PathBuf::from),
        };
        let s = "rename-old-images";
        let rename: Option<crate::rotate::RenameSettings> = keep(
            &mut problems,
            (|| -> Result<Option<crate::rotate::RenameSettings>> {
                Ok(if ini.has_section(s) {
                    let style = match r.opt(s, "RENAME_STYLE").as_deref() {
                        None | Some("date") => crate::rotate::RenameStyle::Date,
                        Some("timestamp") => crate::rotate::RenameStyle::Timestamp,
                        Some(_) => {
                            return Err(r.bad(
                                s,
                                "RENAME_STYLE",
                                "neither date nor timestamp".into(),
                            ))
                        }
                    };
                    let mut settings = crate::rotate::RenameSettings {
                        style,
                        ..Default::default()
                    };
                    if let Some(v) = r.opt(s, "COPY_PROPERTIES") {
                        settings.copy_properties = v
                            .split(',')
                            .map(str::trim)
                            .filter(|p| !p.is_empty())
                            .map(String::from)
                            .collect();
                    }
                    settings.source_images = match r.opt(s, "UPDATE_SOURCE_IMAGES").as_deref() {
                        None | Some("false" | "no" | "0") => None,
                        Some("true" | "yes" | "1") => Some(rabbit2packer.images_config.clone()),
                        Some(_) => {
                            return Err(r.bad(
                                s,
                                "UPDATE_SOURCE_IMAGES",
                                "neither true nor false".into(),
                            ))
                        }
                    };
                    Some(settings)
                } else {
                    None
                })
            })(),
            None,
        );
        let s = "test-gate";
        let gate = ini.has_section(s).then(|| {
            GateConfig::read(
                |k| r.opt(s, k),
                |k, m| r.bad(s, k, m),
                r.opt("global", "FLAVOR_NAME"),
                r.opt("global", "NETWORK_ID"),
                &mut problems,
            )
        });
        // The fork's FLAVOR_NAME and NETWORK_ID are the OpenStack gate's defaults.
        let gate_on_openstack = gate
            .as_ref()
            .is_some_and(|g| g.backend == crate::gate::GateBackend::Openstack);
        let mut ignored = Vec::new();
        for (section, key, why) in [
            (
                "global",
                "FLAVOR_NAME",
                "used only by [test-gate] BACKEND = openstack; set the build's flavor in the templates",
            ),
            (
                "global",
                "NETWORK_ID",
                "used only by [test-gate] BACKEND = openstack; set the build's network in the templates",
            ),
            ("rally-image-testing", "DEPLOYMENT_UUID", "Rally is not run"),
            (
                "rally-image-testing",
                "RALLY_CODE_FOLDER",
                "Rally is not run",
            ),
            ("rally-image-testing", "TASK_LOCATION", "Rally is not run"),
            ("rally-image-testing", "LOG_DIR", "Rally is not run"),
            (
                "rally-image-testing",
                "TASK_UUID_EXTRACTION",
                "Rally is not run",
            ),
            ("rally-image-testing", "UUID_FILE", "Rally is not run"),
            (
                "rally-image-testing",
                "RALLY_JSON_RESULTS",
                "Rally is not run",
            ),
        ] {
            if gate_on_openstack && section == "global" {
                continue;
            }
            if let Some(v) = ini.raw(section, key) {
                ignored.push(format!(
                    "[{section}] {key} (line {}): ignored: {why}",
                    v.line
                ));
            }
        }
        if ini.has_option("rabbit2packer", "PACKER_ADMIN_AUTH")
            && ini.has_option("rabbit2packer", "PACKER_ADMIN_AUTH_FILE")
        {
            ignored.push(
                "[rabbit2packer] PACKER_ADMIN_AUTH_FILE: ignored: PACKER_ADMIN_AUTH is set too and wins".into(),
            );
        }
        let config = Config {
            gate,
            ignored,
            rename,
            path: PathBuf::from(ini.source()),
            global,
            cdb2rabbit,
            rabbit2packer,
            rally,
        };
        (config, problems)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config> {
        Config::parse(Path::new("/etc/packer-utils/config.ini"), text)
    }

    #[test]
    fn empty_file_gives_every_default() {
        let c = parse("").unwrap();
        assert_eq!(c.global.queue, "build-queue");
        assert_eq!(c.global.rabbit_host, "localhost");
        assert_eq!(c.global.rabbit_port, 5672);
        assert_eq!(c.global.rabbit_user, "guest");
        assert_eq!(c.global.rabbit_pw.expose(), "guest");
        assert_eq!(c.global.success_address, None);
        assert_eq!(c.cdb2rabbit.profile_match, "");
        assert_eq!(
            c.cdb2rabbit.cache_dir,
            Path::new("/etc/packer-utils/profiles/")
        );
        assert_eq!(c.rabbit2packer.thread_count, 4);
        assert_eq!(c.rabbit2packer.packer_path, Path::new("packer"));
        assert_eq!(
            c.rabbit2packer.images_config,
            Path::new("/etc/packer-utils/source-images.json")
        );
        assert_eq!(c.rally, RallyConfig::default());
    }

    #[test]
    fn reads_every_section_with_any_key_case() {
        let c = parse(
            "[global]\nQUEUE = q1\nrabbit_host: mq\nRABBIT_PORT = 5673\nRABBIT_USER = u\nRABBIT_PW = s3cret\nSUCCESS_ADDRESS = ok@x\nFAILURE_ADDRESS = ko@x\nSLACK_SUCCESS_HOOK = http://hook\n\
             [cdb2rabbit]\nPROFILE_INFO_URL = http://h/profiles-info.xml\nPROFILE_DIR_URL = http://h/profiles\nPROFILE_MATCH = .cloud.template.json\nCACHE_DIR = /tmp/cache\n\
             [rabbit2packer]\nThread_Count = 2\nLOG_DIR = /l\nBUILD_FILE_DIR = /b\nPACKER_ADMIN_AUTH = /a\nPACKER_AUTH_FILE = /f\nPACKER_TEMPLATE_MAP = /m\nIMAGES_CONFIG = /i\nPACKER_PATH = /usr/bin/packer.io\n\
             [rally-image-testing]\nDEPLOYMENT_UUID = d\nRALLY_CODE_FOLDER = /r\nTASK_LOCATION = /t\nLOG_DIR = /rl\n",
        )
        .unwrap();
        assert_eq!(c.global.queue, "q1");
        assert_eq!(c.global.rabbit_host, "mq");
        assert_eq!(c.global.rabbit_port, 5673);
        assert_eq!(c.global.rabbit_pw.expose(), "s3cret");
        assert_eq!(
            c.global.slack_success_hook.as_ref().map(Secret::expose),
            Some("http://hook")
        );
        assert_eq!(c.cdb2rabbit.profile_match, ".cloud.template.json");
        assert_eq!(
            c.cdb2rabbit.profile_dir_url.as_deref(),
            Some("http://h/profiles")
        );
        assert_eq!(c.rabbit2packer.thread_count, 2);
        assert_eq!(c.rabbit2packer.log_dir, Path::new("/l"));
        assert_eq!(c.rabbit2packer.packer_path, Path::new("/usr/bin/packer.io"));
        assert_eq!(c.rally.log_dir.as_deref(), Some(Path::new("/rl")));
        assert!(!format!("{c:?}").contains("s3cret"), "password in Debug");
    }

    #[test]
    fn bad_thread_count_names_file_section_and_key() {
        for v in ["0", "-3", "four", ""] {
            let e = parse(&format!("[rabbit2packer]\nTHREAD_COUNT = {v}\n"))
                .unwrap_err()
                .to_string();
            assert!(
                e.starts_with(
                    "/etc/packer-utils/config.ini: [rabbit2packer] THREAD_COUNT (line 2): "
                ),
                "{e}"
            );
        }
    }

    #[test]
    fn rename_section_enables_the_rotation() {
        assert_eq!(parse("").unwrap().rename, None);
        let c = parse("[rabbit2packer]\nIMAGES_CONFIG = /i.json\n[rename-old-images]\nRENAME_STYLE = timestamp\nCOPY_PROPERTIES = AQ, hw_\nUPDATE_SOURCE_IMAGES = true\n").unwrap();
        let r = c.rename.unwrap();
        assert_eq!(r.style, crate::rotate::RenameStyle::Timestamp);
        assert_eq!(r.copy_properties, vec!["AQ", "hw_"]);
        assert_eq!(r.source_images.as_deref(), Some(Path::new("/i.json")));
        let e = parse("[rename-old-images]\nRENAME_STYLE = weekly\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("[rename-old-images] RENAME_STYLE (line 2)"),
            "{e}"
        );
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let e = parse("[global]\nRABBIT_PORT = x\nQUEUE =\n[rabbit2packer]\nTHREAD_COUNT = 0\nMAX_ATTEMPTS = -1\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("/etc/packer-utils/config.ini: 4 problems:\n"),
            "{e}"
        );
        for k in [
            "[global] RABBIT_PORT (line 2)",
            "[global] QUEUE (line 3)",
            "[rabbit2packer] THREAD_COUNT (line 5)",
            "[rabbit2packer] MAX_ATTEMPTS (line 6)",
        ] {
            assert!(e.contains(k), "{k} missing: {e}");
        }
    }

    #[test]
    fn undocumented_keys_are_used_or_reported_as_ignored() {
        let c = parse("[global]\nFLAVOR_NAME = m1.tiny\nNETWORK_ID = n\n[rabbit2packer]\nPACKER_ADMIN_AUTH_FILE = /etc/a.sh\n[rally-image-testing]\nTASK_UUID_EXTRACTION = x\nUUID_FILE = u\nRALLY_JSON_RESULTS = r\n").unwrap();
        assert_eq!(c.rabbit2packer.packer_admin_auth, Path::new("/etc/a.sh"));
        assert_eq!(c.ignored.len(), 5, "{:?}", c.ignored);
        assert!(c.ignored[0].starts_with("[global] FLAVOR_NAME (line 2): ignored: "));
        assert!(c
            .ignored
            .iter()
            .any(|i| i.starts_with("[rally-image-testing] UUID_FILE (line 8)")));
    }

    #[test]
    fn bad_port_is_an_error() {
        for port in ["99999", "0", "amqp"] {
            let e = parse(&format!("[global]\nRABBIT_PORT = {port}\n"))
                .unwrap_err()
                .to_string();
            assert!(e.contains("[global] RABBIT_PORT"), "{e}");
            assert!(e.contains("not a port number (1-65535)"), "{e}");
        }
    }

    #[test]
    fn bad_attempts_and_delay_are_errors_and_good_ones_are_read() {
        let e = parse("[rabbit2packer]\nMAX_ATTEMPTS = 0\nRETRY_DELAY = -5\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("MAX_ATTEMPTS") && e.contains("at least 1"),
            "{e}"
        );
        assert!(e.contains("RETRY_DELAY") && e.contains("seconds"), "{e}");
        let c = parse(
            "[global]\nRABBIT_PORT = 5673\n[rabbit2packer]\nMAX_ATTEMPTS = 5\nRETRY_DELAY = 0\n",
        )
        .unwrap();
        assert_eq!(c.global.rabbit_port, 5673);
        assert_eq!(c.rabbit2packer.max_attempts, 5);
        assert_eq!(c.rabbit2packer.retry_delay, 0);
    }

    #[test]
    fn missing_file_names_it() {
        let e = Config::load(Path::new("/nonexistent/config.ini"))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("/nonexistent/config.ini: "), "{e}");
    }
}
