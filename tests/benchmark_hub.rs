//! The hub data path without a network: with `HF_HUB_OFFLINE=1` the task's parquet export is
//! read from an hf-hub cache laid out as a download would leave it
//! (`datasets--<org>--<name>/refs/refs/convert/parquet` → `snapshots/<commit>/<config>/<split>/0000.parquet`).
//! One test in its own binary, since it sets process environment variables.

use std::path::{Path, PathBuf};

use llm_mem::benchmark::{self, data, tasks};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tasks")
}

#[test]
fn reads_the_parquet_export_from_the_hub_cache() {
    let home = tempfile::tempdir().unwrap();
    let repo = home.path().join("hub/datasets--allenai--ai2_arc");
    let commit = "0123456789abcdef0123456789abcdef01234567";
    std::fs::create_dir_all(repo.join("refs/refs/convert")).unwrap();
    std::fs::write(repo.join("refs/refs/convert/parquet"), commit).unwrap();
    let shard = repo.join(format!("snapshots/{commit}/ARC-Easy/test/0000.parquet"));
    std::fs::create_dir_all(shard.parent().unwrap()).unwrap();
    std::fs::copy(fixtures().join("parquet/arc_easy.parquet"), &shard).unwrap();
    std::env::set_var("HF_HOME", home.path());
    std::env::set_var("HF_HUB_OFFLINE", "1");

    let spec = tasks::lookup("arc_easy").unwrap();
    let from_hub = benchmark::load_task(spec, None, None).unwrap();
    let from_file = benchmark::load_task(spec, Some(&fixtures()), None).unwrap();
    assert_eq!(from_hub.docs, from_file.docs);
    assert_eq!(from_hub.source, "allenai/ai2_arc (ARC-Easy, test)");
    let records = data::read_hub(spec.name, spec.hub().unwrap()).unwrap();
    assert!(records[1].source.ends_with("ARC-Easy/test/0000.parquet") && records[1].line == 2);

    // a task whose dataset is not in the cache: the message says how to run offline
    let piqa = tasks::lookup("piqa").unwrap();
    let err = format!(
        "{:#}",
        benchmark::load_task(piqa, None, None).err().unwrap()
    );
    assert!(
        err.contains("baber/piqa") && err.contains("--data-dir"),
        "{err}"
    );
}
