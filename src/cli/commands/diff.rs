use super::super::GlobalArgs;
use anyhow::Result;
use std::collections::BTreeMap;
use stowage_core::id::Id;
use stowage_core::repo::tree::{Node, NodeKind};
use stowage_core::repo::IndexedRepo;

#[derive(clap::Args, Debug)]
pub struct DiffArgs {
    /// The older snapshot
    pub first: String,
    /// The newer snapshot
    pub second: String,
}

#[derive(Default, serde::Serialize)]
struct Changes {
    added: Vec<String>,
    removed: Vec<String>,
    modified: Vec<String>,
    metadata: Vec<String>,
}

fn nodes(repo: &IndexedRepo, tree: Option<Id>) -> Result<BTreeMap<Vec<u8>, Node>> {
    Ok(match tree {
        Some(t) => repo
            .read_tree(&t)?
            .nodes
            .into_iter()
            .map(|n| (n.name.0.clone(), n))
            .collect(),
        None => BTreeMap::new(),
    })
}

fn all_paths(
    repo: &IndexedRepo,
    tree: Option<Id>,
    prefix: &str,
    out: &mut Vec<String>,
) -> Result<()> {
    for (_, n) in nodes(repo, tree)? {
        let p = format!("{prefix}/{}", n.name.lossy());
        out.push(if n.kind == NodeKind::Dir {
            format!("{p}/")
        } else {
            p.clone()
        });
        if n.subtree.is_some() {
            all_paths(repo, n.subtree, &p, out)?;
        }
    }
    Ok(())
}

fn diff(
    repo: &IndexedRepo,
    a: Option<Id>,
    b: Option<Id>,
    prefix: &str,
    c: &mut Changes,
) -> Result<()> {
    if a == b {
        return Ok(());
    }
    let (na, nb) = (nodes(repo, a)?, nodes(repo, b)?);
    for (name, x) in &na {
        let p = format!("{prefix}/{}", x.name.lossy());
        match nb.get(name) {
            None => {
                c.removed.push(if x.kind == NodeKind::Dir {
                    format!("{p}/")
                } else {
                    p.clone()
                });
                if x.subtree.is_some() {
                    all_paths(repo, x.subtree, &p, &mut c.removed)?;
                }
            }
            Some(y) => {
                let dirs = x.kind == NodeKind::Dir && y.kind == NodeKind::Dir;
                if dirs {
                    diff(repo, x.subtree, y.subtree, &p, c)?;
                } else if x.kind != y.kind
                    || x.content != y.content
                    || x.target != y.target
                    || x.size != y.size
                {
                    c.modified.push(p);
                } else if x.mode != y.mode
                    || x.uid != y.uid
                    || x.gid != y.gid
                    || x.mtime != y.mtime
                    || x.xattrs != y.xattrs
                {
                    c.metadata.push(p);
                }
            }
        }
    }
    for (name, y) in &nb {
        if !na.contains_key(name) {
            let p = format!("{prefix}/{}", y.name.lossy());
            c.added.push(if y.kind == NodeKind::Dir {
                format!("{p}/")
            } else {
                p.clone()
            });
            if y.subtree.is_some() {
                all_paths(repo, y.subtree, &p, &mut c.added)?;
            }
        }
    }
    Ok(())
}

pub fn run(g: &GlobalArgs, a: DiffArgs) -> Result<u8> {
    let repo = super::open_indexed(g)?;
    let (ia, sa) = repo.repo().find_snapshot(&a.first)?;
    let (ib, sb) = repo.repo().find_snapshot(&a.second)?;
    let mut c = Changes::default();
    diff(&repo, Some(sa.tree), Some(sb.tree), "", &mut c)?;
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
