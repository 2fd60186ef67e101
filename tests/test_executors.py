"""Every executor runs fn(shared, item) in item order; the process pool survives unguarded
scripts."""

import subprocess
import sys
import textwrap

import pytest

from keel.errors import InvalidInput
from keel.executors import get_executor


def _scaled(shared, item):
    return shared["factor"] * item


@pytest.mark.parametrize("name", ["inline", "process"])
def test_executor_runs_items_in_order_with_shared(name):
    ex = get_executor(name, workers=2)
    try:
        assert list(ex.map(_scaled, range(7), shared={"factor": 3})) == [0, 3, 6, 9, 12, 15, 18]
        # a second call with other shared data sees the new data
        assert list(ex.map(_scaled, [1, 2], shared={"factor": -1})) == [-1, -2]
    finally:
        ex.close()


def test_unknown_executor_is_named():
    with pytest.raises(InvalidInput, match="inline, process, ray; got 'gpu'"):
        get_executor("gpu")


@pytest.mark.slow
def test_unguarded_script_runs_its_work_once(tmp_path):
    script = tmp_path / "unguarded.py"
    script.write_text(
        textwrap.dedent(
            """
            from keel.executors import ProcessExecutor
            from tests.test_executors import _scaled

            print("start", flush=True)
            ex = ProcessExecutor(workers=2)
            print(list(ex.map(_scaled, [1, 2, 3], shared={"factor": 2})), flush=True)
            ex.close()
            """
        )
    )
    root = str(__import__("pathlib").Path(__file__).resolve().parents[1])
    out = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=root,
        env={**__import__("os").environ, "PYTHONPATH": root},
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["start", "[2, 4, 6]"]
