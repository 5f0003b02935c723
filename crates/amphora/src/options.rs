//! Command-line options of Octavia's `diskimage-create.sh`, parsed with the
//! original's `getopts "a:b:c:d:efg:hi:k:l:mno:pt:r:s:vw:xy"` semantics,
//! plus this tool's long options.
//!
//! getopts semantics kept: options are handled left to right and each takes
//! effect at once (`-h`, `-v` and an invalid value stop at that option, so
//! `-a bad -h` exits 3 and `-h -a bad` exits 1); short options bundle
//! (`-mn`, `-s3`); an option argument is the rest of the word or the next
//! word even when that starts with `-`; the first word that is not an option
//! (or `--`) ends the options, and a non-empty word after them shows the
//! usage; a repeated option overrides the earlier one.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The original's usage text (bold defaults marked with `**`).
pub const USAGE: &str = "\
Usage: amphora-create
            [-a amd64 | armhf | arm64 | aarch64 | ppc64le]
            [-b **haproxy** ]
            [-c **~/.cache/image-create** | <cache directory> ]
            [-d **noble**/**10-stream**/**10**/**bookworm** | <other release id> ]
            [-e]
            [-f]
            [-g **repository branch** | stable/train | stable/stein | ... ]
            [-h]
            [-i **ubuntu-minimal** | fedora | centos-minimal | rhel | rocky | debian-minimal ]
            [-k <kernel package name> ]
            [-l <log file> ]
            [-m]
            [-n]
            [-o **amphora-x64-haproxy.qcow2** | <filename> ]
            [-p]
            [-r <root password> ]
            [-s **2** | <size in GB> ]
            [-t **qcow2** | tar | vhd | raw ]
            [-v]
            [-w <working directory> ]
            [-x]
            [-y]
            [--print-elements] [--dry-run] [--test IMAGE]
            [--verbose] [--quiet] [--log-format text|json] [--help] [--version]

        '-a' is the architecture type for the image (default: architecture of the system which executes this script)
        '-b' is the backend type (default: haproxy)
        '-c' is the path to the cache directory (default: ~/.cache/image-create)
        '-d' distribution release id (default on ubuntu: noble, on debian: bookworm)
        '-e' enable complete mandatory access control systems when available (default: permissive)
        '-f' disable tmpfs for build
        '-g' build the image for a specific OpenStack Git branch (default: current repository branch)
        '-h' display this help message
        '-i' is the base OS (default: ubuntu-minimal)
        '-k' is the kernel meta package name, currently only for ubuntu-minimal base OS (default: linux-image-virtual)
        '-l' is output logfile (default: none)
        '-m' enable vCPU pinning optimizations (default: disabled)
        '-n' disable sshd (default: enabled)
        '-o' is the output image file name
        '-p' install amphora-agent from distribution packages (default: disabled)
        '-r' enable the root account in the generated image (default: disabled)
        '-s' is the image size to produce in gigabytes (default: 2)
        '-t' is the image type (default: qcow2)
        '-v' display the script version
        '-w' working directory for image building (default: .)
        '-x' enable tracing for diskimage-builder
        '-y' enable FIPS 140-2 mode in the amphora image

        --print-elements  print the expanded element list for these options and the environment, exit 0
        --dry-run         print what a build would do (elements, variables, disk-image-create options), exit 0
        --test IMAGE      run image-tests.sh's checks on IMAGE for these options (-i -a -s)
        --verbose/--quiet/--log-format  logging on standard error
        --help/--version  this text / the tool's name and version, exit 0
";

/// Base OS of the amphora (`-i`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum BaseOs {
    /// `ubuntu-minimal` (default; `-i ubuntu`).
    UbuntuMinimal,
    /// `fedora`.
    Fedora,
    /// `centos-minimal` (`-i centos`).
    CentosMinimal,
    /// `rhel` (needs `DIB_LOCAL_IMAGE`).
    Rhel,
    /// `rocky-container` (`-i rocky`).
    RockyContainer,
    /// `debian-minimal` (`-i debian`): this tool's addition, the base OS
    /// buildable on these machines.
    DebianMinimal,
}

impl BaseOs {
    /// Parse an `-i` value as the original does (with its aliases), plus
    /// `debian`/`debian-minimal`.
    pub fn parse(value: &str) -> Option<BaseOs> {
        Some(match value {
            "ubuntu" | "ubuntu-minimal" => BaseOs::UbuntuMinimal,
            "fedora" => BaseOs::Fedora,
            "centos" | "centos-minimal" => BaseOs::CentosMinimal,
            "rocky" => BaseOs::RockyContainer,
            "rhel" => BaseOs::Rhel,
            "debian" | "debian-minimal" => BaseOs::DebianMinimal,
            _ => return None,
        })
    }

    /// The diskimage-builder element name.
    pub fn element(self) -> &'static str {
        match self {
            BaseOs::UbuntuMinimal => "ubuntu-minimal",
            BaseOs::Fedora => "fedora",
            BaseOs::CentosMinimal => "centos-minimal",
            BaseOs::Rhel => "rhel",
            BaseOs::RockyContainer => "rocky-container",
            BaseOs::DebianMinimal => "debian-minimal",
        }
    }

    /// `DIB_RELEASE` when `-d` is not given.
    pub fn default_release(self) -> &'static str {
        match self {
            BaseOs::UbuntuMinimal => "noble",
            BaseOs::Rhel => "10",
            BaseOs::CentosMinimal => "10-stream",
            // The original's stale default, kept.
            BaseOs::Fedora => "28",
            BaseOs::RockyContainer => "10",
            BaseOs::DebianMinimal => "bookworm",
        }
    }

    /// The SELinux family (centos-minimal, fedora, rhel, rocky-container).
    pub fn is_red_hat(self) -> bool {
        matches!(
            self,
            BaseOs::CentosMinimal | BaseOs::Fedora | BaseOs::Rhel | BaseOs::RockyContainer
        )
    }

    /// What `virt-inspector` reports as the distro of such an image.
    pub fn inspected_distro(self) -> &'static str {
        match self {
            BaseOs::UbuntuMinimal => "ubuntu",
            BaseOs::Fedora => "fedora",
            BaseOs::CentosMinimal => "centos",
            BaseOs::Rhel => "rhel",
            BaseOs::RockyContainer => "rocky",
            BaseOs::DebianMinimal => "debian",
        }
    }
}

impl fmt::Display for BaseOs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.element())
    }
}

/// Output type (`-t`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum ImageType {
    /// qcow2 (default).
    Qcow2,
    /// tar of the root tree.
    Tar,
    /// vhd.
    Vhd,
    /// raw.
    Raw,
}

impl ImageType {
    /// The `-t` spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ImageType::Qcow2 => "qcow2",
            ImageType::Tar => "tar",
            ImageType::Vhd => "vhd",
            ImageType::Raw => "raw",
        }
    }
}

/// The root password of `-r`: never shown by `Debug`/`Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct RootPassword(String);

impl RootPassword {
    /// Wrap a password.
    pub fn new(value: impl Into<String>) -> Self {
        RootPassword(value.into())
    }
    /// The password itself (only to put it into a child's environment).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for RootPassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RootPassword(***)")
    }
}

/// Every `diskimage-create.sh` option, after the original's validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// `-a` (not passed to the build when absent: the host's arch).
    pub arch: Option<String>,
    /// `-b`: the backend element (`haproxy-octavia`).
    pub backend: String,
    /// `-c`: image cache (default `~/.cache/image-create`).
    pub cache_dir: Option<PathBuf>,
    /// `-d`: `DIB_RELEASE`.
    pub release: Option<String>,
    /// `-e`: full mandatory access control.
    pub full_mac: bool,
    /// `-f`: `--no-tmpfs`.
    pub no_tmpfs: bool,
    /// `-g`: the OpenStack branch of the agent and the upper constraints.
    pub branch: Option<String>,
    /// `-i`.
    pub base_os: BaseOs,
    /// `-k`: `DIB_UBUNTU_KERNEL` (Ubuntu only).
    pub kernel: Option<String>,
    /// `-l`: log file.
    pub logfile: Option<PathBuf>,
    /// `-m`: cpu-pinning.
    pub cpu_pinning: bool,
    /// `-n`: remove sshd.
    pub disable_sshd: bool,
    /// `-o`: output file (made absolute; its directory exists).
    pub output: Option<PathBuf>,
    /// `-p`: amphora agent from distribution packages.
    pub package_install: bool,
    /// `-r`: root password.
    pub root_password: Option<RootPassword>,
    /// `-s`: image size, GB.
    pub image_size: u64,
    /// `-t`.
    pub image_type: ImageType,
    /// `-w`: working directory.
    pub working_dir: Option<PathBuf>,
    /// `-x`: DIB tracing.
    pub trace: bool,
    /// `-y`: FIPS.
    pub fips: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            arch: None,
            backend: "haproxy-octavia".into(),
            cache_dir: None,
            release: None,
            full_mac: false,
            no_tmpfs: false,
            branch: None,
            base_os: BaseOs::UbuntuMinimal,
            kernel: None,
            logfile: None,
            cpu_pinning: false,
            disable_sshd: false,
            output: None,
            package_install: false,
            root_password: None,
            image_size: 2,
            image_type: ImageType::Qcow2,
            working_dir: None,
            trace: false,
            fips: false,
        }
    }
}

/// What the invocation asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// Build the image (the original's only mode).
    Build,
    /// `--print-elements`.
    PrintElements,
    /// `--dry-run`.
    DryRun,
    /// `--test IMAGE`.
    Test(PathBuf),
    /// `--help`: the usage, exit 0.
    Help,
    /// `--version`: name and version, exit 0.
    Version,
}

/// Logging flags (long forms only: `-v` and `-q` belong to the original).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogFlags {
    /// `--verbose` count.
    pub verbose: u8,
    /// `--quiet` count.
    pub quiet: u8,
    /// `--log-format json`.
    pub json: bool,
}

/// A parsed command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    /// The options.
    pub options: Options,
    /// What to do.
    pub mode: Mode,
    /// Logging flags.
    pub log: LogFlags,
}

fn invalid(option: char, message: String) -> Error {
    Error::InvalidValue {
        option: format!("-{option}"),
        message,
    }
}

/// Make `path` absolute as `readlink -f` does for a file whose directory
/// exists; the directory must exist (exit 3 otherwise, as the original).
fn output_path(value: &str, cwd: &Path) -> Result<PathBuf> {
    let p = cwd.join(value);
    let name = p
        .file_name()
        .map(PathBuf::from)
        .ok_or_else(|| invalid('o', format!("Output {value} is not a file name")))?;
    let dir = p.parent().unwrap_or(Path::new("/"));
    match std::fs::canonicalize(dir) {
        Ok(d) if d.is_dir() => {
            let full = d.join(&name);
            // readlink -f follows a final symlink too.
            Ok(std::fs::canonicalize(&full).unwrap_or(full))
        }
        _ => Err(invalid(
            'o',
            format!("Directory {} does not exist", dir.display()),
        )),
    }
}

/// Parse `args` (without the program name) as the original does, plus the
/// long options. `cwd` resolves `-o`.
pub fn parse_args<S: AsRef<str>>(args: &[S], cwd: &Path) -> Result<Invocation> {
    let mut o = Options::default();
    let mut mode = Mode::Build;
    let mut log = LogFlags::default();
    let mut i = 0;
    let args: Vec<&str> = args.iter().map(AsRef::as_ref).collect();
    while i < args.len() {
        let word = args[i];
        i += 1;
        if word == "--" {
            break;
        }
        if let Some(long) = word.strip_prefix("--") {
            let (name, inline) = match long.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (long, None),
            };
            let mut value = |what: &str| -> Result<String> {
                if let Some(v) = inline.clone() {
                    return Ok(v);
                }
                let v = args.get(i).ok_or_else(|| Error::Usage {
                    message: format!("option requires an argument -- {what}"),
                })?;
                i += 1;
                Ok((*v).to_string())
            };
            match name {
                "help" => mode = Mode::Help,
                "version" => mode = Mode::Version,
                "print-elements" => mode = Mode::PrintElements,
                "dry-run" => mode = Mode::DryRun,
                "test" => mode = Mode::Test(PathBuf::from(value("--test")?)),
                "verbose" => log.verbose = log.verbose.saturating_add(1),
                "quiet" => log.quiet = log.quiet.saturating_add(1),
                "log-format" => match value("--log-format")?.as_str() {
                    "text" => log.json = false,
                    "json" => log.json = true,
                    other => {
                        return Err(Error::Usage {
                            message: format!(
                                "invalid value '{other}' for '--log-format' (text or json)"
                            ),
                        })
                    }
                },
                _ => {
                    return Err(Error::Usage {
                        message: format!("illegal option -- {word}"),
                    })
                }
            }
            if matches!(mode, Mode::Help | Mode::Version) {
                break;
            }
            continue;
        }
        let Some(cluster) = word.strip_prefix('-').filter(|c| !c.is_empty()) else {
            // The first non-option word ends the options.
            i -= 1;
            break;
        };
        let chars: Vec<char> = cluster.chars().collect();
        let mut k = 0;
        while k < chars.len() {
            let c = chars[k];
            k += 1;
            let takes_arg = "abcdgiklostrw".contains(c);
            let arg = if takes_arg {
                if k < chars.len() {
                    let rest: String = chars[k..].iter().collect();
                    k = chars.len();
                    rest
                } else if let Some(next) = args.get(i) {
                    i += 1;
                    (*next).to_string()
                } else {
                    return Err(Error::Usage {
                        message: format!("option requires an argument -- {c}"),
                    });
                }
            } else {
                String::new()
            };
            match c {
                'a' => {
                    if !matches!(
                        arg.as_str(),
                        "amd64" | "ppc64le" | "arm64" | "aarch64" | "armhf"
                    ) {
                        return Err(invalid(
                            'a',
                            format!("Unsupported architecture {arg} specified"),
                        ));
                    }
                    o.arch = Some(arg);
                }
                'b' => {
                    if arg != "haproxy" {
                        // The original printed the (empty) previous value here.
                        return Err(invalid(
                            'b',
                            format!("Unsupported backend type {arg} specified"),
                        ));
                    }
                    o.backend = format!("{arg}-octavia");
                }
                'c' => o.cache_dir = Some(PathBuf::from(arg)),
                'd' => o.release = Some(arg),
                'e' => o.full_mac = true,
                'f' => o.no_tmpfs = true,
                'g' => o.branch = Some(arg),
                'h' => {
                    return Err(Error::Usage {
                        message: String::new(),
                    })
                }
                'i' => {
                    o.base_os = BaseOs::parse(&arg).ok_or_else(|| {
                        invalid('i', format!("Unsupported base OS {arg} specified"))
                    })?
                }
                'k' => o.kernel = Some(arg),
                'l' => o.logfile = Some(PathBuf::from(arg)),
                'm' => o.cpu_pinning = true,
                'n' => o.disable_sshd = true,
                'o' => o.output = Some(output_path(&arg, cwd)?),
                'p' => o.package_install = true,
                'r' => o.root_password = Some(RootPassword::new(arg)),
                's' => {
                    if arg.is_empty() || !arg.bytes().all(|b| b.is_ascii_digit()) {
                        return Err(invalid('s', format!("Invalid image size {arg} specified")));
                    }
                    o.image_size = arg
                        .parse()
                        .map_err(|_| invalid('s', format!("Invalid image size {arg} specified")))?;
                }
                't' => {
                    o.image_type = match arg.as_str() {
                        "qcow2" => ImageType::Qcow2,
                        "tar" => ImageType::Tar,
                        "vhd" => ImageType::Vhd,
                        "raw" => ImageType::Raw,
                        _ => {
                            return Err(invalid(
                                't',
                                format!("Unsupported image type {arg} specified"),
                            ))
                        }
                    }
                }
                'v' => {
                    return Err(Error::Version {
                        version: env!("CARGO_PKG_VERSION").into(),
                    })
                }
                'w' => o.working_dir = Some(PathBuf::from(arg)),
                'x' => o.trace = true,
                'y' => o.fips = true,
                other => {
                    return Err(Error::Usage {
                        message: format!("illegal option -- {other}"),
                    })
                }
            }
        }
    }
    if matches!(mode, Mode::Help | Mode::Version) {
        return Ok(Invocation {
            options: o,
            mode,
            log,
        });
    }
    if let Some(extra) = args.get(i).filter(|a| !a.is_empty()) {
        return Err(Error::Usage {
            message: format!("unexpected argument '{extra}'"),
        });
    }
    Ok(Invocation {
        options: o,
        mode,
        log,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn parse(args: &[&str]) -> Result<Invocation> {
        parse_args(args, Path::new("/tmp"))
    }

    #[test]
    fn defaults_are_the_originals() {
        let inv = parse(&[]).unwrap();
        assert_eq!(inv.options, Options::default());
        assert_eq!(inv.mode, Mode::Build);
        assert_eq!(inv.options.image_size, 2);
        assert_eq!(inv.options.backend, "haproxy-octavia");
    }

    #[test]
    fn bundles_attached_values_and_hyphen_values() {
        let inv = parse(&["-mns3", "-r", "-x", "-idebian"]).unwrap();
        assert!(inv.options.cpu_pinning && inv.options.disable_sshd);
        assert_eq!(inv.options.image_size, 3);
        assert_eq!(inv.options.root_password.unwrap().expose(), "-x");
        assert!(!inv.options.trace);
        assert_eq!(inv.options.base_os, BaseOs::DebianMinimal);
    }

    #[test]
    fn order_decides_which_error_wins() {
        assert_eq!(parse(&["-a", "bad", "-h"]).unwrap_err().exit_code(), 3);
        assert_eq!(parse(&["-h", "-a", "bad"]).unwrap_err().exit_code(), 1);
        assert!(matches!(
            parse(&["-v", "-s", "x"]),
            Err(Error::Version { .. })
        ));
    }

    #[test]
    fn aliases_and_repeats() {
        let inv = parse(&["-i", "centos", "-i", "rocky"]).unwrap();
        assert_eq!(inv.options.base_os, BaseOs::RockyContainer);
        assert_eq!(
            parse(&["-i", "ubuntu"]).unwrap().options.base_os,
            BaseOs::UbuntuMinimal
        );
    }

    #[test]
    fn options_end_at_the_first_word() {
        assert!(matches!(
            parse(&["-m", "foo", "-n"]),
            Err(Error::Usage { .. })
        ));
        // An empty word after the options is ignored, as `[ "$1" ]` does.
        assert!(parse(&["-m", ""]).is_ok());
        assert!(parse(&["--", ""]).is_ok());
    }

    #[test]
    fn password_is_not_debug_printed() {
        let inv = parse(&["-r", "s3cret"]).unwrap();
        assert!(!format!("{inv:?}").contains("s3cret"));
    }
}
