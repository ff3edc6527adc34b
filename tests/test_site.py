"""The book as a reader meets it: built by the README's command, served over http on localhost,
and read in a real browser (Debian's headless Chromium, driven by selenium).

The build must print no warning. Checked on every page: it loads with no JavaScript console
error, every image has loaded, every link inside the site leads to a page or file that exists
(and to the anchor it names); each lesson page shows at least as many figures as its code draws;
the search finds the LRN lesson. Screenshots are left for a person to look at:
docs/_build/screenshots/landing.png, and lesson06.png and lesson06_figure.png (the LRN lesson's
top and its first figure) beside it.

Needs the docs extra (``pip install -e ".[docs]"``; ``[test]`` includes it) and Chromium with its
driver (``apt-get install chromium chromium-driver``). Without them the tests skip, saying why;
with MINIALEX_REQUIRE_BROWSER=1 (set by .ci/run) a missing piece fails them instead.
"""

import functools
import http.server
import importlib.util
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
HTML = DOCS / "_build" / "html"
SCREENSHOTS = DOCS / "_build" / "screenshots"
sys.path.insert(0, str(DOCS / "_ext"))

REQUIRED = os.environ.get("MINIALEX_REQUIRE_BROWSER") == "1"
CHROMIUM_FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                  "--window-size=1280,900"]
BUILD_TIMEOUT_S = 900
LESSON_PAGE = "lessons/06_local_response_norm.html"


def _missing(reason):
    if REQUIRED:
        pytest.fail(f"{reason} (MINIALEX_REQUIRE_BROWSER=1: the browser tests may not skip)")
    pytest.skip(reason)


def _find_browser():
    chromium = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")
                     if shutil.which(n)), None)
    driver = shutil.which("chromedriver") or next(
        (p for p in ("/usr/lib/chromium/chromedriver", "/usr/bin/chromedriver")
         if os.path.exists(p)), None)
    if chromium is None or driver is None:
        _missing("Chromium or its driver is not installed (apt-get install chromium "
                 "chromium-driver)")
    return chromium, driver


@pytest.fixture(scope="module")
def site():
    """Build the site with the README's command (the lessons come from the shared cache)."""
    for module in ("sphinx", "myst_nb", "sphinx_book_theme", "selenium"):
        if importlib.util.find_spec(module) is None:
            _missing(f"{module} is not installed (pip install -e \".[test]\")")
    _find_browser()              # before the build: no point building for a missing browser
    result = subprocess.run([sys.executable, "-m", "sphinx", "-b", "html", "docs",
                             "docs/_build/html"], cwd=ROOT, capture_output=True, text=True,
                            timeout=BUILD_TIMEOUT_S)
    assert result.returncode == 0, ("the site did not build:\n"
                                    + (result.stdout + result.stderr)[-4000:])
    BUILD_LOG[:] = (result.stdout + result.stderr).splitlines()
    return HTML


#: The site build's output lines (``site`` fills it).
BUILD_LOG = []


@pytest.fixture(scope="module")
def server(site):
    """The built site over http on 127.0.0.1 (a free port), as a reader's browser gets it."""
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                            functools.partial(Quiet, directory=str(site)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, driver_path = _find_browser()
    profile = tempfile.mkdtemp(prefix="minialex-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in CHROMIUM_FLAGS + [f"--user-data-dir={profile}"]:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


def _pages(site):
    return sorted(p.relative_to(site).as_posix() for p in site.rglob("*.html")
                  if not p.relative_to(site).as_posix().startswith(("_static/", "_sources/")))


def _load(browser, url):
    browser.get(url)
    for _ in range(100):
        if browser.execute_script("return document.readyState") == "complete":
            return
        time.sleep(0.05)


IMAGES_JS = """
const images = Array.from(document.images);
images.forEach(i => { i.loading = 'eager'; });
return images.map(i => [i.currentSrc || i.src, i.complete, i.naturalWidth]);
"""
LINKS_JS = "return Array.from(document.querySelectorAll('a[href]')).map(a => a.href);"
FIGURES_JS = ("return document.querySelectorAll("
              "'.cell_output img, .output img, div.output_area img').length;")


@pytest.fixture(scope="module")
def crawl(site, server, browser):
    """Every page of the site, visited once: its console errors, images, links and figures."""
    pages = {}
    for page in _pages(site):
        _load(browser, server + page)
        images = browser.execute_script(IMAGES_JS)
        deadline = time.time() + 10
        while any(not done for _, done, _ in images) and time.time() < deadline:
            time.sleep(0.1)
            images = browser.execute_script(IMAGES_JS)
        pages[page] = {
            "errors": [entry["message"] for entry in browser.get_log("browser")
                       if entry["level"] == "SEVERE"],
            "images": images,
            "links": browser.execute_script(LINKS_JS),
            "figures": browser.execute_script(FIGURES_JS),
        }
    return pages


def test_site_has_its_pages(site):
    pages = set(_pages(site))
    expected = {"index.html", "paper.html", "training.html", "data.html", "distributed.html",
                "architecture.html", "ablation.html", "performance.html", "figure2.html",
                "api.html", "lessons/index.html", "search.html"}
    assert expected <= pages, sorted(expected - pages)
    lessons = sorted(p for p in pages if re.match(r"lessons/\d\d_\w+\.html$", p))
    assert len(lessons) == 15, lessons
    # The API reference has a page for every module of the package, core and tools.
    modules = []
    for source in sorted((ROOT / "minialex").rglob("*.py")):
        parts = source.relative_to(ROOT).with_suffix("").parts
        parts = parts[:-1] if parts[-1] == "__init__" else parts
        if not any(part.startswith("_") for part in parts):
            modules.append(".".join(parts))
    missing = [m for m in modules if f"api/{m}.html" not in pages]
    assert len(modules) > 40 and not missing, missing


def test_the_build_warns_of_nothing(site):
    """Sphinx and docutils warn where a page or a docstring does not render as written (a
    numpy-style parameter list that napoleon misread came out as garbled fields in the API
    reference, with only a warning in the build's output). The Jupyter kernel's own log lines
    ("[IPKernelApp] WARNING | ...") are not the book's."""
    warnings = [line for line in BUILD_LOG
                if re.search(r"\bWARNING\b", line) and "[IPKernelApp]" not in line]
    assert not warnings, "\n".join(warnings[:20])


def test_every_page_loads_without_console_errors(crawl):
    failing = {page: info["errors"] for page, info in crawl.items() if info["errors"]}
    assert not failing, failing


def test_every_image_loaded(crawl):
    broken = {page: [src for src, done, width in info["images"] if not (done and width > 0)]
              for page, info in crawl.items()}
    broken = {page: srcs for page, srcs in broken.items() if srcs}
    assert not broken, broken
    assert crawl["index.html"]["images"], "the landing page shows a picture"
    assert crawl["figure2.html"]["figures"] >= 2, "figure2.md draws the paper's and mini's"


def _target_ids(path, cache={}):
    if path not in cache:
        text = path.read_text(errors="replace")
        cache[path] = set(re.findall(r"""\bid=["']([^"']+)["']""", text))
    return cache[path]


def test_every_internal_link_resolves(crawl, server, site):
    broken = []
    checked = 0
    for page, info in crawl.items():
        for href in info["links"]:
            if not href.startswith(server):
                continue                      # the web, mailto: ...: not this site's business
            parts = urllib.parse.urlsplit(href)
            rel = urllib.parse.unquote(parts.path)[1:]
            target = site / rel
            if rel == "" or target.is_dir():
                target = target / "index.html"
            checked += 1
            if not target.is_file():
                broken.append(f"{page} -> {rel} (no such file)")
            elif parts.fragment and target.suffix == ".html":
                fragment = urllib.parse.unquote(parts.fragment)
                if fragment not in _target_ids(target):
                    broken.append(f"{page} -> {rel}#{fragment} (no such anchor)")
    assert checked > 100, f"only {checked} internal links found: is the crawl reading pages?"
    assert not broken, "\n".join(sorted(set(broken)))


def test_each_lesson_shows_the_figures_its_code_draws(crawl):
    import minialex_book
    import nbformat
    shown = {}
    for path in minialex_book.lesson_notebooks():
        nb = nbformat.read(path, as_version=4)
        if minialex_book.reads_fashion_mnist(nb) and not minialex_book.fashion_mnist_available():
            continue                          # shown unexecuted, as the build said
        drawn = minialex_book.figures_drawn(nb)
        figures = crawl[f"lessons/{path.stem}.html"]["figures"]
        shown[path.stem] = (figures, drawn)
    short = {name: f"{f} shown, {d} drawn" for name, (f, d) in shown.items() if f < max(d, 1)}
    assert shown and not short, short


def test_lessons_link_their_notebook_and_the_paper(crawl):
    for page, info in crawl.items():
        if re.match(r"lessons/\d\d_\w+\.html$", page):
            stem = page[len("lessons/"):-len(".html")]
            assert any(h.endswith(f"/{stem}.ipynb") for h in info["links"]), \
                f"{page} links no download of {stem}.ipynb"
            assert any(h.split("#")[0].endswith("/paper.html") for h in info["links"]), \
                f"{page} does not link the paper page"


def test_search_finds_the_lrn_lesson(server, browser, site):
    from selenium.webdriver.common.by import By
    _load(browser, server + "search.html?q=local+response+normalization")
    hrefs = []
    deadline = time.time() + 30
    while time.time() < deadline:
        hrefs = [a.get_attribute("href") for a in
                 browser.find_elements(By.CSS_SELECTOR, "#search-results a")]
        if any("06_local_response_norm" in h for h in hrefs):
            break
        time.sleep(0.2)
    assert any("06_local_response_norm" in h for h in hrefs), hrefs


def test_screenshots_for_a_person(server, browser, site):
    from PIL import Image
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    shots = (("landing", "index.html", None), ("lesson06", LESSON_PAGE, None),
             ("lesson06_figure", LESSON_PAGE, ".cell_output img"))
    for name, page, scroll_to in shots:
        _load(browser, server + page)
        if scroll_to:                         # the lesson's first picture, in view
            assert browser.execute_script(
                "const e = document.querySelector(arguments[0]);"
                "if (e) { e.scrollIntoView({block: 'center'}); } return !!e;", scroll_to), page
            time.sleep(0.3)
        path = SCREENSHOTS / f"{name}.png"
        assert browser.save_screenshot(str(path)), path
        with Image.open(path) as image:
            width, height = image.size
            colours = image.convert("L").getextrema()
        assert width >= 1000 and height >= 600, (path, image.size)
        assert colours[1] - colours[0] > 100, f"{path} is blank"


def test_lesson_links_are_rewritten_for_the_copies():
    # Lessons link from lessons/ (right on GitHub and in Jupyter); the book shows copies in
    # docs/lessons/, so each relative link is rewritten to reach the same file from there.
    import minialex_book
    assert minialex_book.rewrite_link("../docs/paper.md#dropout") == "../paper.md#dropout"
    assert minialex_book.rewrite_link("../minialex/optim.py") == "../../minialex/optim.py"
    assert minialex_book.rewrite_link("07_overlapping_pooling.ipynb") == \
        "07_overlapping_pooling.ipynb"
    assert minialex_book.rewrite_link("README.md#outputs-policy") == "index.md#outputs-policy"
    assert minialex_book.rewrite_link("src/06_local_response_norm.py") == \
        "../../lessons/src/06_local_response_norm.py"
    for fixed in ("https://papers.nips.cc/", "#the-idea", "mailto:a@b.c"):
        assert minialex_book.rewrite_link(fixed) == fixed
    table = minialex_book.lesson_table("lessons/")
    assert table.count("\n| ") == 15 and "[Local response normalisation]" in table, table
