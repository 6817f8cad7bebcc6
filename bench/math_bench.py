"""Side-by-side benchmark of the verifrl math verifier and Hugging Face Math-Verify.

Usage (from the repository root; Math-Verify comes from the ``bench`` extra)::

    python bench/math_bench.py peer      # public peer suites (../shared/data/peer_math_cases.jsonl)
    python bench/math_bench.py own       # tests/data/math_equivalence.jsonl, per category
    python bench/math_bench.py speed     # pairs/s, single process and pool, same pairs for both
    python bench/math_bench.py hostile   # hostile inputs: wall time vs timeout, peak RSS

Harnesses. verifrl: each side goes through ``extract_answer`` (the whole string when it is
already a bare answer) and ``check_answer`` with the default policy; a row's
``allow_set_relation_comp`` option maps to ``interval_vs_inequality`` and ``precision`` < 6 to
``rounding="both"``. Math-Verify: the "native"
harness of the peer-suite write-up -- rows from Math-Verify's own suite use their extraction
configs, ``precision`` and flags; every other row wraps each side in ``\\boxed{}`` unless it is
already delimited, then ``parse`` + ``verify`` with defaults.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from verifiers.math import DEFAULT_POLICY, MathVerifier, Policy, check_answer, extract_answer  # noqa: E402
from verifiers.math.guard import close_pools  # noqa: E402

PEER_FILE = ROOT.parent / "shared" / "data" / "peer_math_cases.jsonl"
OWN_FILE = ROOT / "tests" / "data" / "math_equivalence.jsonl"


# -- harnesses -------------------------------------------------------------------------------------
def ours_answer(s: str) -> str:
    return extract_answer(s, last_number_fallback=True) or s


BASE_POLICY: dict = {}  # set from --rounding


def ours_verdict(gold: str, pred: str, options: dict | None = None) -> bool:
    options = options or {}
    kw = dict(BASE_POLICY)
    if options.get("allow_set_relation_comp") is False:
        kw["interval_vs_inequality"] = False
    if options.get("precision", 6) < 6:
        kw["rounding"] = "both"  # the row asks for a comparison at that many decimals
        kw["min_rounding_digits"] = 1
    policy = Policy(**kw) if kw else DEFAULT_POLICY
    return check_answer(ours_answer(pred), ours_answer(gold), policy)[0]


def _delimited(s: str) -> bool:
    return any(t in s for t in ("$", "\\(", "\\[", "\\boxed{"))


def mv_verdict(gold: str, pred: str, options: dict | None = None) -> bool:
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify
    options = options or {}
    try:
        if "match_types" in options:
            configs = []
            if "latex" in options["match_types"]:
                configs.append(LatexExtractionConfig(boxed_match_priority=0))
            if "expr" in options["match_types"]:
                configs.append(ExprExtractionConfig())
            g, p = parse(gold, configs), parse(pred, configs)
            kw = {"float_rounding": options.get("precision", 6)}
            if "strict" in options:
                kw["strict"] = options["strict"]
            if "allow_set_relation_comp" in options:
                kw["allow_set_relation_comp"] = options["allow_set_relation_comp"]
            return bool(verify(g, p, **kw))
        g = parse(gold if _delimited(gold) else "\\boxed{" + gold + "}")
        p = parse(pred if _delimited(pred) else "\\boxed{" + pred + "}")
        return bool(verify(g, p))
    except Exception:  # noqa: BLE001 -- a crash of the peer checker counts as "not equal"
        return False


# -- peer suites -----------------------------------------------------------------------------------
def load_peer(path: Path, dedup: bool) -> list[dict]:
    rows = [json.loads(line) for line in path.open()]
    rows = [r for r in rows if r["expected_equal"] is not None]
    if dedup:
        rows = [r for r in rows if r["dup_of_source"] is None]
    return rows


def cmd_peer(args: argparse.Namespace) -> None:
    for dedup in (True, False):
        rows = load_peer(Path(args.peer_file), dedup)
        per = defaultdict(lambda: [0, 0, 0])
        misses = []
        for r in rows:
            ours = ours_verdict(r["gold"], r["pred"], r.get("options"))
            mv = mv_verdict(r["gold"], r["pred"], r.get("options"))
            exp = bool(r["expected_equal"])
            st = per[r["source"]]
            st[0] += 1
            st[1] += ours == exp
            st[2] += mv == exp
            if ours != exp and dedup:
                misses.append(r)
        total = [sum(v[i] for v in per.values()) for i in range(3)]
        label = "de-duplicated" if dedup else "all labelled"
        print(f"\n### Peer suites, {label} ({total[0]} cases)\n")
        print("| source | n | verifrl | Math-Verify 0.9.0 |\n|---|---|---|---|")
        for src in sorted(per, key=lambda s: -per[s][0]):
            n, a, b = per[src]
            print(f"| {src} | {n} | {100 * a / n:.1f} % | {100 * b / n:.1f} % |")
        print(f"| **all** | {total[0]} | **{100 * total[1] / total[0]:.1f} %** | "
              f"{100 * total[2] / total[0]:.1f} % |")
        if args.show_misses and dedup:
            print("\nverifrl misses:")
            for r in misses:
                print(f"  [{r['source']}] exp={r['expected_equal']} gold={r['gold'][:90]!r} "
                      f"pred={r['pred'][:90]!r} -> {ours_answer(r['gold'])[:40]!r} vs "
                      f"{ours_answer(r['pred'])[:40]!r}")


# -- own labelled set ------------------------------------------------------------------------------
def load_own(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.open()]


def cmd_own(args: argparse.Namespace) -> None:
    rows = load_own(Path(args.own_file))
    per = defaultdict(lambda: [0, 0, 0])
    near = Counter()
    misses = []
    for r in rows:
        ours = ours_verdict(r["gold"], r["completion"])
        mv = mv_verdict(r["gold"], r["completion"])
        exp = bool(r["equal"])
        st = per[r["category"]]
        st[0] += 1
        st[1] += ours == exp
        st[2] += mv == exp
        if not exp:
            near["n"] += 1
            near["ours_fp"] += ours
            near["mv_fp"] += mv
        if ours != exp:
            misses.append(r)
    total = [sum(v[i] for v in per.values()) for i in range(3)]
    print(f"\n### Own equivalence set ({total[0]} cases, {near['n']} not equal)\n")
    print("| category | n | verifrl | Math-Verify 0.9.0 |\n|---|---|---|---|")
    for cat in sorted(per):
        n, a, b = per[cat]
        print(f"| {cat} | {n} | {100 * a / n:.1f} % | {100 * b / n:.1f} % |")
    print(f"| **all** | {total[0]} | **{100 * total[1] / total[0]:.1f} %** | {100 * total[2] / total[0]:.1f} % |")
    print(f"\nfalse positives on the {near['n']} not-equal cases: verifrl {near['ours_fp']}, "
          f"Math-Verify {near['mv_fp']}")
    if args.show_misses:
        for r in misses:
            print(f"  [{r['category']}] exp={r['equal']} gold={r['gold']!r} "
                  f"pred={ours_answer(r['completion'])!r}")


# -- speed -----------------------------------------------------------------------------------------
def _pairs(args: argparse.Namespace) -> list[tuple[str, str]]:
    pairs = [(r["gold"], r["completion"]) for r in load_own(Path(args.own_file))]
    if Path(args.peer_file).exists():
        pairs += [(r["gold"], r["pred"]) for r in load_peer(Path(args.peer_file), True)]
    return pairs


def _mv_one(pair: tuple[str, str]) -> bool:
    return mv_verdict(pair[0], pair[1])


def cmd_speed(args: argparse.Namespace) -> None:
    import multiprocessing as mp

    from verifiers.math import verifier as vmod
    pairs = _pairs(args)
    n = len(pairs)
    ours_answer(pairs[0][1])
    check_answer("x+1", "1+x", DEFAULT_POLICY)  # start the worker outside the timing
    vmod._cache.data.clear()
    t = time.perf_counter()
    for g, p in pairs:
        check_answer(ours_answer(p), ours_answer(g), DEFAULT_POLICY)
    ours_single = n / (time.perf_counter() - t)
    mv_verdict("1", "1")
    t = time.perf_counter()
    for pair in pairs:
        _mv_one(pair)
    mv_single = n / (time.perf_counter() - t)
    vmod._cache.data.clear()
    verifier = MathVerifier(workers=args.workers, pool_threshold=1)
    comps = [p for _, p in pairs]
    exs = [{"answer": ours_answer(g)} for g, _ in pairs]
    verifier.verify_batch(comps[:8], exs[:8])  # start the pool outside the timing
    vmod._cache.data.clear()
    t = time.perf_counter()
    verifier.verify_batch(comps, exs)
    ours_pool = n / (time.perf_counter() - t)
    with mp.get_context("fork").Pool(args.workers) as pool:
        pool.map(_mv_one, pairs[:8])
        t = time.perf_counter()
        pool.map(_mv_one, pairs, chunksize=8)
        mv_pool = n / (time.perf_counter() - t)
    ints = [f"Step 1: 3 + 4 = 7\nStep 2: 7 * 6 = 42\nAnswer: {40 + i % 5}" for i in range(500)]
    int_ex = [{"answer": "42"}] * 500
    t = time.perf_counter()
    for _ in range(5):
        verifier.verify_batch(ints, int_ex)
    batch_ms = (time.perf_counter() - t) / 5 * 1000
    print(f"\n### Throughput ({n} pairs: own set + de-duplicated peer suites; {os.cpu_count()} cores)\n")
    print("| mode | verifrl | Math-Verify 0.9.0 | ratio |\n|---|---|---|---|")
    print(f"| single process (verifrl: 1 checking worker) | {ours_single:.0f} pairs/s | "
          f"{mv_single:.0f} pairs/s | {ours_single / mv_single:.1f}x |")
    print(f"| pool of {args.workers} | {ours_pool:.0f} pairs/s | {mv_pool:.0f} pairs/s | "
          f"{ours_pool / mv_pool:.1f}x |")
    print(f"\nRL-step batch, 500 'Answer: N' completions (fast path): {batch_ms:.1f} ms per batch")
    verifier.close()


# -- hostile ---------------------------------------------------------------------------------------
HOSTILE = [
    ("power tower", "9^9^9^9^9", "1"),
    ("power tower, equal", "9^{9^{9^{9^9}}}", "9^{9^{9^{9^9}}}"),
    ("power tower (braces)", "10^{10^{10}}", "10^{10^{10}}+1"),
    ("huge polynomial power", "x^{99999999}", "(x+1)^{99999999}"),
    ("expand bomb", "(x+y+z+1)^{400}", "(1+x+y+z)^{401}"),
    ("1 MB string", "1" * 1_000_000, "1"),
    ("1 MB prose + boxed", "a " * 500_000 + "\\boxed{7}", "7"),
    ("5000 nested braces", "{" * 5000 + "1" + "}" * 5000, "1"),
    ("5000 nested parens", "(" * 5000 + "1" + ")" * 5000, "1"),
    ("factorial of a huge number", "(10^{10})!", "1"),
    ("nested factorial", "((100!)!)!", "2"),
    ("double factorial tower", "9!!!!!!!!!", "3"),
    ("huge integer literal", "9" * 1500, "1"),
    ("many \\sqrt", "\\sqrt{" * 300 + "2" + "}" * 300, "2"),
    ("deep fraction", "\\frac{1}{" * 200 + "2" + "}" * 200, "2"),
    ("simplify trap", "\\sin^{2}(x^{50})+\\cos^{2}(x^{50})+\\log(e^{x^{9999}})", "1+x^{9999}"),
    ("unbalanced \\boxed x5000", "\\boxed{" * 5000, "1"),
    ("long relation chain", "<".join(["x"] * 3000), "1"),
]


def _rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def cmd_hostile(args: argparse.Namespace) -> None:
    from verifiers.math.guard import get_pool
    verifier = MathVerifier(timeout=args.timeout)
    verifier("Answer: x+1", {"answer": "1+x"})  # start the worker
    print(f"\n### Hostile inputs (timeout {args.timeout:.1f} s, limit {2 * args.timeout:.1f} s)\n")
    print("| input (completion) | reference | extracted | result | wall time | within 2x timeout |\n"
          "|---|---|---|---|---|---|")
    worst_worker_rss = 0.0
    ok_all = True
    for name, pred, gold in HOSTILE:
        # the hostile text is the whole completion: extraction, parsing and comparison all count
        t = time.perf_counter()
        res = verifier(pred, {"answer": gold})
        dt = time.perf_counter() - t
        ok = dt <= 2 * args.timeout
        ok_all &= ok
        w = get_pool(1, verifier.policy.max_memory_mb).workers[0]
        if w.proc is not None:
            worst_worker_rss = max(worst_worker_rss, _rss_mb(w.proc.pid))
        shown = res.info["extracted"]
        shown = "-" if shown is None else (shown if len(shown) <= 24 else shown[:20] + "...")
        print(f"| {name} | `{gold}` | `{shown}` | {res.info['reason']} | {dt:.2f} s | {'yes' if ok else 'NO'} |")
    main_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\nall within 2x timeout: {'yes' if ok_all else 'NO'}; peak RSS: host process "
          f"{main_rss:.0f} MB, checking worker (last) {worst_worker_rss:.0f} MB "
          f"(worker address space capped at {verifier.policy.max_memory_mb} MB)")
    verifier.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["peer", "own", "speed", "hostile"])
    ap.add_argument("--peer-file", default=str(PEER_FILE))
    ap.add_argument("--own-file", default=str(OWN_FILE))
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=DEFAULT_POLICY.timeout)
    ap.add_argument("--show-misses", action="store_true")
    ap.add_argument("--rounding", choices=["none", "irrational", "pred", "both"], default=None,
                    help="verifrl rounding policy for peer/own (default: the library default, "
                         f"{DEFAULT_POLICY.rounding})")
    args = ap.parse_args()
    if args.rounding is not None:
        BASE_POLICY["rounding"] = args.rounding
    {"peer": cmd_peer, "own": cmd_own, "speed": cmd_speed, "hostile": cmd_hostile}[args.what](args)
    close_pools()


if __name__ == "__main__":
    main()
