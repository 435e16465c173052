use super::super::GlobalArgs;
use anyhow::Result;
use stowage_core::inspect;
use stowage_core::repo::tree::{Node, NodeKind};

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

/// Prints one entry (or, with --json, collects it).
fn show(
    path: &str,
    n: &Node,
    g: &GlobalArgs,
    long: bool,
    out: &mut Vec<serde_json::Value>,
) -> Result<()> {
    if g.json {
        let mut v = serde_json::to_value(n)?;
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
            mode_string(n),
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
    Ok(())
}

pub fn run(g: &GlobalArgs, a: LsArgs) -> Result<u8> {
    let repo = super::open_indexed(g)?;
    let (_, snap) = repo.repo().find_snapshot(&a.snapshot)?;
    let sub = a.path.as_deref().unwrap_or("");
    let tree = inspect::find_dir(&repo, &snap.tree, sub)?;
    let base: Vec<u8> = sub
        .split('/')
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join("/")
        .into_bytes();
    let mut out = Vec::new();
    inspect::list(&repo, &tree, &base, |p, n| {
        show(
            &format!("/{}", String::from_utf8_lossy(p)),
            n,
            g,
            a.long,
            &mut out,
        )
    })?;
    if g.json {
        super::print_json(&out)?;
    }
    Ok(0)
}
