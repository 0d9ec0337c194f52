"""The suite tests the installed msgpass; make sure it is this checkout's code, not a stale copy."""

from pathlib import Path

import msgpass

CHECKOUT = Path(__file__).resolve().parents[1] / "msgpass"


def test_installed_package_is_this_checkout():
    installed = Path(msgpass.__file__).resolve().parent
    if installed == CHECKOUT:
        return  # an editable install, or run from the source tree
    stale = sorted(str(p.relative_to(CHECKOUT)) for p in CHECKOUT.rglob("*.py")
                   if not (installed / p.relative_to(CHECKOUT)).exists()
                   or (installed / p.relative_to(CHECKOUT)).read_bytes() != p.read_bytes())
    assert not stale, (f"the installed msgpass ({installed}) differs from this checkout in "
                       f"{stale}: reinstall with  .venv/bin/pip install '.[test]'  (or use "
                       f"pip install -e for development)")
