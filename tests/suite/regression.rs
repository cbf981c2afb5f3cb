//! One test per bug found, named for what broke.

use physlens::config::Config;
use physlens::run::study::run_study;
use physlens::train::progress::silent;
use physlens::{CancelToken, Evaluation, Summary};

/// A study of one small case (200 steps), rollouts of 10 steps.
fn small_config() -> Config {
    Config::parse(
        "[data]\nn_train = 2000\nn_valid = 128\n[train]\nsteps = 200\nbatch_size = 64\n[eval]\nn_rollouts = 4\nrollout_steps = 10\n[run]\ncases = [{ name = \"one\", gamma = 0.1 }]\n",
        "regression",
    )
    .unwrap()
}

/// PNG figures went through a temporary name ending in `.tmpPID`, which the
/// image encoder could not map to a format: every report failed to draw.
#[test]
fn png_figures_written_through_a_temporary_name_are_real_pngs_and_leave_no_temporary_file() {
    let dir = tempfile::tempdir().unwrap();
    run_study(&small_config(), dir.path(), &silent, &CancelToken::new()).unwrap();
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

/// The report read `summary.json`, `eval.json` and `interpret.json` through
/// parallel copies of the writers' types, with serde_json's default float
/// parser: some floats came back a digit off, and a key added to a writer had
/// to be added to its reader. Now one type writes and reads each file, floats
/// round-trip exactly, and a `null` (a non-finite value) reads back as NaN.
#[test]
fn run_records_read_back_exactly_what_they_wrote_and_nulls_as_nan() {
    let dir = tempfile::tempdir().unwrap();
    let summary = run_study(&small_config(), dir.path(), &silent, &CancelToken::new()).unwrap();
    let text = std::fs::read_to_string(dir.path().join("summary.json")).unwrap();
    let back: Summary = serde_json::from_str(&text).unwrap();
    assert_eq!(serde_json::to_string(&back).unwrap(), serde_json::to_string(&summary).unwrap());
    let eval: Evaluation =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("one/eval.json")).unwrap()).unwrap();
    assert_eq!(eval.rollout.steps, 10);
    assert_eq!(eval.valid_mse.to_bits(), summary.cases[0].valid_mse.to_bits());
    let map: physlens::interpret::map::MapReport =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("one/interpret.json")).unwrap()).unwrap();
    assert_eq!(map.effective_map, eval.interpretation.unwrap().effective_map);
    // Against the values in memory, not only against another file read the same way.
    let learned = summary.cases[0].learned.as_ref().unwrap();
    assert_eq!(map.learned.omega0.to_bits(), learned.omega0.to_bits());
    assert_eq!(map.learned.gamma.to_bits(), learned.gamma.to_bits());
    assert_eq!(map.truth.system, physlens::System::new(2.0, 0.1, 0.1));
    let mut value: serde_json::Value = serde_json::from_str(&text).unwrap();
    // A float that serde_json's default (fast) parser reads back one bit off:
    // the old report showed this entry of a learned map as …316.
    let lossy = 0.960_529_132_988_531_7_f64;
    value["cases"][0]["valid_mse"] = lossy.into();
    let back: Summary = serde_json::from_str(&value.to_string()).unwrap();
    assert_eq!(back.cases[0].valid_mse.to_bits(), lossy.to_bits());
    value["cases"][0]["margin"] = serde_json::Value::Null;
    let nulled: Summary = serde_json::from_value(value).unwrap();
    assert!(nulled.cases[0].margin.is_nan());
}
