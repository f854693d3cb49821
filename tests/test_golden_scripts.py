"""The scripts of tests/golden/ that run the authors' reference implementation
(docs/official_weights.md) given a --reference or --video that is not what they need: one
line, exit code 2, not a traceback."""
import os.path as osp
import sys

import pytest

import prewarmed

GOLDEN = osp.join(osp.dirname(osp.abspath(__file__)), 'golden')


def _run(script, *args):
    return prewarmed.run([sys.executable, osp.join(GOLDEN, script), *args],
                         capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize('script', ['make_official_fixture.py', 'check_official_variants.py'])
def test_golden_script_wrong_reference_is_one_line(script, tmp_path):
    missing = str(tmp_path / 'RealTime_VDBLR')
    proc = _run(script, '--reference', missing)
    assert proc.returncode == 2 and 'Traceback' not in proc.stderr, proc.stderr
    assert proc.stderr == (f'error: {osp.join(missing, "models", "utils.py")} not found: '
                           '--reference must be the RealTime_VDBLR checkout\n')
    # a folder with the files but not the authors' code
    other = tmp_path / 'other'
    (other / 'models' / 'archs').mkdir(parents=True)
    (other / 'models' / 'utils.py').write_text('x = 1\n')
    (other / 'models' / 'archs' / 'MTU.py').write_text('')
    proc = _run(script, '--reference', str(other))
    assert proc.returncode == 2 and len(proc.stderr.splitlines()) == 1, proc.stderr
    assert proc.stderr.startswith('error: ') and 'is --reference the RealTime_VDBLR' in proc.stderr
    assert proc.stdout == ''
