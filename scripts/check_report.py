"""Check a marsctl HTML report in a real headless browser (Debian's chromium), and take a screenshot.

    python scripts/check_report.py RUN_DIR/report.html [--screenshot docs/report.png] [--window-size 1280,1600]

Fails (exit 1, one line per problem) when:

- the page refers to anything outside itself (a ``src``/``href`` that is not a data: URI or an
  in-page ``#anchor``), holds a ``<script>``, or an inline image's data URI does not decode to a PNG;
- chromium logs a console message of level error or warning (an uncaught exception, a resource that
  failed to load), or the page loaded any resource but itself;
- an ``<img>`` has not loaded after the load event (``complete`` false or ``naturalWidth`` 0): checked
  by a copy of the page with a small probe script that writes its findings into the DOM, which
  ``--dump-dom`` prints (the report itself is left as it is).

Exit 2 when no chromium binary is found (install it: ``apt-get install -y chromium``).
"""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import re
import shutil
import subprocess
import sys
import tempfile
from html.parser import HTMLParser
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
FLAGS = ["--headless", "--disable-gpu", "--no-sandbox", "--hide-scrollbars", "--no-first-run",
         "--disable-extensions", "--disable-background-networking", "--enable-logging=stderr", "--v=0"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
PROBE = """<script>
window.__errors = [];
window.addEventListener('error', e => window.__errors.push(String(e.message || e)));
window.addEventListener('load', () => {
  const imgs = Array.from(document.images);
  const res = performance.getEntriesByType('resource').map(r => r.name).filter(n => !n.startsWith('data:'));
  const out = {images: imgs.length,
               broken: imgs.filter(i => !i.complete || i.naturalWidth === 0).map(i => i.alt || i.src.slice(0, 40)),
               sizes: imgs.map(i => [i.naturalWidth, i.naturalHeight]), resources: res, errors: window.__errors};
  const pre = document.createElement('pre');
  pre.id = 'marsctl-probe';
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>"""
PROBE_RE = re.compile(r'<pre id="marsctl-probe">(.*?)</pre>', re.S)
# chromium's console lines on stderr: '[...:INFO:CONSOLE:3] "message", source: file:///... (3)' (older builds:
# CONSOLE(3)). Headless chromium logs every console message at INFO, an uncaught exception too, so the level
# says nothing: a report runs no script, so any console message at all is a problem.
CONSOLE_RE = re.compile(r":[A-Z]+\d*:CONSOLE[:(]\d+\)?\] (.*)")
CHARSET_RE = re.compile(r"<meta charset[^>]*>", re.I)


def find_browser() -> str | None:
    """The first chromium-like binary on PATH, or None."""
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    return None


class _Refs(HTMLParser):
    """Collects every src/href, every inline image's data URI and every <script> of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.refs: list[tuple[str, str, str]] = []
        self.scripts = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "script":
            self.scripts += 1
        for key, value in attrs:
            if key in ("src", "href", "srcset", "poster", "data") and value is not None:
                self.refs.append((tag, key, value))


def static_problems(text: str) -> list[str]:
    """What in the page's source refers outside it, runs code, or is an image that does not decode."""
    parser = _Refs()
    parser.feed(text)
    problems = [f"<script> in the page ({parser.scripts})"] if parser.scripts else []
    for tag, key, value in parser.refs:
        if value.startswith("#"):
            continue
        if not value.startswith("data:"):
            problems.append(f"<{tag} {key}={value[:80]!r}> refers outside the page")
        elif tag == "img":
            problems += _data_uri_problems(value)
    if re.search(r"url\(\s*['\"]?(?!data:|#)", text):
        problems.append("a CSS url() that is not a data: URI")
    if "@import" in text:
        problems.append("a CSS @import")
    return problems


def _data_uri_problems(uri: str) -> list[str]:
    head, _, payload = uri.partition(",")
    if head != "data:image/png;base64":
        return [f"an image data URI of type {head[:40]!r} (expected data:image/png;base64)"]
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        return ["an image data URI that is not valid base64"]
    return [] if data.startswith(PNG_MAGIC) and len(data) > 100 else ["an image data URI that is not a PNG"]


def _run(browser: str, args: list[str], timeout: float) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory(prefix="marsctl-chromium-") as profile:
        return subprocess.run([browser, *FLAGS, f"--user-data-dir={profile}", *args], capture_output=True,
                              text=True, timeout=timeout)


def console_problems(stderr: str) -> list[str]:
    """Console messages of a page (chromium's stderr log): each one is a problem (see ``CONSOLE_RE``)."""
    return [f"console: {m.group(1)[:200]}" for m in map(CONSOLE_RE.search, stderr.splitlines()) if m]


def probed(text: str) -> str:
    """The page with the probe first in its head (after the charset), so it sees every later script's error."""
    m = CHARSET_RE.search(text)
    if m:
        return text[: m.end()] + PROBE + text[m.end():]
    return PROBE + text


def browser_problems(browser: str, page: Path, timeout: float) -> tuple[list[str], dict]:
    """Load a probed copy of the page; return the problems and the probe's findings."""
    text = page.read_text(encoding="utf-8")
    with tempfile.TemporaryDirectory(prefix="marsctl-probe-") as tmp:
        copy = Path(tmp) / page.name
        copy.write_text(probed(text), encoding="utf-8")
        proc = _run(browser, ["--virtual-time-budget=5000", "--dump-dom", copy.as_uri()], timeout)
    problems = console_problems(proc.stderr)
    m = PROBE_RE.search(proc.stdout)
    if proc.returncode != 0 or not m:
        return [*problems, f"chromium did not load the page (exit {proc.returncode}): {proc.stderr[-300:]}"], {}
    found = json.loads(m.group(1).replace("&quot;", '"').replace("&lt;", "<").replace("&gt;", ">")
                       .replace("&amp;", "&"))
    problems += [f"image {b!r} did not load (naturalWidth 0)" for b in found["broken"]]
    problems += [f"the page loaded {r!r}" for r in found["resources"]]
    problems += [f"script error: {e}" for e in found["errors"]]
    return problems, found


def screenshot(browser: str, page: Path, out: Path, size: str, timeout: float) -> list[str]:
    """A screenshot of the page as it is (no probe); console errors while loading it are problems."""
    out.parent.mkdir(parents=True, exist_ok=True)
    proc = _run(browser, [f"--screenshot={out.resolve()}", f"--window-size={size}", "--virtual-time-budget=5000",
                          page.resolve().as_uri()], timeout)
    problems = console_problems(proc.stderr)
    if proc.returncode != 0 or not out.is_file() or not out.read_bytes().startswith(PNG_MAGIC):
        problems.append(f"chromium took no screenshot (exit {proc.returncode}): {proc.stderr[-300:]}")
    return problems


def main(argv: list[str] | None = None) -> int:
    """Check one report; print what was found; 0 when clean, 1 on a problem, 2 without a browser."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("report", type=Path)
    ap.add_argument("--screenshot", type=Path, help="Write a PNG screenshot of the page here.")
    ap.add_argument("--window-size", default="1280,1600", help="Screenshot size WIDTH,HEIGHT in pixels.")
    ap.add_argument("--timeout", type=float, default=120.0, help="Seconds per chromium run.")
    args = ap.parse_args(argv)
    browser = find_browser()
    if browser is None:
        print("no chromium binary found (apt-get install -y chromium)", file=sys.stderr)
        return 2
    problems = static_problems(args.report.read_text(encoding="utf-8"))
    found_problems, found = browser_problems(browser, args.report, args.timeout)
    problems += found_problems
    if args.screenshot:
        problems += screenshot(browser, args.report, args.screenshot, args.window_size, args.timeout)
    for p in problems:
        print(f"FAIL {args.report}: {p}", file=sys.stderr)
    if not problems:
        print(f"OK {args.report}: {found.get('images', 0)} images loaded "
              f"(sizes {found.get('sizes')}), no console errors, no external resources"
              + (f"; screenshot {args.screenshot}" if args.screenshot else ""))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
