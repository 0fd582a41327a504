"""Every corpus reader under fuzzing (issue 14, "Readers under fuzzing").

One small synthetic corpus (`SYNTH`: three documents whose mention texts are unique in
their document, with non-ASCII letters so that re-encoding a line matters) is written
in every format, recording which bytes belong to which document. Hypothesis then
mutates the file -- byte level (truncation, inserted / replaced / deleted bytes, a line
cut in half or split, one line re-encoded as latin-1 / cp1252, an empty file, a BOM,
CRLF line ends, a structural token deleted or doubled) and format aware (offsets past
the text, negative, shifted or swapped; unknown entity / relation types; duplicated
documents and duplicate ids; JSON values of the wrong type) -- and checks the property:

- either the reader raises `CorpusFormatError` naming the file (``err.path``) and, for
  line-based formats, the line -- never another exception, never a hang;
- or it gives Docs, and then (a) the documents the mutation did not touch are exactly
  the clean Docs (text, id, mentions with offsets / labels / kb ids, relations); (b) the
  Docs are exactly the documents the mutated input declares, in order, with the text it
  declares; (c) every mention is one the input declares at those offsets, with that
  label and kb id, and the text at the offsets is the annotated text (no silently
  shifted entity); (d) every declared mention or relation that is not on a Doc is in
  `ConversionReport.unplaced`; (e) a repeated document id is kept and reported as an
  adjustment ("occurs more than once").

"What the input declares" is computed by a small independent parser per format (the
``oracle_*`` functions), never by the reader under test.

Semantics checked on purpose: a UTF-8 BOM is accepted and ignored (the Docs equal the
clean ones: a BOM is an encoding mark, not text, so it never shifts the first entity);
CRLF line ends give the clean Docs (except inside a brat ``.txt``, whose offsets count
every character); unknown entity / relation types are kept verbatim as labels (readers
do not validate type inventories); duplicate document ids are kept (both Docs, file
order) and reported via `SeenIds`.

`FUZZ_EXAMPLES` is the number of mutated inputs each reader survives per run (CI
derandomises, so the cases are the same every run).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape, quoteattr

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree

from spacy_bioreama.annotations.spans import all_mentions
from spacy_bioreama.corpora import (
    ConversionReport,
    CorpusFormatError,
    read_bioc_json,
    read_bioc_xml,
    read_brat,
    read_ddi,
    read_jsonl,
    read_ncbi_disease,
    read_pair_tsv,
    read_pubmedqa,
    read_pubtator,
)

# Mutated inputs per reader and run (docs quote this number). A deeper local run:
# BIOREAMA_FUZZ_EXAMPLES=5000 BIOREAMA_FUZZ_RANDOM=1 (fresh random cases each run).
FUZZ_EXAMPLES = 400
EXAMPLES = int(os.environ.get("BIOREAMA_FUZZ_EXAMPLES", FUZZ_EXAMPLES))
DERANDOMIZE = not os.environ.get("BIOREAMA_FUZZ_RANDOM")
# Per-example wall-clock limits: hypothesis' deadline (flags slow cases) and a hard
# alarm (turns a hang into a failure instead of a stuck CI job).
DEADLINE_MS = 4000
HANG_LIMIT_S = 20

BOM = b"\xef\xbb\xbf"


# -- the synthetic corpus ------------------------------------------------------------------
@dataclass(frozen=True)
class Synth:
    doc_id: str
    title: str
    abstract: str
    mentions: tuple[tuple[str, str, str], ...]  # text (unique in the doc), label, kb id
    relations: tuple[tuple[str, str, str, str], ...]  # label, head kb, tail kb, novelty
    answer: str = "yes"

    @property
    def text(self) -> str:
        return f"{self.title} {self.abstract}"

    def located(self) -> list[tuple[int, int, str, str, str]]:
        """(start, end, text, label, kb) of every mention, in document order."""
        out = []
        for text, label, kb in self.mentions:
            start = self.text.index(text)
            assert self.text.count(text) == 1, text
            out.append((start, start + len(text), text, label, kb))
        return sorted(out)


SYNTH = (
    Synth(
        "101",
        "Aspirin reduces fever in Sjögren syndrome.",
        "Ibuprofen was compared with paracetamol in β-thalassemia.",
        (
            ("Aspirin", "Chemical", "D001241"),
            ("Sjögren syndrome", "Disease", "D012859"),
            ("Ibuprofen", "Chemical", "D007052"),
            ("paracetamol", "Chemical", "D000082"),
            ("β-thalassemia", "Disease", "D017086"),
        ),
        (("Treat", "D001241", "D012859", "Novel"), ("Compare", "D007052", "D000082", "No")),
    ),
    Synth(
        "202",
        "BRCA1 mutations raise breast cancer risk.",
        "Tamoxifen lowers it in naïve carriers.",
        (
            ("BRCA1", "Gene", "672"),
            ("breast cancer", "Disease", "D001943"),
            ("Tamoxifen", "Chemical", "D013629"),
        ),
        (("Association", "672", "D001943", "Novel"),),
        "no",
    ),
    Synth(
        "303",
        "Warfarin causes bleeding.",
        "No other findings in Zürich.",
        (("Warfarin", "Chemical", "D014859"), ("bleeding", "Disease", "D006470")),
        (("Cause", "D014859", "D006470", "No"),),
        "maybe",
    ),
)
CLEAN_ORDER = tuple((i, s.doc_id) for i, s in enumerate(SYNTH))
Order = tuple[tuple[int, str], ...]  # (index into SYNTH, document id to write)


@dataclass
class Built:
    """A corpus as files, with the bytes of each document: `segments[k]` is the
    (file, start, end) of the k-th written document; `objects[k]` the span of its JSON
    object (JSON formats)."""

    files: dict[str, bytes]
    segments: list[tuple[str, int, int]]
    objects: list[tuple[str, int, int]] = field(default_factory=list)


def _join(name: str, head: str, chunks: list[str], tail: str, objs=None) -> Built:
    data, segments, objects = head.encode(), [], []
    for k, chunk in enumerate(chunks):
        start = len(data)
        if objs is not None:
            obj_at = chunk.index(objs[k])
            prefix = len(chunk[:obj_at].encode())
            objects.append((name, start + prefix, start + prefix + len(objs[k].encode())))
        data += chunk.encode()
        segments.append((name, start, len(data)))
    return Built({name: data + tail.encode()}, segments, objects)


def build_pubtator(order: Order, relations: bool = True) -> Built:
    chunks = []
    for i, did in order:
        s = SYNTH[i]
        lines = [f"{did}|t|{s.title}", f"{did}|a|{s.abstract}"]
        lines += [f"{did}\t{a}\t{b}\t{t}\t{lab}\t{kb}" for a, b, t, lab, kb in s.located()]
        if relations:
            lines += [f"{did}\t{lab}\t{h}\t{t}\t{n}" for lab, h, t, n in s.relations]
        chunks.append("\n".join(lines) + "\n\n")
    return _join("corpus.txt", "", chunks, "")


def build_ncbi_inline(order: Order) -> Built:
    chunks = []
    for i, did in order:
        s = SYNTH[i]
        parts = []
        for part in (s.title, s.abstract):
            for text, label, _ in s.mentions:
                if text in part:
                    part = part.replace(text, f'<category="{label}">{text}</category>')
            parts.append(part)
        chunks.append(f"{did}\t{parts[0]}\t{parts[1]}\n")
    return _join("NCBI_corpus_fuzz.txt", "", chunks, "")


def _bioc_parts(s: Synth) -> list[tuple[int, str, list]]:
    """(offset, text, located mentions) of the title and abstract passages."""
    cut = len(s.title) + 1
    located = s.located()
    return [
        (0, s.title, [m for m in located if m[0] < cut]),
        (cut, s.abstract, [m for m in located if m[0] >= cut]),
    ]


def build_bioc_xml(order: Order) -> Built:
    chunks = []
    for i, did in order:
        s = SYNTH[i]
        out = [f"<document><id>{escape(did)}</id>\n"]
        n = 0
        for offset, text, located in _bioc_parts(s):
            out.append(f"<passage><offset>{offset}</offset><text>{escape(text)}</text>\n")
            for a, b, t, lab, kb in located:
                out.append(
                    f'<annotation id="T{n}"><infon key="type">{lab}</infon>'
                    f'<infon key="identifier">{kb}</infon>'
                    f'<location offset="{a}" length="{b - a}"/><text>{escape(t)}</text>'
                    "</annotation>\n"
                )
                n += 1
            out.append("</passage>\n")
        for k, (lab, h, t, nov) in enumerate(s.relations):
            out.append(
                f'<relation id="R{k}"><infon key="type">{lab}</infon>'
                f'<infon key="entity1">{h}</infon><infon key="entity2">{t}</infon>'
                f'<infon key="novel">{nov}</infon></relation>\n'
            )
        out.append("</document>\n")
        chunks.append("".join(out))
    head = (
        '<?xml version="1.0" encoding="UTF-8"?>\n<collection><source>fuzz</source>'
        "<date>2024</date><key>fuzz.key</key>\n"
    )
    return _join("corpus.xml", head, chunks, "</collection>\n")


def _bioc_json_doc(s: Synth, did: str) -> dict:
    passages, n = [], 0
    for offset, text, located in _bioc_parts(s):
        anns = []
        for a, b, t, lab, kb in located:
            anns.append(
                {
                    "id": f"T{n}",
                    "infons": {"type": lab, "identifier": kb},
                    "text": t,
                    "locations": [{"offset": a, "length": b - a}],
                }
            )
            n += 1
        passages.append({"infons": {}, "offset": offset, "text": text, "annotations": anns})
    relations = [
        {"id": f"R{k}", "infons": {"type": lab, "entity1": h, "entity2": t, "novel": nov}}
        for k, (lab, h, t, nov) in enumerate(s.relations)
    ]
    return {"id": did, "passages": passages, "relations": relations}


def build_bioc_json(order: Order) -> Built:
    objs = [json.dumps(_bioc_json_doc(SYNTH[i], did), ensure_ascii=False) for i, did in order]
    chunks = [o + (",\n" if k < len(objs) - 1 else "\n") for k, o in enumerate(objs)]
    return _join("corpus.json", '{"source": "fuzz", "documents": [\n', chunks, "]}\n", objs)


def build_ddi(order: Order) -> Built:
    chunks = []
    for i, did in order:
        s = SYNTH[i]
        out = [f"<document id={quoteattr(did)}>\n"]
        ent_of: dict[str, str] = {}
        for k, (offset, text, located) in enumerate(_bioc_parts(s)):
            out.append(f'<sentence id="{did}.s{k}" text={quoteattr(text)}>\n')
            for j, (a, b, t, lab, kb) in enumerate(located):
                eid = f"{did}.s{k}.e{j}"
                ent_of.setdefault(kb, eid)
                local = f"{a - offset}-{b - offset - 1}"
                out.append(
                    f'<entity id="{eid}" charOffset="{local}" type="{lab.lower()}" '
                    f"text={quoteattr(t)}/>\n"
                )
            if k == 1:
                for p, (lab, h, t, _) in enumerate(s.relations):
                    out.append(
                        f'<pair id="{did}.p{p}" e1="{ent_of[h]}" e2="{ent_of[t]}" '
                        f'ddi="true" type="{lab.lower()}"/>\n'
                    )
            out.append("</sentence>\n")
        out.append("</document>\n")
        chunks.append("".join(out))
    head = '<?xml version="1.0" encoding="UTF-8"?>\n<corpus>\n'
    return _join("corpus.xml", head, chunks, "</corpus>\n")


def build_jsonl(order: Order) -> Built:
    objs = []
    for i, did in order:
        s = SYNTH[i]
        ents = [
            {"start": a, "end": b, "text": t, "label": lab, "concept_id": kb}
            for a, b, t, lab, kb in s.located()
        ]
        rels = [
            {"head_id": h, "tail_id": t, "label": lab, "novel": nov}
            for lab, h, t, nov in s.relations
        ]
        record = {"id": did, "text": s.text, "entities": ents, "relations": rels}
        objs.append(json.dumps(record, ensure_ascii=False))
    return _join("corpus.jsonl", "", [o + "\n" for o in objs], "", objs)


PAIR_LABELS = {"gad": ("1", "0", "1"), "chemprot": ("CPR:4", "False", "CPR:9")}


def _masked(s: Synth, head: str, tail: str) -> str:
    (h, *_), (t, *_) = s.mentions[:2]
    return s.text.replace(h, head).replace(t, tail)


def build_gad(order: Order) -> Built:
    chunks = [
        f"{_masked(SYNTH[i], '@GENE$', '@DISEASE$')}\t{PAIR_LABELS['gad'][i]}\n" for i, _ in order
    ]
    return _join("train.tsv", "", chunks, "")


def build_chemprot(order: Order) -> Built:
    chunks = [
        f"{did}\t{_masked(SYNTH[i], 'BC6ENTC', 'BC6ENTG')} with BC6OTHER.\t"
        f"{PAIR_LABELS['chemprot'][i]}\n"
        for i, did in order
    ]
    return _join("train.tsv", "index\tsentence\tlabel\n", chunks, "")


def build_pubmedqa(order: Order) -> Built:
    objs, chunks = [], []
    for k, (i, did) in enumerate(order):
        s = SYNTH[i]
        obj = json.dumps(
            {
                "QUESTION": f"Does {s.mentions[0][0]} matter?",
                "CONTEXTS": [s.title, s.abstract],
                "LABELS": ["BACKGROUND", "RESULTS"],
                "final_decision": s.answer,
                "LONG_ANSWER": s.abstract,
                "MESHES": [m[1] for m in s.mentions],
                "YEAR": "2001",
            },
            ensure_ascii=False,
        )
        objs.append(obj)
        sep = ",\n" if k < len(order) - 1 else "\n"
        chunks.append(f"{json.dumps(did)}: {obj}{sep}")
    return _join("pqal.json", "{\n", chunks, "}\n", objs)


def build_brat(order: Order) -> Built:
    files, segments = {}, []
    for i, did in order:
        s = SYNTH[i]
        text = f"{s.title}\n{s.abstract}\n"
        lines, tid = [], {}
        for j, (a, b, t, lab, kb) in enumerate(s.located(), 1):
            lines += [f"T{j}\t{lab} {a} {b}\t{t}", f"#{j}\tAnnotatorNotes T{j}\t{kb}"]
            tid.setdefault(kb, f"T{j}")
        for k, (lab, h, t, nov) in enumerate(s.relations, 1):
            lines += [f"R{k}\t{lab} Arg1:{tid[h]} Arg2:{tid[t]}", f"A{k}\tNovelty R{k} {nov}"]
        files[f"{did}.txt"] = text.encode()
        files[f"{did}.ann"] = ("\n".join(lines) + "\n").encode()
        segments += [(f"{did}.txt", 0, len(files[f"{did}.txt"]))]
        segments += [(f"{did}.ann", 0, len(files[f"{did}.ann"]))]
    return Built(files, segments)


# -- oracles: what an input declares, parsed independently of the readers -------------------
@dataclass
class Declared:
    """One document as the input declares it. `mentions`: (start, end, label, kb, text);
    kb or text None where the format does not give one for that mention."""

    doc_id: str
    text: str | None
    mentions: list[tuple[int, int, str, str | None, str | None]]
    relations: list[str]  # labels


def _text(data: bytes) -> str:
    return data.decode("utf-8").removeprefix("\ufeff")


def _lines(data: bytes) -> list[str]:
    lines = _text(data).split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [ln[:-1] if ln.endswith("\r") else ln for ln in lines]


def oracle_pubtator(files: dict[str, bytes]) -> list[Declared]:
    (data,) = files.values()
    docs: list[Declared] = []
    cur: Declared | None = None
    parts: dict[str, str] = {}
    for line in _lines(data):
        if not line.strip():
            cur = None
            continue
        m = re.match(r"^([^|\t]+)\|([ta])\|(.*)$", line, re.DOTALL)
        if m:
            pmid, kind = m.group(1).strip(), m.group(2)
            if cur is None or cur.doc_id != pmid or kind == "t":
                cur, parts = Declared(pmid, None, [], []), {}
                docs.append(cur)
            parts[kind] = m.group(3)
            cur.text = " ".join(parts[k] for k in "ta" if k in parts)
            continue
        cols = line.split("\t")
        if len(cols) >= 5 and all(re.fullmatch(r"-?[0-9]+", c.strip()) for c in cols[1:3]):
            kb = cols[5].strip() if len(cols) > 5 else ""
            cur.mentions.append((int(cols[1]), int(cols[2]), cols[4].strip(), kb, cols[3]))
        else:
            cur.relations.append(cols[1].strip())
    return docs


_TAG = re.compile(r'<category="([^"]*)">(.*?)</category>', re.DOTALL)


def oracle_ncbi_inline(files: dict[str, bytes]) -> list[Declared]:
    (data,) = files.values()
    docs = []
    for line in _lines(data):
        if not line.strip():
            continue
        pmid, title, abstract = line.split("\t")
        plain, mentions = "", []
        for k, part in enumerate((title, abstract)):
            plain += " " * k
            pos = 0
            for m in _TAG.finditer(part):
                plain += part[pos : m.start()]
                mentions.append((len(plain), len(plain) + len(m[2]), m[1], "", m[2]))
                plain += m[2]
                pos = m.end()
            plain += part[pos:]
        docs.append(Declared(pmid.strip(), plain, mentions, []))
    return docs


def _infon(elem, key: str) -> str:
    for infon in elem.findall("infon"):
        if infon.get("key") == key:
            return infon.text or ""
    return ""


def oracle_bioc_xml(files: dict[str, bytes]) -> list[Declared]:
    (data,) = files.values()
    root = etree.fromstring(data, etree.XMLParser(resolve_entities=False))
    docs = []
    for doc in root.iter("document"):
        pieces, mentions = [], []
        for passage in doc.findall("passage"):
            pieces.append((int(passage.findtext("offset")), passage.findtext("text") or ""))
        for ann in doc.iter("annotation"):
            locs = [
                (int(loc.get("offset")), int(loc.get("offset")) + int(loc.get("length")))
                for loc in ann.findall("location")
            ]
            if not locs:
                continue
            text = ann.findtext("text") if len(locs) == 1 else None
            start, end = min(a for a, _ in locs), max(b for _, b in locs)
            label = _infon(ann, "type") or _infon(ann, "Type")
            mentions.append((start, end, label, _infon(ann, "identifier").strip(), text))
        relations = [_infon(r, "type") for r in doc.iter("relation")]
        docs.append(Declared(doc.findtext("id") or "", _place(pieces), mentions, relations))
    return docs


def _place(pieces: list[tuple[int, str]]) -> str:
    text = ""
    for offset, piece in sorted(pieces, key=lambda p: p[0]):
        text += " " * (offset - len(text)) + piece
    return text


def _first(infons: dict, keys: tuple[str, ...]) -> str:
    return next((str(infons[k]) for k in keys if infons.get(k) not in (None, "")), "")


def oracle_bioc_json(files: dict[str, bytes]) -> list[Declared]:
    (data,) = files.values()
    docs = []
    for doc in json.loads(_text(data))["documents"]:
        pieces, mentions, relations, holders = [], [], [], [doc]
        for passage in doc.get("passages", []):
            sentences = passage.get("sentences", [])
            holders += [passage, *sentences]
            if passage.get("text") is not None:
                pieces.append((passage["offset"], passage["text"]))
            else:
                pieces += [(s["offset"], s.get("text") or "") for s in sentences]
        for holder in holders:
            for ann in holder.get("annotations", []):
                locs = [(x["offset"], x["offset"] + x["length"]) for x in ann.get("locations", [])]
                if not locs:
                    continue
                text = ann.get("text") if len(locs) == 1 else None
                start, end = min(a for a, _ in locs), max(b for _, b in locs)
                infons = ann.get("infons", {})
                kb = _first(infons, ("identifier", "Identifier", "MESH", "NCBI Gene")).strip()
                mentions.append((start, end, _first(infons, ("type", "Type")), kb, text))
            relations += [
                _first(r.get("infons", {}), ("type", "relation", "relation_type", "Type"))
                for r in holder.get("relations", [])
            ]
        docs.append(Declared(str(doc["id"]), _place(pieces), mentions, relations))
    return docs


def oracle_ddi(files: dict[str, bytes]) -> list[Declared]:
    (data,) = files.values()
    root = etree.fromstring(data, etree.XMLParser(resolve_entities=False))
    docs = []
    for doc in [root] if root.tag == "document" else root.iter("document"):
        text, mentions, relations = "", [], []
        for sentence in doc.iter("sentence"):
            sent = sentence.get("text")
            if text and sent:
                text += " "
            offset = len(text)
            text += sent
            for ent in sentence.iter("entity"):
                frags = [tuple(map(int, p.split("-"))) for p in ent.get("charOffset").split(";")]
                start = offset + min(a for a, _ in frags)
                end = offset + max(b for _, b in frags) + 1
                ent_text = ent.get("text") if len(frags) == 1 else None
                mentions.append((start, end, ent.get("type") or "", ent.get("id"), ent_text))
            for pair in sentence.iter("pair"):
                typed = pair.get("type") or "int"
                relations.append(typed if pair.get("ddi") == "true" else "false")
        docs.append(Declared(doc.get("id"), text, mentions, relations))
    return docs


def oracle_jsonl(files: dict[str, bytes]) -> list[Declared]:
    ((name, data),) = files.items()
    docs = []
    for lineno, line in enumerate(_lines(data), 1):
        if not line.strip():
            continue
        rec = json.loads(line)
        text = (
            rec["text"]
            if "text" in rec
            else " ".join(p for p in (rec["title"], rec.get("abstract")) if p is not None)
        )
        mentions = [
            (e["start"], e["end"], e["label"], (e.get("concept_id") or "").strip(), e.get("text"))
            for e in rec.get("entities") or []
        ]
        relations = [r["label"] for r in rec.get("relations") or []]
        doc_id = str(rec["id"]) if rec.get("id") is not None else f"{Path(name).stem}-{lineno}"
        docs.append(Declared(doc_id, text, mentions, relations))
    return docs


def _oracle_pairs(head: str, tail: str, labels: tuple[str, str], name: str, files) -> list:
    (data,) = files.values()
    docs, n_cols = [], 2
    for lineno, line in enumerate(_lines(data), 1):
        if not line.strip():
            continue
        cols = line.split("\t")
        if lineno == 1 and [c.strip().lower() for c in cols][-2:] == ["sentence", "label"]:
            n_cols = len(cols)
            continue
        sentence = cols[-2]
        mentions = []
        for placeholder, label in ((head, labels[0]), (tail, labels[1])):
            edge = r"(?<![A-Za-z0-9])" if placeholder[0].isalnum() else ""
            end = r"(?![A-Za-z0-9])" if placeholder[-1].isalnum() else ""
            m = re.search(edge + re.escape(placeholder) + end, sentence)
            if m:
                mentions.append((m.start(), m.end(), label, placeholder, placeholder))
        doc_id = cols[0].strip() if n_cols == 3 else f"{name}:train:{lineno}"
        docs.append(Declared(doc_id, sentence, mentions, [cols[-1].strip()]))
    return docs


def oracle_pubmedqa(files: dict[str, bytes]) -> list[Declared]:
    (data,) = files.values()
    pairs = json.loads(_text(data), object_pairs_hook=lambda p: p)
    docs = []
    for qid, item in pairs:
        contexts = dict(item)["CONTEXTS"]
        docs.append(Declared(str(qid), " ".join(contexts), [], []))
    return docs


def oracle_brat(files: dict[str, bytes]) -> list[Declared]:
    docs = []
    stems = sorted({Path(n).stem for n in files}, key=int)
    for stem in stems:
        text = _text(files[f"{stem}.txt"])
        mentions, relations = [], []
        for line in _lines(files.get(f"{stem}.ann", b"")):
            cols = line.split("\t")
            if cols[0].startswith("T"):
                label, where = cols[1].split(" ", 1)
                pieces = [tuple(map(int, p.split())) for p in where.split(";")]
                start, end = min(a for a, _ in pieces), max(b for _, b in pieces)
                ann_text = "\t".join(cols[2:]) if len(pieces) == 1 else None
                mentions.append((start, end, label, None, ann_text))
            elif cols[0].startswith("R"):
                relations.append(cols[1].split()[0])
        docs.append(Declared(stem, text, mentions, relations))
    return docs


# -- the formats under test --------------------------------------------------------------------
@dataclass
class Format:
    name: str
    read: Callable[..., Iterator]
    build: Callable[[Order], Built]
    oracle: Callable[[dict[str, bytes]], list[Declared]]
    line_based: bool
    offsets: tuple[bytes, ...] = ()  # regexes: groups are offsets of one mention
    types: tuple[bytes, ...] = ()  # regexes: group 1 is an entity / relation type
    tokens: tuple[bytes, ...] = ()  # structural tokens to delete or double
    escape: Callable[[str], str] = str
    ids_in_file: bool = True  # a document id is written in the file (duplicable)
    target: str | None = None  # the path given to the reader (None: the one file)
    crlf_benign: Callable[[str], bool] = lambda name: True
    id_key: Callable[[str], str] = lambda doc_id: doc_id  # compare untouched docs by

    def path(self, root: Path, built: Built) -> Path:
        if self.target is not None:
            return root / self.target
        (name,) = built.files
        return root / name


def _json_escape(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)[1:-1]


def _xml_escape(value: str) -> str:
    return escape(value, {'"': "&quot;"})


PUBTATOR_TYPES = (
    rb"(?m)^[^\t\n|]+\t\d+\t\d+\t[^\t\n]*\t([^\t\n]*)",
    rb"(?m)^[^\t\n|]+\t([A-Za-z][^\t\n]*)\t[^\t\n]*\t[^\t\n]*",
)
PUBTATOR_OFFSETS = (rb"(?m)^[^\t\n|]+\t(\d+)\t(\d+)\t",)
JSON_TOKENS = (b'"', b",", b"{", b"}", b"[", b"]", b":")
XML_TOKENS = (b"<", b">", b'"', b"/>", b"</annotation>", b"<location", b"</passage>", b"&")

FORMATS = [
    Format(
        "pubtator",
        read_pubtator,
        build_pubtator,
        oracle_pubtator,
        True,
        PUBTATOR_OFFSETS,
        PUBTATOR_TYPES,
        (b"\t", b"|", b"\n", b"-"),
    ),
    Format(
        "ncbi-disease",
        read_ncbi_disease,
        partial(build_pubtator, relations=False),
        oracle_pubtator,
        True,
        PUBTATOR_OFFSETS,
        PUBTATOR_TYPES[:1],
        (b"\t", b"|", b"\n"),
    ),
    Format(
        "ncbi-inline",
        read_ncbi_disease,
        build_ncbi_inline,
        oracle_ncbi_inline,
        True,
        (),
        (rb'<category="([^"]*)">',),
        (b"<category=", b"</category>", b"\t", b'"', b">", b"\n"),
    ),
    Format(
        "bioc-xml",
        read_bioc_xml,
        build_bioc_xml,
        oracle_bioc_xml,
        False,
        (rb'offset="(\d+)" length="(\d+)"', rb"<offset>(\d+)</offset>"),
        (rb'<infon key="type">([^<]*)</infon>',),
        XML_TOKENS,
        _xml_escape,
    ),
    Format(
        "bioc-json",
        read_bioc_json,
        build_bioc_json,
        oracle_bioc_json,
        False,
        (rb'"offset": (\d+), "length": (\d+)', rb'"offset": (\d+), "text"'),
        (rb'"type": "([^"]*)"',),
        JSON_TOKENS,
        _json_escape,
    ),
    Format(
        "ddi",
        read_ddi,
        build_ddi,
        oracle_ddi,
        False,
        (rb'charOffset="(\d+)-(\d+)"',),
        (rb' type="([^"]*)"',),
        XML_TOKENS + (b";", b"-"),
        _xml_escape,
    ),
    Format(
        "jsonl",
        read_jsonl,
        build_jsonl,
        oracle_jsonl,
        True,
        (rb'"start": (\d+), "end": (\d+)',),
        (rb'"label": "([^"]*)"',),
        JSON_TOKENS + (b"\n",),
        _json_escape,
    ),
    Format(
        "gad",
        partial(read_pair_tsv, scheme="gad"),
        build_gad,
        partial(_oracle_pairs, "@GENE$", "@DISEASE$", ("GENE", "DISEASE"), "gad"),
        True,
        (),
        (rb"(?m)\t([^\t\n]*)$",),
        (b"\t", b"\n", b"@GENE$", b"@DISEASE$", b"$"),
        ids_in_file=False,
        id_key=lambda doc_id: doc_id.rsplit(":", 1)[0],  # the id is the line number
    ),
    Format(
        "chemprot",
        partial(read_pair_tsv, scheme="chemprot"),
        build_chemprot,
        partial(_oracle_pairs, "BC6ENTC", "BC6ENTG", ("CHEMICAL", "GENE"), "chemprot"),
        True,
        (),
        (rb"(?m)\t([^\t\n]*)$",),
        (b"\t", b"\n", b"BC6ENTC", b"BC6ENTG", b"BC6OTHER"),
    ),
    Format(
        "pubmedqa",
        read_pubmedqa,
        build_pubmedqa,
        oracle_pubmedqa,
        False,
        (),
        (rb'"final_decision": "([^"]*)"', rb'"LABELS": \["([^"]*)"'),
        JSON_TOKENS,
        _json_escape,
    ),
    Format(
        "brat",
        read_brat,
        build_brat,
        oracle_brat,
        True,
        (rb"(?m)^T\d+\t\S+ (\d+) (\d+)\t",),
        (rb"(?m)^[TR]\d+\t(\S+) ",),
        (b"\t", b" ", b";", b"\n", b"T", b"R", b":"),
        ids_in_file=False,
        target=".",
        crlf_benign=lambda name: name.endswith(".ann"),  # .txt: \r is text, offsets count it
    ),
]
FORMAT_IDS = [f.name for f in FORMATS]


# -- reading and the property ------------------------------------------------------------------
def signature(doc, fmt: Format) -> tuple:
    """What must be equal between a Doc and its clean counterpart."""
    return (
        fmt.id_key(doc.user_data["doc_id"]),
        doc.text,
        tuple((e.start_char, e.end_char, e.label_, e.kb_id_) for e in doc.ents),
        tuple((s.start_char, s.end_char, s.label_, s.kb_id_) for s in all_mentions(doc)),
        tuple(
            (
                (r.head_span(doc).start_char, r.head_span(doc).end_char),
                (r.tail_span(doc).start_char, r.tail_span(doc).end_char),
                r.head_id,
                r.tail_id,
                r.label,
                r.score,
                r.novel,
            )
            for r in doc._.relations
        ),
    )


@contextlib.contextmanager
def hang_limit(seconds: int):
    """Raise TimeoutError in the reader if it runs longer than `seconds` (a hang)."""

    def alarm(signum, frame):
        raise TimeoutError(f"reader still running after {seconds} s")

    old = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def run_reader(fmt: Format, files: dict[str, bytes]):
    """Write `files` to a fresh folder and read them: (docs or the CorpusFormatError,
    report, the paths written). Any other exception propagates (a test failure)."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for name, data in files.items():
            (root / name).write_bytes(data)
        path = fmt.path(root, Built(files, []))
        report = ConversionReport(fmt.name, str(path))
        written = {str(root / n) for n in files} | {str(path)}
        try:
            with hang_limit(HANG_LIMIT_S):
                return list(fmt.read(path, report=report)), report, written
        except CorpusFormatError as err:
            return err, report, written


_CLEAN: dict[str, list[tuple]] = {}


def clean_signatures(fmt: Format) -> list[tuple]:
    if fmt.name not in _CLEAN:
        docs, report, _ = run_reader(fmt, fmt.build(CLEAN_ORDER).files)
        assert not isinstance(docs, Exception), docs
        _CLEAN[fmt.name] = [signature(d, fmt) for d in docs]
    return _CLEAN[fmt.name]


@dataclass
class Mutated:
    kind: str
    files: dict[str, bytes]
    untouched: list[int]  # indices of clean docs that must come out unchanged
    benign: bool = False


def check_property(fmt: Format, mutated: Mutated) -> str:
    """Assert the module's property for one mutated input; returns "docs" or "error"."""
    result, report, written = run_reader(fmt, mutated.files)
    clean = clean_signatures(fmt)
    if isinstance(result, CorpusFormatError):
        err = result
        assert not mutated.benign, f"benign mutation {mutated.kind} rejected: {err}"
        assert err.path in written, f"error does not name the input file: {err}"
        if fmt.line_based:
            assert isinstance(err.line, int) and err.line >= 1, f"no line in {err}"
        return "error"
    docs = result
    sigs = [signature(d, fmt) for d in docs]
    if mutated.benign:
        assert sigs == clean, f"{mutated.kind} changed the Docs"
        return "docs"

    # (a) untouched documents are exactly the clean ones
    left = Counter(sigs)
    for i in mutated.untouched:
        assert left[clean[i]] > 0, f"untouched document {i} changed or lost"
        left[clean[i]] -= 1

    # (b) the Docs are the declared documents, in order, with the declared text
    declared = fmt.oracle(mutated.files)
    ids = [d.user_data["doc_id"] for d in docs]
    assert ids == [d.doc_id for d in declared], "documents lost, invented or reordered"
    placed_issue = {(i.doc_id, i.start, i.end) for i in report.unplaced}
    missing_relations = Counter()
    for doc, decl in zip(docs, declared, strict=True):
        assert decl.text is None or doc.text == decl.text, f"text of {decl.doc_id} differs"
        # (c) every mention is declared at its offsets with its text
        for span in all_mentions(doc):
            assert any(_matches(span, m) for m in decl.mentions), (
                f"{decl.doc_id}: mention {span.text!r} [{span.start_char}:{span.end_char}] "
                f"({span.label_}, {span.kb_id_}) is not declared there"
            )
        # (d) whatever was not placed is reported
        spans = all_mentions(doc)
        for m in decl.mentions:
            if not any(_matches(s, m) for s in spans):
                assert (decl.doc_id, m[0], m[1]) in placed_issue, (
                    f"{decl.doc_id}: declared mention {m} neither placed nor reported"
                )
        placed = Counter(r.label for r in doc._.relations)
        assert not placed - Counter(decl.relations), "relation labels not declared"
        missing_relations[decl.doc_id] += sum((Counter(decl.relations) - placed).values())
    for doc_id, n in missing_relations.items():
        reported = sum(1 for i in report.unplaced if i.doc_id == doc_id and i.start is None)
        assert reported >= n, f"{doc_id}: {n} relations lost, {reported} reported"
    # (e) repeated ids are kept and reported
    for doc_id, n in Counter(ids).items():
        if n > 1:
            assert any(
                i.doc_id == doc_id and "more than once" in i.reason for i in report.adjusted
            ), f"duplicate id {doc_id} not reported"
    return "docs"


def _matches(span, m) -> bool:
    start, end, label, kb, text = m
    return (
        (span.start_char, span.end_char, span.label_) == (start, end, label)
        and (kb is None or span.kb_id_ == kb)
        and (text is None or span.text in (text, text.strip()))
    )


# -- mutations -------------------------------------------------------------------------------
def _splice(files: dict[str, bytes], name: str, a: int, b: int, new: bytes) -> dict[str, bytes]:
    out = dict(files)
    out[name] = files[name][:a] + new + files[name][b:]
    return out


JUNK_TOKENS = [b"\t", b"\n", b"\r", b"|", b"<", b">", b'"', b"{", b"}", b"\xff", b"\xc3", b"-"]
JUNK_TOKENS += [b"0", b"-1", b" ", b"\x00", b"\xe2\x80\xa8", BOM, b"\\", b"&", b";", b","]
junk = st.one_of(
    st.binary(min_size=1, max_size=6),
    st.lists(st.sampled_from(JUNK_TOKENS), min_size=1, max_size=4).map(b"".join),
)
type_values = st.one_of(
    st.sampled_from(["Unknown", "", " ", "CPR:99", "ÄÖÜ", "a b", "Gene", "Disease", "x\ty"]),
    st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=6),
)
json_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 10**12),
    st.text(max_size=4),
    st.sampled_from([[], {}, [1, "x"], {"offset": 1}, 1.5, -0.0]),
)


def offset_values(original: int, text_len: int):
    return st.one_of(
        st.integers(-3, 3).map(lambda d: str(original + d)),
        st.sampled_from([-1, -original - 1, 0, text_len, text_len + 1, 10**12, 10**40]).map(str),
        st.sampled_from(["--3", "²", "٣", "+4", " 7", "1e3", "", "0x1f", "1_0", "-0"]),
    )


@st.composite
def mutations(draw, fmt: Format) -> Mutated:
    built = FUZZ_BUILT[fmt.name]
    names = sorted(built.files)
    kinds = ["truncate", "insert", "replace", "delete", "cut_line", "split_line", "reencode"]
    kinds += ["empty", "bom", "crlf", "token"]
    if fmt.offsets:
        kinds += ["offset", "offset", "swap"]
    if fmt.types:
        kinds += ["type", "type"]
    kinds += ["dup", "dup"] + (["rename"] if fmt.ids_in_file else [])
    if built.objects:
        kinds += ["json_value", "json_value"]
    kind = draw(st.sampled_from(kinds))
    name = draw(st.sampled_from(names))
    data = built.files[name]
    n = len(data)
    all_docs = list(range(len(SYNTH)))

    def edit(a: int, b: int, new: bytes) -> Mutated:
        return Mutated(kind, _splice(built.files, name, a, b, new), built.untouched(name, a, b))

    if kind == "truncate":
        a = draw(st.integers(0, n - 1))
        return edit(a, n, b"")
    if kind == "insert":
        a = draw(st.integers(0, n))
        return edit(a, a, draw(junk))
    if kind == "replace":
        a = draw(st.integers(0, n - 1))
        return edit(a, a + 1, draw(junk))
    if kind == "delete":
        a = draw(st.integers(0, n - 1))
        return edit(a, draw(st.integers(a + 1, min(n, a + 12))), b"")
    if kind in ("cut_line", "split_line", "reencode"):
        starts = [0] + [m.end() for m in re.finditer(b"\n", data) if m.end() < n]
        if kind == "reencode":
            starts = [s for s in starts if re.match(rb"[^\n]*[\x80-\xff]", data[s:])] or [0]
        a = draw(st.sampled_from(starts))
        b = data.find(b"\n", a)
        b = n if b < 0 else b
        if kind == "reencode":
            enc = draw(st.sampled_from(["latin-1", "cp1252"]))
            return edit(a, b, data[a:b].decode().encode(enc, errors="replace"))
        mid = draw(st.integers(a, max(a, b - 1)))
        return edit(mid, b, b"") if kind == "cut_line" else edit(mid, mid, b"\n")
    if kind == "empty":
        return Mutated(kind, _splice(built.files, name, 0, n, b""), built.untouched(name, 0, n))
    if kind == "bom":
        return Mutated(kind, _splice(built.files, name, 0, 0, BOM), all_docs, benign=True)
    if kind == "crlf":
        files = dict(built.files, **{name: data.replace(b"\n", b"\r\n")})
        if fmt.crlf_benign(name):
            return Mutated(kind, files, all_docs, benign=True)
        return Mutated(kind, files, built.untouched(name, 0, n))
    if kind == "token":
        token = draw(st.sampled_from(fmt.tokens))
        hits = [m.start() for m in re.finditer(re.escape(token), data)]
        if not hits:
            return edit(0, 0, token)
        a = draw(st.sampled_from(hits))
        double = draw(st.booleans())
        return edit(a, a, token) if double else edit(a, a + len(token), b"")
    if kind in ("offset", "swap", "type"):
        patterns = fmt.types if kind == "type" else fmt.offsets
        found = [m for p in patterns for m in re.finditer(p, data)]
        if kind == "swap":
            found = [m for m in found if m.lastindex == 2]
        if not found:
            return edit(0, 0, b"")
        m = draw(st.sampled_from(found))
        if kind == "swap":
            a, b = m.span(1)[0], m.span(2)[1]
            mid = data[m.end(1) : m.start(2)]
            return edit(a, b, m.group(2) + mid + m.group(1))
        g = draw(st.integers(1, m.lastindex))
        if kind == "type":
            value = fmt.escape(draw(type_values)).encode()
        else:
            value = draw(offset_values(int(m.group(g)), 80)).encode()
        return edit(m.start(g), m.end(g), value)
    if kind == "dup":
        src = draw(st.integers(0, len(SYNTH) - 1))
        at = draw(st.integers(0, len(SYNTH)))
        order = list(CLEAN_ORDER)
        order.insert(at, CLEAN_ORDER[src])
        if not fmt.ids_in_file and fmt.target is not None:  # brat: a stem is unique
            order[at] = (src, f"{SYNTH[src].doc_id}9")
            return Mutated(kind, fmt.build(tuple(order)).files, all_docs)
        return Mutated(kind, fmt.build(tuple(order)).files, [i for i, _ in order])
    if kind == "rename":
        src, dst = draw(st.integers(0, len(SYNTH) - 1)), draw(st.integers(0, len(SYNTH) - 1))
        order = list(CLEAN_ORDER)
        order[dst] = (dst, SYNTH[src].doc_id)
        return Mutated(kind, fmt.build(tuple(order)).files, [i for i in all_docs if i != dst])
    if kind == "json_value":
        k = draw(st.integers(0, len(built.objects) - 1))
        obj_name, a, b = built.objects[k]
        obj = json.loads(built.files[obj_name][a:b])
        paths = list(_json_paths(obj))
        path = draw(st.sampled_from(paths))
        holder = obj
        for key in path[:-1]:
            holder = holder[key]
        if isinstance(holder, dict) and draw(st.booleans()):
            del holder[path[-1]]
        else:
            holder[path[-1]] = draw(json_values)
        new = json.dumps(obj, ensure_ascii=False).encode()
        untouched = [i for i in all_docs if i != k]
        return Mutated(kind, _splice(built.files, obj_name, a, b, new), untouched)
    raise AssertionError(kind)


def _json_paths(obj: Any, prefix: tuple = ()) -> Iterator[tuple]:
    items = obj.items() if isinstance(obj, dict) else enumerate(obj)
    for key, value in items:
        yield (*prefix, key)
        if isinstance(value, dict | list):
            yield from _json_paths(value, (*prefix, key))


class _Fuzzable(Built):
    """A clean `Built` with the map from segment to document (brat: two files each)."""

    def __init__(self, built: Built) -> None:
        super().__init__(built.files, built.segments, built.objects)
        per_doc = len(built.segments) // len(SYNTH)
        self.doc_of = [k // per_doc for k in range(len(built.segments))]

    def untouched(self, name: str, a: int, b: int) -> list[int]:
        hit = {
            self.doc_of[k]
            for k, (n, s, e) in enumerate(self.segments)
            if n == name and a <= e and b >= s
        }
        if not any(n == name and s <= a and b <= e for n, s, e in self.segments):
            return []  # outside every document (header, footer): may change them all
        return [i for i in range(len(SYNTH)) if i not in hit]


FUZZ_BUILT = {f.name: _Fuzzable(f.build(CLEAN_ORDER)) for f in FORMATS}


# -- tests -------------------------------------------------------------------------------------
def test_clean_fixtures_read_exactly():
    """Each clean fixture gives the three documents, every mention and relation placed,
    nothing reported -- the baseline every mutation is compared with."""
    for fmt in FORMATS:
        docs, report, _ = run_reader(fmt, FUZZ_BUILT[fmt.name].files)
        assert not isinstance(docs, Exception), (fmt.name, docs)
        assert len(docs) == len(SYNTH), fmt.name
        assert not report.unplaced and not report.adjusted, (fmt.name, report.format())
        assert check_property(fmt, Mutated("none", FUZZ_BUILT[fmt.name].files, [0, 1, 2])) == (
            "docs"
        )
        if fmt.name not in ("pubmedqa", "gad", "chemprot"):
            n_mentions = sum(len(s.mentions) for s in SYNTH)
            assert report.n_mentions == n_mentions, fmt.name
        if fmt.name not in ("pubmedqa", "ncbi-disease", "ncbi-inline"):
            assert report.n_relations == (3 if fmt.name in ("gad", "chemprot") else 4), fmt.name


@pytest.mark.parametrize("fmt", FORMATS, ids=FORMAT_IDS)
@pytest.mark.parametrize("mutation", ["bom", "crlf", "bom+crlf"])
def test_benign_mutations_give_the_clean_docs(fmt, mutation):
    """A UTF-8 BOM and CRLF line ends change nothing (brat: in the .ann files; a .txt's
    offsets count its CRs)."""
    files = dict(FUZZ_BUILT[fmt.name].files)
    for name, data in files.items():
        if "crlf" in mutation and fmt.crlf_benign(name):
            data = data.replace(b"\n", b"\r\n")
        if "bom" in mutation:
            data = BOM + data
        files[name] = data
    check_property(fmt, Mutated(mutation, files, [0, 1, 2], benign=True))


@pytest.mark.parametrize("fmt", FORMATS, ids=FORMAT_IDS)
def test_empty_file(fmt):
    """An empty file is no documents (line-based formats), an empty document (brat) or a
    `CorpusFormatError` naming the file (XML, JSON)."""
    built = FUZZ_BUILT[fmt.name]
    for name in built.files:
        outcome = check_property(fmt, Mutated("empty", dict(built.files, **{name: b""}), []))
        expect_error = fmt.name in ("bioc-xml", "bioc-json", "ddi", "pubmedqa")
        assert outcome == ("error" if expect_error else "docs"), (fmt.name, name)


@pytest.mark.parametrize("fmt", FORMATS, ids=FORMAT_IDS)
def test_duplicate_ids_are_kept_and_reported(fmt):
    """A document repeated with its id: both Docs, in file order, reported once."""
    if not fmt.ids_in_file:
        pytest.skip("the document id is not written in the file")
    order = CLEAN_ORDER + (CLEAN_ORDER[1],)
    docs, report, _ = run_reader(fmt, fmt.build(order).files)
    assert [d.user_data["doc_id"] for d in docs] == ["101", "202", "303", "202"]
    dup = [i for i in report.adjusted if "more than once" in i.reason]
    assert [i.doc_id for i in dup] == ["202"]
    assert signature(docs[1], fmt) == signature(docs[3], fmt)


@pytest.mark.parametrize("fmt", FORMATS, ids=FORMAT_IDS)
@settings(
    max_examples=EXAMPLES,
    deadline=DEADLINE_MS,
    derandomize=DERANDOMIZE,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data())
def test_reader_under_fuzzing(fmt, data):
    """The module's property, for `FUZZ_EXAMPLES` mutations of each reader's fixture."""
    mutated = data.draw(mutations(fmt), label="mutation")
    OUTCOMES[fmt.name][check_property(fmt, mutated)] += 1


OUTCOMES: dict[str, Counter] = {f.name: Counter() for f in FORMATS}


def test_fuzzing_reached_docs_and_errors():
    """Each reader's fuzzing gave both outcomes, Docs and errors (a strategy that only
    ever breaks the file, or never does, tests little). Runs after the fuzz tests."""
    if not any(OUTCOMES.values()):
        pytest.skip("the fuzz tests did not run in this session")
    for name, outcomes in OUTCOMES.items():
        print(name, dict(outcomes))
        if sum(outcomes.values()) < EXAMPLES:
            continue  # its fuzz test failed (or was deselected)
        assert outcomes["docs"] >= EXAMPLES // 10, (name, outcomes)
        assert outcomes["error"] >= EXAMPLES // 20, (name, outcomes)
