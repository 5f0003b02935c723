//! `image-update`: the schedule of himlarcli's `bin/image_update.sh`, the
//! image sets updated in order with a pause after each.

use std::time::Duration;

use crate::error::{Error, Result};

/// One set of the schedule and the pause after it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Step {
    /// Image set file name (`default.yaml`) or path.
    pub file: String,
    /// Pause after this set (none after the last one).
    pub pause: Duration,
}

/// The original's schedule: `default.yaml`, `uio.yaml`, `uib.yaml` 60 s
/// apart, `vgpu.yaml` then 300 s, then `windows.yaml`.
pub fn default_schedule() -> Vec<Step> {
    [
        ("default.yaml", 60),
        ("uio.yaml", 60),
        ("uib.yaml", 60),
        ("vgpu.yaml", 300),
        ("windows.yaml", 0),
    ]
    .into_iter()
    .map(|(f, s)| Step {
        file: f.into(),
        pause: Duration::from_secs(s),
    })
    .collect()
}

/// Parse `FILE[:SECONDS]`; without seconds the pause is `default_pause`.
pub fn parse_step(text: &str, default_pause: Duration) -> Result<Step> {
    let (file, pause) = match text.rsplit_once(':') {
        Some((f, s)) if !f.is_empty() => {
            let secs: u64 = s.parse().map_err(|_| {
                Error::Refused(format!(
                    "--set {text}: the pause after ':' must be whole seconds"
                ))
            })?;
            (f, Duration::from_secs(secs))
        }
        _ => (text, default_pause),
    };
    if file.is_empty() {
        return Err(Error::Refused("--set: empty file name".into()));
    }
    Ok(Step {
        file: file.to_owned(),
        pause,
    })
}

/// Apply `scale` to every pause (`--pause-scale 0` runs without pauses).
pub fn scale(steps: &mut [Step], scale: f64) {
    for s in steps {
        s.pause = s.pause.mul_f64(scale.max(0.0));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_parse_and_scale() {
        let d = Duration::from_secs(60);
        assert_eq!(
            parse_step("vgpu.yaml:300", d).unwrap(),
            Step {
                file: "vgpu.yaml".into(),
                pause: Duration::from_secs(300)
            }
        );
        assert_eq!(parse_step("uio.yaml", d).unwrap().pause, d);
        assert!(parse_step("x.yaml:soon", d).is_err());
        let mut s = default_schedule();
        assert_eq!(s.len(), 5);
        assert_eq!(s[3].pause, Duration::from_secs(300));
        scale(&mut s, 0.0);
        assert!(s.iter().all(|x| x.pause.is_zero()));
    }
}
