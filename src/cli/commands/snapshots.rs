use super::super::GlobalArgs;
use anyhow::Result;
use stowage_core::util::human_bytes;

#[derive(clap::Args, Debug)]
pub struct SnapshotsArgs {
    /// Only snapshots of this host
    #[arg(long)]
    pub host: Option<String>,
    /// Only snapshots with this tag (repeatable: all must match)
    #[arg(long = "tag")]
    pub tags: Vec<String>,
    /// Only snapshots that include this path
    #[arg(long)]
    pub path: Option<String>,
}

pub fn run(g: &GlobalArgs, a: SnapshotsArgs) -> Result<u8> {
    let repo = super::open(g)?;
    let all = super::index_source(g).snapshots(&repo)?;
    let list: Vec<_> = all
        .into_iter()
        .filter(|(_, s)| a.host.as_ref().is_none_or(|h| &s.hostname == h))
        .filter(|(_, s)| a.tags.iter().all(|t| s.tags.contains(t)))
        .filter(|(_, s)| a.path.as_ref().is_none_or(|p| s.paths.contains(p)))
        .collect();
    if g.json {
        let v: Vec<_> = list
            .iter()
            .map(|(id, s)| {
                let mut j = serde_json::to_value(s).unwrap();
                j["id"] = serde_json::json!(id);
                j["short_id"] = serde_json::json!(id.short());
                j
            })
            .collect();
        return super::print_json(&v).map(|_| 0);
    }
    println!(
        "{:<10} {:<20} {:<16} {:<20} {:>12}  paths",
        "id", "time", "host", "tags", "size"
    );
    for (id, s) in &list {
        println!(
            "{:<10} {:<20} {:<16} {:<20} {:>12}  {}{}",
            id.short(),
            s.time
                .with_timezone(&chrono::Local)
                .format("%Y-%m-%d %H:%M:%S"),
            s.hostname,
            s.tags.join(","),
            human_bytes(s.summary.total_bytes),
            s.paths.join(" "),
            if s.incomplete { " (incomplete)" } else { "" }
        );
    }
    println!("{} snapshots", list.len());
    Ok(0)
}
