//! Verdicts that follow from their numbers (issue 16, item 6): which rule a
//! map runs is one of three calls (`runs`, `cannot_tell_apart`,
//! `none_of_them`), made once and stated the same way in the terminal, the
//! records and the report; every caption about the learned map quotes the
//! record's numbers and claims only what they show.

use std::path::Path;

use physlens::interpret::explain::margin_explanation;
use physlens::interpret::map::{MapReport, analyze_map};
use physlens::physics::System;
use physlens::physics::readout::RuleVerdict;
use physlens::physics::rules::rule_map;
use physlens::util::mat2::{Mat2, add, scale};
use scraper::{Html, Selector};
use serde_json::Value;

use crate::common::{physlens, stderr};
use crate::report::shows;

fn read_map(m: Mat2, system: &System) -> MapReport {
    analyze_map(m, [0.0, 0.0], system, "planted")
}

#[test]
fn a_map_near_one_rule_runs_it() {
    let system = System::new(2.0, 0.1, 0.1);
    let exact = system.step();
    let r = read_map(add(&exact, &[[1e-9, 0.0], [0.0, -1e-9]]), &system);
    assert_eq!((r.rule_verdict, r.nearest_method.as_str()), (RuleVerdict::Runs, "exact"));
    assert!(margin_explanation(&r).statement.starts_with("runs exact"));
}

#[test]
fn a_map_between_two_close_rules_cannot_tell_them_apart() {
    let system = System::new(2.0, 0.0, 0.1);
    let rk4 = rule_map("rk4", &system.oscillator(), 0.1).unwrap();
    let halfway = scale(&add(&system.step(), &rk4), 0.5);
    let r = read_map(halfway, &system);
    assert_eq!(r.rule_verdict, RuleVerdict::CannotTellApart);
    assert!(r.methods[0].distance <= r.rule_separation);
    let e = margin_explanation(&r);
    assert!(e.indistinguishable.contains(&"exact".to_string()) && e.indistinguishable.contains(&"rk4".to_string()));
    assert!(e.statement.starts_with("cannot tell"), "{}", e.statement);
}

#[test]
fn a_map_far_from_every_rule_runs_none_of_them() {
    // The case: a model 0.94 from every rule while the rules are ~0.03 apart.
    let system = System::new(2.0, 0.1, 0.1);
    let r = read_map(add(&system.step(), &[[0.0, 0.66], [-0.66, 0.0]]), &system);
    assert!(r.methods[0].distance > 0.9 && r.rule_separation < 0.05, "{:?} {}", r.methods[0], r.rule_separation);
    assert_eq!(r.rule_verdict, RuleVerdict::NoneOfThem);
    let e = margin_explanation(&r);
    assert!(e.indistinguishable.is_empty());
    assert!(e.statement.starts_with("runs none") && !e.statement.contains("cannot tell"), "{}", e.statement);
}

#[test]
fn verdict_names_are_the_json_names() {
    for v in [RuleVerdict::Runs, RuleVerdict::CannotTellApart, RuleVerdict::NoneOfThem] {
        assert_eq!(serde_json::to_value(v).unwrap(), Value::from(v.name()));
    }
}

/// `physlens run` of a small study trained for `steps`; returns the temp dir.
fn study(steps: u32) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "[data]\nn_train = 2000\nn_valid = 256\n[train]\nsteps = {steps}\nlr = 1e-2\nbatch_size = 64\nlog_every = 100\n\
         [eval]\nrollout_steps = 40\nn_rollouts = 8\n"
    );
    std::fs::write(dir.path().join("c.toml"), config).unwrap();
    let out = physlens(&["run", "--config", "c.toml", "--out", "out", "--quiet"], dir.path());
    assert!(out.status.success(), "{}", stderr(&out));
    dir
}

/// The caption of figure `id` of `case` in report.html.
fn caption(html: &Html, case: &str, id: &str) -> String {
    let figure = Selector::parse(&format!("figure#{case}-{id} figcaption")).unwrap();
    html.select(&figure).next().unwrap_or_else(|| panic!("no {case}-{id}")).text().collect()
}

/// The text between `before` and `after` in `s`.
fn between<'a>(s: &'a str, before: &str, after: &str) -> &'a str {
    let start = s.find(before).unwrap_or_else(|| panic!("`{before}` not in: {s}")) + before.len();
    let len = s[start..].find(after).unwrap_or_else(|| panic!("`{after}` not in: {s}"));
    &s[start..start + len]
}

/// Checks the eigenvalue and rule captions of every case of `run` against
/// its interpret.json; returns the branches they took.
fn captions_follow_numbers(run: &Path) -> Vec<(bool, String)> {
    let html = Html::parse_document(&std::fs::read_to_string(run.join("report.html")).unwrap());
    let summary: Value = serde_json::from_str(&std::fs::read_to_string(run.join("summary.json")).unwrap()).unwrap();
    let mut seen = Vec::new();
    for case in ["undamped", "damped"] {
        let r: MapReport =
            serde_json::from_str(&std::fs::read_to_string(run.join(case).join("interpret.json")).unwrap()).unwrap();
        let row = summary["cases"].as_array().unwrap().iter().find(|c| c["name"] == case).unwrap();
        assert_eq!(row["rule_verdict"], Value::from(r.rule_verdict.name()), "summary.json and interpret.json disagree");
        // Eigenvalues: "sit on" the rings only when they are within 1e-3 of them.
        let gap = r
            .eigenvalues
            .iter()
            .map(|z| r.exact_eigenvalues.iter().map(|e| (e.re - z.re).hypot(e.im - z.im)).fold(f64::INFINITY, f64::min))
            .fold(0.0, f64::max);
        let eig = caption(&html, case, "eigenvalues");
        let on = gap <= 1e-3;
        if on {
            assert!(eig.contains("sit on the exact") && shows(between(&eig, "at most ", " apart"), gap), "{eig}");
        } else {
            assert!(eig.contains("lie off the exact") && shows(between(&eig, "up to ", " away"), gap), "{eig}");
        }
        // Rules: the call quotes d₁, d₂, s and the margin, and follows from them.
        let rules = caption(&html, case, "rule_distances");
        let (d1, d2, s) = (r.methods[0].distance, r.methods[1].distance, r.rule_separation);
        match r.rule_verdict {
            RuleVerdict::Runs => {
                assert!(d2 >= 10.0 * d1);
                assert!(shows(between(&rules, "runner-up ", "× farther").rsplit(' ').next().unwrap(), r.margin));
            }
            RuleVerdict::CannotTellApart => {
                assert!(d2 < 10.0 * d1 && d1 <= s);
                assert!(shows(between(&rules, "lie only ", " apart"), s), "{rules}");
                assert!(shows(between(&rules, "the model is ", " from"), d1), "{rules}");
                assert!(rules.contains("cannot be said to run one rather than the other"));
            }
            RuleVerdict::NoneOfThem => {
                assert!(d2 < 10.0 * d1 && d1 > s);
                assert!(shows(between(&rules, "is ", " away"), d1), "{rules}");
                assert!(shows(between(&rules, "farther than the ", " between"), s), "{rules}");
                assert!(rules.contains("runs none of them") && !rules.contains("cannot be said"), "{rules}");
            }
        }
        seen.push((on, r.rule_verdict.name().to_string()));
    }
    seen
}

#[test]
fn report_captions_claim_only_what_their_numbers_show() {
    // 100 steps leave the model far from every rule; 600 bring it within ~1e-6 of exact, among rk4.
    let (short, trained) = (study(100), study(600));
    let short = captions_follow_numbers(&short.path().join("out"));
    let trained = captions_follow_numbers(&trained.path().join("out"));
    assert!(short.iter().all(|(on, v)| !on && v == "none_of_them"), "{short:?}");
    assert!(trained.iter().all(|(on, v)| *on && v != "none_of_them"), "{trained:?}");
}

#[test]
fn a_short_run_gives_no_confident_verdict_anywhere() {
    let dir = study(100);
    let out = physlens(&["interpret", "--model", "out/damped/model.safetensors"], dir.path());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("verdict: runs none of the candidate rules"), "{text}");
    let out = physlens(&["eval", "--run", "out/damped"], dir.path());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("verdict: runs none"), "{text}");
    // eval.json: ω's readability and the rule's are two keys that cannot be confused.
    let eval: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("out/damped/eval.json")).unwrap()).unwrap();
    let r = &eval["interpretation"];
    assert!(r["learned"]["omega_identifiable"].is_boolean() && r["learned"].get("identifiable").is_none());
    assert_eq!((&r["identifiable"], &r["rule_verdict"]), (&Value::from(false), &Value::from("none_of_them")));
}
