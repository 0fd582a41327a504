"""Peak resident memory of `bio_relation_llm` on three streams (a command, and the
measurement behind tests/test_bounded_work.py::test_peak_rss_stays_flat):

- one document of about 1 MB (windows, NER prompts and grounding on a long text);
- 10,000 tiny documents;
- 1,000 BioRED-sized documents (BioRED train abstracts with a sentence the tiny
  trained model recognises, so entities and relation prompts do occur).

Memory is sampled every 20 ms in a thread. For each stream it prints the RSS after
warm-up (the first 20 % of the stream, or model load for the long document), the peak
after it and the growth, as JSON:

    python tests/tools/rss_probe.py MODEL_DIR [--biored PATH] [--docs 1000] [--tiny 10000]

The streams go through `nlp.pipe` in chunks inside `nlp.memory_zone()`, as a long run
should (spaCy's string store otherwise keeps every new word).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Iterator

from spacy_bioreama.util.resources import RssSampler, current_rss_bytes

TRAINED_TEXT = "BRCA1 binds PALB2 in breast cancer and aspirin lowers risk."


class PeakSampler(RssSampler):
    """`RssSampler` in MiB, as this probe reports."""

    def rss(self) -> float:
        return current_rss_bytes() / 2**20

    def reset(self) -> float:
        return super().reset() / 2**20

    @property
    def peak_mib(self) -> float:
        return self.peak / 2**20


def build_nlp(model: str, max_new_tokens: int):
    import spacy

    nlp = spacy.blank("en")
    nlp.max_length = 2_000_000
    nlp.add_pipe(
        "bio_relation_llm",
        config={
            "model": model,
            "entity_labels": ["Gene", "Disease", "Chemical"],
            "relation_labels": ["Association", "Bind"],
            "relation_type_pairs": [],
            "max_new_tokens": max_new_tokens,
            "max_prompt_tokens": 512,
            "batch_size": 8,
        },
    )
    return nlp


def run_stream(nlp, texts: Iterator[str], total: int, sampler: PeakSampler, chunk: int = 100):
    """Annotate `total` texts; RSS after the first 20 % (warm-up) and the peak after."""
    warm_at = max(1, total // 5)
    done, warm, start = 0, None, time.perf_counter()
    while done < total:
        batch = [next(texts) for _ in range(min(chunk, total - done))]
        with nlp.memory_zone():
            for _ in nlp.pipe(batch):
                pass
        done += len(batch)
        if warm is None and done >= warm_at:
            warm = sampler.reset()
    return {
        "docs": total,
        "seconds": round(time.perf_counter() - start, 1),
        "rss_after_warmup_mib": round(warm, 1),
        "peak_after_warmup_mib": round(sampler.peak_mib, 1),
        "growth_mib": round(sampler.peak_mib - warm, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--biored", default=None, help="a BioRED PubTator file")
    parser.add_argument("--docs", type=int, default=1000)
    parser.add_argument("--tiny", type=int, default=10_000)
    parser.add_argument("--long-chars", type=int, default=1_000_000)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(1)
    from spacy_bioreama.corpora import read_pubtator

    texts = (
        [d.text for d in read_pubtator(args.biored)]
        if args.biored
        else ["Aspirin lowers the risk of myocardial infarction in diabetes. " * 20]
    )
    sampler = PeakSampler()
    out = {}
    nlp = build_nlp(args.model, max_new_tokens=40)
    component = nlp.get_pipe("bio_relation_llm")

    def biored_like() -> Iterator[str]:
        i = 0
        while True:
            text = texts[i % len(texts)]
            cut = text.find(". ", len(text) // 2) + 2 or len(text) // 2
            yield f"{text[:cut]}{TRAINED_TEXT} {text[cut:]}"
            i += 1

    out["biored_sized"] = run_stream(nlp, biored_like(), args.docs, sampler)
    out["biored_sized"]["stats"] = {
        k: component.stats[k] for k in ("windows", "entity_mentions", "re_pairs", "relations")
    }

    short = build_nlp(args.model, max_new_tokens=8)
    tiny = (f"Patient {i} received aspirin for pain." for i in range(10**9))
    out["tiny"] = run_stream(short, tiny, args.tiny, sampler, chunk=500)

    long_text = ""
    while len(long_text) < args.long_chars:
        long_text += "\n".join(texts) + "\n"
    long_text = long_text[: args.long_chars]
    short.get_pipe("bio_relation_llm").stats.clear()
    warm = sampler.reset()
    start = time.perf_counter()
    with short.memory_zone():
        doc = short(long_text)
        windows = short.get_pipe("bio_relation_llm").stats["windows"]
        del doc
    out["long_document"] = {
        "chars": len(long_text),
        "windows": windows,
        "seconds": round(time.perf_counter() - start, 1),
        "rss_before_mib": round(warm, 1),
        "peak_mib": round(sampler.peak_mib, 1),
        "growth_mib": round(sampler.peak_mib - warm, 1),
    }
    sampler.stop()
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
