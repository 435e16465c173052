use super::super::GlobalArgs;
use anyhow::{bail, Context, Result};
use stowage_core::backend::FileKind;
use stowage_core::check::read_pack_header;
use stowage_core::id::{BlobType, Id};
use stowage_core::repo::keyfile::KeyFile;
use stowage_core::repo::tree::Tree;

#[derive(clap::Args, Debug)]
pub struct CatArgs {
    /// config, snapshot, tree, index, key, pack or blob
    pub kind: String,
    /// Object id (snapshots also take a prefix or "latest")
    pub id: Option<String>,
}

pub fn run(g: &GlobalArgs, a: CatArgs) -> Result<u8> {
    let need_id = || -> Result<&str> {
        a.id.as_deref()
            .with_context(|| format!("`cat {}` needs an id", a.kind))
    };
    let parse = |s: &str| -> Result<Id> { Ok(s.parse::<Id>()?) };
    match a.kind.as_str() {
        "config" => {
            let repo = super::open(g)?;
            super::print_json(repo.config())?;
        }
        "snapshot" => {
            let repo = super::open(g)?;
            let (id, s) = repo.find_snapshot(need_id()?)?;
            let mut v = serde_json::to_value(&s)?;
            v["id"] = serde_json::json!(id);
            super::print_json(&v)?;
        }
        "tree" => {
            let repo = super::open_indexed(g)?;
            let spec = need_id()?;
            // A snapshot reference prints its root tree.
            let id = match parse(spec) {
                Ok(id) if repo.index().contains(BlobType::Tree, &id) => id,
                _ => repo.repo().find_snapshot(spec)?.1.tree,
            };
            let t: Tree = repo.read_tree(&id)?;
            super::print_json(&t)?;
        }
        "blob" => {
            let repo = super::open_indexed(g)?;
            let id = parse(need_id()?)?;
            let t = if repo.index().contains(BlobType::Data, &id) {
                BlobType::Data
            } else {
                BlobType::Tree
            };
            let data = repo.read_blob(t, &id)?;
            use std::io::Write;
            std::io::stdout().write_all(&data)?;
        }
        "index" => {
            let repo = super::open(g)?;
            let name = need_id()?;
            let idx = repo.read_index_file(name)?;
            let packs: Vec<_> = idx
                .packs
                .iter()
                .map(|p| {
                    serde_json::json!({
                        "id": p.id,
                        "blobs": p.blobs.iter().map(|b| serde_json::json!({
                            "id": b.id, "type": b.blob_type, "offset": b.offset,
                            "length": b.length, "raw_length": b.raw_length,
                        })).collect::<Vec<_>>(),
                    })
                })
                .collect();
            super::print_json(&serde_json::json!({"supersedes": idx.supersedes, "packs": packs}))?;
        }
        "pack" => {
            let repo = super::open(g)?;
            let name = need_id()?;
            let size = repo.backend().size(FileKind::Pack, name)?;
            let blobs = read_pack_header(&repo, name, size)?;
            let v: Vec<_> = blobs
                .iter()
                .map(|b| {
                    serde_json::json!({
                        "id": b.id, "type": b.blob_type, "offset": b.offset,
                        "length": b.length, "raw_length": b.raw_length,
                    })
                })
                .collect();
            super::print_json(&v)?;
        }
        "key" => {
            let backend = super::backend(g)?;
            let name = need_id()?;
            let bytes = backend.read(FileKind::Key, name)?;
            let k = KeyFile::decode(name, &bytes)?;
            super::print_json(&k)?;
        }
        other => {
            bail!("cannot cat {other:?}: use config, snapshot, tree, index, key, pack or blob")
        }
    }
    Ok(0)
}
