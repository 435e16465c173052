//! How `stowage k8s` prints: tables with aligned columns (kubectl's three-space gutter), ages
//! the way kubectl writes them (`5m`, `2d`), Velero's timestamps, and objects as the API
//! returns them for `-o json|yaml`.

use anyhow::Result;
use chrono::{DateTime, Utc};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde::Serialize;

/// `-o` of commands that print one object.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ObjectFormat {
    /// The object as JSON
    Json,
    /// The object as YAML
    Yaml,
}

/// `-o` of `get`: the objects, or a wider table.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListFormat {
    /// The objects as JSON (one object by name, else a List)
    Json,
    /// The objects as YAML (one object by name, else a List)
    Yaml,
    /// The table with more columns
    Wide,
}

impl ListFormat {
    /// The object format, unless this is a table.
    pub fn object(self) -> Option<ObjectFormat> {
        match self {
            ListFormat::Json => Some(ObjectFormat::Json),
            ListFormat::Yaml => Some(ObjectFormat::Yaml),
            ListFormat::Wide => None,
        }
    }
}

/// Prints one object (or a List) in the format.
pub fn print_object<T: Serialize>(obj: &T, format: ObjectFormat) -> Result<()> {
    print!("{}", render(obj, format)?);
    Ok(())
}

/// The text [`print_object`] prints.
pub fn render<T: Serialize>(obj: &T, format: ObjectFormat) -> Result<String> {
    Ok(match format {
        ObjectFormat::Json => format!("{}\n", serde_json::to_string_pretty(obj)?),
        // Through a JSON value: sorted keys, as `kubectl get -o yaml` prints.
        ObjectFormat::Yaml => serde_yaml::to_string(&serde_json::to_value(obj)?)?,
    })
}

/// Several objects: by name, one object; else a `v1` `List` as kubectl prints it.
pub fn print_objects<T: Serialize>(items: &[T], single: bool, format: ObjectFormat) -> Result<()> {
    if single && items.len() == 1 {
        return print_object(&items[0], format);
    }
    let list = serde_json::json!({
        "apiVersion": "v1",
        "kind": "List",
        "items": items,
        "metadata": { "resourceVersion": "" },
    });
    print_object(&list, format)
}

/// Rows under a header, each column as wide as its widest cell, three spaces apart.
pub struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column headers.
    pub fn new(headers: &[&str]) -> Table {
        Table {
            rows: vec![headers.iter().map(|h| h.to_string()).collect()],
        }
    }

    /// Adds a row (as many cells as headers).
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// The aligned text, one line per row; the last column is not padded.
    pub fn render(&self) -> String {
        let columns = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let widths: Vec<usize> = (0..columns)
            .map(|c| {
                self.rows
                    .iter()
                    .filter_map(|r| r.get(c))
                    .map(|s| s.chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let mut out = String::new();
        for row in &self.rows {
            let mut line = String::new();
            for (c, cell) in row.iter().enumerate() {
                line.push_str(cell);
                if c + 1 < row.len() {
                    let pad = widths[c] - cell.chars().count() + 3;
                    line.extend(std::iter::repeat_n(' ', pad));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// A Kubernetes timestamp as a chrono time.
pub fn to_chrono(t: &Time) -> DateTime<Utc> {
    DateTime::from_timestamp(t.0.as_second(), t.0.subsec_nanosecond().max(0) as u32)
        .unwrap_or_default()
}

/// Now, as the ages are measured.
pub fn now() -> DateTime<Utc> {
    Utc::now()
}

/// A span of seconds as kubectl's `HumanDuration` writes it: `45s`, `5m30s`, `5m`, `3h20m`,
/// `20h`, `3d4h`, `30d`, `2y10d`, `10y`.
pub fn human_duration(seconds: i64) -> String {
    if seconds < -1 {
        return "<invalid>".into();
    }
    if seconds < 0 {
        return "0s".into();
    }
    if seconds < 120 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        return match seconds % 60 {
            0 => format!("{minutes}m"),
            s => format!("{minutes}m{s}s"),
        };
    }
    if minutes < 180 {
        return format!("{minutes}m");
    }
    let hours = minutes / 60;
    if hours < 8 {
        return match minutes % 60 {
            0 => format!("{hours}h"),
            m => format!("{hours}h{m}m"),
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        return match hours % 24 {
            0 => format!("{}d", hours / 24),
            h => format!("{}d{h}h", hours / 24),
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        let years = hours / 24 / 365;
        return match (hours / 24) % 365 {
            0 => format!("{years}y"),
            d => format!("{years}y{d}d"),
        };
    }
    format!("{}y", hours / 24 / 365)
}

/// How long ago `t` was, kubectl style; `<unknown>` without a time.
pub fn age(t: Option<&Time>, now: DateTime<Utc>) -> String {
    match t {
        Some(t) => human_duration((now - to_chrono(t)).num_seconds()),
        None => "<unknown>".into(),
    }
}

/// Time until `t` (`29d`), or how long ago it passed (`5m ago`), as Velero's EXPIRES column.
pub fn until(t: Option<&Time>, now: DateTime<Utc>) -> String {
    match t {
        Some(t) => {
            let secs = (to_chrono(t) - now).num_seconds();
            match secs >= 0 {
                true => human_duration(secs),
                false => format!("{} ago", human_duration(-secs)),
            }
        }
        None => "n/a".into(),
    }
}

/// A timestamp as Velero prints one: `2024-05-01 10:00:00 +0000 UTC`; `<n/a>` without one.
pub fn timestamp(t: Option<&Time>) -> String {
    match t {
        Some(t) => to_chrono(t)
            .format("%Y-%m-%d %H:%M:%S +0000 UTC")
            .to_string(),
        None => "<n/a>".into(),
    }
}

/// A list joined with commas, or `fallback` when empty.
pub fn list_or(items: &[String], fallback: &str) -> String {
    match items.is_empty() {
        true => fallback.to_string(),
        false => items.join(", "),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_like_kubectls() {
        let cases = [
            (-5, "<invalid>"),
            (-1, "0s"),
            (0, "0s"),
            (45, "45s"),
            (119, "119s"),
            (120, "2m"),
            (330, "5m30s"),
            (600, "10m"),
            (179 * 60, "179m"),
            (3 * 3600 + 20 * 60, "3h20m"),
            (5 * 3600, "5h"),
            (20 * 3600, "20h"),
            (3 * 86400 + 4 * 3600, "3d4h"),
            (2 * 86400, "2d"),
            (30 * 86400, "30d"),
            (365 * 2 * 86400 + 10 * 86400, "2y10d"),
            (365 * 10 * 86400, "10y"),
        ];
        for (secs, want) in cases {
            assert_eq!(human_duration(secs), want, "{secs}s");
        }
    }

    #[test]
    fn table_columns_line_up_and_lines_have_no_trailing_space() {
        let mut t = Table::new(&["NAME", "STATUS", "SELECTOR"]);
        t.row(vec!["a".into(), "Completed".into(), "<none>".into()]);
        t.row(vec!["longer-name".into(), "New".into(), String::new()]);
        assert_eq!(
            t.render(),
            "NAME          STATUS      SELECTOR\n\
             a             Completed   <none>\n\
             longer-name   New\n"
        );
    }

    #[test]
    fn expiry_counts_down_then_says_ago() {
        let now = DateTime::from_timestamp(Utc::now().timestamp(), 0).unwrap();
        let at = |secs: i64| {
            Time(k8s_openapi::jiff::Timestamp::from_second(now.timestamp() + secs).unwrap())
        };
        assert_eq!(until(Some(&at(3 * 86400)), now), "3d");
        assert_eq!(until(Some(&at(-300)), now), "5m ago");
        assert_eq!(until(None, now), "n/a");
        assert_eq!(age(Some(&at(-90)), now), "90s");
    }
}
