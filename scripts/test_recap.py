"""The last lines of a test run: every failed or erroring test of the main run, re-listed after the floor run so that
a log's tail (what CI shows) names them. Called by scripts/run_tests.sh:

    python -m scripts.test_recap .cache/test-results/main.xml

Reads pytest's JUnit XML (``--junitxml``); prints nothing but a count line when everything passed. Exit code 0."""
from __future__ import annotations

import sys
import xml.etree.ElementTree as ET
from pathlib import Path


def recap(junit_xml: Path) -> list[str]:
    """One line per failed / erroring test case of ``junit_xml`` ("FAILED id: first line of the message"), after a
    line with the run's counts. A missing or unreadable file gives one line saying so."""
    try:
        root = ET.parse(junit_xml).getroot()
    except (OSError, ET.ParseError) as e:
        return [f"[recap] no test results in {junit_xml}: {e}"]
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    counts = {k: sum(int(s.get(k, 0)) for s in suites) for k in ("tests", "failures", "errors", "skipped")}
    lines = [f"[recap] {counts['tests']} tests: {counts['failures']} failed, {counts['errors']} errors, "
             f"{counts['skipped']} skipped"]
    for case in root.iter("testcase"):
        for kind in ("failure", "error"):
            for problem in case.findall(kind):
                test_id = f"{case.get('classname', '')}::{case.get('name')}"
                message = (problem.get("message") or "").strip().splitlines()
                lines.append(f"[recap] {'FAILED' if kind == 'failure' else 'ERROR'} {test_id}: "
                             f"{message[0][:300] if message else ''}")
    return lines


if __name__ == "__main__":
    for line in recap(Path(sys.argv[1])):
        print(line)
