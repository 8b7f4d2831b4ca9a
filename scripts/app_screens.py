"""Screenshots of every tab of the app at a desktop and a phone window size, for docs/screens/.

    python scripts/app_screens.py [--out docs/screens] [--clip examples/digits_3.mp4] [--start 1]
                                  [--chromium /usr/bin/chromium] [-- APP ARGS...]

Starts ``app.py`` (the bundled models unless APP ARGS say otherwise) on a free port, runs each tab's
action on the clip, and saves ``<tab>_1280x800.jpg`` and ``<tab>_390x844.jpg`` (whole pages) with
:func:`larp_lab.app.tour.tour`, the same tour the browser test takes. Prints what the model saw and
every problem found (page errors, error messages, sideways scrolling, oversized video boxes); exit
status 1 when there is one. Needs the dev extra (playwright) and a Chromium.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    from larp_lab.app.tour import running_app, tour

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "screens")
    p.add_argument("--clip", type=Path, default=ROOT / "examples" / "digits_3.mp4",
                   help="the clip of the tabs that take one (default: a held-out moving digit, the bundled models' data)")
    p.add_argument("--start", type=float, default=1.0, help="start time in the clip (seconds)")
    p.add_argument("--chromium", default=shutil.which("chromium") or shutil.which("chromium-browser"),
                   help="browser executable (default: chromium on PATH, else Playwright's own)")
    p.add_argument("app_args", nargs="*", help="arguments for app.py (after --)")
    a = p.parse_args(argv)
    with running_app(ROOT / "app.py", a.app_args) as url:
        res = tour(url, a.clip, a.out, chromium=a.chromium, start_s=a.start, image_format="jpeg")
    for tab, line in res.used.items():
        print(f"{tab}: {line}")
    print(f"seconds per action: {res.seconds}")
    for path in res.screenshots:
        print(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
    for problem in res.problems:
        print(f"problem: {problem}", file=sys.stderr)
    return 1 if res.problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
