"""The repository itself: cited Markdown files exist; recordings are ignored, documentation assets are not."""

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MD_NAME = re.compile(r"[A-Za-z0-9_./-]*[A-Za-z0-9_]\.md\b")


def test_no_dangling_markdown_references():
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    dangling = []
    for name in files:
        path = ROOT / name
        if path.suffix not in (".py", ".md", ".toml", ".txt", ".cfg") or not path.is_file():
            continue
        for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            for ref in MD_NAME.findall(line):
                # A reference resolves from the repository root or from the citing file's folder.
                if not ((ROOT / ref).is_file() or (path.parent / ref).is_file()):
                    dangling.append(f"{name}:{lineno}: {ref}")
    assert not dangling, "references to Markdown files that are not in the repository:\n" + "\n".join(dangling)


def _ignored(path: str) -> bool:
    return subprocess.run(["git", "check-ignore", "-q", "--no-index", path], cwd=ROOT).returncode == 0


def test_recordings_are_ignored_but_docs_assets_are_not():
    assert _ignored("play.gif") and _ignored("out/match.mp4")
    assert not _ignored("docs/assets/new_demo.gif") and not _ignored("docs/assets/new_demo.mp4")
    tracked = subprocess.run(["git", "ls-files", "docs/assets"], cwd=ROOT, capture_output=True, text=True).stdout
    assert "docs/assets/tmaze_inspect.gif" in tracked.split()
