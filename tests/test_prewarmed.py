"""tests/prewarmed.py stands in for ``subprocess.run`` of a Python script: the same exit code,
output, working directory, environment and ``sys.path`` as a fresh interpreter, and the
toolkit imported by the run itself."""
import os
import subprocess
import sys

import pytest

import prewarmed

SCRIPT = '''import os, sys
print(sys.argv[1:], os.getcwd(), os.environ.get("MTU_DEBUG"))
print(sys.path[0] == os.path.dirname(os.path.abspath(__file__)), "extra" in sys.path[1])
print("mtu_toolkit" in sys.modules, __name__)
sys.stdout.flush()
print("to stderr", file=sys.stderr)
if sys.argv[1] == "raise":
    def inner():
        raise ValueError("bad " + sys.argv[2])
    inner()
sys.exit(int(sys.argv[1]) if sys.argv[1].isdigit() else "a message")
'''


def _both(args, **kwargs):
    kwargs.update(capture_output=True, text=True, timeout=120)
    return prewarmed.run(args, **kwargs), subprocess.run(args, **kwargs)


@pytest.mark.parametrize('argv', [['0'], ['3'], ['message'], ['raise', 'ü']])
def test_a_script_runs_as_in_a_fresh_interpreter(tmp_path, argv):
    script = tmp_path / 'script.py'
    script.write_text(SCRIPT)
    env = dict(os.environ, PYTHONPATH=str(tmp_path / 'extra'), MTU_DEBUG='1')
    warm, fresh = _both([sys.executable, str(script), *argv], cwd=tmp_path, env=env)
    assert (warm.returncode, warm.stdout, warm.stderr) == (
        fresh.returncode, fresh.stdout, fresh.stderr)
    # what each ran: the arguments, the folder and variables given, not the toolkit (torch is
    # there already in the prewarmed run: that is its point)
    assert warm.stdout.splitlines()[:3] == [f'{argv} {tmp_path} 1', 'True True',
                                            'False __main__']


def test_code_timeout_and_interrupt(tmp_path):
    code = 'import sys; print(sys.argv, sys.path[0] == ""); raise KeyboardInterrupt'
    warm, fresh = _both([sys.executable, '-c', code, 'x'], cwd=tmp_path)
    assert (warm.returncode, warm.stdout) == (fresh.returncode, fresh.stdout) == (
        -2, "['-c', 'x'] True\n")
    assert warm.stderr.splitlines()[-1] == 'KeyboardInterrupt'
    with pytest.raises(subprocess.TimeoutExpired):
        prewarmed.run([sys.executable, '-c', 'import time; time.sleep(60)'],
                      capture_output=True, timeout=1)
    # the server goes on after a run it had to kill
    assert prewarmed.run([sys.executable, '-c', 'print(1)'], capture_output=True).stdout == b'1\n'
