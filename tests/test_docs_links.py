"""Every Markdown file that the code, tests and docs cite exists in the repository."""

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
