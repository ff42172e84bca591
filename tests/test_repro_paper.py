"""The paper's numbers in the specs are the paper's: each one occurs in the excerpt of its table
shipped with the tests (tests/data/paper_numbers.txt, so that CI checks it without the paper), and
the excerpts are the paper's text where the full text is present. The settings the specs take from
the paper's sentences (table3's batch 512) and the ones they assume (table2's PathMNIST alpha) say
where they come from."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ddz.distill.alphas import MEASURED_RULE, default_alphas
from ddz.repro.spec import PaperValue
from ddz.repro.spec_file import load_spec, shipped_specs

EXCERPTS = Path(__file__).parent / "data" / "paper_numbers.txt"
PAPER_NAME = "paper-can-ptms-assist-dd.txt"


def paper_text() -> Path | None:
    """The full text, where a checkout has it beside it (…/shared/reference/)."""
    for folder in Path(__file__).resolve().parents:
        candidate = folder / "shared" / "reference" / PAPER_NAME
        if candidate.exists():
            return candidate
    return None


def flat(text: str) -> str:
    return re.sub(r"\s+", "", text)


def excerpt_blocks() -> dict[str, list[str]]:
    """[NAME] -> the block's lines of the paper's text (comments left out)."""
    blocks: dict[str, list[str]] = {}
    current = None
    for line in EXCERPTS.read_text().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        if re.fullmatch(r"\[.+\]", line):
            current = line[1:-1]
            blocks[current] = []
        else:
            assert current is not None, f"paper text before the first [block]: {line!r}"
            blocks[current].append(line)
    return blocks


def printed(value: PaperValue, text: str) -> bool:
    """Whether `text` (whitespace removed) prints the value: 51.4_{\\pm0.3}, $51.5_{\\pm0.3}$,
    31.4_{±0.4}, 59.2$_{\\pm0.6}$, ... (a number without std: the number)."""
    if value.std is None:
        return re.search(r"(?<![0-9.])" + re.escape(f"{value.mean:.1f}") + r"(?![0-9])", text) is not None
    mean, std = re.escape(f"{value.mean:.1f}"), re.escape(f"{value.std:.1f}")
    return re.search(mean + r"[^0-9]{0,12}?_\{(\\pm|±)" + std, text) is not None


def spec_values() -> list[tuple[str, PaperValue]]:
    return [(name, value) for name, path in shipped_specs().items() for value in load_spec(path).paper]


def test_every_paper_number_in_the_specs_is_in_its_tables_excerpt():
    blocks = {name: flat("".join(lines)) for name, lines in excerpt_blocks().items()}
    missing = []
    for name, value in spec_values():
        if value.table not in blocks:
            missing.append(f"{name}: no [{value.table}] block in {EXCERPTS.name}")
        elif not printed(value, blocks[value.table]):
            missing.append(f"{name}: {value.at} {value.mean} ± {value.std} not in [{value.table}]")
    assert missing == []
    assert len(spec_values()) >= 170  # every shipped spec's numbers were looked at


@pytest.mark.skipif(paper_text() is None, reason=f"{PAPER_NAME} is not beside this checkout")
def test_the_excerpts_and_every_spec_number_are_in_the_papers_full_text():
    full = flat(paper_text().read_text())
    for name, lines in excerpt_blocks().items():
        for line in lines:
            assert flat(line) in full, f"[{name}] {line!r} is not the paper's text"
    missing = [f"{name}: {v.mean} ± {v.std}" for name, v in spec_values() if not printed(v, full)]
    assert missing == []


def test_table3_runs_dm_with_the_papers_batch_of_512_and_says_where_it_is_stated():
    spec = load_spec(shipped_specs()["table3"])
    assert spec.scale("paper").batch_real == 512
    sentence = "Then we conduct evaluations on DM with a batchsize of 512."
    assert sentence in excerpt_blocks()["Section 5.3"]
    assert any(sentence in note for note in spec.notes)
    assert any(sentence in a.source for a in spec.assumptions)


def test_table2s_pathmnist_alpha_is_an_assumption_with_its_source():
    spec = load_spec(shipped_specs()["table2"])
    pathmnist = [a for a in spec.assumptions if "PathMNIST" in a.what]
    assert len(pathmnist) == 1
    assumption = pathmnist[0]
    assert "clom-alphas.md" in assumption.source and "docs/distill.md" in assumption.source
    for method in ("dc", "dsa", "dm"):  # the value it records is the one ddz applies
        assert f"{MEASURED_RULE[method]:g}" in assumption.value
        for ipc in (10, 50):
            choice = default_alphas("pathmnist", method, ipc, ["convnet3"])
            assert choice.value == MEASURED_RULE[method] and "digits sweep" in choice.source
