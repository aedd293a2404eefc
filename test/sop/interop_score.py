#!/usr/bin/env python3
"""Score table from the OpenPGP interoperability test suite's --json-out file.

Counts exactly as the suite's own summary (TestMatrix::summarize in src/tests/mod.rs of
the suite): a test is "fully as expected" for an implementation when every vector of it
that carries an expectation scored Success for that implementation as consumer; vectors
are counted good (Success) or bad (Failure, Unsupported, IO, Unknown).

    interop_score.py RESULTS.json              # the score table (markdown)
    interop_score.py RESULTS.json --misses IMPL  # tests IMPL did not fully pass, with why
"""

import json
import sys


def matrices(results):
    for section, tests in results["results"]:
        for t in tests:
            yield section, t


def summarize(results):
    scores = {}
    for _, t in matrices(results):
        has_expectation = any(row.get("expectation") for row in t["results"])
        for i, imp in enumerate(t["consumers"]):
            name = imp["summary"]
            s = scores.setdefault(name, {"vg": 0, "vb": 0, "tg": 0, "tb": 0})
            n = 0
            matched = True
            for row in t["results"]:
                if i >= len(row["results"]):
                    continue
                n += 1
                score = row["results"][i]["score"]
                if score == "Success":
                    s["vg"] += 1
                elif score != "Neutral":
                    s["vb"] += 1
                if row.get("expectation") is not None and score != "Success":
                    matched = False
            if not has_expectation or n == 0:
                matched = False
            s["tg" if matched else "tb"] += 1
    return scores


def misses(results, who):
    for section, t in matrices(results):
        names = [c["summary"] for c in t["consumers"]]
        idx = [i for i, n in enumerate(names) if who in n]
        if not idx:
            continue
        i = idx[0]
        has_expectation = any(row.get("expectation") for row in t["results"])
        bad = []
        for row in t["results"]:
            if i >= len(row["results"]):
                continue
            r = row["results"][i]
            exp = row.get("expectation")
            if exp is not None and r["score"] != "Success":
                label = row["artifact"].get("producer") or "?"
                kind = "Ok" if "Ok" in exp else "Err"
                bad.append(f"    [{r['score']}] expected {kind} on vector from {label}: "
                           f"{(r.get('error') or '').strip()[:160]}")
        if bad or not has_expectation:
            print(f"{section} / {t['title']}" + ("" if has_expectation else "  (no expectations)"))
            for b in bad:
                print(b)


def main():
    results = json.load(open(sys.argv[1]))
    if len(sys.argv) > 3 and sys.argv[2] == "--misses":
        misses(results, sys.argv[3])
        return
    scores = summarize(results)
    print(f"suite commit: {results.get('commit')}, run: {results.get('timestamp')}")
    print()
    print("| implementation | tests fully as expected | vectors as expected |")
    print("|---|---|---|")
    ordered = sorted(scores.items(), key=lambda kv: (kv[1]["tg"], kv[1]["vg"]), reverse=True)
    for name, s in ordered:
        print(f"| {name} | {s['tg']}/{s['tg'] + s['tb']} | {s['vg']}/{s['vg'] + s['vb']} |")


if __name__ == "__main__":
    main()
