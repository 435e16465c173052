use super::super::{password, GlobalArgs};
use anyhow::Result;
use stowage_core::chunker::{ChunkerParams, LargeFileChunking};
use stowage_core::repo::{InitOptions, Repository};

#[derive(clap::Args, Debug)]
pub struct InitArgs {
    /// Smallest chunk in bytes
    #[arg(long, default_value_t = ChunkerParams::default().min_size)]
    pub chunk_min: u32,
    /// Average chunk size in bytes
    #[arg(long, default_value_t = ChunkerParams::default().avg_size)]
    pub chunk_avg: u32,
    /// Largest chunk in bytes
    #[arg(long, default_value_t = ChunkerParams::default().max_size)]
    pub chunk_max: u32,
    /// Files of at least this many bytes (volume images, database files) are cut with the
    /// large-file chunk sizes below
    #[arg(long, default_value_t = LargeFileChunking::default().min_file_size)]
    pub large_file_size: u64,
    /// Smallest chunk of a large file in bytes
    #[arg(long, default_value_t = LargeFileChunking::default().chunker.min_size)]
    pub large_chunk_min: u32,
    /// Average chunk size of a large file in bytes
    #[arg(long, default_value_t = LargeFileChunking::default().chunker.avg_size)]
    pub large_chunk_avg: u32,
    /// Largest chunk of a large file in bytes
    #[arg(long, default_value_t = LargeFileChunking::default().chunker.max_size)]
    pub large_chunk_max: u32,
    /// Cut every file with the general chunk sizes (no large-file chunk sizes)
    #[arg(long, conflicts_with_all = ["large_file_size", "large_chunk_min", "large_chunk_avg", "large_chunk_max"])]
    pub uniform_chunks: bool,
    /// Target pack size in MiB (1-1024)
    #[arg(long, default_value_t = 16)]
    pub pack_size: u32,
    /// zstd level for new data, 0 to disable compression
    #[arg(long, default_value_t = stowage_core::repo::config::DEFAULT_COMPRESSION_LEVEL)]
    pub compression: i32,
    /// Argon2id memory in KiB for the key derivation
    #[arg(long, default_value_t = 64 * 1024)]
    pub kdf_memory: u32,
    /// Argon2id passes
    #[arg(long, default_value_t = 3)]
    pub kdf_iterations: u32,
    /// Create the bucket if it does not exist (S3)
    #[arg(long)]
    pub create_bucket: bool,
}

pub fn run(g: &GlobalArgs, a: InitArgs) -> Result<u8> {
    let backend = super::open_backend(g, a.create_bucket)?;
    let pw = password::get_new(g, "enter a password for the new repository: ")?;
    let opts = InitOptions {
        chunker: ChunkerParams {
            min_size: a.chunk_min,
            avg_size: a.chunk_avg,
            max_size: a.chunk_max,
            normalization: 1,
        },
        large_files: (!a.uniform_chunks).then_some(LargeFileChunking {
            min_file_size: a.large_file_size,
            chunker: ChunkerParams {
                min_size: a.large_chunk_min,
                avg_size: a.large_chunk_avg,
                max_size: a.large_chunk_max,
                normalization: 1,
            },
        }),
        pack_size: a.pack_size.saturating_mul(1 << 20),
        compression_level: a.compression,
        kdf_memory_kib: a.kdf_memory,
        kdf_iterations: a.kdf_iterations,
    };
    let repo = Repository::init(backend.clone(), pw.as_bytes(), &opts)?;
    if g.json {
        super::print_json(&serde_json::json!({
            "repository_id": repo.config().repository_id,
            "location": backend.location(),
        }))?;
    } else {
        println!(
            "created stowage repository {} at {}",
            repo.config().repository_id.short(),
            backend.location()
        );
        println!("Keep the password safe: the data cannot be recovered without it.");
    }
    Ok(0)
}
