"""``mp.draw`` works after ``import msgpass`` alone, and matplotlib is imported only then."""

import subprocess
import sys


def test_mp_draw_is_there_without_importing_matplotlib_first():
    code = ("import sys, msgpass as mp\n"
            "assert 'matplotlib' not in sys.modules, 'import msgpass imported matplotlib'\n"
            "assert callable(mp.draw.draw_network) and callable(mp.draw.draw_graph)\n"
            "assert 'matplotlib' in sys.modules\n"
            "try:\n    mp.no_such_thing\nexcept AttributeError as e:\n"
            "    assert 'no_such_thing' in str(e)\nelse:\n    raise SystemExit('no error')\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
