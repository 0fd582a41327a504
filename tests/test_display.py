"""The relation view (`spacy_bioreama.render`, `visualize`): the HTML it writes, and the
page as headless Chromium renders it (DOM counts equal the Doc's, no console errors).

The browser test runs Debian's `chromium` through Playwright (no downloaded browser);
it is skipped only where no chromium binary exists, never under CI (`.ci/run`
installs it; where apt-get cannot, it sets BIOREAMA_NO_BROWSER, the skip's reason).
`BIOREAMA_WRITE_SCREENSHOT=1` also writes `docs/relation_view.png`."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import spacy
from spacy.tokens import Doc, DocBin, Span
from typer.testing import CliRunner

from spacy_bioreama.annotations.doc_ids import DOC_ID_KEY
from spacy_bioreama.annotations.relations import Relation
from spacy_bioreama.annotations.spans import OVERFLOW_KEY, all_mentions, set_entities
from spacy_bioreama.cli import app
from spacy_bioreama.display import render

REPO = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("BIOREAMA_DATA_DIR", REPO.parent / "shared" / "data"))
BIORED_DEV = DATA_DIR / "biored" / "Dev.PubTator"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
runner = CliRunner()


def make_doc(nlp) -> Doc:
    """A small document with a nested (overflow) mention and three relations."""
    doc = nlp.make_doc("BRCA1 binds PALB2 in breast cancer ; BRCA1 loss raises cancer risk .")
    spans = [
        doc.char_span(0, 5, label="GeneOrGeneProduct", kb_id="672"),
        doc.char_span(12, 17, label="GeneOrGeneProduct", kb_id="79728"),
        doc.char_span(21, 34, label="DiseaseOrPhenotypicFeature", kb_id="D001943"),
        doc.char_span(28, 34, label="DiseaseOrPhenotypicFeature", kb_id="D009369"),
        doc.char_span(37, 42, label="GeneOrGeneProduct", kb_id="672"),
        doc.char_span(55, 61, label="MadeUpLabel", kb_id="D009369"),
    ]
    set_entities(doc, spans)
    assert OVERFLOW_KEY in doc.spans  # "cancer" inside "breast cancer"
    doc._.relations = [
        Relation((0, 1), (2, 3), "672", "79728", "Bind", 0.9),
        Relation((0, 1), (4, 6), "672", "D001943", "Association", 0.75),
        Relation((7, 8), (10, 11), "672", "D009369", "Positive_Correlation", 0.6),
    ]
    doc.user_data[DOC_ID_KEY] = "synthetic-1"
    return doc


def copy_doc(doc: Doc) -> Doc:
    """A deep copy with user data (relations, doc id)."""
    return Doc(doc.vocab).from_bytes(doc.to_bytes())


def drop_one(doc: Doc) -> tuple[Doc, Span]:
    """`doc` without its last relation and without one mention that no relation is drawn
    to and whose concept has another mention (so relation matching is unchanged)."""
    pred = copy_doc(doc)
    rels = list(doc._.relations)
    pred._.relations = rels[:-1]
    anchors = {r.head for r in rels} | {r.tail for r in rels}
    mentions = all_mentions(pred)
    kb_counts: dict[str, int] = {}
    for s in mentions:
        kb_counts[s.kb_id_] = kb_counts.get(s.kb_id_, 0) + 1
    drop = next(s for s in mentions if (s.start, s.end) not in anchors and kb_counts[s.kb_id_] > 1)
    set_entities(pred, [s for s in mentions if s != drop])
    return pred, drop


@pytest.fixture(scope="module")
def nlp():
    return spacy.blank("en")


@pytest.fixture(scope="module")
def dev_doc() -> Doc:
    """The first BioRED dev document with at least 10 relations (gold as predictions)."""
    if not BIORED_DEV.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{BIORED_DEV} not found in CI")
        pytest.skip(f"BioRED dev not found at {BIORED_DEV} (set BIOREAMA_DATA_DIR)")
    from spacy_bioreama.corpora import read

    return next(d for d in read("pubtator", BIORED_DEV) if len(d._.relations) >= 10)


def test_render_counts_and_self_contained(nlp):
    doc = make_doc(nlp)
    html = render([doc])
    assert html.startswith("<!DOCTYPE html>")
    assert html.count('<mark class="bio-ent"') == len(all_mentions(doc)) == 6
    assert html.count('<g class="bio-rel"') == len(doc._.relations) == 3
    assert html.count('<tr class="bio-rel-row"') == 3
    assert 'data-concept="D009369"' in html and 'data-ids="672"' in html
    assert "Bind 0.90" in html and "Assoc 0.75" in html
    # nothing fetched from the network: no links, no external scripts or images
    assert "<link" not in html and " src=" not in html and "https://" not in html
    # the unknown label has a hashed colour, stable from call to call
    assert html == render([doc])
    fragment = render(doc, page=False)
    assert not fragment.startswith("<!DOCTYPE") and "<style>" in fragment


def _shown_text(html: str) -> str:
    """The document text a reader sees in the view: the text of ``div.spans``
    without the type chips (``mark`` elements)."""
    from html.parser import HTMLParser

    class Text(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.depth = self.in_mark = 0
            self.parts: list[str] = []

        def handle_starttag(self, tag, attrs):
            if self.depth or ("class", "spans") in attrs:
                self.depth += tag != "br"
            self.in_mark += self.depth > 0 and tag == "mark"

        def handle_endtag(self, tag):
            self.in_mark -= self.depth > 0 and tag == "mark"
            self.depth -= self.depth > 0

        def handle_data(self, data):
            if self.depth and not self.in_mark:
                self.parts.append(data)

    parser = Text()
    parser.feed(html)
    return "".join(parser.parts)


@pytest.mark.parametrize(
    "text",
    [
        None,  # make_doc's: a nested mention, " ;" spacing
        "(BRCA1) and anti-TNF, with  two spaces & <tags>.",
        "Risk of breast cancer rose.",  # two inner mentions inside an outer one
    ],
)
def test_render_keeps_the_original_spacing(nlp, text):
    """Mentions right after punctuation or before it, double spaces, characters HTML
    escapes: the text shown is the document's text, character for character."""
    if text is None:
        doc = make_doc(nlp)
    elif text.startswith("Risk"):
        doc = nlp.make_doc(text)
        spans = [doc.char_span(8, 21, "Disease"), doc.char_span(8, 14, "Organ")]
        set_entities(doc, [*spans, doc.char_span(15, 21, "Disease")])
    else:
        doc = nlp.make_doc(text)
        set_entities(doc, [doc.char_span(1, 6, "Gene"), doc.char_span(17, 20, "Gene")])
    html = render(doc)
    assert _shown_text(html) == doc.text
    assert "\ue000" not in html


def test_render_gold_marks_misses_and_false_positives(nlp):
    gold = make_doc(nlp)
    pred, dropped = drop_one(gold)
    extra = copy_doc(pred)
    extra._.relations = [
        *pred._.relations,
        Relation((2, 3), (10, 11), "79728", "D009369", "Association", 0.4),
    ]
    html = render([extra], gold=[gold])
    assert html.count('class="bio-ent miss"') == 1
    assert html.count('<g class="bio-rel miss"') == 1
    assert html.count('<tr class="bio-rel-row miss"') == 1
    assert html.count('<g class="bio-rel false-positive"') == 1
    assert html.count('class="bio-ent false-positive"') == 0
    assert html.count('<g class="bio-rel match"') == 2 * (len(gold._.relations) - 1)
    assert f"{dropped.label_} · {dropped.text}" in html  # the miss names the mention


def test_render_gold_alignment_errors(nlp):
    doc = make_doc(nlp)
    other = nlp.make_doc("another text")
    other.user_data[DOC_ID_KEY] = "synthetic-1"
    with pytest.raises(ValueError, match="differs"):
        render([doc], gold=[other])
    other.user_data[DOC_ID_KEY] = "elsewhere"
    with pytest.raises(ValueError, match="synthetic-1"):
        render([doc], gold=[other])


def test_lazy_render_attribute():
    import spacy_bioreama

    assert spacy_bioreama.render is render
    with pytest.raises(AttributeError):
        spacy_bioreama.no_such_thing  # noqa: B018


def test_visualize_command(nlp, tmp_path):
    doc = make_doc(nlp)
    path = tmp_path / "pred.spacy"
    DocBin(docs=[doc, copy_doc(doc)], store_user_data=True).to_disk(path)
    out = tmp_path / "page.html"
    result = runner.invoke(app, ["visualize", str(path), "--output", str(out), "--limit", "1"])
    assert result.exit_code == 0, result.output
    html = out.read_text(encoding="utf8")
    assert html.count('<section class="bio-doc"') == 1
    assert html.count('<g class="bio-rel"') == 3
    gold_out = tmp_path / "compare.html"
    result = runner.invoke(
        app, ["visualize", str(path), "--gold", str(path), "--output", str(gold_out)]
    )
    assert result.exit_code == 0, result.output
    assert gold_out.read_text(encoding="utf8").count('<g class="bio-rel match"') == 2 * 2 * 3


def test_visualize_command_bad_input(tmp_path):
    result = runner.invoke(app, ["visualize", str(tmp_path / "missing.spacy")])
    assert result.exit_code == 1
    assert "missing.spacy" in result.output and "not found" in result.output
    empty = tmp_path / "empty.spacy"
    DocBin().to_disk(empty)
    result = runner.invoke(app, ["visualize", str(empty)])
    assert result.exit_code == 1 and "holds no documents" in result.output


def test_visualize_serve_prints_the_url_and_stops_on_ctrl_c(nlp, tmp_path):
    import signal
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    path = tmp_path / "pred.spacy"
    DocBin(docs=[make_doc(nlp)], store_user_data=True).to_disk(path)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cmd = [sys.executable, "-m", "spacy_bioreama", "visualize", str(path)]
    cmd += ["--output", str(tmp_path / "p.html"), "--serve", "--port", str(port)]
    # A shell that started the tests in the background (`cmd &`) ignores SIGINT, and an
    # ignored signal survives exec: the server would never see Ctrl-C. Restore the default.
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        body = None
        for _ in range(300):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1) as response:
                    body = response.read().decode("utf8")
                break
            except OSError:
                time.sleep(0.1)
        assert body is not None and body.count('<g class="bio-rel"') == 3
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
    assert f"Serving on http://0.0.0.0:{port} ..." in out
    assert f"Shutting down server on port {port}." in out
    assert proc.returncode == 0


# --- in a real browser --------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser():
    if os.environ.get("BIOREAMA_NO_BROWSER"):  # .ci/run: apt-get could not install it
        pytest.skip(os.environ["BIOREAMA_NO_BROWSER"])
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail(f"chromium not found at {CHROMIUM} in CI (.ci/run installs it)")
        pytest.skip(f"no chromium binary at {CHROMIUM} (apt-get install chromium)")
    if os.environ.get("CI"):
        from playwright.sync_api import sync_playwright
    else:
        sync_playwright = pytest.importorskip(
            "playwright.sync_api", reason="playwright not installed (pip install -e .[dev])"
        ).sync_playwright
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def open_page(browser, html: str, path: Path):
    """Load `html` from `path` in a 1200x900 page; returns the page and its errors."""
    path.write_text(html, encoding="utf8")
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(path.as_uri())
    page.wait_for_selector("body[data-bio-ready='1']", timeout=10_000)
    return page, errors


def test_browser_renders_a_biored_document(browser, dev_doc, tmp_path):
    page, errors = open_page(browser, render([dev_doc]), tmp_path / "view.html")
    n_rel = len(dev_doc._.relations)
    assert page.locator("mark.bio-ent").count() == len(all_mentions(dev_doc))
    assert page.locator("g.bio-rel").count() == n_rel
    assert page.locator("tr.bio-rel-row").count() == n_rel
    assert page.locator("g.bio-rel.unanchored").count() == 0
    # every arc was drawn (a path with geometry) and every label has a box
    drawn = page.eval_on_selector_all(
        "g.bio-rel path.bio-arc", "els => els.filter(e => e.getTotalLength() > 0).length"
    )
    assert drawn == n_rel
    boxes = page.eval_on_selector_all(
        "g.bio-rel rect",
        "els => els.map(e => [+e.getAttribute('x'), +e.getAttribute('y'),"
        " +e.getAttribute('width'), +e.getAttribute('height')])",
    )
    overlaps = [
        (a, b)
        for i, a in enumerate(boxes)
        for b in boxes[i + 1 :]
        if a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[3] and b[1] < a[1] + a[3]
    ]
    assert not overlaps, "relation labels overlap"
    page.screenshot(path=str(tmp_path / "relation_view.png"))
    if os.environ.get("BIOREAMA_WRITE_SCREENSHOT"):  # the README's screenshot
        page.screenshot(path=str(REPO / "docs" / "relation_view.png"))
    # hovering a mention highlights every mention of its concept
    first = all_mentions(dev_doc)[0]
    same = sum(1 for s in all_mentions(dev_doc) if s.kb_id_ == first.kb_id_)
    page.locator("mark.bio-ent").first.locator("..").locator("..").hover()
    assert page.locator("mark.bio-ent.bio-hl").count() == same
    assert errors == []
    page.close()


def test_browser_gold_vs_predicted(browser, dev_doc, tmp_path):
    pred, _ = drop_one(dev_doc)
    page, errors = open_page(browser, render([pred], gold=[dev_doc]), tmp_path / "cmp.html")
    assert page.locator("mark.bio-ent.miss").count() == 1
    assert page.locator("g.bio-rel.miss").count() == 1
    assert page.locator("tr.bio-rel-row.miss").count() == 1
    assert page.locator(".false-positive").count() == 0
    n_rel = len(dev_doc._.relations)
    assert page.locator("g.bio-rel").count() == n_rel + n_rel - 1
    assert errors == []
    page.screenshot(path=str(tmp_path / "relation_compare.png"))
    page.close()
