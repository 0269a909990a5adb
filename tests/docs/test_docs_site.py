"""The docs build as a site (mkdocs, material theme) with warnings as errors, and no internal link is broken.

``mkdocs build --strict`` already fails on a nav entry whose file is missing, a page
left out of the nav, and a Markdown link to a missing page or anchor (see
``validation:`` in mkdocs.yml). The built HTML is then crawled: every relative
``href``/``src`` must name a file of the site and, with a ``#fragment``, an element
id of that page. README.md is not part of the site; its relative links must name
files of the repository.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]


class _Page(HTMLParser):
    """Element ids and link targets of one HTML page."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.ids: set[str] = set()
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        for key in ("id", "name"):
            if values.get(key) and (key == "id" or tag == "a"):
                self.ids.add(values[key])  # type: ignore[arg-type]
        target = values.get("href") if tag in {"a", "link"} else values.get("src") if tag in {"img", "script"} else None
        if target:
            self.links.append(target)


def _parse(path: Path) -> _Page:
    page = _Page()
    page.feed(path.read_text(encoding="utf-8"))
    return page


def broken_links(site: Path) -> list[str]:
    """``page: link (why)`` for every internal link of ``site`` that leads nowhere."""
    site = site.resolve()
    pages = {p: _parse(p) for p in site.rglob("*.html")}
    broken = []
    for page_path, page in pages.items():
        for link in page.links:
            parts = urlsplit(link)
            if parts.scheme or parts.netloc or link.startswith("data:"):
                continue  # external; not fetched (the site builds offline)
            if parts.path:
                base = site if parts.path.startswith("/") else page_path.parent  # 404.html links from the root
                target = (base / unquote(parts.path).lstrip("/")).resolve()
                if target.is_dir():
                    target = target / "index.html"
            else:
                target = page_path
            where = f"{page_path.relative_to(site).as_posix()}: {link}"
            if not target.exists():
                broken.append(f"{where} (no such file)")
            elif parts.fragment and target.suffix == ".html":
                ids = pages[target].ids if target in pages else _parse(target).ids
                if unquote(parts.fragment) not in ids:
                    broken.append(f"{where} (no element with id {parts.fragment!r})")
    return broken


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(REPO / "mkdocs.yml"), "--site-dir", str(out)],
        cwd=REPO,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},  # mkdocs-material's banner about a future MkDocs
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{proc.stdout}\n{proc.stderr}"
    return out


def _nav_files(nav: list) -> list[str]:
    files = []
    for item in nav:
        value = next(iter(item.values())) if isinstance(item, dict) else item
        files.extend(_nav_files(value) if isinstance(value, list) else [value])
    return files


def test_every_docs_page_is_built_and_in_the_nav(site: Path) -> None:
    config = yaml.safe_load((REPO / "mkdocs.yml").read_text(encoding="utf-8"))
    nav = _nav_files(config["nav"])
    pages = sorted(p.relative_to(REPO / "docs").as_posix() for p in (REPO / "docs").rglob("*.md"))
    assert sorted(nav) == pages
    for page in pages:
        stem = page[: -len(".md")]
        built = site / ("index.html" if stem == "index" else f"{stem}/index.html")
        assert built.exists(), f"{page} was not built to {built}"
    assert "material" in (site / "index.html").read_text(encoding="utf-8").lower()


def test_site_has_no_broken_internal_links(site: Path) -> None:
    assert not broken_links(site), "\n".join(broken_links(site))


def test_link_checker_finds_missing_pages_and_anchors(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "index.html").write_text('<h2 id="here">x</h2><a href="#here">ok</a><a href="#gone">bad</a>')
    (tmp_path / "index.html").write_text(
        '<a href="a/">ok</a><a href="a/#here">ok</a><a href="a/#nope">bad</a>'
        '<a href="b/">bad</a><a href="https://example.org/x">external</a><img src="img.png">'
        '<a href="/a/#here">root-relative ok</a><a href="/c/">root-relative bad</a>'
    )
    assert sorted(broken_links(tmp_path)) == [
        "a/index.html: #gone (no element with id 'gone')",
        "index.html: /c/ (no such file)",
        "index.html: a/#nope (no element with id 'nope')",
        "index.html: b/ (no such file)",
        "index.html: img.png (no such file)",
    ]


_MD_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def test_readme_relative_links_exist() -> None:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    text = re.sub(r"```.*?```", "", text, flags=re.S)  # links inside code are not links
    missing = []
    for target in _MD_LINK.findall(text):
        parts = urlsplit(target)
        if parts.scheme or parts.netloc or not parts.path:
            continue
        if not (REPO / unquote(parts.path)).exists():
            missing.append(target)
    assert not missing, f"README.md links to missing files: {missing}"
