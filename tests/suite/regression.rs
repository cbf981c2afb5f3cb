//! One test per bug found, named for what broke.

use physlens::CancelToken;
use physlens::config::Config;
use physlens::run::study::run_study;
use physlens::train::progress::silent;

/// PNG figures went through a temporary name ending in `.tmpPID`, which the
/// image encoder could not map to a format: every report failed to draw.
#[test]
fn png_figures_written_through_a_temporary_name_are_real_pngs_and_leave_no_temporary_file() {
    let config = Config::parse(
        "[data]\nn_train = 2000\nn_valid = 128\n[train]\nsteps = 200\nbatch_size = 64\n[eval]\nn_rollouts = 4\nrollout_steps = 10\n[run]\ncases = [{ name = \"one\", gamma = 0.1 }]\n",
        "regression",
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    run_study(&config, dir.path(), &silent, &CancelToken::new()).unwrap();
    physlens::report::build::build_report(dir.path()).unwrap();
    let figures = dir.path().join("one/figures");
    let mut pngs = 0;
    for entry in std::fs::read_dir(&figures).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        assert!(!name.starts_with('.'), "temporary file left behind: {name}");
        if name.ends_with(".png") {
            let bytes = std::fs::read(&path).unwrap();
            assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "{name} is not a PNG");
            pngs += 1;
        }
    }
    assert!(pngs >= 8, "only {pngs} PNG figures");
}
