"""Instruction-dataset builder: targets parse back to the gold annotations, negatives and
type pairs follow the config, rationales quote the source text, output is deterministic
and the statistics add up. Lengths are whitespace words (no model) to stay fast."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import spacy
import srsly
from spacy.tokens import DocBin

from spacy_bioreama.annotations.labels import BIORED_ENTITY_LABELS, BIORED_RELATION_LABELS
from spacy_bioreama.annotations.relations import Relation
from spacy_bioreama.annotations.spans import all_mentions, set_entities
from spacy_bioreama.corpora import read
from spacy_bioreama.instructions import (
    BuildReport,
    build_instructions,
    heldout_split,
    load_config,
    make_length_counter,
    parse_config,
)
from spacy_bioreama.tasks import ner, qa
from spacy_bioreama.tasks import relation as re_task
from spacy_bioreama.tasks.windows import sentence_ranges as _sentence_ranges

REPO = Path(__file__).resolve().parent.parent
DATA_DIR = Path(os.environ.get("BIOREAMA_DATA_DIR", REPO.parent / "shared" / "data"))
BIORED_DEV = DATA_DIR / "biored" / "Dev.PubTator"
ENTITY_LABELS = list(BIORED_ENTITY_LABELS)
RELATION_LABELS = list(BIORED_RELATION_LABELS)


def _write(docs, path: Path) -> Path:
    DocBin(docs=list(docs), store_user_data=True).to_disk(path)
    return path


def _records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf8").splitlines()]


def _first_docs(path: Path, n: int) -> list:
    """The first `n` documents of a real PubTator file (the test is skipped without it)."""
    if not path.exists():
        pytest.skip(f"{path.parent.name} not found at {path} (set BIOREAMA_DATA_DIR)")
    return list(itertools.islice(read("pubtator", path), n))


@pytest.fixture(scope="module")
def biored(tmp_path_factory) -> dict[str, Path]:
    """Six real BioRED dev abstracts: four as "train", two as "dev"."""
    docs = _first_docs(BIORED_DEV, 6)
    folder = tmp_path_factory.mktemp("biored")
    return {
        "train": _write(docs[:4], folder / "train.spacy"),
        "dev": _write(docs[4:], folder / "dev.spacy"),
    }


def _biored_config(paths: dict[str, Path], **instructions) -> dict:
    settings = {"seed": 0, "max_length": 1024, "negative_ratio": 0.5, **instructions}
    common = {"corpus": "biored", "train": str(paths["train"]), "dev": str(paths["dev"])}
    return {
        "instructions": {
            **settings,
            "sources": {
                "biored_ner": {"task": "ner", "labels": ENTITY_LABELS, **common},
                "biored_re": {"task": "re", "labels": RELATION_LABELS, **common},
            },
        }
    }


def _docs(path: Path) -> dict[str, spacy.tokens.Doc]:
    docs = DocBin().from_disk(path).get_docs(spacy.blank("en").vocab)
    return {d.user_data["doc_id"]: d for d in docs}


@pytest.fixture(scope="module")
def biored_build(biored, tmp_path_factory) -> BuildReport:
    return build_instructions(
        _biored_config(biored), tmp_path_factory.mktemp("out"), progress=False
    )


def _expected_pairs(docs, allowed, prefix):
    """id -> (doc, head, tail, gold label) for every candidate pair, built independently."""
    expected = {}
    for doc_id, doc in docs.items():
        for head, tail in re_task.candidate_pairs(re_task.collect_concepts(doc), allowed):
            uid = f"{prefix}/{doc_id}/{head.concept_id}/{tail.concept_id}"
            expected[uid] = (doc, head, tail, re_task.gold_label(doc, head, tail))
    return expected


# ------------------------------------------------------------------- BioRED (real data)
def test_ner_targets_parse_back_to_gold_surface_forms(biored, biored_build):
    for split in ("train", "dev"):
        docs = _docs(biored[split])
        ner_records = [r for r in _records(biored_build.files[split]) if r["task"] == "ner"]
        assert len(ner_records) == len(docs)  # abstracts fit: one example per document
        for r in ner_records:
            doc = docs[r["id"].split("/", 1)[1]]
            assert r["input"] == f"Text: {doc.text}"
            parsed = ner.parse_answer(r["output"], ENTITY_LABELS)
            assert parsed.unparseable_lines == 0 and parsed.unknown_labels == 0
            gold = {(s.label_, s.text) for s in all_mentions(doc)}
            assert set(parsed.mentions) == gold
            assert len(parsed.mentions) == len(gold)
            assert "label" not in r and "choices" not in r
            assert r["labels"] == ENTITY_LABELS  # the set asked, recorded for the adapter


def test_re_positives_have_gold_labels_and_negative_ratio_holds(biored, biored_build):
    stats = biored_build.stats
    allowed = re_task.parse_type_pairs(stats["type_pairs"]["biored_re"])
    for split in ("train", "dev"):
        expected = _expected_pairs(_docs(biored[split]), allowed, "biored_re")
        records = [r for r in _records(biored_build.files[split]) if r["task"] == "re"]
        positives = [r for r in records if r["label"] != "None"]
        negatives = [r for r in records if r["label"] == "None"]
        n_pos = sum(1 for *_, label in expected.values() if label != "None")
        n_neg = len(expected) - n_pos
        assert len(positives) == n_pos > 0  # every positive pair is kept
        assert len(negatives) == min(n_neg, round(0.5 * n_pos))
        for r in records:
            doc, head, tail, label = expected[r["id"]]
            assert r["label"] == label == r["output"]
            assert r["choices"] == [*RELATION_LABELS, "None"]
            assert re_task.parse_answer(r["output"], RELATION_LABELS) == label
            assert f"Entity 1: {head.name} ({head.label})" in r["input"]
            assert r["input"].startswith(f"Text: {doc.text}\n\n")


def test_type_pairs_are_computed_from_train_relations(biored, biored_build):
    train = _docs(biored["train"])
    want = Counter()
    for doc in train.values():
        for head, tail in re_task.candidate_pairs(re_task.collect_concepts(doc), set()):
            if re_task.gold_label(doc, head, tail) != "None":
                want["|".join(sorted((head.label, tail.label)))] += 1
    source = biored_build.stats["sources"]["biored_re"]
    assert source["type_pair_counts"] == dict(want)
    assert sorted(biored_build.stats["type_pairs"]["biored_re"]) == sorted(want)


def test_paraphrases_are_seeded_and_varied(biored, biored_build, tmp_path):
    records = _records(biored_build.files["train"]) + _records(biored_build.files["dev"])
    re_instructions = {r["instruction"] for r in records if r["task"] == "re"}
    assert len(re_instructions) >= 5
    assert len(set(qa.INSTRUCTIONS)) >= 5 and len(set(ner.INSTRUCTIONS)) >= 5
    plain = build_instructions(
        _biored_config(biored, paraphrases=False), tmp_path / "plain", progress=False
    )
    plain_records = _records(plain.files["train"])
    assert {r["instruction"] for r in plain_records if r["task"] == "re"} == {
        re_task.INSTRUCTIONS[0].format(labels=", ".join([*RELATION_LABELS, "None"]))
    }


def test_rationale_quotes_only_source_sentences_with_the_mentions(biored, tmp_path):
    report = build_instructions(
        _biored_config(biored, rationale=True, rationale_negatives="quote"),
        tmp_path,
        progress=False,
    )
    allowed = re_task.parse_type_pairs(report.stats["type_pairs"]["biored_re"])
    expected = _expected_pairs(_docs(biored["train"]), allowed, "biored_re")
    records = [r for r in _records(report.files["train"]) if r["task"] == "re"]
    assert records
    for r in records:
        doc, head, tail, label = expected[r["id"]]
        evidence_line, answer_line = r["output"].split("\n")
        assert answer_line == f"Answer: {label}"
        assert re_task.parse_answer(r["output"], RELATION_LABELS) == label == r["label"]
        assert r["answer_format"] == re_task.Rationale().answer_format
        assert evidence_line.startswith("Evidence: ")
        evidence = evidence_line[len("Evidence: ") :]
        sentences = _sentence_ranges(doc)
        heads = re_task.concept_mentions(doc, head)
        tails = re_task.concept_mentions(doc, tail)

        def touches(sentence, mentions):
            return any(s < sentence[1] and sentence[0] < e for s, e in mentions)

        # the quoted sentences: text of the document, in order, each holding a mention
        quoted = [s for s in sentences if " ".join(doc.text[s[0] : s[1]].split()) in evidence]
        assert quoted
        assert " ".join(" ".join(doc.text[a:b].split()) for a, b in quoted) == evidence
        both = [s for s in sentences if touches(s, heads) and touches(s, tails)]
        if both:
            assert all(touches(s, heads) and touches(s, tails) for s in quoted)
        else:
            assert any(touches(s, heads) for s in quoted)
            assert any(touches(s, tails) for s in quoted)
            assert all(touches(s, heads) or touches(s, tails) for s in quoted)


def test_same_config_gives_identical_files(biored, biored_build, tmp_path):
    again = build_instructions(_biored_config(biored), tmp_path / "again", progress=False)
    for name in ("train", "dev", "stats"):
        assert again.files[name].read_bytes() == biored_build.files[name].read_bytes()
    other = build_instructions(_biored_config(biored, seed=1), tmp_path / "s1", progress=False)
    assert other.files["train"].read_bytes() != biored_build.files["train"].read_bytes()


def test_identical_under_another_hash_seed(biored, biored_build, tmp_path):
    """Set iteration order must never reach the output (PYTHONHASHSEED differs)."""
    config = tmp_path / "config.json"
    config.write_text(json.dumps(_biored_config(biored)))
    code = (
        "import json, sys\n"
        "from spacy_bioreama.instructions import build_instructions\n"
        "build_instructions(json.load(open(sys.argv[1])), sys.argv[2], progress=False)\n"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    subprocess.run(
        [sys.executable, "-c", code, str(config), str(tmp_path / "sub")], check=True, env=env
    )
    for name in ("train.jsonl", "dev.jsonl", "stats.json"):
        assert (tmp_path / "sub" / name).read_bytes() == (
            biored_build.output_dir / name
        ).read_bytes()


def test_stats_add_up(biored_build):
    stats = biored_build.stats
    for split in ("train", "dev"):
        records = _records(biored_build.files[split])
        s = stats["splits"][split]
        assert s["examples"] == len(records)
        assert sum(s["by_task"].values()) == len(records)
        assert sum(s["by_corpus"].values()) == len(records)
        assert sum(s["by_label"]["re"].values()) == s["by_task"]["re"]
        assert sum(src["examples"][split] for src in stats["sources"].values()) == len(records)
        assert s["lengths"]["total"]["count"] == len(records)
        assert s["lengths"]["total"]["max"] <= stats["settings"]["max_length"]
        assert Counter(r["label"] for r in records if "label" in r) == Counter(s["by_label"]["re"])
    table = str(biored_build)
    assert "biored_re" in table and "p90" in table
    saved = json.loads((biored_build.output_dir / "stats.json").read_text())
    assert saved == stats


# ---------------------------------------------------------------------- synthetic data
@pytest.fixture
def nlp():
    return spacy.blank("en")


def _doc(nlp, text, mentions, relations=(), doc_id="d1"):
    """mentions: (form, label, kb id, occurrence index); relations: (head kb, tail kb, label)."""
    doc = nlp(text)
    spans, first = [], {}
    for form, label, kb, nth in mentions:
        start = -1
        for _ in range(nth + 1):
            start = text.index(form, start + 1)
        span = doc.char_span(start, start + len(form), label=label, kb_id=kb)
        assert span is not None, form
        spans.append(span)
        first.setdefault(kb, span)
    set_entities(doc, spans)
    doc._.relations = [
        Relation((first[h].start, first[h].end), (first[t].start, first[t].end), h, t, lab)
        for h, t, lab in relations
    ]
    doc.user_data["doc_id"] = doc_id
    return doc


def test_render_rationale_and_negatives(nlp):
    text = "BRCA1 is mutated here. Aspirin was given. BRCA1 loss causes breast cancer."
    doc = _doc(
        nlp,
        text,
        [
            ("BRCA1", "Gene", "672", 0),
            ("BRCA1", "Gene", "672", 1),
            ("Aspirin", "Chemical", "D001241", 0),
            ("breast cancer", "Disease", "D001943", 0),
        ],
    )
    gene, chem, disease = re_task.collect_concepts(doc)
    out = re_task.render_rationale(doc, gene, disease, "Association")
    assert out == "Evidence: BRCA1 loss causes breast cancer.\nAnswer: Association"
    assert re_task.parse_answer(out, ["Association"]) == "Association"
    # no shared sentence: the first sentence of each concept, in text order
    out = re_task.render_rationale(doc, chem, disease, "None")
    assert out == ("Evidence: Aspirin was given. BRCA1 loss causes breast cancer.\nAnswer: None")
    assert re_task.parse_answer(out, ["Association"]) == "None"
    out = re_task.render_rationale(doc, gene, chem, "None", quote_negatives=False)
    assert out == "Evidence: none\nAnswer: None"
    assert re_task.parse_answer(out, ["Association"]) == "None"
    sampled = re_task.sample_negatives(list(range(10)), 3, 1.0, __import__("random").Random(0))
    assert len(sampled) == len(set(sampled)) == 3 and set(sampled) <= set(range(10))
    assert (
        len(re_task.sample_negatives(list(range(10)), 3, 2.0, __import__("random").Random(0))) == 6
    )
    assert re_task.sample_negatives(list(range(4)), 3, None, __import__("random").Random(0)) == [
        0,
        1,
        2,
        3,
    ]


def test_candidate_pairs_use_train_type_pairs_only(nlp, tmp_path):
    train = _doc(
        nlp,
        "BRCA1 causes breast cancer. Aspirin is a drug.",
        [
            ("BRCA1", "Gene", "672", 0),
            ("breast cancer", "Disease", "D001943", 0),
            ("Aspirin", "Chemical", "D001241", 0),
        ],
        [("672", "D001943", "Association")],
        "t1",
    )
    dev = _doc(
        nlp,
        "Aspirin prevents colon cancer in TP53 carriers.",
        [
            ("Aspirin", "Chemical", "D001241", 0),
            ("colon cancer", "Disease", "D003110", 0),
            ("TP53", "Gene", "7157", 0),
        ],
        [("D001241", "D003110", "Negative_Correlation"), ("7157", "D003110", "Association")],
        "v1",
    )
    config = {
        "instructions": {
            "negative_ratio": None,
            "sources": {
                "toy": {
                    "task": "re",
                    "train": str(_write([train], tmp_path / "train.spacy")),
                    "dev": str(_write([dev], tmp_path / "dev.spacy")),
                }
            },
        }
    }
    report = build_instructions(config, tmp_path / "out", progress=False)
    assert report.stats["type_pairs"] == {"toy": ["Disease|Gene"]}
    # labels default to those seen in train
    assert report.stats["sources"]["toy"]["labels"] == ["Association"]
    train_records = _records(report.files["train"])
    assert [(r["id"], r["label"]) for r in train_records] == [("toy/t1/672/D001943", "Association")]
    dev_records = _records(report.files["dev"])
    # Chemical-Disease is no allowed type pair: only the gene-disease pair is asked
    assert [(r["id"], r["label"]) for r in dev_records] == [("toy/v1/D003110/7157", "Association")]


def test_ner_windows_fit_and_cover_every_mention(nlp, tmp_path):
    sentence = "Patients with cystic fibrosis carry CFTR mutations and take ivacaftor daily."
    text = " ".join([sentence] * 12)
    mentions = []
    for i in range(12):
        mentions += [
            ("cystic fibrosis", "Disease", "D003550", i),
            ("CFTR", "Gene", "1080", i),
        ]
    doc = _doc(nlp, text, mentions, doc_id="long")
    config = {
        "instructions": {
            "max_length": 90,
            "sources": {"ner": {"task": "ner", "train": str(_write([doc], tmp_path / "t.spacy"))}},
        }
    }
    report = build_instructions(config, tmp_path / "out", progress=False)
    records = _records(report.files["train"])
    assert len(records) > 1 and all(r["id"].startswith("ner/long/w") for r in records)
    counter = make_length_counter(None)
    for r in records:
        assert counter.prompt(_example(r)) + counter.answer(r["output"]) <= 90
        # labels default to the types seen in train (BioRED order, then alphabetical)
        assert ner.parse_answer(r["output"], ["Disease", "Gene"]).mentions == [
            ("Disease", "cystic fibrosis"),
            ("Gene", "CFTR"),
        ]
    assert "".join(r["input"][len("Text: ") :] for r in records).replace(" ", "") == text.replace(
        " ", ""
    )
    windows = report.stats["sources"]["ner"]["windows"]
    assert windows["docs_windowed"] == 1 and windows["windows_of_windowed"] == len(records)
    assert report.stats["splits"]["train"]["too_long"] == 0


def _example(record):
    from spacy_bioreama.tasks.base import TaskExample

    return TaskExample(record["task"], record["instruction"], record["input"], record["output"])


GAD_LINES = [
    ("The @GENE$ polymorphism is associated with @DISEASE$ risk.", "1"),
    ("No link between @GENE$ and @DISEASE$ was found.", "0"),
    ("@GENE$ variants increase susceptibility to @DISEASE$.", "1"),
    ("@DISEASE$ patients were genotyped for @GENE$ but showed no difference.", "0"),
]


def test_gad_pairs_are_verbalised_and_split(tmp_path):
    tsv = tmp_path / "train.tsv"
    tsv.write_text("".join(f"{s}\t{label}\n" for s, label in GAD_LINES), encoding="utf8")
    docbin = _write(read("gad", tsv), tmp_path / "gad.spacy")
    config = {
        "instructions": {
            "sources": {
                "gad": {
                    "task": "pair",
                    "train": str(docbin),
                    "dev_fraction": 0.25,
                    "label_map": {"1": "Association", "0": "None"},
                }
            }
        }
    }
    report = build_instructions(config, tmp_path / "out", progress=False)
    records = _records(report.files["train"]) + _records(report.files["dev"])
    assert len(records) == 4 and len(_records(report.files["dev"])) == 1
    by_line = {f"gad:train:{i + 1}": label for i, (_, label) in enumerate(GAD_LINES)}
    for r in records:
        want = "Association" if by_line[r["id"].split("/", 1)[1]] == "1" else "None"
        assert r["task"] == "pair" and r["output"] == r["label"] == want
        assert r["choices"] == ["Association", "None"]
        assert "Entity 1: @GENE$ (GENE)\nEntity 2: @DISEASE$ (DISEASE)" in r["input"]
    source = report.stats["sources"]["gad"]
    heldout = DocBin().from_disk(report.output_dir / source["heldout_docbin"])
    dev_ids = [d.user_data["doc_id"] for d in heldout.get_docs(spacy.blank("en").vocab)]
    assert dev_ids == source["dev_doc_ids"] and len(dev_ids) == 1
    assert {r["id"] for r in _records(report.files["dev"])} == {f"gad/{dev_ids[0]}"}
    # a label the map does not cover is a clear error
    config["instructions"]["sources"]["gad"]["label_map"] = {"1": "Association"}
    with pytest.raises(ValueError, match=r"sources\.gad\] label_map: corpus label '0'"):
        build_instructions(config, tmp_path / "bad", progress=False)


BC5CDR_DEV = DATA_DIR / "bc5cdr" / "CDR_DevelopmentSet.PubTator.txt"
BC5CDR_TO_BIORED = {"Chemical": "ChemicalEntity", "Disease": "DiseaseOrPhenotypicFeature"}


def test_ner_label_map_trains_another_corpus_on_biored_types(tmp_path):
    """BC5CDR mentions renamed to BioRED's types: the prompt asks BioRED's names (in
    BioRED's order), and every target lists each gold form under its renamed type."""
    docs = _first_docs(BC5CDR_DEV, 3)
    docbin = _write(docs, tmp_path / "bc5cdr.spacy")
    source = {"task": "ner", "train": str(docbin), "label_map": BC5CDR_TO_BIORED}
    config = {"instructions": {"max_length": 1024, "sources": {"bc5cdr_ner": source}}}
    report = build_instructions(config, tmp_path / "out", progress=False)
    labels = ["DiseaseOrPhenotypicFeature", "ChemicalEntity"]
    assert report.stats["sources"]["bc5cdr_ner"]["labels"] == labels
    records = _records(report.files["train"])
    assert len(records) == 3
    by_id = {d.user_data["doc_id"]: d for d in docs}
    for r in records:
        assert "DiseaseOrPhenotypicFeature, ChemicalEntity" in r["instruction"]
        doc = by_id[r["id"].split("/", 1)[1]]
        parsed = ner.parse_answer(r["output"], labels)
        assert parsed.unparseable_lines == 0 and parsed.unknown_labels == 0
        gold = {(BC5CDR_TO_BIORED[s.label_], s.text) for s in all_mentions(doc)}
        assert gold and set(parsed.mentions) == gold
    assert "train_mentions_of_types_not_asked" not in report.stats["sources"]["bc5cdr_ner"]
    # a label_map key that names no type of the corpus (a typo) would teach its
    # mentions as no entity: refused, with the corpus's types
    typo = {**source, "label_map": {"Chemicals": "ChemicalEntity", "Disease": "Disease"}}
    config["instructions"]["sources"]["bc5cdr_ner"] = typo
    with pytest.raises(
        ValueError,
        match=r"label_map: \['Chemicals'\] name no label of its train/dev files.*'Chemical'",
    ):
        build_instructions(config, tmp_path / "typo", progress=False)
    # types left out of labels are counted in stats.json (taught as no entity)
    only = {"task": "ner", "train": str(docbin), "labels": ["Disease"]}
    config["instructions"]["sources"]["bc5cdr_ner"] = only
    report = build_instructions(config, tmp_path / "only", progress=False)
    chemicals = sum(s.label_ == "Chemical" for d in docs for s in all_mentions(d))
    assert report.stats["sources"]["bc5cdr_ner"]["train_mentions_of_types_not_asked"] == {
        "Chemical": chemicals
    }


def test_pubmedqa_examples_have_the_right_answers(tmp_path):
    data = {
        str(1000 + i): {
            "QUESTION": f"Does drug {i} help?",
            "CONTEXTS": [f"Context {i} one.", f"Context {i} two."],
            "LABELS": ["BACKGROUND", "RESULTS"],
            "final_decision": answer,
        }
        for i, answer in enumerate(["yes", "no", "maybe", "yes", "no"])
    }
    path = tmp_path / "pqal.json"
    path.write_text(json.dumps(data), encoding="utf8")
    docbin = _write(read("pubmedqa", path), tmp_path / "pqa.spacy")
    config = {
        "instructions": {
            "sources": {"pubmedqa": {"task": "qa", "train": str(docbin), "dev_fraction": 0.2}}
        }
    }
    report = build_instructions(config, tmp_path / "out", progress=False)
    records = _records(report.files["train"]) + _records(report.files["dev"])
    assert len(records) == 5
    for r in records:
        item = data[r["id"].split("/", 1)[1]]
        assert r["output"] == r["label"] == item["final_decision"]
        assert r["input"] == (
            f"Question: {item['QUESTION']}\n\nContext: {' '.join(item['CONTEXTS'])}"
        )
        assert r["choices"] == ["yes", "no", "maybe"]
        assert qa.parse_answer(r["output"]) == item["final_decision"]
    train = _records(report.files["train"])
    assert len(train) == 4
    want = Counter(data[r["id"].split("/", 1)[1]]["final_decision"] for r in train)
    assert report.stats["splits"]["train"]["by_label"]["qa"] == dict(want)


def test_qa_parse_answer_is_lenient_but_never_invents():
    assert qa.parse_answer("Yes.") == "yes"
    assert qa.parse_answer("Evidence: x\nAnswer: Maybe") == "maybe"
    assert qa.parse_answer("No, the study found nothing.") == "no"
    assert qa.parse_answer("Perhaps") is None
    assert qa.parse_answer("") is None


def test_weights_repeat_and_subsample(biored, tmp_path):
    config = _biored_config(biored)
    config["instructions"]["sources"]["biored_ner"]["weight"] = 2.0
    config["instructions"]["sources"]["biored_re"]["weight"] = 0.5
    base = build_instructions(_biored_config(biored), tmp_path / "a", progress=False).stats
    mixed = build_instructions(config, tmp_path / "b", progress=False).stats
    assert mixed["sources"]["biored_ner"]["examples"]["train"] == 2 * 4
    re_base = base["sources"]["biored_re"]["examples"]["train"]
    assert mixed["sources"]["biored_re"]["examples"]["train"] == round(re_base * 0.5)
    # dev is never reweighted
    assert mixed["splits"]["dev"] == base["splits"]["dev"]


def test_source_that_yields_no_train_examples_is_an_error(biored, tmp_path):
    """Relation labels with a typo drop every positive; with no negatives asked for the
    source builds nothing: an error naming it, not a dataset silently without it."""
    config = _biored_config(biored)
    sources = config["instructions"]["sources"]
    sources["biored_re"] = {**sources["biored_re"], "labels": ["Asociation"], "negative_ratio": 0}
    with pytest.raises(ValueError, match=r"sources\.biored_re\]: no train examples from 4"):
        build_instructions(config, tmp_path / "a", progress=False)
    sources["biored_re"].update(labels=RELATION_LABELS, weight=0.01)  # rounds to no copy
    with pytest.raises(ValueError, match=r"weight 0\.01 keeps no copy of its \d+ examples"):
        build_instructions(config, tmp_path / "w", progress=False)
    sources["biored_re"]["weight"] = 0  # switched off on purpose: fine
    report = build_instructions(config, tmp_path / "b", progress=False)
    assert report.stats["sources"]["biored_re"]["examples"]["train"] == 0


def test_wrong_or_emptied_train_file_is_named(biored, tmp_path):
    """A corpus file where a DocBin belongs, and a train split that dev empties, each
    give an error naming the source, the file and what happened."""
    config = _biored_config(biored)
    sources = config["instructions"]["sources"]
    del sources["biored_re"]
    sources["biored_ner"]["train"] = str(BIORED_DEV)  # the PubTator file, not converted
    with pytest.raises(ValueError, match=r"biored_ner\] train: .*Dev\.PubTator: not a spaCy"):
        build_instructions(config, tmp_path / "a", progress=False)
    sources["biored_ner"]["train"] = sources["biored_ner"]["dev"]  # every train doc in dev
    with pytest.raises(ValueError, match=r"no documents left of the 2 .*also in dev: 2"):
        build_instructions(config, tmp_path / "b", progress=False)


def test_calibration_documents_are_never_dev_documents(biored, tmp_path):
    """A train file that also holds the dev documents (BC5CDR's does): those are dropped
    before the calibration documents are held out, so none of them is one."""
    every = _write(_first_docs(BIORED_DEV, 6), tmp_path / "all.spacy")
    config = _biored_config(biored)
    del config["instructions"]["sources"]["biored_ner"]
    source = config["instructions"]["sources"]["biored_re"]
    source.update(train=str(every), calibration_fraction=0.6)
    stats = build_instructions(config, tmp_path / "out", progress=False).stats["sources"]
    held = set(stats["biored_re"]["calibration_doc_ids"])
    assert held and not held & set(_docs(biored["dev"]))
    assert stats["biored_re"]["train_docs_in_dev_dropped"] == 2


def test_heldout_split_is_order_independent(nlp):
    docs = [_doc(nlp, "x y", [], doc_id=f"id{i}") for i in range(20)]
    _, dev = heldout_split(docs, 0.25)
    _, dev_reversed = heldout_split(list(reversed(docs)), 0.25)
    ids = sorted(d.user_data["doc_id"] for d in dev)
    assert len(ids) == 5 and ids == sorted(d.user_data["doc_id"] for d in dev_reversed)


def test_bad_config_names_source_and_field(tmp_path):
    missing = {"instructions": {"sources": {"gad": {"task": "pair", "train": "nope.spacy"}}}}
    with pytest.raises(FileNotFoundError, match=r"sources\.gad\] train: DocBin 'nope.spacy'"):
        build_instructions(missing, tmp_path, progress=False)
    bad_task = {"instructions": {"sources": {"x": {"task": "nli", "train": "a.spacy"}}}}
    with pytest.raises(ValueError, match=r"sources\.x\] task: must be one of"):
        parse_config(bad_task)
    unknown = {"instructions": {"sources": {"x": {"task": "ner", "train": "a", "wieght": 2}}}}
    with pytest.raises(ValueError, match=r"sources\.x\]: unknown field\(s\) \['wieght'\]"):
        parse_config(unknown)
    wrong_task_key = {
        "instructions": {"sources": {"x": {"task": "qa", "train": "a", "labels": ["y"]}}}
    }
    with pytest.raises(ValueError, match=r"sources\.x\] labels: only used by"):
        parse_config(wrong_task_key)
    with pytest.raises(ValueError, match=r"\[instructions\] max_length"):
        parse_config({"instructions": {"max_length": "long", "sources": {}}})
    # NER types the answer lines could not name back ("CPR:3: a ... b" does not parse)
    for field, value in (("labels", ["Gene", "CPR:3"]), ("label_map", {"D": "(Disease)"})):
        source = {"task": "ner", "train": "a", field: value}
        with pytest.raises(ValueError, match=rf"sources\.x\].*{field}: entity type names"):
            parse_config({"instructions": {"sources": {"x": source}}})


def test_shipped_configs_parse(tmp_path):
    lengths = {}
    names = ("quick", "multitask", "best", "ner_mix")
    for name in (f"instructions_{n}.cfg" for n in names):
        settings, sources = parse_config(
            load_config(REPO / "configs" / name, {"paths.corpus": str(tmp_path)})
        )
        lengths[name] = settings.max_length
        assert sources
        assert all(str(s.train).startswith(str(tmp_path)) for s in sources)
    # The quick workflow trains and evaluates with the same window size: instruction
    # max_length = trainer max_length = the component's max_prompt_tokens in project.yml.
    train_cfg = load_config(REPO / "configs" / "train_quick_cpu.cfg")
    project_vars = srsly.read_yaml(REPO / "project.yml")["vars"]
    assert (
        lengths["instructions_quick.cfg"]
        == train_cfg["training"]["max_length"]
        == project_vars["max_prompt_tokens"]
    )
    _, sources = parse_config(
        load_config(REPO / "configs" / "instructions_multitask.cfg", {"paths.corpus": "c"})
    )
    chemprot = next(s for s in sources if s.name == "chemprot")
    assert chemprot.label_map["CPR:3"] == "Activation"
    assert {s.task for s in sources} == {"ner", "re", "pair", "qa"}
    # the NER-mix ablation is the quick set plus other corpora's mentions, nothing else
    quick, mix = (
        load_config(REPO / "configs" / f"instructions_{n}.cfg") for n in ("quick", "ner_mix")
    )
    quick_sources = quick["instructions"].pop("sources")
    mix_sources = mix["instructions"].pop("sources")
    assert mix["instructions"] == quick["instructions"]
    assert {k: v for k, v in mix_sources.items() if k in quick_sources} == quick_sources
    added = [v for k, v in mix_sources.items() if k not in quick_sources]
    assert added and all(v["task"] == "ner" and v["label_map"] for v in added)
    assert {t for v in added for t in v["label_map"].values()} <= set(BIORED_ENTITY_LABELS)


def test_lengths_with_a_real_tokenizer(biored, tmp_path):
    from spacy_bioreama.models.tiny import make_tiny_tokenizer

    tokenizer = make_tiny_tokenizer()
    counter = make_length_counter(tokenizer)
    assert counter.unit.startswith("tokens")
    config = _biored_config(biored)
    config["instructions"]["sources"]["biored_re"]["max_docs"] = 1
    config["instructions"]["sources"]["biored_re"]["max_dev_docs"] = 1
    report = build_instructions(config, tmp_path, tokenizer=tokenizer, progress=False)
    example = _example(_records(report.files["train"])[0])
    rendered = tokenizer.apply_chat_template(
        [{"role": "user", "content": example.chat_prompt().user}],
        add_generation_prompt=True,
        tokenize=False,
    )
    assert counter.prompt(example) == len(tokenizer(rendered, add_special_tokens=False).input_ids)
    assert report.stats["length_unit"] == counter.unit


def test_train_documents_also_in_dev_are_dropped_and_counted(nlp, tmp_path):
    """BC5CDR's training file contains its development set."""
    mentions = [("BRCA1", "Gene", "672", 0)]
    docs = {i: _doc(nlp, f"BRCA1 study {i}.", mentions, doc_id=f"p{i}") for i in range(3)}
    config = {
        "instructions": {
            "sources": {
                "cdr": {
                    "task": "ner",
                    "train": str(_write(docs.values(), tmp_path / "train.spacy")),
                    "dev": str(_write([docs[2]], tmp_path / "dev.spacy")),
                }
            }
        }
    }
    report = build_instructions(config, tmp_path / "out", progress=False)
    source = report.stats["sources"]["cdr"]
    assert source["train_docs_in_dev_dropped"] == 1
    assert source["docs"] == {"train": 2, "dev": 1}
    assert [r["id"] for r in _records(report.files["train"])] != []
    assert {r["id"] for r in _records(report.files["train"])} == {"cdr/p0", "cdr/p1"}
    assert "1 train docs also in dev dropped" in str(report)


def test_per_type_ner_prompt_gives_one_example_per_window_and_type(biored, tmp_path):
    """``ner_prompt = "per_type"``: each window is asked once per type, the type after
    the text; each target is that type's one line, and the lines of one window, joined,
    are the all-types target of the same window."""
    config = _biored_config(biored)
    config["instructions"]["sources"]["biored_ner"]["ner_prompt"] = "per_type"
    del config["instructions"]["sources"]["biored_re"]
    report = build_instructions(config, tmp_path / "out", progress=False)
    records = _records(report.files["train"])
    docs = _docs(biored["train"])
    assert len(records) == len(docs) * len(ENTITY_LABELS)  # 1024 tokens: whole documents
    by_doc: dict[str, dict[str, str]] = {}
    for r in records:
        assert r["prompt_format"] == "per_type"
        _, doc_id, label = r["id"].split("/")
        assert r["input"].endswith(f"\n\nEntity type: {label}")
        assert r["output"].startswith(f"{label}: ") and "\n" not in r["output"]
        by_doc.setdefault(doc_id, {})[label] = r["output"]
    for doc_id, lines in by_doc.items():
        whole = (0, len(docs[doc_id].text))
        expected = ner.render_target(docs[doc_id], ENTITY_LABELS, whole)
        assert "\n".join(lines[label] for label in ENTITY_LABELS) == expected
    config["instructions"]["sources"]["biored_ner"]["ner_prompt"] = "per_label"
    with pytest.raises(ValueError, match="ner_prompt"):
        build_instructions(config, tmp_path / "bad", progress=False)
