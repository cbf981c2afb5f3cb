//! The readable summary of `physlens interpret`: one checkpoint's report,
//! or several with their truncation order, as text for a terminal.
//!
//! Every 2×2 map printed is in the COLUMN convention, `s' = M s + c`.

use std::fmt::Write as _;

use crate::interpret::explain::margin_explanation;
use crate::interpret::full::{FullReport, MultiReport};
use crate::util::mat2::{Complex, Mat2};

/// `[[a, b], [c, d]]` with 9 significant digits.
fn fmt_mat(m: &Mat2) -> String {
    format!("[[{:+.9}, {:+.9}], [{:+.9}, {:+.9}]]", m[0][0], m[0][1], m[1][0], m[1][1])
}

/// `re ± im i`.
fn fmt_eig(e: &[Complex; 2]) -> String {
    if e[0].im != 0.0 {
        format!("{:.9} ± {:.9}i (|λ| = {:.9}, arg = {:.9})", e[0].re, e[0].im.abs(), e[0].abs(), e[0].arg().abs())
    } else {
        format!("{:.9}, {:.9} (real)", e[0].re, e[1].re)
    }
}

/// `x` to nine decimals, or `missing` when it is not a finite number (a
/// reading the map does not define, stored as `null` in the JSON).
fn fmt_num(x: f64, missing: &str) -> String {
    if x.is_finite() { format!("{x:.9}") } else { missing.to_string() }
}

/// `x` in scientific notation to two decimals, or `n/a` when not finite.
fn fmt_err(x: f64) -> String {
    if x.is_finite() { format!("{x:.2e}") } else { "n/a".to_string() }
}

/// The readable summary of one checkpoint's interpretation.
pub fn render(r: &FullReport) -> String {
    let mut s = String::new();
    let m = &r.map;
    let c = &r.model.config;
    let t = &m.truth;
    let _ = writeln!(
        s,
        "model {} ({}, {} params): d_model {}, {} layer(s) × {} head(s) of d_head {}, context {}, {}, {}",
        r.model.file,
        r.model.dtype,
        r.model.n_params,
        c.d_model,
        c.n_layers,
        c.n_heads,
        c.d_head,
        c.n_ctx,
        if c.causal { "causal" } else { "no mask" },
        if c.positional { "positional embeddings" } else { "no positional embeddings" }
    );
    let _ = writeln!(
        s,
        "system: ω0 = {}, γ = {}, Δt = {} (true ω = {:.6}, ωΔt = {:.4})",
        t.system.omega0,
        t.system.gamma,
        t.system.dt,
        t.omega,
        t.omega * t.system.dt
    );
    let _ = writeln!(s);
    let _ = writeln!(s, "effective map — {}", m.map_kind);
    if r.effective_map_source == "jacobian" {
        let _ = writeln!(
            s,
            "  (this model is not one affine map: effective_map is the MEAN JACOBIAN of the last prediction w.r.t. the last \
             input token over {} validation states)",
            r.validation.n_states
        );
    }
    let _ = writeln!(s, "  column convention s' = M s + c");
    let _ = writeln!(s, "  M = {}", fmt_mat(&m.effective_map));
    let _ = writeln!(s, "  c = [{:+.3e}, {:+.3e}]", m.offset[0], m.offset[1]);
    let _ = writeln!(s, "  eigenvalues {}", fmt_eig(&m.eigenvalues));
    let _ = writeln!(s);
    let _ = writeln!(s, "did it learn ω0 and γ?");
    let _ = writeln!(
        s,
        "  spectral : ω0 = {} (truth {}, rel. err. {})  γ = {} (truth {}, abs. err. {})  ω = {:.9}",
        fmt_num(m.learned.omega0, "undefined"),
        t.system.omega0,
        fmt_err(m.errors.omega0_rel),
        fmt_num(m.learned.gamma, "undefined"),
        t.system.gamma,
        fmt_err(m.errors.gamma_abs),
        m.learned.omega
    );
    let _ = writeln!(
        s,
        "  best fit : ω0 = {:.9}, γ = {:.9}, residual ‖M − M(ω0, γ)‖ = {:.2e} (rel. err. ω0 {:.2e}, γ {:.2e})",
        m.best_fit.omega0,
        m.best_fit.gamma,
        m.best_fit.residual,
        m.errors.best_fit_omega0_rel,
        m.errors.best_fit_gamma_rel
    );
    let root = fmt_num(m.omega0_sq_ratio.sqrt(), "undefined (the ratio is not positive)");
    let _ = writeln!(s, "  ratio    : −M21/M12 = {:.9} ≈ ω0² → ω0 ≈ {root}", m.omega0_sq_ratio);
    match &r.generator {
        Some(g) => {
            let _ = writeln!(
                s,
                "  generator: log(M)/Δt = {} → ω0² = {:.9}, γ = {:.9} (structure error vs x' = p: {:.2e})",
                fmt_mat(&g.a),
                g.omega0_sq,
                g.gamma,
                g.structure_error
            );
        }
        None => {
            let _ = writeln!(s, "  generator: M has no real logarithm (an eigenvalue ≤ 0)");
        }
    }
    let _ = writeln!(s, "  {}", r.omega_identifiability.statement);
    let _ = writeln!(s);
    let _ = writeln!(s, "which rule does it run? (Frobenius distance ‖M − M_rule‖ at Δt = {})", t.system.dt);
    for d in &m.methods {
        let _ = writeln!(s, "  {:<17} {:.3e}", d.name, d.distance);
    }
    let _ = writeln!(s, "  error vs exact ‖M − M_exact‖ = {:.3e}", m.error_vs_exact);
    let e = &r.margin_explanation;
    let _ = writeln!(s, "  verdict: {}", e.statement);
    if let Some(one) = &r.one_step {
        let o = &one.report;
        let _ = writeln!(s);
        let _ = writeln!(
            s,
            "along true trajectories (least-squares one-step map ŝ ≈ M s[T−1] + c, rms residual {:.2e}):",
            one.rms_residual
        );
        let _ = writeln!(s, "  M = {}", fmt_mat(&o.effective_map));
        let _ = writeln!(
            s,
            "  ω0 = {:.9}, γ = {:.9}, error vs exact {:.3e}",
            o.learned.omega0, o.learned.gamma, o.error_vs_exact
        );
        let _ = writeln!(s, "  verdict: {}", margin_explanation(o).statement);
    }
    render_jacobians(&mut s, r);
    render_circuits(&mut s, r);
    render_patterns(&mut s, r);
    render_probes(&mut s, r);
    render_in_context(&mut s, r);
    s
}

// ── In-context checkpoints (docs/in-context.md) ──

/// The in-context section: the two readouts, the nearest filter and the verdict.
fn render_in_context(s: &mut String, r: &FullReport) {
    let Some(ic) = &r.in_context else { return };
    let _ = writeln!(
        s,
        "in context (parameters drawn per sequence; the map above is read at the centre of the ranges), {} sequences, \
         energies up to {}:",
        ic.n_sequences,
        r.validation.in_context_e_max.unwrap_or(r.validation.e_max)
    );
    let b = &ic.implied.omega0;
    let _ = writeln!(
        s,
        "  behaviour-implied ω0: slope {:.3}, R² {:.3}, median |error| {:.3e} ({} of {} of oscillator form)",
        b.slope, b.r2, b.median_abs_err, ic.implied.n_oscillator_form, ic.implied.n_sequences
    );
    match (&ic.jacobian_implied, &ic.jacobian_implied_reason) {
        (Some(j), _) => {
            let _ = writeln!(
                s,
                "  ∂ŝ/∂(last token)-implied ω0: slope {:.3}, R² {:.3}, median |error| {:.3e}",
                j.omega0.slope, j.omega0.r2, j.omega0.median_abs_err
            );
        }
        (None, why) => {
            let _ = writeln!(s, "  ∂ŝ/∂(last token): no readout: {}", why.as_deref().unwrap_or("-"));
        }
    }
    let f = &ic.filter;
    let r2 = f.param_r2.map_or_else(|| "null".into(), |v| format!("{v:.3}"));
    let relative = f.candidates.first().map_or(f64::NAN, |c| c.relative_distance);
    let _ = writeln!(
        s,
        "  filter: nearest {} (at {relative:.2e} of the filter's size, margin {:.3e}), taps' relative spread {:.2e}, \
         param R² {r2}",
        f.nearest, f.margin, f.tap_relative_std
    );
    let g = &ic.probes;
    let _ = writeln!(
        s,
        "  probes across sequences ({} fitted, {} scored; in parentheses the same probe on the untrained model, and the \
         untrained model's best anywhere):",
        g.n_fit, g.n_score
    );
    for (b, u) in g.best.iter().zip(&g.untrained_best) {
        let name = match b.target.as_str() {
            "omega0" => "ω0",
            "gamma" => "γ",
            "omega0_sq" => "ω0²",
            other => other,
        };
        let _ = match (&b.site, b.position) {
            (Some(site), Some(p)) => writeln!(
                s,
                "    probe {name}: best {site} @ {p}, held-out R² {:.3} (untrained: {:.3}; best {:.3})",
                b.r2, b.untrained_r2, u.r2
            ),
            _ => writeln!(s, "    probe {name}: no held-out R² (constant across the sequences)"),
        };
    }
    let _ = writeln!(s, "  verdict: {}", ic.verdict);
}

// ── end in-context ──

/// The Jacobian section.
fn render_jacobians(s: &mut String, r: &FullReport) {
    let j = &r.jacobians;
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "Jacobian of the last prediction w.r.t. each input token ({} validation states, {}):",
        j.n_states, j.method
    );
    for tok in &j.tokens {
        let _ = writeln!(
            s,
            "  token {} (lag {}): mean {}  ‖·‖ = {:.3e}, spread (max ‖J − mean‖) {:.2e}",
            tok.token,
            tok.lag,
            fmt_mat(&tok.mean),
            tok.norm,
            tok.max_dev
        );
    }
    let _ = writeln!(s, "  linearisation intercept c = [{:+.3e}, {:+.3e}]", j.offset[0], j.offset[1]);
}

/// The circuits section.
fn render_circuits(s: &mut String, r: &FullReport) {
    let c = &r.circuits;
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "circuits (path maps: column convention, gauge-invariant; OV/QK: row convention, see the gauge notes):"
    );
    let path = |s: &mut String, p: &crate::interpret::circuits::PathMap| {
        let _ =
            writeln!(s, "  {:<22} {}  eig {}", format!("{} path", p.name), fmt_mat(&p.map), fmt_eig(&p.eigenvalues));
    };
    if let Some(why) = &c.paths_left_out {
        let _ = writeln!(s, "  path maps left out: {why}");
    }
    for p in c.direct.iter().chain(c.heads.iter().filter_map(|h| h.path.as_ref())).chain(&c.compositions) {
        path(s, p);
    }
    for h in &c.heads {
        let ev: Vec<String> = h.ov.eigenvalues.iter().map(|z| format!("{:.4}{:+.4}i", z.re, z.im)).collect();
        let sv: Vec<String> = h.ov.singular_values.iter().map(|v| format!("{v:.4}")).collect();
        let _ = writeln!(
            s,
            "  blocks.{}.head.{}: OV eigenvalues [{}] (gauge-invariant), singular values [{}] (not invariant)",
            h.layer,
            h.head,
            ev.join(", "),
            sv.join(", ")
        );
        let qk_sv: Vec<String> = h.qk.singular_values.iter().map(|v| format!("{v:.4}")).collect();
        let _ = writeln!(s, "    QK singular values [{}] (not gauge-invariant)", qk_sv.join(", "));
    }
    let _ = writeln!(s, "  W_E alone is not meaningful (gauge); only products from input to output are.");
}

/// The attention section.
fn render_patterns(s: &mut String, r: &FullReport) {
    let p = &r.patterns;
    let _ = writeln!(s);
    let s0 = p.states[0];
    let _ = writeln!(s, "attention along the exact trajectory from s0 = ({:.4}, {:.4}) (last query):", s0[0], s0[1]);
    for h in &p.heads {
        let w: Vec<String> = h.last_query.iter().map(|v| format!("{v:.3}")).collect();
        let valid = match (h.valid_entropy_last, h.valid_mean_offset_last) {
            (Some(e), Some(o)) => format!("; validation mean: entropy {e:.3}, offset {o:.3}"),
            _ => String::new(),
        };
        let _ = writeln!(
            s,
            "  layer {} head {}: weights [{}], entropy {:.3} nats, mean attended offset {:.3}{valid}",
            h.layer,
            h.head,
            w.join(", "),
            h.entropy_last,
            h.mean_offset_last
        );
    }
}

/// The probe table: one row per target, one column per activation.
fn render_probes(s: &mut String, r: &FullReport) {
    if r.probes.is_empty() {
        return;
    }
    let mut acts: Vec<&str> = Vec::new();
    let mut targets: Vec<&str> = Vec::new();
    for p in &r.probes {
        if !acts.contains(&p.activation.as_str()) {
            acts.push(&p.activation);
        }
        if !targets.contains(&p.target.as_str()) {
            targets.push(&p.target);
        }
    }
    let _ = writeln!(s);
    let _ = writeln!(s, "linear probes at the last position (ridge, held-out R² on {} states):", r.probes[0].n_test);
    let _ = write!(s, "  {:<34}", "target \\ activation");
    for a in &acts {
        let _ = write!(s, " {a:>20}");
    }
    let _ = writeln!(s);
    for t in &targets {
        let _ = write!(s, "  {t:<34}");
        for a in &acts {
            let r2 = r.probes.iter().find(|p| p.activation == *a && p.target == *t).map_or(f64::NAN, |p| p.r2);
            let _ = write!(s, " {r2:>20.6}");
        }
        let _ = writeln!(s);
    }
    if r.model.config.is_affine() {
        let _ = writeln!(
            s,
            "  (context 1: every activation is affine in s, so each linear target decodes from any rank-2 activation; \
             the energy is quadratic)"
        );
    }
}

/// The summary of several checkpoints: each one, then the truncation order.
pub fn render_many(r: &MultiReport) -> String {
    let mut s = String::new();
    for (i, one) in r.models.iter().enumerate() {
        if i > 0 {
            let _ = writeln!(s, "\n{}\n", "─".repeat(72));
        }
        s.push_str(&render(one));
    }
    let _ = writeln!(s, "\n{}\n", "─".repeat(72));
    match (&r.truncation_order, &r.truncation_order_unavailable) {
        (Some(f), _) => {
            let _ = writeln!(s, "truncation order: fit of ln ‖M − M_exact‖ against ln Δt");
            for p in &f.points {
                let _ = writeln!(s, "  Δt = {:<10} error vs exact {:.3e}   {}", p.dt, p.error_vs_exact, p.model);
            }
            let _ = writeln!(
                s,
                "  slope {:.3} (local error ∝ Δt^{:.2}, a method of order {:.2}); R² of the fit {:.4}",
                f.slope, f.slope, f.method_order, f.r2
            );
            if let (Some(rule), Some(own)) = (&f.rule, f.rule_slope) {
                let _ =
                    writeln!(s, "  the nearest rule of every model, {rule}, has its own slope {own:.3} at these Δt");
                if let Some(nominal) = f.nominal_slope.filter(|n| (n - own).abs() > 0.3) {
                    let _ = writeln!(
                        s,
                        "  note: not its nominal {nominal:.0} (order {:.0}): at this γ and these Δt the rule's own error \
                         grows as Δt^{own:.2}{}",
                        nominal - 1.0,
                        if rule == "leapfrog" {
                            " — with damping, this leapfrog's second kick uses the friction at p½, which makes it only \
                             first order"
                        } else {
                            ""
                        }
                    );
                }
            }
            if !f.note.is_empty() {
                let _ = writeln!(s, "  note: {}", f.note);
            }
        }
        (None, Some(why)) => {
            let _ = writeln!(s, "truncation order: not available: {why}");
        }
        (None, None) => {}
    }
    s
}
