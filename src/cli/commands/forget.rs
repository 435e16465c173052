use super::super::GlobalArgs;
use anyhow::{bail, Result};
use stowage_core::backend::FileKind;
use stowage_core::maintenance::forget::{apply, parse_duration, GroupBy, RetentionPolicy};

#[derive(clap::Args, Debug)]
pub struct ForgetArgs {
    /// Snapshots to forget explicitly (instead of a policy)
    pub snapshots: Vec<String>,
    #[arg(long, default_value_t = 0)]
    pub keep_last: usize,
    #[arg(long, default_value_t = 0)]
    pub keep_hourly: usize,
    #[arg(long, default_value_t = 0)]
    pub keep_daily: usize,
    #[arg(long, default_value_t = 0)]
    pub keep_weekly: usize,
    #[arg(long, default_value_t = 0)]
    pub keep_monthly: usize,
    #[arg(long, default_value_t = 0)]
    pub keep_yearly: usize,
    /// Keep snapshots younger than this, relative to the newest of the group (e.g. 30d, 1y6m)
    #[arg(long)]
    pub keep_within: Option<String>,
    /// Keep snapshots with this tag (repeatable)
    #[arg(long = "keep-tag")]
    pub keep_tags: Vec<String>,
    /// Group snapshots by a comma-separated subset of host,paths,tags
    #[arg(long, default_value = "host,paths")]
    pub group_by: String,
    /// Only consider snapshots of this host
    #[arg(long)]
    pub host: Option<String>,
    /// Only consider snapshots with this tag (repeatable: all must match)
    #[arg(long = "tag")]
    pub tags: Vec<String>,
    /// Show what would be kept and removed, and why, without removing anything
    #[arg(long, short = 'n')]
    pub dry_run: bool,
    /// Run prune afterwards
    #[arg(long)]
    pub prune: bool,
    #[command(flatten)]
    pub prune_args: super::prune::PruneArgs,
}

pub fn run(g: &GlobalArgs, a: ForgetArgs) -> Result<u8> {
    let repo = super::open(g)?;
    let mut to_remove = Vec::new();
    let mut rows = Vec::new();
    if !a.snapshots.is_empty() {
        for s in &a.snapshots {
            let (id, _) = repo.find_snapshot(s)?;
            to_remove.push(id);
        }
    } else {
        let policy = RetentionPolicy {
            keep_last: a.keep_last,
            keep_hourly: a.keep_hourly,
            keep_daily: a.keep_daily,
            keep_weekly: a.keep_weekly,
            keep_monthly: a.keep_monthly,
            keep_yearly: a.keep_yearly,
            keep_within: a.keep_within.as_deref().map(parse_duration).transpose()?,
            keep_tags: a.keep_tags.clone(),
        };
        if policy.is_empty() {
            bail!("no retention policy given (e.g. --keep-daily 7) and no snapshot named: nothing to forget");
        }
        let group_by: GroupBy = a.group_by.parse()?;
        let snaps: Vec<_> = repo
            .list_snapshots()?
            .into_iter()
            .filter(|(_, s)| a.host.as_ref().is_none_or(|h| &s.hostname == h))
            .filter(|(_, s)| a.tags.iter().all(|t| s.tags.contains(t)))
            .collect();
        let decisions = apply(snaps, &policy, group_by);
        let mut group = String::new();
        for d in &decisions {
            if !g.json && d.group != group {
                group = d.group.clone();
                println!("snapshots of {group}:");
            }
            if !g.json {
                println!(
                    "  {} {} {:<6} {}",
                    d.id.short(),
                    d.snapshot
                        .time
                        .with_timezone(&chrono::Local)
                        .format("%Y-%m-%d %H:%M:%S"),
                    if d.keep() { "keep" } else { "remove" },
                    d.reasons.join(", ")
                );
            }
            rows.push(serde_json::json!({
                "id": d.id, "time": d.snapshot.time, "group": d.group,
                "keep": d.keep(), "reasons": d.reasons,
            }));
            if !d.keep() {
                to_remove.push(d.id);
            }
        }
    }
    if !a.dry_run {
        for id in &to_remove {
            repo.backend().remove(FileKind::Snapshot, &id.to_hex())?;
        }
    }
    if g.json {
        super::print_json(&serde_json::json!({
            "dry_run": a.dry_run, "removed": to_remove, "decisions": rows,
        }))?;
    } else {
        println!(
            "{} {} snapshots",
            if a.dry_run { "would remove" } else { "removed" },
            to_remove.len()
        );
    }
    if a.prune && !a.dry_run {
        return super::prune::run_on(g, &repo, &a.prune_args);
    }
    Ok(0)
}
