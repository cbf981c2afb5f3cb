#!/usr/bin/env python3
"""physlens vs PyTorch on this machine, in one go.

    tools/bench/run.sh [--time-to-accuracy] [--json-out FILE] [...]

1. `cargo build --release`;
2. the machine's f32 peak per core, from `tools/bench/peak.rs` (or
   `--peak-gflops`);
3. per (config, batch) row, in a process of its own: `./target/release/physlens
   bench --json --seconds S --configs C --batches B`, `--repeat` times (each
   after waiting for the machine to be quiet; the best of the repeats'
   medians counts), and `tools/bench/torch_bench.py --json --configs C
   --batches B --modes M` once per mode M (eager, torch.compile; the best
   candidate, best of `--rounds` rounds' medians); each child's peak RSS
   comes from os.wait4. `--one-process` runs each side once for all rows
   instead (the old way: faster, but the peak RSS is then per process);
4. prints per row physlens samples/s, PyTorch eager, PyTorch compile, the
   best PyTorch, the ratio physlens / best PyTorch, both sides' Gflop/s
   (workload.flops_per_sequence) and share of the peak, and their peak RSS;
5. with `--time-to-accuracy`: `tools/bench/time_to_accuracy.py --json`
   (PyTorch training ONE seed case, 100 epochs) and `physlens run --out
   <tmp>` (both seed cases, the whole study), each timed from the outside as
   a whole process, and the ratio of the wall times.

Exits non-zero when a build, a benchmark or a parse fails. This script
imports neither torch nor numpy (see workload.py: the peak RSS of a child is
never below this process's RSS).
"""

import argparse
import collections
import datetime
import json
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time

sys.dont_write_bytecode = True  # leave no __pycache__ in tools/ (tools/reference is read-only here)
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, HERE)

import machine  # noqa: E402
import workload  # noqa: E402

BIN = os.path.join(ROOT, "target", "release", "physlens")
MODES = ("eager", "compile")


def log(msg):
    print(msg, file=sys.stderr, flush=True)


class Failure(Exception):
    pass


Proc = collections.namedtuple("Proc", "stdout stderr returncode wall load rss_mib floor_mib")


def rss_floor_kib():
    """This process's peak RSS (KiB), first reset to its current RSS where
    Linux allows (/proc/self/clear_refs). A child started from here inherits
    it as the floor of its own ru_maxrss: exec records the RSS peak of the
    memory the child had before (this process's, with vfork/posix_spawn)."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        pass
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def run(cmd, what, capture=True, env=None, check=True):
    """Runs cmd in the repo root and waits for it with os.wait4. Returns a
    Proc: stdout and stderr (None unless captured), exit code, wall seconds,
    others' load in cores, and the child's peak RSS (ru_maxrss: the largest
    of the child and of its waited-for descendants, not their sum) with its
    floor (rss_floor_kib), both in MiB. Raises Failure on a non-zero exit if
    `check`."""
    log(f"$ {' '.join(cmd)}")
    floor = rss_floor_kib()
    meter = machine.LoadMeter()
    t0 = time.perf_counter()
    # files, not pipes: nothing to drain while waiting, and os.wait4 (not
    # Popen.wait) reaps the child, so that its resource usage is ours to read
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        p = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out if capture else None,
                             stderr=err if capture else None)
        try:
            _, status, usage = os.wait4(p.pid, 0)
        except BaseException:  # e.g. Ctrl-C: do not leave the child running
            p.kill()
            p.wait()
            raise
        p.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - t0
        load = meter.others_cores()
        texts = []
        for fh in (out, err):
            fh.seek(0)
            texts.append(fh.read().decode(errors="replace") if capture else None)
    proc = Proc(texts[0], texts[1], p.returncode, wall, load, usage.ru_maxrss / 1024, floor / 1024)
    if check and proc.returncode != 0:
        tail = (proc.stderr or "")[-3000:]
        raise Failure(f"{what} failed (exit {proc.returncode}): {' '.join(cmd)}\n{tail}")
    return proc


def parse_json(text, what):
    try:
        return json.loads(text.strip().splitlines()[-1])
    except (ValueError, IndexError) as e:
        raise Failure(f"{what}: could not parse JSON output ({e}): {text[-500:]!r}") from e


def sh(cmd):
    try:
        return subprocess.run(cmd, cwd=ROOT, text=True, capture_output=True, shell=True).stdout.strip()
    except OSError:
        return ""


def machine_info():
    mem_kb = 0
    with open("/proc/meminfo") as fh:
        for line in fh:
            if line.startswith("MemTotal"):
                mem_kb = int(line.split()[1])
    os_name = platform.platform()
    if os.path.exists("/etc/os-release"):
        with open("/etc/os-release") as fh:
            for line in fh:
                if line.startswith("PRETTY_NAME="):
                    os_name = line.split("=", 1)[1].strip().strip('"') + f" (kernel {platform.release()})"
    return {
        "cpu": machine.cpu_model(),
        "cores": os.cpu_count(),
        "memory_gib": round(mem_kb / 2 ** 20, 1),
        "os": os_name,
        "hypervisor": sh("lscpu | sed -n 's/^Hypervisor vendor: *//p'") or None,
        "rustc": sh("rustc --version"),
        "python": platform.python_version(),
        "torch": sh(f"{sys.executable} -c 'import torch; print(torch.__version__)'"),
        "git": sh("git describe --always --dirty --abbrev=12"),
        "git_dirty_files": sh("git status --short --untracked-files=no | wc -l"),
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
    }


# ----------------------------------------------------------------- bench ----

def row_groups(args, rows):
    """[(flags, rows)]: the rows run together in one process and the flags
    that select them; one group per row, or with --one-process a single one
    (with the user's --configs / --batches, if any)."""
    if not args.one_process:
        return [(["--configs", c, "--batches", str(b)], [(c, b)]) for c, b in rows]
    flags = []
    if args.configs:
        flags += ["--configs", args.configs]
    if args.batches:
        flags += ["--batches", args.batches]
    return [(flags, rows)]


def physlens_bench(args, groups):
    """Per (config, batch): the best of `repeat` physlens bench medians, with
    the largest peak RSS of its processes if it had processes of its own."""
    best, rss, runs = {}, {}, []
    for flags, rows in groups:
        for k in range(args.repeat):
            machine.wait_quiet(args.quiet_threshold, args.quiet_timeout, log=log)
            proc = run([BIN, "bench", "--json", "--seconds", str(args.seconds)] + flags, "physlens bench")
            got = parse_json(proc.stdout, "physlens bench").get("results") or []
            missing = sorted(set(rows) - {(r["config"], r["batch"]) for r in got})
            if missing:
                raise Failure(f"physlens bench {' '.join(flags)} printed no row for {missing}")
            runs.append({"flags": flags, "rows": got, "wall_s": proc.wall, "others_cores": round(proc.load, 3),
                         "peak_rss_mib": proc.rss_mib, "rss_floor_mib": proc.floor_mib})
            log(f"physlens bench {' '.join(flags)} run {k + 1}/{args.repeat}: {proc.wall:.1f}s, "
                f"other load {proc.load:.2f} cores, peak RSS {proc.rss_mib:.1f} MiB")
            for r in got:
                key = (r["config"], r["batch"])
                if key not in best or r["us_per_step"] < best[key]["us_per_step"]:
                    best[key] = dict(r, others_cores=round(proc.load, 3))
                if not args.one_process:
                    old = rss.get(key, (0.0, 0.0))
                    rss[key] = (max(old[0], proc.rss_mib), max(old[1], proc.floor_mib))
    for key, r in best.items():
        r["peak_rss_mib"], r["rss_floor_mib"] = rss.get(key, (None, None))
    return best, runs


def torch_bench(args, env, groups):
    """Per (config, batch, mode): torch_bench.py's row, with the peak RSS of
    its process if the row and mode had a process of their own. A process
    that fails but prints its JSON (all candidates of a row failed, e.g.
    torch.compile) is not fatal: its errors are listed."""
    base = [sys.executable, os.path.join(HERE, "torch_bench.py"), "--json",
            "--seconds", str(args.torch_seconds), "--rounds", str(args.rounds),
            "--quiet-threshold", str(args.quiet_threshold), "--quiet-timeout", str(args.quiet_timeout),
            "--threads", str(args.threads), "--compile-mode", args.compile_mode]
    modes = [args.modes] if args.one_process else args.modes.split(",")
    rows, errors, runs = {}, [], []
    denormals = args.denormals.split(",")
    for flags in [group + ["--modes", m, "--denormals", dn] for group, _ in groups for m in modes for dn in denormals]:
        proc = run(base + flags + shlex.split(args.torch_args), "torch_bench.py", env=env, check=False)
        try:
            data = parse_json(proc.stdout, "torch_bench.py")
        except Failure:
            if proc.returncode == 0:
                raise
            raise Failure(f"torch_bench.py {' '.join(flags)} failed (exit {proc.returncode})\n"
                          f"{(proc.stderr or '')[-3000:]}") from None
        errors += data["meta"]["errors"]
        if proc.returncode != 0:
            errors.append(f"torch_bench.py {' '.join(flags)}: exit {proc.returncode}, no row")
        for r in data["results"]:
            if not args.one_process:
                r = dict(r, peak_rss_mib=proc.rss_mib, rss_floor_mib=proc.floor_mib)
            key = (r["config"], r["batch"], r["mode"])
            if key not in rows or r["us_per_step"] < rows[key]["us_per_step"]:
                rows[key] = r  # the faster of subnormals kept and flushed
        runs.append({"flags": flags, "wall_s": proc.wall, "others_cores": round(proc.load, 3),
                     "peak_rss_mib": proc.rss_mib, "rss_floor_mib": proc.floor_mib, "meta": data["meta"]})
        log(f"torch_bench.py {' '.join(flags)}: {proc.wall:.1f}s, other load {proc.load:.2f} cores, "
            f"peak RSS {proc.rss_mib:.1f} MiB")
    if not rows:
        raise Failure("torch_bench.py printed no row")
    return rows, {"results": list(rows.values()), "meta": {"errors": errors, "runs": runs}}


def peak_gflops_per_core(args):
    """The machine's f32 Gflop/s per core: --peak-gflops, or the best figure
    `tools/bench/peak.rs` prints (built with rustc -O and run once, after
    waiting for the machine to be quiet); None with --peak-gflops 0 or if
    that fails (x86-64 only, needs rustc)."""
    if args.peak_gflops is not None:
        return args.peak_gflops or None
    tmp = tempfile.mkdtemp(prefix="physlens-peak-")
    try:
        exe = os.path.join(tmp, "peak")
        run(["rustc", "-O", os.path.join(HERE, "peak.rs"), "-o", exe], "rustc peak.rs")
        machine.wait_quiet(args.quiet_threshold, args.quiet_timeout, log=log)
        out = run([exe], "peak").stdout
    except (Failure, OSError) as e:
        log(f"warning: no peak figure ({e}); pass --peak-gflops")
        return None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    figures = [float(g) for g in re.findall(r"= ([0-9.]+) Gflop/s f32 per core", out)]
    log(out.strip())
    return max(figures) if figures else None


def fmt(x):
    return "—" if x is None else f"{x:.3g}"


def fmt_rss(mib, floor):
    """Peak RSS in MiB; "≤ floor" when the reading does not exceed the floor
    (the child's own peak is then unknown, only bounded)."""
    if mib is None:
        return "—"
    return f"≤{floor:.0f}" if mib <= floor + 1 else f"{mib:.0f}"


def gflops(flops_per_sequence, samples_per_sec):
    if None in (flops_per_sequence, samples_per_sec):
        return None
    return flops_per_sequence * samples_per_sec * 1e-9


def pct(g, peak_per_core, threads):
    """g as a percentage of the peak of `threads` cores."""
    return None if None in (g, peak_per_core, threads) else 100 * g / (peak_per_core * threads)


def table(phys, torch_rows, peak_per_core):
    lines = ["| config | batch | physlens samples/s | PyTorch eager | PyTorch compile | best PyTorch "
             "| physlens / best PyTorch | Gflop/s physlens (% peak) | Gflop/s best PyTorch (% peak) "
             "| peak RSS MiB physlens | peak RSS MiB PyTorch eager / compile |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    summary = []
    order = {name: i for i, name in enumerate(workload.CONFIGS)}
    for (cfg, batch), p in sorted(phys.items(), key=lambda kv: (order.get(kv[0][0], len(order)), kv[0])):
        e = torch_rows.get((cfg, batch, "eager"))
        c = torch_rows.get((cfg, batch, "compile"))
        cands = [r for r in (e, c) if r is not None]
        best = max(cands, key=lambda r: r["samples_per_sec"]) if cands else None
        ratio = p["samples_per_sec"] / best["samples_per_sec"] if best else None
        flops = workload.flops_per_sequence(workload.CONFIGS[cfg]) if cfg in workload.CONFIGS else None
        g_p, g_t = gflops(flops, p["samples_per_sec"]), gflops(flops, best and best["samples_per_sec"])
        pct_p, pct_t = pct(g_p, peak_per_core, p.get("threads")), pct(g_t, peak_per_core, best and best["threads"])
        rss = [(r.get("peak_rss_mib"), r.get("rss_floor_mib")) if r else (None, None) for r in (p, e, c)]
        lines.append(
            f"| {cfg} | {batch} | {fmt(p['samples_per_sec'])} | {fmt(e and e['samples_per_sec'])} "
            f"| {fmt(c and c['samples_per_sec'])} | {fmt(best and best['samples_per_sec'])}"
            f"{' (' + best['mode'] + ')' if best else ''} | {'—' if ratio is None else f'{ratio:.2f}×'} "
            f"| {fmt(g_p)}{'' if pct_p is None else f' ({pct_p:.1f} %)'} "
            f"| {fmt(g_t)}{'' if pct_t is None else f' ({pct_t:.1f} %)'} "
            f"| {fmt_rss(*rss[0])} | {fmt_rss(*rss[1])} / {fmt_rss(*rss[2])} |")
        summary.append(dict(config=cfg, batch=batch, physlens=p["samples_per_sec"],
                            physlens_us=p["us_per_step"], physlens_threads=p.get("threads"),
                            torch_eager=e and e["samples_per_sec"], torch_compile=c and c["samples_per_sec"],
                            torch_best=best and best["samples_per_sec"], torch_best_mode=best and best["mode"],
                            ratio=ratio, flops_per_sequence=flops, physlens_gflops=g_p, torch_best_gflops=g_t,
                            physlens_peak_pct=pct_p, torch_best_peak_pct=pct_t,
                            physlens_peak_rss_mib=rss[0][0], torch_peak_rss_mib=best and best.get("peak_rss_mib"),
                            torch_eager_peak_rss_mib=rss[1][0], torch_compile_peak_rss_mib=rss[2][0],
                            rss_floor_mib=max([f for _, f in rss if f is not None], default=None)))
    return "\n".join(lines), summary


# ------------------------------------------------------ time to accuracy ----

def time_to_accuracy(args, env):
    machine.wait_quiet(args.quiet_threshold, args.quiet_timeout, log=log)
    cmd = [sys.executable, os.path.join(HERE, "time_to_accuracy.py"), "--json",
           "--threads", str(args.threads), "--compile-mode", args.compile_mode, "--epochs", str(args.tta_epochs)]
    pt_proc = run(cmd, "time_to_accuracy.py", env=env)
    pt = parse_json(pt_proc.stdout, "time_to_accuracy.py")

    tmp = tempfile.mkdtemp(prefix="physlens-bench-")
    try:
        machine.wait_quiet(args.quiet_threshold, args.quiet_timeout, log=log)
        out_dir = os.path.join(tmp, "run")
        pl_proc = run([BIN, "run", "--out", out_dir], "physlens run")
        with open(os.path.join(out_dir, "summary.json")) as fh:
            summary = json.load(fh)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dict(torch=pt, torch_process_s=pt_proc.wall, torch_others_cores=round(pt_proc.load, 3),
                torch_peak_rss_mib=pt_proc.rss_mib, physlens=summary, physlens_process_s=pl_proc.wall,
                physlens_others_cores=round(pl_proc.load, 3), physlens_peak_rss_mib=pl_proc.rss_mib,
                rss_floor_mib=max(pt_proc.floor_mib, pl_proc.floor_mib))


def tta_report(t):
    pt, pl = t["torch"], t["physlens"]
    ro = pt["accuracy"]["rollout"]
    lines = [
        "| | cases | wall time (whole process) | training loop | rollout@200 median ‖ŝ−s‖/‖s‖ | max |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
        f"| PyTorch {pt['case']['torch']} ({pt['case']['mode']}) | damped (γ = {pt['case']['gamma']}) only "
        f"| {t['torch_process_s']:.2f} s | {pt['wall']['train_s']:.2f} s "
        f"(compile {pt['wall']['compile_s'] or 0:.1f} s) | {ro['median_rel_err_final']:.2e} "
        f"| {ro['max_rel_err_final']:.2e} |",
    ]
    for c in pl["cases"]:
        r = c["rollout"]
        lines.append(f"| physlens run | {c['name']} (γ = {c['gamma']}) | "
                     + (f"{t['physlens_process_s']:.2f} s (both cases, whole study {pl['seconds']:.2f} s)"
                        if c is pl["cases"][0] else "(same run)")
                     + f" | {c['train_seconds']:.2f} s | {r['median_rel_err_final']:.2e} "
                       f"| {r['max_rel_err_final']:.2e} |")
    ratio = t["torch_process_s"] / t["physlens_process_s"]
    ratio_train = pt["wall"]["train_s"] / t["physlens_process_s"]
    lines.append("")
    lines.append(f"PyTorch (one case, whole process) / physlens run (both cases, whole process): "
                 f"**{ratio:.1f}×**; PyTorch training loop alone / physlens run: {ratio_train:.1f}×.")
    return "\n".join(lines), dict(ratio_process=ratio, ratio_train_loop=ratio_train)


# ------------------------------------------------------------------ main ----

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--time-to-accuracy", action="store_true",
                    help="also time PyTorch training one seed case vs `physlens run`")
    ap.add_argument("--seconds", type=float, default=1.0, help="physlens bench --seconds (per row)")
    ap.add_argument("--repeat", type=int, default=3, help="physlens bench invocations; best per row")
    ap.add_argument("--torch-seconds", type=float, default=1.5, help="torch_bench --seconds (per candidate)")
    ap.add_argument("--rounds", type=int, default=3, help="torch_bench --rounds")
    ap.add_argument("--threads", type=int, default=2, help="torch threads")
    ap.add_argument("--compile-mode", default="default", help="torch.compile mode")
    ap.add_argument("--quiet-threshold", type=float, default=0.25,
                    help="wait until other processes use fewer cores than this before each measurement")
    ap.add_argument("--quiet-timeout", type=float, default=120.0, help="... but at most this many seconds")
    ap.add_argument("--torch-args", default="",
                    help="extra torch_bench.py options, e.g. \"--impl matmul\" (not --configs/--batches/--modes)")
    ap.add_argument("--configs", help="comma list of configs (default: all of workload.CONFIGS)")
    ap.add_argument("--batches", help="comma list filtering each config's batches (default: all)")
    ap.add_argument("--modes", default=",".join(MODES), help="PyTorch modes")
    ap.add_argument("--denormals", default="keep,flush",
                    help="PyTorch runs every row and mode in each of these (keep: subnormal floats as "
                         "PyTorch's default; flush: torch.set_flush_denormal(True) at process start, as "
                         "physlens's kernels do); the faster counts")
    ap.add_argument("--one-process", action="store_true",
                    help="run physlens bench and torch_bench.py once for all rows (faster; peak RSS per "
                         "process, not per row)")
    ap.add_argument("--peak-gflops", type=float,
                    help="the machine's f32 Gflop/s per core (default: measured by tools/bench/peak.rs; "
                         "0: no %% of peak)")
    ap.add_argument("--tta-epochs", type=int, default=100, help="time_to_accuracy.py --epochs (100 = the target)")
    ap.add_argument("--keep-openblas-env", action="store_true",
                    help="do not unset OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE for the Python runs")
    ap.add_argument("--skip-build", action="store_true", help="use the existing target/release/physlens")
    ap.add_argument("--json-out", help="write every raw result and the machine description here")
    args = ap.parse_args()

    env = dict(os.environ)
    removed = {}
    if not args.keep_openblas_env:
        for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
            if k in env:
                removed[k] = env.pop(k)
    if removed:
        log(f"unset for the Python runs: {removed}")

    try:
        info = machine_info()
        if not args.skip_build:
            run(["cargo", "build", "--release"], "cargo build --release", capture=False)
        if not os.access(BIN, os.X_OK):
            raise Failure(f"{BIN} missing")
        info["physlens_binary_mtime"] = datetime.datetime.fromtimestamp(os.path.getmtime(BIN)).isoformat(
            timespec="seconds")
        try:
            rows = workload.select_rows(args.configs, args.batches)
        except ValueError as e:
            raise Failure(str(e)) from None
        groups = row_groups(args, rows)
        peak = peak_gflops_per_core(args)
        phys, phys_runs = physlens_bench(args, groups)
        torch_rows, torch_raw = torch_bench(args, env, groups)
        text, summary = table(phys, torch_rows, peak)
        result = dict(machine=info, command=" ".join(sys.argv), args=vars(args), env_removed=removed,
                      peak_gflops_per_core=peak, table=summary, physlens_runs=phys_runs, torch=torch_raw)
        print(f"\n## Throughput (samples/s; f32; physlens threads = "
              f"{sorted({s['physlens_threads'] for s in summary})}, PyTorch threads = {args.threads})\n")
        print(text)
        print("\nGflop/s = samples/s × the matmul flops of a training step per sequence "
              "(workload.flops_per_sequence, tools/bench/README.md); % peak: of "
              + (f"{peak:.0f} Gflop/s f32 per core × the side's threads." if peak else "— (no peak figure)."))
        if args.one_process:
            print(f"Peak RSS per process (--one-process): physlens bench "
                  f"{[round(r['peak_rss_mib']) for r in phys_runs]} MiB, torch_bench.py "
                  f"{[round(r['peak_rss_mib']) for r in torch_raw['meta']['runs']]} MiB.")
        else:
            print("Peak RSS: each row and mode in a process of its own (os.wait4's ru_maxrss); \"≤ N\": "
                  "the reading did not exceed the RSS of compare.py itself, a floor of every child's reading.")
        if torch_raw["meta"]["errors"]:
            print("\nPyTorch candidates that failed:")
            for e in torch_raw["meta"]["errors"]:
                print(f"- {e}")
        if args.time_to_accuracy:
            tta = time_to_accuracy(args, env)
            tta_text, ratios = tta_report(tta)
            result["time_to_accuracy"] = dict(tta, **ratios)
            print("\n## Time to accuracy\n")
            print(tta_text)
        print(f"\nmachine: {info['cpu']}, {info['cores']} cores, {info['memory_gib']} GiB, {info['os']}; "
              f"{info['rustc']}; torch {info['torch']}; git {info['git']}; {info['date']}")
        if args.json_out:
            with open(args.json_out, "w") as fh:
                json.dump(result, fh, indent=1)
            log(f"wrote {args.json_out}")
    except Failure as e:
        log(f"error: {e}")
        sys.exit(1)


if __name__ == "__main__":
    main()
