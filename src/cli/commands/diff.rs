use super::super::GlobalArgs;
use anyhow::Result;
use stowage_core::inspect;

#[derive(clap::Args, Debug)]
pub struct DiffArgs {
    /// The older snapshot
    pub first: String,
    /// The newer snapshot
    pub second: String,
}

pub fn run(g: &GlobalArgs, a: DiffArgs) -> Result<u8> {
    let repo = super::open_indexed(g)?;
    let (ia, sa) = repo.repo().find_snapshot(&a.first)?;
    let (ib, sb) = repo.repo().find_snapshot(&a.second)?;
    let c = inspect::diff(&repo, &sa.tree, &sb.tree)?;
    if g.json {
        return super::print_json(&c).map(|_| 0);
    }
    println!("comparing snapshot {} to {}:", ia.short(), ib.short());
    let mut lines: Vec<(String, char)> = Vec::new();
    lines.extend(c.added.iter().map(|p| (p.clone(), '+')));
    lines.extend(c.removed.iter().map(|p| (p.clone(), '-')));
    lines.extend(c.modified.iter().map(|p| (p.clone(), 'M')));
    lines.extend(c.metadata.iter().map(|p| (p.clone(), 'U')));
    lines.sort();
    for (p, k) in &lines {
        println!("{k}    {p}");
    }
    println!(
        "{} added, {} removed, {} modified, {} with changed metadata",
        c.added.len(),
        c.removed.len(),
        c.modified.len(),
        c.metadata.len()
    );
    Ok(0)
}
