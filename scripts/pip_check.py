"""`pip check`, leaving out what the data-only packages of requirements-data.txt require: they are
installed without their dependencies (they pin versions of code the tests never import), so a
venv set up before stays checkable when `make` sets it up again."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path


def _name(text: str) -> str:
    return re.sub(r"[-_.]+", "-", text).lower()


def main() -> int:
    lines = Path(sys.argv[1]).read_text().splitlines()
    data = {_name(re.split(r"[=<>!~\[ ]", s.strip())[0]) for s in lines if s.strip()[:1].isalnum()}
    done = subprocess.run([sys.executable, "-m", "pip", "check"], capture_output=True, text=True)
    left = [s for s in done.stdout.splitlines() if s.split() and _name(s.split()[0]) not in data]
    left = [s for s in left if not s.startswith("No broken requirements")]
    print("\n".join(left) if left else "No broken requirements found (data-only packages aside).")
    return 1 if left else 0


if __name__ == "__main__":
    sys.exit(main())
