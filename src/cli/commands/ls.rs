use super::super::GlobalArgs;
use anyhow::{bail, Result};
use stowage_core::id::Id;
use stowage_core::repo::tree::{Node, NodeKind};
use stowage_core::repo::IndexedRepo;

#[derive(clap::Args, Debug)]
pub struct LsArgs {
    /// Snapshot id, id prefix or "latest"
    pub snapshot: String,
    /// Only list below this path of the snapshot
    pub path: Option<String>,
    /// Show mode, owner, size and time
    #[arg(short, long)]
    pub long: bool,
}

fn kind_char(k: NodeKind) -> char {
    match k {
        NodeKind::Dir => 'd',
        NodeKind::Symlink => 'l',
        NodeKind::Chardev => 'c',
        NodeKind::Blockdev => 'b',
        NodeKind::Fifo => 'p',
        NodeKind::Socket => 's',
        NodeKind::File | NodeKind::Hardlink => '-',
    }
}

fn mode_string(n: &Node) -> String {
    let mut s = String::new();
    s.push(kind_char(n.kind));
    for shift in [6, 3, 0] {
        let bits = (n.mode >> shift) & 7;
        s.push(if bits & 4 != 0 { 'r' } else { '-' });
        s.push(if bits & 2 != 0 { 'w' } else { '-' });
        s.push(if bits & 1 != 0 { 'x' } else { '-' });
    }
    s
}

fn walk(
    repo: &IndexedRepo,
    tree: &Id,
    prefix: &str,
    g: &GlobalArgs,
    long: bool,
    out: &mut Vec<serde_json::Value>,
) -> Result<()> {
    for n in repo.read_tree(tree)?.nodes {
        let path = format!("{prefix}/{}", n.name.lossy());
        if g.json {
            let mut v = serde_json::to_value(&n)?;
            v["path"] = serde_json::json!(path);
            out.push(v);
        } else if long {
            let t = chrono::DateTime::from_timestamp(n.mtime.0, n.mtime.1).unwrap_or_default();
            let link = match (&n.target, &n.link_target) {
                (Some(t), _) => format!(" -> {}", t.lossy()),
                (_, Some(t)) => format!(" => /{}", t.lossy()),
                _ => String::new(),
            };
            println!(
                "{} {:>8} {:>8} {:>12} {} {}{}",
                mode_string(&n),
                n.user.clone().unwrap_or_else(|| n.uid.to_string()),
                n.group.clone().unwrap_or_else(|| n.gid.to_string()),
                n.size,
                t.format("%Y-%m-%d %H:%M:%S"),
                path,
                link
            );
        } else {
            println!("{path}");
        }
        if let Some(sub) = n.subtree {
            walk(repo, &sub, &path, g, long, out)?;
        }
    }
    Ok(())
}

pub fn run(g: &GlobalArgs, a: LsArgs) -> Result<u8> {
    let repo = super::open_indexed(g)?;
    let (_, snap) = repo.repo().find_snapshot(&a.snapshot)?;
    let mut tree = snap.tree;
    let mut prefix = String::new();
    if let Some(p) = &a.path {
        for part in p.split('/').filter(|s| !s.is_empty()) {
            let t = repo.read_tree(&tree)?;
            let Some(n) = t.nodes.into_iter().find(|n| n.name.0 == part.as_bytes()) else {
                bail!("path {p:?} does not exist in the snapshot");
            };
            let Some(sub) = n.subtree else {
                bail!("path {p:?} is not a directory");
            };
            tree = sub;
            prefix = format!("{prefix}/{part}");
        }
    }
    let mut out = Vec::new();
    walk(&repo, &tree, &prefix, g, a.long, &mut out)?;
    if g.json {
        super::print_json(&out)?;
    }
    Ok(0)
}
