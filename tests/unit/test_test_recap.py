"""scripts/test_recap: the failures of a run, named at the log's tail."""
import subprocess
import sys
from pathlib import Path

from scripts.test_recap import recap

REPO = Path(__file__).resolve().parents[2]


def _run_pytest(tmp_path: Path, body: str) -> Path:
    (tmp_path / "test_sample.py").write_text(body)
    (tmp_path / "pytest.ini").write_text("[pytest]\n")  # not the project's conftest or settings
    xml = tmp_path / "out.xml"
    subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(tmp_path),
                    "-c", str(tmp_path / "pytest.ini"), f"--junitxml={xml}", str(tmp_path / "test_sample.py")],
                   cwd=tmp_path, capture_output=True)
    return xml


def test_failures_and_errors_are_named_with_their_message(tmp_path):
    xml = _run_pytest(tmp_path, """
import pytest
def test_ok(): pass
def test_bad(): assert 1 == 2, "one is not two"
@pytest.fixture
def broken(): raise RuntimeError("fixture broke")
def test_err(broken): pass
@pytest.mark.parametrize("x", [1, 2])
def test_param(x): assert x == 1
""")
    lines = recap(xml)
    assert lines[0] == "[recap] 5 tests: 2 failed, 1 errors, 0 skipped"
    body = "\n".join(lines[1:])
    assert "FAILED test_sample::test_bad: AssertionError: one is not two" in body
    assert "ERROR test_sample::test_err: failed on setup with \"RuntimeError: fixture broke\"" in body
    assert "FAILED test_sample::test_param[2]" in body and "test_param[1]" not in body
    assert "test_ok" not in body


def test_a_green_run_is_one_count_line(tmp_path):
    assert recap(_run_pytest(tmp_path, "def test_ok(): pass\n")) == ["[recap] 1 tests: 0 failed, 0 errors, "
                                                                    "0 skipped"]


def test_missing_results_say_so(tmp_path):
    (line,) = recap(tmp_path / "absent.xml")
    assert line.startswith("[recap] no test results in ") and "absent.xml" in line
