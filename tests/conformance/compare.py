"""Compares two runs of the conformance suite's server scenarios (the `-o` directories of a run
straight against an upstream and of one through the gateway to the same upstream): prints the
totals and every check that passed directly but not through the gateway, and exits 1 if there
is any. With --all-pass it also fails unless every check of both runs passed (INFO checks
report, they do not pass or fail). Usage: python3 compare.py [--all-pass] DIRECT_DIR PROXY_DIR"""

import glob
import json
import os
import re
import sys


def outcomes(directory):
    """(scenario, check id, occurrence) -> status, for every check of every scenario."""
    seen = {}
    for path in sorted(glob.glob(os.path.join(directory, "*", "checks.json"))):
        # server-<scenario>-<timestamp>: the timestamp differs between runs.
        scenario = re.sub(r"-\d{4}-\d{2}-\d{2}T[\d-]+Z$", "", os.path.basename(os.path.dirname(path)))
        counts = {}
        with open(path, encoding="utf-8") as f:
            for check in json.load(f):
                n = counts.get(check["id"], 0)
                counts[check["id"]] = n + 1
                seen[(scenario, check["id"], n)] = check["status"]
    return seen


def main():
    args = sys.argv[1:]
    all_pass = "--all-pass" in args
    args = [a for a in args if a != "--all-pass"]
    direct, proxy = outcomes(args[0]), outcomes(args[1])
    passed = lambda run: {k for k, status in run.items() if status == "SUCCESS"}
    # A check that passed directly and is skipped through the gateway was found not to apply
    # there (the gateway does not advertise what the check needs): reported, not counted lost.
    not_applicable = sorted(k for k in passed(direct) - passed(proxy) if proxy.get(k) == "SKIPPED")
    lost = sorted(passed(direct) - passed(proxy) - set(not_applicable))
    gained = passed(proxy) - passed(direct)
    print(f"direct: {len(passed(direct))} of {len(direct)} checks passed; "
          f"through the gateway: {len(passed(proxy))} of {len(proxy)} "
          f"({len(gained)} more, {len(lost)} lost)")
    for scenario, check, _ in not_applicable:
        print(f"  passed directly, not applicable through the gateway: {scenario} / {check}")
    for scenario, check, _ in lost:
        print(f"  lost through the gateway: {scenario} / {check} ({proxy.get((scenario, check, 0), 'not run')})")
    failed = 0
    if all_pass:
        for name, run in (("directly", direct), ("through the gateway", proxy)):
            for (scenario, check, _), status in sorted(run.items()):
                if status not in ("SUCCESS", "INFO"):
                    failed += 1
                    print(f"  not passed {name}: {scenario} / {check} ({status})")
    return 1 if lost or failed else 0


if __name__ == "__main__":
    sys.exit(main())
