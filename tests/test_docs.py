"""The project speaks of itself, not of its development: no session logs anywhere, and a README
short enough to read."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HISTORY = re.compile(r"\bsessions? \d+|\b(first|second|third|fourth|fifth|sixth|seventh|eighth|ninth|tenth|eleventh"
                     r"|twelfth) (lr |learning-rate )?cycle\b", re.IGNORECASE)


def tracked_text_files() -> list[Path]:
    out = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    suffixes = {".py", ".md", ".json", ".yaml", ".toml", ".txt", ".sh", ".html", ".js", ".proto", ""}
    return [REPO / p for p in out.splitlines() if Path(p).suffix in suffixes and (REPO / p).is_file()
            and not p.startswith("proto/lsic/v1/lsic_pb2")]


def test_no_development_history_in_the_project():
    hits = []
    for path in tracked_text_files():
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            continue
        hits += [f"{path.relative_to(REPO)}: {m.group(0)}" for m in HISTORY.finditer(text)]
    assert not hits, "\n".join(hits[:20])


def test_the_readme_is_for_users():
    readme = (REPO / "README.md").read_text()
    assert len(readme.splitlines()) <= 150
    for needed in ("make demo", "make test", "## Limits", "docs/benchmarks.md"):
        assert needed in readme
