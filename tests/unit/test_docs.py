"""The docs stay true to the repository: links resolve, named paths exist, settings match the code.

Pure: reads files and imports embedserve.settings, starts nothing.

- Links: every relative Markdown link in README.md and docs/*.md names an existing file, and a
  `#anchor` names a heading of that file (GitHub's slugs) or an explicit `<a id="...">`.
- Paths: every repository path named in backticks outside code blocks exists. A path is a token
  starting with one of the repository's top-level directories (`api/`, `worker/`, ...) or naming
  a top-level file (`docker-compose.yml`, `pyproject.toml`, ...); placeholders (`<job id>`),
  globs (`*`) and elisions (`...`) are skipped, as are runtime paths (`.run/...`), which are not
  in the repository.
- Settings: the tables of docs/settings.md headed `| variable | default | meaning |` list exactly
  the EMBED_* variables embedserve/settings.py reads. What it reads is observed (Settings.from_env
  over a recording mapping) and also parsed from its source (`reader.<type>("EMBED_...")`), so a
  variable read only under some condition is not missed. Variables read elsewhere (the install
  script's EMBED_TORCH_SPEC, the API's result-streaming knobs, `embedserve embed`'s EMBED_URL and
  EMBED_API_KEY, the compose file's EMBED_IMAGE_TAG and EMBED_PUBLISH_PORT) belong in the page's
  other table (`| variable | read by | meaning |`), and each must be read somewhere in the
  repository's code. Test-only variables (EMBED_TEST_REDIS_URL, EMBED_TEST_HANG_TEXT) are not
  settings of the service: docs/development.md may name the first, the settings page names
  neither, and the last check holds for any EMBED_* name anywhere in the docs: it must be read by
  some code, tests included.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from embedserve.settings import Settings
from tests.unit.helpers import RecordingEnv

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SETTINGS_PAGE = ROOT / "docs" / "settings.md"

# Top-level entries of the repository that docs name as paths. A bare file name counts as a repo
# path only when it looks like one of the top-level files, so a user's `texts.jsonl` is not one.
TOP_DIRS = ("api", "worker", "embedserve", "scripts", "tests", "docs", "constraints", "docker", ".ci")
TOP_FILE_RE = re.compile(r"^(Dockerfile|pyproject\.toml|README\.md|\.dockerignore|\.gitignore|"
                         r"docker-compose[\w.-]*\.ya?ml)$")
# Where code may read an EMBED_* variable: sources, scripts, compose files and the Dockerfile.
CODE_GLOBS = ("api/**/*.py", "worker/**/*.py", "embedserve/**/*.py", "scripts/**/*.py", "tests/**/*.py",
              "scripts/*", "docker-compose*.yml", "docker/*.yml", "Dockerfile", ".ci/*")

FENCE_RE = re.compile(r"^(```|~~~).*?^\1", re.S | re.M)
LINK_RE = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
CODE_SPAN_RE = re.compile(r"(`+)(.+?)\1", re.S)
HEADING_RE = re.compile(r"^#{1,6}\s+(.*?)\s*#*\s*$", re.M)
EXPLICIT_ANCHOR_RE = re.compile(r"<a\s+(?:id|name)=\"([^\"]+)\"")
EMBED_RE = re.compile(r"\bEMBED_[A-Z0-9_]+\b")


def prose(text: str) -> str:
    """The page without its fenced code blocks (their contents are examples, not claims)."""
    return FENCE_RE.sub("", text)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: markup dropped, lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading keeps its text
    text = re.sub(r"<[^>]+>", "", text).replace("`", "").lower()
    text = re.sub(r"[^\w\- ]", "", text)  # \w keeps letters, digits and _ (GitHub keeps _ too)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = prose(path.read_text())
    found, seen = set(), {}
    for heading in HEADING_RE.findall(text):
        base = slug(heading)
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")  # GitHub numbers repeated headings
    return found | set(EXPLICIT_ANCHOR_RE.findall(text))


def links(path: Path) -> list[str]:
    return [target for target in LINK_RE.findall(prose(path.read_text()))
            if not re.match(r"^[a-z][a-z0-9+.-]*:", target)]  # http:, https:, mailto: are not checked here


def broken_links(path: Path) -> list[str]:
    broken = []
    for target in links(path):
        file_part, _, anchor = target.partition("#")
        dest = (path.parent / file_part).resolve() if file_part else path
        if not dest.exists():
            broken.append(f"{target}: no file {dest.relative_to(ROOT) if dest.is_relative_to(ROOT) else dest}")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{target}: no heading #{anchor} in {dest.relative_to(ROOT)}")
    return broken


def named_paths(path: Path) -> list[str]:
    """Repository paths a page names in backticks, outside code blocks."""
    out = []
    for _, span in CODE_SPAN_RE.findall(prose(path.read_text())):
        for token in span.split():
            token = token.strip(",;:()'\"")
            if any(mark in token for mark in ("<", ">", "*", "...", "…", "{", "$", "=")):
                continue  # a placeholder, a glob, an elision, a variable or an assignment
            first = token.split("/", 1)[0]
            if ("/" in token and first in TOP_DIRS) or TOP_FILE_RE.match(token):
                out.append(token)
    return out


def settings_read() -> set[str]:
    """EMBED_* variables embedserve/settings.py reads: observed, and parsed from its source."""

    env = RecordingEnv()
    Settings.from_env(env)
    observed = {name for name in env.asked if name.startswith("EMBED_")}
    source = (ROOT / "embedserve" / "settings.py").read_text()
    parsed = set(re.findall(r"reader\.\w+\(\s*\"(EMBED_[A-Z0-9_]+)\"", source))
    return observed | parsed


def table_names(text: str, header: str) -> set[str]:
    """EMBED_* names in the first column of every table of `text` whose header row is `header`."""
    names, inside = set(), False
    for line in text.splitlines():
        if line.strip() == header:
            inside = True
        elif inside and line.startswith("|"):
            names |= set(EMBED_RE.findall(line.split("|")[1]))
        else:
            inside = False
    return names


def code_text() -> str:
    files = {p for pattern in CODE_GLOBS for p in ROOT.glob(pattern) if p.is_file()}
    files.discard(Path(__file__).resolve())  # this test names variables; naming is not reading
    return "\n".join(p.read_text(errors="replace") for p in sorted(files))


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page):
    assert broken_links(page) == []


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_named_repository_paths_exist(page):
    missing = sorted({p for p in named_paths(page) if not (ROOT / p.rstrip("/")).exists()})
    assert missing == [], f"{page.relative_to(ROOT)} names paths that do not exist"


def test_the_checks_see_what_they_check():
    """Guards against a parser that silently finds nothing: the pages do have links, paths, anchors."""
    assert sum(len(links(p)) for p in PAGES) > 50
    assert "api/routes/jobs.py" in {p for page in PAGES for p in named_paths(page)}
    assert "post-v1embeddings-also-embeddings" in anchors(ROOT / "docs" / "api.md")
    assert slug("Compact vectors: `embedding_type`") == "compact-vectors-embedding_type"
    assert slug("How jobs run, and what survives a crash") == "how-jobs-run-and-what-survives-a-crash"
    assert {"EMBED_REDIS_URL", "EMBED_ACCEPT_TOKEN_IDS"} <= settings_read()


def test_settings_page_lists_exactly_the_settings_read():
    text = SETTINGS_PAGE.read_text()
    documented = table_names(text, "| variable | default | meaning |")
    read = settings_read()
    assert sorted(read - documented) == [], "read by embedserve/settings.py but not in docs/settings.md"
    assert sorted(documented - read) == [], "in docs/settings.md's settings tables but not read by settings.py"


def test_variables_read_elsewhere_are_not_settings_and_are_read():
    elsewhere = table_names(SETTINGS_PAGE.read_text(), "| variable | read by | meaning |")
    assert elsewhere, "docs/settings.md has no table of variables read elsewhere"
    assert sorted(elsewhere & settings_read()) == [], "settings belong in the settings tables"
    code = code_text()
    assert sorted(name for name in elsewhere if not re.search(rf"\b{name}\b", code)) == []


def test_every_embed_variable_the_docs_name_is_read_somewhere():
    code = code_text()
    named = {name for page in PAGES for name in EMBED_RE.findall(page.read_text())}
    assert sorted(name for name in named if not re.search(rf"\b{name}\b", code)) == []
