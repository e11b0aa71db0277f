"""Open the built book in headless Chromium with no network and check what a reader sees.

    make book && python tests/check_built_book.py            # or: make check-book
    python tests/check_built_book.py --screenshots shots/     # also save a full-page screenshot per page

Needs Playwright (``pip install playwright``) and a Chromium: ``--chromium PATH``, the ``CHROMIUM`` environment
variable, a ``chromium`` / ``chromium-browser`` / ``google-chrome`` on the PATH, or Playwright's own
(``playwright install chromium``). Not part of ``make test``: CI does not build the book.

The pages are served from ``_build/html`` on localhost, and every request to another host is refused and reported,
so a page that works here works offline. Per page:

- nothing is fetched from outside localhost, and nothing the page asks for is missing (no 4xx from the local server);
- every image has loaded (a non-zero natural width);
- if the page has math, MathJax has typeset it (``mjx-container`` elements, no ``mjx-merror``);
- every exercise solution is a dropdown that starts closed and opens on a click;
- if the page saved ipywidgets, they render; a slider linked to a stack of figures changes the visible figure when
  it is moved with the keyboard, and shows every one of its figures in turn;
- nothing is wider than the text column at a 1280-px window: no element runs past the column's right edge, and no
  code block, output or table hides part of itself behind a scroll bar (the reader would miss what is cut off).

(What can be checked without a browser, no warnings or progress bars in the saved outputs and no workshop words in
the text, is in ``tests/test_saved_outputs.py``, part of ``make test``.)

Exit status 0 when every check passed; otherwise one line per failure.
"""
from __future__ import annotations

import argparse
import functools
import http.server
import os
import shutil
import sys
import threading
from pathlib import Path

PAGES = "index.html", "book/*.html", "notebooks/*.html"


def find_chromium(explicit: str | None) -> str | None:
    for candidate in (explicit, os.environ.get("CHROMIUM")):
        if candidate:
            return candidate
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    return None  # Playwright's own browser, if installed


def serve(root: Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    handler = functools.partial(QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep the report readable
        pass


VISIBLE_FIGURE = """stack => {
    const img = [...stack.querySelectorAll('img')].find(i => i.offsetParent !== null);
    return img ? img.src.slice(-64) : null;
}"""


# elements of the article that run past its right edge or scroll sideways; the outermost one of each offence
OVERFLOW = """() => {
    const article = document.querySelector('article.bd-article') || document.querySelector('main');
    if (!article) return [];
    const edge = article.getBoundingClientRect().right + 1;
    const found = [];
    for (const el of article.querySelectorAll('*')) {
        if (el.closest('span.math')) continue;  // inline math: MathJax's own boxes, part of a line of text
        const box = el.getBoundingClientRect();
        const runsOut = box.width > 0 && box.right > edge;
        const scrolls = el.scrollWidth > el.clientWidth + 1 && ['auto', 'scroll', 'hidden'].includes(
            getComputedStyle(el).overflowX) && el.clientWidth > 0;
        if (!runsOut && !scrolls) continue;
        if (found.some(f => f.el.contains(el))) continue;
        const text = (el.textContent || '').trim().replace(/\\s+/g, ' ').slice(0, 70);
        const by = Math.round(runsOut ? box.right - edge : el.scrollWidth - el.clientWidth);
        const tag = `${el.tagName.toLowerCase()}.${[...el.classList].slice(0, 2).join('.')}`;
        found.push({el, what: `${tag} (${by} px): ${text}`});
    }
    return found.map(f => f.what);
}"""


def check_widgets(page, name: str, failures: list[str]) -> int:
    """Returns the number of figure sliders (a slider above a stack of figures) that move through every figure."""
    # tqdm progress bars are saved hidden; wait for the widgets to be built, not for them to be visible
    page.wait_for_selector(".jupyter-widgets", state="attached", timeout=15_000)
    sliders = page.locator(".widget-slider")
    checked = 0
    for k in range(sliders.count()):
        slider = sliders.nth(k)
        stack = slider.locator("xpath=following-sibling::*[1]")  # figure_slider: VBox(slider, Stack)
        if stack.count() == 0 or stack.locator("img").count() == 0:
            continue
        handle = slider.locator(".noUi-handle").first
        low, high = (int(float(handle.get_attribute(key))) for key in ("aria-valuemin", "aria-valuemax"))
        total = high - low + 1
        handle.focus()
        page.keyboard.press("Home")
        page.wait_for_timeout(150)
        seen = [stack.evaluate(VISIBLE_FIGURE)]
        for _ in range(total - 1):
            page.keyboard.press("ArrowRight")
            page.wait_for_timeout(150)
            seen.append(stack.evaluate(VISIBLE_FIGURE))
        if None in seen or len(set(seen)) != total:
            failures.append(f"{name}: slider {k}: moving it through its {total} values showed "
                            f"{len(set(s for s in seen if s))} different figures")
        else:
            checked += 1
    return checked


def check_page(page, base: str, name: str, external: list[str], failures: list[str], shots: Path | None) -> str:
    missing: list[str] = []
    page.on("response", lambda r: missing.append(r.url) if r.status >= 400 else None)
    external.clear()
    page.goto(f"{base}/{name}", wait_until="networkidle")
    notes = []
    for url in external:
        failures.append(f"{name}: asks for {url} (refused: the book must work offline)")
    for url in missing:
        failures.append(f"{name}: {url} is missing from the build")

    broken = page.evaluate("[...document.images].filter(i => !i.complete || i.naturalWidth === 0)"
                           ".map(i => i.getAttribute('src').slice(0, 80))")
    failures.extend(f"{name}: image did not load: {src}" for src in broken)
    notes.append(f"{page.evaluate('document.images.length')} images")

    if page.locator(".math, .amsmath").count():
        # attached, not visible: the first formula of a page may sit in a closed solution or a hidden figure
        page.wait_for_selector("mjx-container", state="attached", timeout=15_000)
        typeset = page.locator("mjx-container").count()
        errors = page.locator("mjx-merror").count()
        if errors:
            failures.append(f"{name}: MathJax reports {errors} errors")
        notes.append(f"{typeset} formulas")

    solutions = page.locator("div.solution")
    for k in range(solutions.count()):
        solution = solutions.nth(k)
        body = solution.locator(":scope > :not(.admonition-title)").first
        if body.is_visible():
            failures.append(f"{name}: solution {k + 1} is open before the reader asks for it")
            continue
        # the button, not the title: the title holds a link back to the exercise
        solution.locator("button.toggle-button").first.click()
        page.wait_for_timeout(300)
        if not body.is_visible():
            failures.append(f"{name}: solution {k + 1} does not open on a click")
    if solutions.count():
        notes.append(f"{solutions.count()} solutions closed, open on click")

    wide = page.evaluate(OVERFLOW)
    failures.extend(f"{name}: wider than the column: {what}" for what in wide)
    notes.append("nothing wider than the column" if not wide else f"{len(wide)} elements too wide")

    if page.locator('script[type="application/vnd.jupyter.widget-view+json"]').count():
        moved = check_widgets(page, name, failures)
        notes.append(f"{moved} figure sliders move")

    if shots is not None:
        shots.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(shots / (name.replace("/", "_") + ".png")), full_page=True)
    return ", ".join(notes)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--html", type=Path, default=Path("_build/html"), help="the built book")
    parser.add_argument("--chromium", help="path of a Chromium or Chrome executable")
    parser.add_argument("--screenshots", type=Path, help="folder for one full-page PNG per page")
    args = parser.parse_args()
    if not (args.html / "index.html").exists():
        print(f"No built book under {args.html}: run `make book` first.", file=sys.stderr)
        return 2
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        print("This check needs Playwright: `pip install playwright` (and a Chromium, see --help).", file=sys.stderr)
        return 2

    names = sorted({str(p.relative_to(args.html)) for pattern in PAGES for p in args.html.glob(pattern)})
    server, base = serve(args.html)
    failures: list[str] = []
    external: list[str] = []
    flags = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
             "--disable-component-update", "--disable-sync"]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=find_chromium(args.chromium), args=flags)
        context = browser.new_context(viewport={"width": 1280, "height": 900})

        def route(request_route):
            url = request_route.request.url
            if url.startswith(base) or url.startswith("data:"):
                return request_route.continue_()
            external.append(url)
            return request_route.abort()

        context.route("**/*", route)
        for name in names:
            page = context.new_page()
            try:
                print(f"{name}: {check_page(page, base, name, external, failures, args.screenshots)}")
            except Exception as error:  # a timeout waiting for MathJax or the widgets is a finding, not a crash
                failures.append(f"{name}: {type(error).__name__}: {str(error).splitlines()[0]}")
            page.close()
        browser.close()
    server.shutdown()
    for failure in failures:
        print("FAIL", failure)
    print(f"{len(names)} pages, {len(failures)} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
