#!/usr/bin/env python3
"""Check built book pages the way a reader sees them, in headless Chromium.

Usage::

    python .ci/check_pages.py _build/html
    python .ci/check_pages.py _build/html --pages book/intro.html book/data_preparation.html

For every page given (default: the introduction and the data-preparation chapter) it

a. renders the page in headless Chromium, served from a throw-away local HTTP server on
   127.0.0.1, saves a screenshot to ``_build/screenshots/<page>.png`` and dumps the DOM
   after JavaScript has run (MathJax typesetting included);
b. fails when the page shows a Python traceback or error output: myst-nb ``traceback``
   outputs, ``Traceback (most recent call last)``, or stderr outputs that look like an
   exception (cells tagged ``raises-exception`` are intentional and only reported);
c. fails on broken images: every ``<img>`` must point to an existing, non-empty image
   file (or a ``data:`` URI) that decodes;
d. fails when the page has math but MathJax did not typeset all of it offline (every
   ``math`` element must contain an ``mjx-container``; no MathJax error nodes), or when
   MathJax is not loaded from the book itself;
e. fails when a page loads a script, stylesheet, font, image or frame from an ``http(s)``
   URL. The static check runs on every HTML page of the build, the rendered-DOM check on
   the pages above.

Exit status 0 when every check passes, 1 when any fails (each problem is printed with
its page), 2 on usage errors. Needs only the standard library and matplotlib/numpy
(Pillow is used when installed) plus a Chromium binary.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import contextlib
import functools
import html
import http.server
import io
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urljoin, urlsplit

DEFAULT_PAGES = ("book/intro.html", "book/data_preparation.html")
CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome")
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    "--mute-audio",
    "--force-device-scale-factor=1",
)

# Text that means an exception reached the reader.
TRACEBACK_RE = re.compile(r"Traceback \(most recent call last\)")
EXCEPTION_LINE_RE = re.compile(
    r"(?m)^\s*(?:[A-Za-z_][\w.]*\.)?[A-Z]\w*(?:Error|Exception|Interrupt|Exit)(?::|$)"
)
WARNING_LINE_RE = re.compile(r"(?m)\b[A-Z]\w*Warning:")

IMAGE_SIGNATURES = {
    b"\x89PNG\r\n\x1a\n": "png",
    b"\xff\xd8\xff": "jpeg",
    b"GIF87a": "gif",
    b"GIF89a": "gif",
}

# Tags/attributes through which a page makes the browser fetch something.
FETCHING_ATTRS = {
    "script": ("src",),
    "img": ("src",),
    "iframe": ("src",),
    "frame": ("src",),
    "embed": ("src",),
    "object": ("data",),
    "source": ("src",),
    "video": ("src", "poster"),
    "audio": ("src",),
    "track": ("src",),
    "input": ("src",),
}
FETCHING_LINK_RELS = {"stylesheet", "preload", "modulepreload", "prefetch", "import", "icon",
                      "shortcut", "apple-touch-icon", "manifest"}
CSS_URL_RE = re.compile(r"""url\(\s*(['"]?)(.*?)\1\s*\)|@import\s+(['"])(.*?)\3""", re.I)


# ----------------------------------------------------------------------------- HTML model
@dataclass
class Element:
    tag: str
    attrs: dict
    parent: Element | None = None
    children: list = field(default_factory=list)  # Element or str

    @property
    def classes(self) -> set[str]:
        return set((self.attrs.get("class") or "").split())

    def text(self) -> str:
        out = []
        for c in self.children:
            out.append(c if isinstance(c, str) else c.text())
        return "".join(out)

    def iter(self):
        yield self
        for c in self.children:
            if isinstance(c, Element):
                yield from c.iter()

    def ancestors(self):
        p = self.parent
        while p is not None:
            yield p
            p = p.parent

    def describe(self) -> str:
        ident = self.attrs.get("id")
        cls = self.attrs.get("class")
        return f"<{self.tag}{f' id={ident!r}' if ident else ''}{f' class={cls!r}' if cls else ''}>"


VOID_TAGS = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta",
             "param", "source", "track", "wbr"}


class TreeBuilder(HTMLParser):
    """A forgiving HTML -> Element tree parser (stdlib only)."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.root = Element("#document", {})
        self.stack = [self.root]
        self.styles: list[str] = []  # contents of <style> elements
        self._in_style = False

    def handle_starttag(self, tag, attrs):
        el = Element(tag, {k: (v if v is not None else "") for k, v in attrs}, self.stack[-1])
        self.stack[-1].children.append(el)
        if tag == "style":
            self._in_style = True
        if tag not in VOID_TAGS:
            self.stack.append(el)

    def handle_startendtag(self, tag, attrs):
        el = Element(tag, {k: (v if v is not None else "") for k, v in attrs}, self.stack[-1])
        self.stack[-1].children.append(el)

    def handle_endtag(self, tag):
        if tag == "style":
            self._in_style = False
        for i in range(len(self.stack) - 1, 0, -1):
            if self.stack[i].tag == tag:
                del self.stack[i:]
                break

    def handle_data(self, data):
        if self._in_style:
            self.styles.append(data)
        self.stack[-1].children.append(data)


def parse_html(text: str) -> TreeBuilder:
    tb = TreeBuilder()
    tb.feed(text)
    tb.close()
    return tb


# ----------------------------------------------------------------------------- problems
class Report:
    def __init__(self):
        self.failures: list[str] = []
        self.notes: list[str] = []

    def fail(self, page: str, msg: str):
        self.failures.append(f"{page}: {msg}")
        print(f"  FAIL  {msg}", flush=True)

    def note(self, page: str, msg: str):
        self.notes.append(f"{page}: {msg}")
        print(f"  note  {msg}", flush=True)

    def ok(self, msg: str):
        print(f"  ok    {msg}", flush=True)


def short(text: str, n: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 3] + "..."


# ----------------------------------------------------------------------------- Chromium
def find_chromium(explicit: str | None) -> str:
    for cand in ([explicit] if explicit else []) + list(CHROMIUM_CANDIDATES):
        path = shutil.which(cand) if cand and not os.path.isabs(cand) else cand
        if path and os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    sys.exit("check_pages.py: no Chromium found (tried "
             f"{', '.join(([explicit] if explicit else []) + list(CHROMIUM_CANDIDATES))}); "
             "install it, e.g. `apt-get install -y chromium`, or pass --chromium PATH")


def run_chromium(chromium: str, url: str, extra: list[str], timeout: float) -> tuple[int, str, str]:
    """Run Chromium once with a fresh profile; returns (returncode, stdout, stderr)."""
    profile = tempfile.mkdtemp(prefix="check-pages-chromium-")
    cmd = [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *extra, url]
    try:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, errors="replace", start_new_session=True)
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
            return 124, out, err + f"\n(timed out after {timeout:.0f} s)"
        return proc.returncode, out, err
    finally:
        shutil.rmtree(profile, ignore_errors=True)


# ----------------------------------------------------------------------------- local server
class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep the output readable
        pass


@contextlib.contextmanager
def serve(root: Path):
    handler = functools.partial(QuietHandler, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    finally:
        httpd.shutdown()
        httpd.server_close()


# ----------------------------------------------------------------------------- images
def decode_image(data: bytes, hint: str = "") -> str | None:
    """Return None when ``data`` decodes as an image, else the reason it does not."""
    if not data:
        return "empty file"
    head = data[:16]
    kind = next((k for sig, k in IMAGE_SIGNATURES.items() if head.startswith(sig)), None)
    if kind is None and (data[:12].startswith(b"RIFF") and data[8:12] == b"WEBP"):
        kind = "webp"
    stripped = data.lstrip()[:512].lower()
    if kind is None and (stripped.startswith(b"<?xml") or stripped.startswith(b"<svg")
                         or b"<svg" in stripped or hint == "svg"):
        kind = "svg"
    if kind is None:
        return f"not a recognised image (starts with {head[:8]!r})"
    if kind == "svg":
        try:
            root = ET.fromstring(data)
        except ET.ParseError as exc:
            return f"SVG does not parse as XML: {exc}"
        if not root.tag.endswith("svg"):
            return f"SVG root element is <{root.tag}>, not <svg>"
        if len(root) == 0:
            return "SVG has no content"
        return None
    try:
        from PIL import Image  # optional

        with Image.open(io.BytesIO(data)) as im:
            im.load()
            if im.width == 0 or im.height == 0:
                return "image has zero size"
        return None
    except ImportError:
        pass
    except Exception as exc:  # noqa: BLE001 - any decoder error means a broken image
        return f"{kind.upper()} does not decode: {exc}"
    if kind == "png":
        try:
            import matplotlib.image as mpimg

            arr = mpimg.imread(io.BytesIO(data), format="png")
            if arr.size == 0:
                return "image has zero size"
        except Exception as exc:  # noqa: BLE001
            return f"PNG does not decode: {exc}"
        return None
    return None  # JPEG/GIF/WebP without Pillow: the signature check has to do


def check_image_src(src: str, page_file: Path, html_root: Path) -> str | None:
    """None if ``src`` of an <img> on ``page_file`` is a good image, else the problem."""
    if not src.strip():
        return "empty src"
    if src.startswith("data:"):
        meta, _, payload = src[5:].partition(",")
        try:
            if meta.endswith(";base64"):
                data = base64.b64decode(payload, validate=False)
            else:
                data = unquote(payload).encode("utf-8")
        except (binascii.Error, ValueError) as exc:
            return f"data: URI does not decode: {exc}"
        return decode_image(data, "svg" if "svg" in meta else "")
    parts = urlsplit(src)
    if parts.scheme in ("http", "https") or src.startswith("//"):
        return "loaded from the network"
    if parts.scheme and parts.scheme != "file":
        return f"unsupported scheme {parts.scheme!r}"
    path = unquote(parts.path)
    target = (html_root / path.lstrip("/")) if path.startswith("/") else (page_file.parent / path)
    target = target.resolve()
    if not target.is_file():
        return f"file not found ({target})"
    return decode_image(target.read_bytes(), "svg" if target.suffix.lower() == ".svg" else "")


# ----------------------------------------------------------------------------- external loads
def is_remote(url: str, local_origin: str | None = None) -> bool:
    """True for http(s) and protocol-relative URLs, except those on ``local_origin``.

    ``local_origin`` is the throw-away server the pages are rendered from: MathJax, for
    one, writes absolute same-origin URLs for its fonts into the DOM.
    """
    url = html.unescape(url.strip())
    if local_origin and url.lower().startswith(local_origin.lower()):
        return False
    return bool(re.match(r"(?i)^(https?:)?//", url))


def external_loads(tree: TreeBuilder, local_origin: str | None = None) -> list[str]:
    """Every fetch of a remote resource a parsed page asks for (description strings)."""
    is_remote_ = functools.partial(is_remote, local_origin=local_origin)
    found = []
    for el in tree.root.iter():
        for attr in FETCHING_ATTRS.get(el.tag, ()):
            if is_remote_(el.attrs.get(attr, "")):
                found.append(f"<{el.tag} {attr}={el.attrs[attr]!r}>")
        if el.tag == "img" and el.attrs.get("srcset"):
            for cand in el.attrs["srcset"].split(","):
                if is_remote_(cand.strip().split(" ")[0]):
                    found.append(f"<img srcset=...{cand.strip()!r}>")
        if el.tag == "link":
            rels = set(el.attrs.get("rel", "").lower().split())
            if rels & FETCHING_LINK_RELS and is_remote_(el.attrs.get("href", "")):
                found.append(f"<link rel={el.attrs.get('rel')!r} href={el.attrs['href']!r}>")
        style = el.attrs.get("style")
        if style:
            found += [f"style attribute url {u!r}" for u in css_urls(style) if is_remote_(u)]
    for css in tree.styles:
        found += [f"<style> url {u!r}" for u in css_urls(css) if is_remote_(u)]
    return found


def css_urls(css: str) -> list[str]:
    return [m.group(2) or m.group(4) or "" for m in CSS_URL_RE.finditer(css)]


def local_css_remote_urls(tree: TreeBuilder, page_file: Path, html_root: Path,
                          seen: dict) -> list[str]:
    """Remote url()/@import in the local stylesheets a page links (followed recursively)."""
    found = []
    todo = []
    for el in tree.root.iter():
        if el.tag == "link" and "stylesheet" in el.attrs.get("rel", "").lower().split():
            href = el.attrs.get("href", "")
            if href and not is_remote(href) and not href.startswith("data:"):
                todo.append(page_file.parent / unquote(urlsplit(href).path))
    while todo:
        css_file = todo.pop().resolve()
        if css_file in seen:
            found += seen[css_file]
            continue
        seen[css_file] = mine = []
        if not css_file.is_file():
            continue
        text = css_file.read_text(encoding="utf-8", errors="replace")
        text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
        for u in css_urls(text):
            if is_remote(u):
                mine.append(f"{css_file.relative_to(html_root)}: url {u!r}")
            elif u.endswith(".css") and not u.startswith("data:"):
                todo.append(css_file.parent / unquote(urlsplit(u).path))
        found += mine
    return found


# ----------------------------------------------------------------------------- page checks
def check_errors(page: str, dom: TreeBuilder, report: Report) -> None:
    problems = 0
    for el in dom.root.iter():
        cls = el.classes
        if "output" not in cls or not (cls & {"traceback", "stderr", "error"}):
            continue
        cell = next((a for a in el.ancestors() if "cell" in a.classes), None)
        intended = cell is not None and ("tag_raises-exception" in cell.classes)
        text = el.text()
        where = f"cell {cell.attrs.get('id')!r}" if cell is not None and cell.attrs.get("id") \
            else "a code cell"
        if "traceback" in cls or "error" in cls:
            msg = f"error output in {where}: {short(text)}"
            (report.note if intended else report.fail)(page, msg + (
                " (cell tagged raises-exception: intended)" if intended else ""))
            problems += not intended
        elif TRACEBACK_RE.search(text) or EXCEPTION_LINE_RE.search(text):
            msg = f"stderr output that looks like an exception in {where}: {short(text)}"
            (report.note if intended else report.fail)(page, msg)
            problems += not intended
        elif WARNING_LINE_RE.search(text):
            report.note(page, f"stderr warning in {where}: {short(text)}")
    # A traceback printed anywhere else on the page (stdout, html output, prose).
    for el in dom.root.iter():
        if el.tag in ("script", "style"):
            continue
        own = "".join(c for c in el.children if isinstance(c, str))
        if TRACEBACK_RE.search(own) and not any(
                "output" in a.classes and a.classes & {"traceback", "stderr"}
                for a in [el, *el.ancestors()]):
            intended = any("tag_raises-exception" in a.classes for a in el.ancestors())
            msg = f"'Traceback (most recent call last)' shown in {el.describe()}"
            (report.note if intended else report.fail)(page, msg)
            problems += not intended
    if not problems:
        report.ok("no tracebacks or error outputs")


def check_images(page: str, page_file: Path, html_root: Path, dom: TreeBuilder,
                 report: Report) -> None:
    imgs = [el for el in dom.root.iter() if el.tag == "img"]
    bad = 0
    for el in imgs:
        src = el.attrs.get("src", "")
        problem = check_image_src(src, page_file, html_root)
        if problem:
            bad += 1
            shown = src if not src.startswith("data:") else src[:40] + "..."
            report.fail(page, f"broken image {shown!r}: {problem}")
    if not bad:
        report.ok(f"{len(imgs)} image(s) resolve and decode")


def check_math(page: str, page_file: Path, static: TreeBuilder, dom: TreeBuilder,
               report: Report) -> None:
    static_math = [el for el in static.root.iter() if "math" in el.classes]
    mathjax_scripts = [el.attrs["src"] for el in static.root.iter()
                       if el.tag == "script" and "mathjax" in el.attrs.get("src", "").lower()]
    for src in mathjax_scripts:
        if is_remote(src):
            report.fail(page, f"MathJax is loaded from the network: {src}")
        else:
            target = (page_file.parent / unquote(urlsplit(src).path)).resolve()
            if not target.is_file() or target.stat().st_size == 0:
                report.fail(page, f"MathJax script {src!r} does not exist in the build "
                                  f"({target}); run .ci/fetch_mathjax.sh before building")
    if not static_math:
        report.ok("no math on the page")
        return
    if not mathjax_scripts:
        report.fail(page, f"{len(static_math)} math element(s) but no MathJax <script>")
        return
    containers = [el for el in dom.root.iter() if el.tag == "mjx-container"]
    if not containers:
        report.fail(page, f"{len(static_math)} math element(s) but no <mjx-container> in "
                          "the rendered DOM: MathJax did not typeset (not loaded offline?)")
        return
    dom_math = [el for el in dom.root.iter() if "math" in el.classes and el.tag in ("span", "div")]
    untypeset = [el for el in dom_math
                 if not any(d.tag == "mjx-container" for d in el.iter())]
    for el in untypeset[:5]:
        report.fail(page, f"math not typeset: {el.describe()} {short(el.text(), 80)!r}")
    if len(untypeset) > 5:
        report.fail(page, f"... and {len(untypeset) - 5} more untypeset math element(s)")
    errors = [el for el in dom.root.iter()
              if el.tag == "mjx-merror" or "data-mjx-error" in el.attrs]
    for el in errors[:5]:
        report.fail(page, f"MathJax error: {el.attrs.get('data-mjx-error') or short(el.text())}")
    if not untypeset and not errors:
        report.ok(f"{len(dom_math)} math element(s) typeset by MathJax "
                  f"({len(containers)} mjx-container)")


def check_screenshot(page: str, png: Path, report: Report) -> None:
    if not png.is_file() or png.stat().st_size == 0:
        report.fail(page, f"no screenshot written to {png}")
        return
    problem = decode_image(png.read_bytes())
    if problem:
        report.fail(page, f"screenshot {png}: {problem}")
        return
    try:
        import matplotlib.image as mpimg

        arr = mpimg.imread(str(png))
        if float(arr[..., :3].std()) < 1e-3:
            report.fail(page, f"screenshot {png} is blank (a single colour)")
            return
    except ImportError:
        pass
    report.ok(f"screenshot {png}")


# ----------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("html_dir", nargs="?", default="_build/html", type=Path,
                    help="the built HTML folder (default: _build/html)")
    ap.add_argument("--pages", nargs="+", default=list(DEFAULT_PAGES),
                    help="pages to render, relative to html_dir "
                         f"(default: {' '.join(DEFAULT_PAGES)})")
    ap.add_argument("--screenshots", type=Path, default=None,
                    help="where PNGs go (default: <html_dir>/../screenshots)")
    ap.add_argument("--chromium", default=None, help="Chromium binary (default: /usr/bin/chromium)")
    ap.add_argument("--window-size", default="1280,2400")
    ap.add_argument("--virtual-time-budget", type=int, default=15000,
                    help="ms of virtual time Chromium lets scripts run before dumping")
    ap.add_argument("--timeout", type=float, default=120.0,
                    help="seconds before a Chromium run is killed")
    ap.add_argument("--file-urls", action="store_true",
                    help="open pages as file:// URLs instead of via a local HTTP server")
    args = ap.parse_args(argv)

    html_root = args.html_dir.resolve()
    if not html_root.is_dir():
        print(f"check_pages.py: {args.html_dir} is not a folder (build the book first: "
              "jupyter-book build .)", file=sys.stderr)
        return 2
    shots = (args.screenshots or html_root.parent / "screenshots").resolve()
    shots.mkdir(parents=True, exist_ok=True)
    chromium = find_chromium(args.chromium)
    report = Report()

    # (e) static check of every page in the build
    print(f"[all pages] remote scripts/stylesheets in {html_root}")
    css_seen: dict = {}
    pages_html = sorted(p for p in html_root.rglob("*.html")
                        if "_static" not in p.relative_to(html_root).parts)
    remote_total = 0
    for p in pages_html:
        rel = p.relative_to(html_root).as_posix()
        tree = parse_html(p.read_text(encoding="utf-8", errors="replace"))
        for what in external_loads(tree) + local_css_remote_urls(tree, p, html_root, css_seen):
            remote_total += 1
            report.fail(rel, f"loads a remote resource: {what}")
    if not remote_total:
        report.ok(f"{len(pages_html)} page(s) load nothing from http(s) URLs")

    with contextlib.ExitStack() as stack:
        base = None if args.file_urls else stack.enter_context(serve(html_root))
        for page in args.pages:
            page_file = (html_root / page).resolve()
            print(f"[{page}]")
            if not page_file.is_file():
                report.fail(page, f"page not found in the build ({page_file})")
                continue
            url = page_file.as_uri() if base is None else urljoin(base, page)
            common = [f"--window-size={args.window_size}",
                      f"--virtual-time-budget={args.virtual_time_budget}"]
            rc, dom_text, err = run_chromium(chromium, url, [*common, "--dump-dom"], args.timeout)
            if rc != 0 or "<html" not in dom_text.lower():
                report.fail(page, f"Chromium --dump-dom failed (exit {rc}): "
                                  f"{short(err[-600:], 600)}")
                continue
            png = shots / (Path(page).with_suffix("").as_posix().replace("/", "__") + ".png")
            png.unlink(missing_ok=True)
            rc, _, err = run_chromium(chromium, url, [*common, f"--screenshot={png}"],
                                      args.timeout)
            if rc != 0:
                report.fail(page, f"Chromium --screenshot failed (exit {rc}): "
                                  f"{short(err[-600:], 600)}")
            else:
                check_screenshot(page, png, report)

            static = parse_html(page_file.read_text(encoding="utf-8", errors="replace"))
            dom = parse_html(dom_text)
            check_errors(page, dom, report)                          # (b)
            check_images(page, page_file, html_root, dom, report)    # (c)
            check_math(page, page_file, static, dom, report)         # (d)
            remote = external_loads(dom, base)                       # (e) after JavaScript
            for what in remote:
                report.fail(page, f"rendered page loads a remote resource: {what}")
            if not remote:
                report.ok("rendered DOM loads nothing from http(s) URLs")

    print()
    if report.failures:
        print(f"check_pages.py: {len(report.failures)} problem(s):", file=sys.stderr)
        for f in report.failures:
            print(f"  - {f}", file=sys.stderr)
        return 1
    print(f"check_pages.py: all checks passed ({len(args.pages)} page(s) rendered, "
          f"screenshots in {shots})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
