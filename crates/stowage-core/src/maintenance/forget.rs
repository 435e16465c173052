//! `forget`: choose which snapshots to keep by a retention policy, and delete the others'
//! snapshot files. (The data they alone used is freed by prune.)

use crate::error::InvalidInput;
use crate::id::Id;
use crate::repo::snapshot::Snapshot;
use chrono::{DateTime, Datelike, Duration, Local};
use std::collections::BTreeMap;

/// How many snapshots to keep per time bucket, and which to keep regardless.
#[derive(Clone, Debug, Default)]
pub struct RetentionPolicy {
    /// Keep the newest this many snapshots.
    pub keep_last: usize,
    /// Keep the newest snapshot of each of the last this many hours.
    pub keep_hourly: usize,
    /// Keep the newest snapshot of each of the last this many days.
    pub keep_daily: usize,
    /// Keep the newest snapshot of each of the last this many weeks.
    pub keep_weekly: usize,
    /// Keep the newest snapshot of each of the last this many months.
    pub keep_monthly: usize,
    /// Keep the newest snapshot of each of the last this many years.
    pub keep_yearly: usize,
    /// Keep every snapshot this much younger than the group's newest.
    pub keep_within: Option<Duration>,
    /// Keep every snapshot with one of these tags.
    pub keep_tags: Vec<String>,
}

impl RetentionPolicy {
    /// Whether the policy names nothing to keep (applying it would forget every snapshot).
    pub fn is_empty(&self) -> bool {
        self.keep_last == 0
            && self.keep_hourly == 0
            && self.keep_daily == 0
            && self.keep_weekly == 0
            && self.keep_monthly == 0
            && self.keep_yearly == 0
            && self.keep_within.is_none()
            && self.keep_tags.is_empty()
    }
}

/// What to group snapshots by before applying the policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GroupBy {
    /// Group by host name.
    pub host: bool,
    /// Group by the backed-up paths.
    pub paths: bool,
    /// Group by tags.
    pub tags: bool,
}

impl Default for GroupBy {
    fn default() -> Self {
        GroupBy {
            host: true,
            paths: true,
            tags: false,
        }
    }
}

impl std::str::FromStr for GroupBy {
    type Err = InvalidInput;
    /// A comma-separated subset of `host`, `paths`, `tags`; empty means one group.
    fn from_str(s: &str) -> Result<Self, InvalidInput> {
        let mut g = GroupBy {
            host: false,
            paths: false,
            tags: false,
        };
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part {
                "host" => g.host = true,
                "paths" => g.paths = true,
                "tags" => g.tags = true,
                other => {
                    return Err(InvalidInput {
                        what: "grouping",
                        input: other.to_string(),
                        expected: "use host, paths and/or tags",
                        kind: "input.group_by",
                    })
                }
            }
        }
        Ok(g)
    }
}

/// The decision for one snapshot.
#[derive(Clone, Debug)]
pub struct Decision {
    /// The snapshot's id.
    pub id: Id,
    /// The snapshot.
    pub snapshot: Snapshot,
    /// The group it was judged in, as shown to a user.
    pub group: String,
    /// Why it is kept; empty means it is forgotten.
    pub reasons: Vec<String>,
}

impl Decision {
    /// Whether the snapshot is kept.
    pub fn keep(&self) -> bool {
        !self.reasons.is_empty()
    }
}

/// Parses a duration such as `90d`, `1y6m`, `2w`, `36h` (y = 365 days, m = 30 days).
pub fn parse_duration(s: &str) -> Result<Duration, InvalidInput> {
    let bad = || InvalidInput {
        what: "duration",
        input: s.to_string(),
        expected: "use e.g. 7d, 2w, 6m, 1y2m, 36h",
        kind: "input.duration",
    };
    let mut total = Duration::zero();
    let mut num = String::new();
    for c in s.chars() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let n: i64 = num.parse().map_err(|_| bad())?;
        num.clear();
        total += match c {
            'y' => Duration::days(365 * n),
            'm' => Duration::days(30 * n),
            'w' => Duration::weeks(n),
            'd' => Duration::days(n),
            'h' => Duration::hours(n),
            _ => return Err(bad()),
        };
    }
    if !num.is_empty() || total.is_zero() {
        return Err(bad());
    }
    Ok(total)
}

fn group_key(s: &Snapshot, by: GroupBy) -> String {
    let mut parts = Vec::new();
    if by.host {
        parts.push(format!("host {}", s.hostname));
    }
    if by.paths {
        parts.push(format!("paths [{}]", s.paths.join(", ")));
    }
    if by.tags {
        let mut t = s.tags.clone();
        t.sort();
        parts.push(format!("tags [{}]", t.join(", ")));
    }
    parts.join(", ")
}

/// Applies the policy to each group; returns one decision per snapshot, newest first within
/// each group.
pub fn apply(
    snapshots: Vec<(Id, Snapshot)>,
    policy: &RetentionPolicy,
    by: GroupBy,
) -> Vec<Decision> {
    let mut groups: BTreeMap<String, Vec<(Id, Snapshot)>> = BTreeMap::new();
    for (id, s) in snapshots {
        groups.entry(group_key(&s, by)).or_default().push((id, s));
    }
    let mut out = Vec::new();
    for (group, mut list) in groups {
        list.sort_by(|a, b| b.1.time.cmp(&a.1.time).then(b.0.cmp(&a.0)));
        let newest = list.first().map(|(_, s)| s.time);
        type Bucket = fn(DateTime<Local>) -> String;
        let rules: [(&str, usize, Bucket); 5] = [
            ("hourly", policy.keep_hourly, |t| {
                t.format("%Y-%m-%d %H").to_string()
            }),
            ("daily", policy.keep_daily, |t| {
                t.format("%Y-%m-%d").to_string()
            }),
            ("weekly", policy.keep_weekly, |t| {
                let w = t.iso_week();
                format!("{}-W{:02}", w.year(), w.week())
            }),
            ("monthly", policy.keep_monthly, |t| {
                format!("{}-{:02}", t.year(), t.month())
            }),
            ("yearly", policy.keep_yearly, |t| t.year().to_string()),
        ];
        let mut seen: Vec<(usize, Option<String>)> = rules.iter().map(|_| (0, None)).collect();
        for (i, (id, s)) in list.into_iter().enumerate() {
            let mut reasons = Vec::new();
            if i < policy.keep_last {
                reasons.push(format!("last {}", policy.keep_last));
            }
            let local = s.time.with_timezone(&Local);
            for (r, (name, n, bucket)) in rules.iter().enumerate() {
                let b = bucket(local);
                let (count, last) = &mut seen[r];
                if *count < *n && last.as_deref() != Some(b.as_str()) {
                    *count += 1;
                    *last = Some(b);
                    reasons.push(format!("{name} {n}"));
                }
            }
            if let (Some(within), Some(newest)) = (policy.keep_within, newest) {
                if newest.signed_duration_since(s.time) <= within {
                    reasons.push("within".into());
                }
            }
            if let Some(t) = policy.keep_tags.iter().find(|t| s.tags.contains(t)) {
                reasons.push(format!("tag {t}"));
            }
            out.push(Decision {
                id,
                snapshot: s,
                group: group.clone(),
                reasons,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::snapshot::SnapshotSummary;
    use chrono::{TimeZone, Timelike, Utc};

    fn snap(time: DateTime<Utc>, tags: &[&str]) -> (Id, Snapshot) {
        (
            Id::random(),
            Snapshot {
                time,
                hostname: "h".into(),
                username: "u".into(),
                paths: vec!["/data".into()],
                tags: tags.iter().map(|t| t.to_string()).collect(),
                tree: Id::random(),
                parent: None,
                excludes: vec![],
                incomplete: false,
                program: "test".into(),
                summary: SnapshotSummary::default(),
            },
        )
    }

    /// Two snapshots a day for 60 days, at 01:00 and 13:00 local time.
    fn daily_series() -> Vec<(Id, Snapshot)> {
        let start = Local.with_ymd_and_hms(2026, 1, 1, 1, 0, 0).unwrap();
        (0..120)
            .map(|i| snap((start + Duration::hours(12 * i)).with_timezone(&Utc), &[]))
            .collect()
    }

    fn kept(d: &[Decision]) -> usize {
        d.iter().filter(|d| d.keep()).count()
    }

    #[test]
    fn keep_last_keeps_the_newest() {
        let d = apply(
            daily_series(),
            &RetentionPolicy {
                keep_last: 3,
                ..Default::default()
            },
            GroupBy::default(),
        );
        assert_eq!(kept(&d), 3);
        assert!(d[..3].iter().all(Decision::keep));
    }

    #[test]
    fn keep_daily_keeps_one_per_day() {
        let d = apply(
            daily_series(),
            &RetentionPolicy {
                keep_daily: 7,
                ..Default::default()
            },
            GroupBy::default(),
        );
        assert_eq!(kept(&d), 7);
        // The newest of each day: the 13:00 snapshot.
        assert!(d.iter().filter(|d| d.keep()).all(|d| d
            .snapshot
            .time
            .with_timezone(&Local)
            .hour()
            == 13));
    }

    #[test]
    fn policies_combine_as_a_union() {
        let p = RetentionPolicy {
            keep_last: 2,
            keep_weekly: 4,
            keep_monthly: 2,
            ..Default::default()
        };
        let d = apply(daily_series(), &p, GroupBy::default());
        // last 2 overlap with the newest weekly and monthly.
        assert!(kept(&d) >= 4 && kept(&d) <= 8, "{}", kept(&d));
    }

    #[test]
    fn keep_within_is_relative_to_the_newest() {
        let d = apply(
            daily_series(),
            &RetentionPolicy {
                keep_within: Some(Duration::days(2)),
                ..Default::default()
            },
            GroupBy::default(),
        );
        assert_eq!(kept(&d), 5);
    }

    #[test]
    fn keep_tag_keeps_tagged_snapshots() {
        let mut s = daily_series();
        s[10].1.tags.push("release".into());
        let d = apply(
            s,
            &RetentionPolicy {
                keep_tags: vec!["release".into()],
                ..Default::default()
            },
            GroupBy::default(),
        );
        assert_eq!(kept(&d), 1);
    }

    #[test]
    fn groups_are_separate() {
        let mut s = daily_series();
        for (_, x) in s.iter_mut().take(10) {
            x.hostname = "other".into();
        }
        let d = apply(
            s,
            &RetentionPolicy {
                keep_last: 1,
                ..Default::default()
            },
            GroupBy::default(),
        );
        assert_eq!(kept(&d), 2);
        let d = apply(
            daily_series(),
            &RetentionPolicy {
                keep_last: 1,
                ..Default::default()
            },
            "".parse().unwrap(),
        );
        assert_eq!(kept(&d), 1);
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("7d").unwrap(), Duration::days(7));
        assert_eq!(parse_duration("1y2m").unwrap(), Duration::days(425));
        assert_eq!(parse_duration("36h").unwrap(), Duration::hours(36));
        assert!(parse_duration("7").is_err());
        assert!(parse_duration("x").is_err());
        assert!(parse_duration("").is_err());
    }
}
