//! The `stowage.dev/v1alpha1` custom resources: [`Backup`], [`Restore`],
//! [`BackupStorageLocation`], and the node agents' work items [`VolumeBackup`] and
//! [`VolumeRestore`].
//!
//! Field names and meanings follow Velero's `velero.io/v1` types, so a Velero manifest for the
//! fields we support becomes a Stowage manifest by changing `apiVersion`. Where we add a field
//! (`spec.repositoryPassword`, `spec.cancel`, `status.snapshotId`, ...) it has a name Velero does
//! not use. Durations are Go duration strings (`"720h0m0s"`), read with [`parse_duration`].
//!
//! This module holds types and pure helpers only: no I/O, no client.

mod backup;
mod location;
mod restore;
mod volume;

pub use backup::{
    Backup, BackupPhase, BackupProgress, BackupSpec, BackupStatus, Problem, ProblemKind,
    DEFAULT_TTL,
};
pub use location::{
    config_keys, read_credentials_file, AccessMode, BackupStorageLocation,
    BackupStorageLocationSpec, BackupStorageLocationStatus, CredentialsError, FilesystemLocation,
    LocationPhase, ObjectStorage, Provider, S3Credentials,
};
pub use restore::{
    ExistingResourcePolicy, ResourceModifierRef, Restore, RestoreCounts, RestoreItem, RestorePhase,
    RestoreProblemKind, RestoreProgress, RestoreSpec, RestoreStatus, RestoreStatusSpec,
    RestoreVerification,
};
pub use volume::{
    CsiCondition, ObjectRef, VolumeAction, VolumeBackup, VolumeBackupSpec, VolumeConditions,
    VolumeMethod, VolumeMode, VolumeOutcome, VolumePhase, VolumePolicy, VolumeProgress,
    VolumeRestore, VolumeRestoreSpec, VolumeResult, VolumeWork, VolumeWorkStatus, NODE_LABEL,
    OWNER_UID_LABEL, VOLUME_STATUS_MEMBERS,
};

use std::time::Duration;

/// The API group of every Stowage resource.
pub const GROUP: &str = "stowage.dev";
/// The one served (and stored) version of [`GROUP`].
pub const VERSION: &str = "v1alpha1";
/// `GROUP/VERSION`, the `apiVersion` of every Stowage object.
pub const API_VERSION: &str = "stowage.dev/v1alpha1";

/// Well-known label keys (Velero's `velero.io/...` labels under our group).
pub mod labels {
    /// On any object: `"true"` keeps the object (and, on a namespace, everything in it) out of
    /// every backup. Velero's `velero.io/exclude-from-backup`.
    pub const EXCLUDE_FROM_BACKUP: &str = "stowage.dev/exclude-from-backup";
    /// On objects a backup creates (and on the Backup's own artefacts): the Backup's name.
    pub const BACKUP_NAME: &str = "stowage.dev/backup-name";
    /// On a Backup: the name of the BackupStorageLocation it was written to, set by the
    /// controller so `kubectl get backups -l` can select by location.
    pub const STORAGE_LOCATION: &str = "stowage.dev/storage-location";
}

/// Why a Go duration string was refused by [`parse_duration`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// The string was empty.
    #[error("empty duration")]
    Empty,
    /// The string had a leading `-`: a backup's TTL or a period cannot be negative.
    #[error("negative duration {0:?}")]
    Negative(String),
    /// The string is not Go duration syntax (`1h30m`, `90s`, `1.5h`, `720h0m0s`).
    #[error("invalid duration {0:?}: expected a number and a unit (ns, us, ms, s, m, h), e.g. \"1h30m\"")]
    Invalid(String),
    /// A number was followed by a unit that is not one of ns, us, µs, ms, s, m, h.
    #[error("unknown unit {unit:?} in duration {input:?} (use ns, us, ms, s, m or h)")]
    UnknownUnit {
        /// The unit as written.
        unit: String,
        /// The whole input.
        input: String,
    },
    /// The value does not fit in 64 bits of nanoseconds, Go's limit (about 292 years).
    #[error("duration {0:?} is too long")]
    Overflow(String),
}

/// Parses a Go `time.Duration` string, as Velero's `metav1.Duration` fields hold.
///
/// Accepted: an optional `+`, then one or more `<number><unit>` pairs where the number may have
/// a fraction (`1.5h`, `.5s`, `1.s`) and the unit is `ns`, `us` (or `µs`/`μs`), `ms`, `s`, `m`
/// or `h`; or a bare `0`. Refused: empty strings, negative durations, missing or unknown units,
/// spaces, and values over Go's limit of `i64::MAX` nanoseconds. Fractions below a nanosecond
/// are dropped, as Go does.
pub fn parse_duration(input: &str) -> Result<Duration, DurationError> {
    let invalid = || DurationError::Invalid(input.to_string());
    let mut rest = input;
    if rest.is_empty() {
        return Err(DurationError::Empty);
    }
    if let Some(r) = rest.strip_prefix('-') {
        // "-0" is zero in Go; anything else negative is refused.
        if r == "0" {
            return Ok(Duration::ZERO);
        }
        return Err(DurationError::Negative(input.to_string()));
    }
    if let Some(r) = rest.strip_prefix('+') {
        rest = r;
    }
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    if rest.is_empty() {
        return Err(invalid());
    }
    const LIMIT: u128 = i64::MAX as u128;
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let int_len = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let (int_digits, after) = rest.split_at(int_len);
        let (frac_digits, after) = match after.strip_prefix('.') {
            Some(a) => {
                let len = a.find(|c: char| !c.is_ascii_digit()).unwrap_or(a.len());
                a.split_at(len)
            }
            None => ("", after),
        };
        if int_digits.is_empty() && frac_digits.is_empty() {
            return Err(invalid());
        }
        let unit_len = after
            .find(|c: char| c == '.' || c.is_ascii_digit())
            .unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_len);
        let unit_nanos: u128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60 * 1_000_000_000,
            "h" => 3_600 * 1_000_000_000,
            other if other.is_empty() || !other.chars().all(char::is_alphabetic) => {
                return Err(invalid())
            }
            other => {
                return Err(DurationError::UnknownUnit {
                    unit: other.to_string(),
                    input: input.to_string(),
                })
            }
        };
        let overflow = || DurationError::Overflow(input.to_string());
        let mut whole: u128 = 0;
        for d in int_digits.bytes() {
            whole = whole * 10 + u128::from(d - b'0');
            if whole > LIMIT {
                return Err(overflow());
            }
        }
        let mut nanos = whole.checked_mul(unit_nanos).ok_or_else(overflow)?;
        // The fraction, exact to the nanosecond: digits beyond what a nanosecond can resolve
        // for this unit contribute nothing, so stop before the scale overflows.
        let mut scale: u128 = 1;
        let mut frac: u128 = 0;
        for d in frac_digits.bytes() {
            if scale >= 10u128.pow(19) {
                break;
            }
            frac = frac * 10 + u128::from(d - b'0');
            scale *= 10;
        }
        nanos += frac * unit_nanos / scale;
        total += nanos;
        if total > LIMIT {
            return Err(overflow());
        }
        rest = after;
    }
    let total = u64::try_from(total).map_err(|_| DurationError::Overflow(input.to_string()))?;
    Ok(Duration::from_nanos(total))
}

/// Formats a duration the way Go's `time.Duration.String` does for whole seconds and above
/// (`720h0m0s`, `1h30m0s`, `1m30s`, `0s`), with a fractional second when there is one
/// (`1.5s`). Sub-second durations are written in `ms`, `us` or `ns` like Go does.
pub fn format_duration(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0s".to_string();
    }
    if nanos < 1_000_000_000 {
        let (unit, div) = if nanos < 1_000 {
            ("ns", 1)
        } else if nanos < 1_000_000 {
            ("us", 1_000)
        } else {
            ("ms", 1_000_000)
        };
        return format!("{}{unit}", fraction(nanos, div));
    }
    let secs = d.as_secs();
    let (h, m, s) = (secs / 3600, (secs / 60) % 60, secs % 60);
    let sub = u128::from(d.subsec_nanos());
    let seconds = fraction(u128::from(s) * 1_000_000_000 + sub, 1_000_000_000);
    if h > 0 {
        format!("{h}h{m}m{seconds}s")
    } else if m > 0 {
        format!("{m}m{seconds}s")
    } else {
        format!("{seconds}s")
    }
}

/// `value / div` as a decimal with trailing zeros of the fraction removed.
fn fraction(value: u128, div: u128) -> String {
    let whole = value / div;
    let rem = value % div;
    if rem == 0 {
        return whole.to_string();
    }
    let width = div.ilog10() as usize;
    let digits = format!("{rem:0width$}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn go_durations_that_velero_writes_are_accepted() {
        assert_eq!(parse_duration("720h"), Ok(secs(720 * 3600)));
        assert_eq!(parse_duration("720h0m0s"), Ok(secs(720 * 3600)));
        assert_eq!(parse_duration("1h30m"), Ok(secs(5400)));
        assert_eq!(parse_duration("90s"), Ok(secs(90)));
        assert_eq!(parse_duration("1m"), Ok(secs(60)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("-0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("+5m"), Ok(secs(300)));
    }

    #[test]
    fn fractions_and_small_units_are_exact_to_the_nanosecond() {
        assert_eq!(parse_duration("1.5h"), Ok(secs(5400)));
        assert_eq!(parse_duration(".5s"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1.s"), Ok(secs(1)));
        assert_eq!(parse_duration("100ms"), Ok(Duration::from_millis(100)));
        assert_eq!(parse_duration("3us"), Ok(Duration::from_micros(3)));
        assert_eq!(parse_duration("3µs"), Ok(Duration::from_micros(3)));
        assert_eq!(parse_duration("3μs"), Ok(Duration::from_micros(3)));
        assert_eq!(parse_duration("7ns"), Ok(Duration::from_nanos(7)));
        assert_eq!(
            parse_duration("1.0000000019s"),
            Ok(Duration::from_nanos(1_000_000_001))
        );
        assert_eq!(
            parse_duration("2h45m30.25s"),
            Ok(Duration::from_millis(
                (2 * 3600 + 45 * 60 + 30) * 1000 + 250
            ))
        );
    }

    #[test]
    fn garbage_is_refused_with_a_reason() {
        assert_eq!(parse_duration(""), Err(DurationError::Empty));
        assert!(matches!(
            parse_duration("-1h"),
            Err(DurationError::Negative(_))
        ));
        for bad in [
            "h", "1", "10", "1h30", ".h", ".", "+", "1 h", " 1h", "1h ", "abc", "1.2.3s",
        ] {
            assert!(
                matches!(parse_duration(bad), Err(DurationError::Invalid(_))),
                "{bad:?} gave {:?}",
                parse_duration(bad)
            );
        }
        assert!(
            matches!(parse_duration("3d"), Err(DurationError::UnknownUnit { unit, .. }) if unit == "d")
        );
        assert!(matches!(
            parse_duration("1hour"),
            Err(DurationError::UnknownUnit { .. })
        ));
        assert!(matches!(
            parse_duration("1H"),
            Err(DurationError::UnknownUnit { .. })
        ));
    }

    #[test]
    fn durations_beyond_gos_limit_are_refused() {
        assert!(parse_duration("2562047h").is_ok());
        assert!(matches!(
            parse_duration("2562048h"),
            Err(DurationError::Overflow(_))
        ));
        assert!(matches!(
            parse_duration("99999999999999999999999999999999999999s"),
            Err(DurationError::Overflow(_))
        ));
        assert!(matches!(
            parse_duration("2562047h2562047h"),
            Err(DurationError::Overflow(_))
        ));
    }

    #[test]
    fn formatting_matches_gos_duration_string() {
        assert_eq!(format_duration(secs(720 * 3600)), "720h0m0s");
        assert_eq!(format_duration(secs(5400)), "1h30m0s");
        assert_eq!(format_duration(secs(90)), "1m30s");
        assert_eq!(format_duration(secs(5)), "5s");
        assert_eq!(format_duration(Duration::ZERO), "0s");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(format_duration(Duration::from_millis(250)), "250ms");
        assert_eq!(format_duration(Duration::from_micros(3)), "3us");
        assert_eq!(format_duration(Duration::from_nanos(7)), "7ns");
    }

    #[test]
    fn formatted_durations_parse_back() {
        for d in [
            secs(0),
            secs(1),
            secs(61),
            secs(3601),
            Duration::from_millis(1234),
            Duration::from_nanos(5),
        ] {
            assert_eq!(parse_duration(&format_duration(d)), Ok(d));
        }
    }
}
