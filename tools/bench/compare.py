#!/usr/bin/env python3
"""physlens vs PyTorch on this machine, in one go.

    tools/bench/run.sh [--time-to-accuracy] [--json-out FILE] [...]

1. `cargo build --release`;
2. `./target/release/physlens bench --json --seconds S`, `--repeat` times
   (each after waiting for the machine to be quiet); per row the best of the
   repeats' medians counts;
3. `tools/bench/torch_bench.py --json` (eager and torch.compile, the best
   candidate per row, best of `--rounds` rounds' medians);
4. prints per row physlens samples/s, PyTorch eager, PyTorch compile, the
   best PyTorch and the ratio physlens / best PyTorch;
5. with `--time-to-accuracy`: `tools/bench/time_to_accuracy.py --json`
   (PyTorch training ONE seed case, 100 epochs) and `physlens run --out
   <tmp>` (both seed cases, the whole study), each timed from the outside as
   a whole process, and the ratio of the wall times.

Exits non-zero when a build, a benchmark or a parse fails.
"""

import argparse
import datetime
import json
import os
import platform
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

BIN = os.path.join(ROOT, "target", "release", "physlens")


def log(msg):
    print(msg, file=sys.stderr, flush=True)


class Failure(Exception):
    pass


def run(cmd, what, capture=True, env=None):
    """Runs cmd in the repo root; returns (stdout, wall seconds, others' load in cores)."""
    log(f"$ {' '.join(cmd)}")
    meter = machine.LoadMeter()
    t0 = time.perf_counter()
    p = subprocess.run(cmd, cwd=ROOT, env=env, text=True,
                       stdout=subprocess.PIPE if capture else None,
                       stderr=subprocess.PIPE if capture else None)
    wall = time.perf_counter() - t0
    load = meter.others_cores()
    if p.returncode != 0:
        tail = (p.stderr or "")[-3000:] if capture else ""
        raise Failure(f"{what} failed (exit {p.returncode}): {' '.join(cmd)}\n{tail}")
    return p.stdout, wall, load


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

def physlens_bench(args):
    """Per (config, batch): the best of `repeat` physlens bench medians."""
    best, runs = {}, []
    for k in range(args.repeat):
        machine.wait_quiet(args.quiet_threshold, args.quiet_timeout, log=log)
        out, wall, load = run([BIN, "bench", "--json", "--seconds", str(args.seconds)], "physlens bench")
        rows = parse_json(out, "physlens bench").get("results") or []
        if not rows:
            raise Failure("physlens bench printed no rows")
        runs.append({"rows": rows, "wall_s": wall, "others_cores": round(load, 3)})
        log(f"physlens bench run {k + 1}/{args.repeat}: {wall:.1f}s, other load {load:.2f} cores")
        for r in rows:
            key = (r["config"], r["batch"])
            if key not in best or r["us_per_step"] < best[key]["us_per_step"]:
                best[key] = dict(r, others_cores=round(load, 3))
    return best, runs


def torch_bench(args, env):
    cmd = [sys.executable, os.path.join(HERE, "torch_bench.py"), "--json",
           "--seconds", str(args.torch_seconds), "--rounds", str(args.rounds),
           "--quiet-threshold", str(args.quiet_threshold), "--quiet-timeout", str(args.quiet_timeout),
           "--threads", str(args.threads), "--compile-mode", args.compile_mode] + shlex.split(args.torch_args)
    out, wall, load = run(cmd, "torch_bench.py", env=env)
    data = parse_json(out, "torch_bench.py")
    rows = {}
    for r in data["results"]:
        rows[(r["config"], r["batch"], r["mode"])] = r
    log(f"torch_bench.py: {wall:.1f}s, other load {load:.2f} cores")
    return rows, data, wall


def fmt(x):
    return "—" if x is None else f"{x:.3g}"


def table(phys, torch_rows):
    lines = ["| config | batch | physlens samples/s | PyTorch eager | PyTorch compile | best PyTorch "
             "| physlens / best PyTorch |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    summary = []
    for (cfg, batch), p in sorted(phys.items(), key=lambda kv: (kv[0][0], kv[0][1])):
        e = torch_rows.get((cfg, batch, "eager"))
        c = torch_rows.get((cfg, batch, "compile"))
        cands = [r for r in (e, c) if r is not None]
        best = max(cands, key=lambda r: r["samples_per_sec"]) if cands else None
        ratio = p["samples_per_sec"] / best["samples_per_sec"] if best else None
        lines.append(
            f"| {cfg} | {batch} | {fmt(p['samples_per_sec'])} | {fmt(e and e['samples_per_sec'])} "
            f"| {fmt(c and c['samples_per_sec'])} | {fmt(best and best['samples_per_sec'])}"
            f"{' (' + best['mode'] + ')' if best else ''} | {'—' if ratio is None else f'{ratio:.2f}×'} |")
        summary.append(dict(config=cfg, batch=batch, physlens=p["samples_per_sec"],
                            physlens_us=p["us_per_step"], physlens_threads=p.get("threads"),
                            torch_eager=e and e["samples_per_sec"], torch_compile=c and c["samples_per_sec"],
                            torch_best=best and best["samples_per_sec"], torch_best_mode=best and best["mode"],
                            ratio=ratio))
    return "\n".join(lines), summary


# ------------------------------------------------------ time to accuracy ----

def time_to_accuracy(args, env):
    machine.wait_quiet(args.quiet_threshold, args.quiet_timeout, log=log)
    cmd = [sys.executable, os.path.join(HERE, "time_to_accuracy.py"), "--json",
           "--threads", str(args.threads), "--compile-mode", args.compile_mode, "--epochs", str(args.tta_epochs)]
    out, torch_wall, torch_load = run(cmd, "time_to_accuracy.py", env=env)
    pt = parse_json(out, "time_to_accuracy.py")

    tmp = tempfile.mkdtemp(prefix="physlens-bench-")
    try:
        machine.wait_quiet(args.quiet_threshold, args.quiet_timeout, log=log)
        out_dir = os.path.join(tmp, "run")
        _, pl_wall, pl_load = run([BIN, "run", "--out", out_dir], "physlens run")
        with open(os.path.join(out_dir, "summary.json")) as fh:
            summary = json.load(fh)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dict(torch=pt, torch_process_s=torch_wall, torch_others_cores=round(torch_load, 3),
                physlens=summary, physlens_process_s=pl_wall, physlens_others_cores=round(pl_load, 3))


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
    ap.add_argument("--torch-args", default="", help="extra torch_bench.py options, e.g. \"--impl matmul\"")
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
        phys, phys_runs = physlens_bench(args)
        torch_rows, torch_raw, _ = torch_bench(args, env)
        text, summary = table(phys, torch_rows)
        result = dict(machine=info, command=" ".join(sys.argv), args=vars(args), env_removed=removed,
                      table=summary, physlens_runs=phys_runs, torch=torch_raw)
        print(f"\n## Throughput (samples/s; f32; physlens threads = "
              f"{sorted({s['physlens_threads'] for s in summary})}, PyTorch threads = {args.threads})\n")
        print(text)
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
