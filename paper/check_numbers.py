"""Check that every number quoted in paper.md's results is in a committed results file.

The rule (what ``tests/test_paper.py`` enforces, and ``python paper/check_numbers.py``
prints):

1. **Where.** The top-level sections named in :data:`CHECKED_SECTIONS` ("Results",
   "Limitations"). Each is cut into blocks at its second-level headings (``## ...``);
   text before the first one is a block of its own.
2. **Which files.** A block's files are the paths ``benchmarks/results/...json`` written
   in its inline code spans (globs allowed), and nothing else: a number must be found in
   a file named in its own block. A block that quotes numbers but names no file fails,
   as does one that quotes numbers and names a file that does not exist (a block without
   numbers may name the files a command is still to write). ``*_quick*`` files never count (they are
   git-ignored smoke outputs).
3. **What is not a number.** Removed before parsing: fenced code, inline code spans
   (commands, paths, commit hashes), citations ``[@key]``, link and image targets and
   image attributes (``{width=60%}``), HTML comments, and **spans marked as not measurements**: ``[text]{.nm}`` (pandoc's
   bracketed-span syntax, rendered as plain text). Use ``{.nm}`` for settings and
   counts chosen by the user (σ = 30, 512 training images, the 90% level, years,
   requirements such as 2e-3), never for a measured value. A digit glued to a letter
   (m1, H200, 964fde0, 90th) is part of a word, not a number.
4. **Matching with rounding.** A number written with k significant digits matches a
   JSON numeric value (any depth, booleans excluded) that rounds to it: ``|value −
   quoted| ≤ half a unit in the last written digit``. Significant digits are those
   written, leading zeros excluded; for a number without a decimal point trailing
   zeros are not significant (``35,200`` is 352 hundreds: it matches 35,150 to 35,250).
   Thousands separators (``14,200``), e-notation (``−3.34e-3``) and the Unicode minus
   are read; the sign must agree. A number followed by ``%`` also matches a fraction
   (``86.7%`` matches 0.867). A number followed by ``x`` (a ratio, ``47x``) must itself
   be a value in the file: ratios are not recomputed.
"""

from __future__ import annotations

import glob
import json
import math
import re
import sys
from pathlib import Path
from typing import Iterable, NamedTuple

REPO = Path(__file__).resolve().parent.parent
CHECKED_SECTIONS = ("Results", "Limitations")

_FENCE = re.compile(r"```.*?```", re.S)
_COMMENT = re.compile(r"<!--.*?-->", re.S)
_CODE = re.compile(r"`([^`]*)`")
_NM = re.compile(r"\[([^\[\]]*)\]\{\.nm\}")
_CITE = re.compile(r"\[@[^\]]*\]|@[A-Za-z][\w:-]*")
_TARGET = re.compile(r"\]\([^)]*\)")
_ATTR = re.compile(r"\{[#.][^}]*\}|(?<=\])\{[^}]*\}")   # {#id .class}, ![..](..){width=60%}
_RESULTS_PATH = re.compile(r"benchmarks/results/[^\s`]*\.json")
NUMBER = re.compile(
    r"(?<![\w.\-−+])"                          # not glued to a word, a point or a sign
    r"(?P<sign>[−\-+])?"
    r"(?P<int>\d{1,3}(?:,\d{3})+|\d+)"         # 14,200 or 14200
    r"(?:\.(?P<frac>\d+))?"
    r"(?:[eE](?P<exp>[−\-+]?\d+))?"
    r"(?P<suffix>%|x(?!\w))?"
    r"(?![\w])(?!\.\d)")                       # not glued to a following word


class Quoted(NamedTuple):
    """A number read from the text."""

    text: str
    value: float
    half_unit: float     # half a unit in the last significant digit written
    percent: bool


class Problem(NamedTuple):
    """A number (or block) that breaks the rule."""

    block: str
    text: str
    reason: str


def parse_number(m: re.Match) -> Quoted:
    """The value and rounding tolerance of a :data:`NUMBER` match."""
    sign = -1.0 if m["sign"] in ("−", "-") else 1.0
    intpart = m["int"].replace(",", "")
    frac = m["frac"] or ""
    exp = int((m["exp"] or "0").replace("−", "-"))
    value = sign * float(f"{intpart}.{frac or 0}") * 10.0 ** exp
    if frac:
        place = 10.0 ** (exp - len(frac))
    else:
        stripped = intpart.rstrip("0")
        zeros = len(intpart) - len(stripped) if stripped else 0
        place = 10.0 ** (exp + zeros)
    return Quoted(m.group(0), value, 0.5 * place, m["suffix"] == "%")


def matches(q: Quoted, value: float) -> bool:
    """True when ``value`` rounds to the quoted number (module docstring, rule 4)."""
    candidates = [value, 100.0 * value] if q.percent else [value]
    for v in candidates:
        if not math.isfinite(v):
            continue
        if q.value != 0 and v != 0 and (v < 0) != (q.value < 0):
            continue
        if abs(v - q.value) <= q.half_unit * (1 + 1e-9) + 1e-300:
            return True
    return False


def json_numbers(obj) -> Iterable[float]:
    """Every numeric leaf of a JSON document (booleans excluded)."""
    if isinstance(obj, bool):
        return
    if isinstance(obj, (int, float)):
        yield float(obj)
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from json_numbers(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from json_numbers(v)


def sections(md: str) -> dict[str, str]:
    """Top-level sections of a Markdown text (YAML header dropped), by heading."""
    md = re.sub(r"\A---\n.*?\n---\n", "", md, flags=re.S)
    md = _FENCE.sub("", md)
    out, name, buf = {}, None, []
    for line in md.splitlines():
        if line.startswith("# "):
            if name is not None:
                out[name] = "\n".join(buf)
            name, buf = line[2:].strip(), []
        else:
            buf.append(line)
    if name is not None:
        out[name] = "\n".join(buf)
    return out


def blocks(section_name: str, text: str) -> list[tuple[str, str]]:
    """``(label, text)`` of a section cut at its ``## `` headings (headings included)."""
    out, label, buf = [], section_name, []
    for line in text.splitlines():
        if line.startswith("## "):
            out.append((label, "\n".join(buf)))
            label, buf = f"{section_name} / {line[3:].strip()}", [line[3:]]
        else:
            buf.append(line)
    out.append((label, "\n".join(buf)))
    return [(lab, t) for lab, t in out if t.strip()]


def quoted_numbers(text: str) -> list[Quoted]:
    """Numbers of a block after removing what is not a number (rule 3)."""
    t = _COMMENT.sub(" ", text)
    t = _CODE.sub(" ", t)
    t = _NM.sub(" ", t)
    t = _CITE.sub(" ", t)
    t = _TARGET.sub("]", t)    # ![cap](path){width=60%} -> ![cap]{width=60%}
    t = _ATTR.sub(" ", t)
    return [parse_number(m) for m in NUMBER.finditer(t)]


def block_files(text: str, root: Path = REPO) -> tuple[list[Path], list[str]]:
    """Results files named in a block's code spans (globs expanded), and the missing names."""
    found, missing = [], []
    for span in _CODE.findall(_COMMENT.sub(" ", text)):
        for name in _RESULTS_PATH.findall(span):
            hits = sorted(Path(p) for p in glob.glob(str(root / name)) if "_quick" not in p)
            (found.extend(hits) if hits else missing.append(name))
    return sorted(set(found)), missing


def check_text(md: str, root: Path = REPO,
               checked: Iterable[str] = CHECKED_SECTIONS) -> list[Problem]:
    """Every violation of the rule in a Markdown text; empty when the text complies."""
    problems = []
    secs = sections(md)
    for name in checked:
        if name not in secs:
            problems.append(Problem(name, "", "section missing"))
            continue
        for label, text in blocks(name, secs[name]):
            nums = quoted_numbers(text)
            files, missing = block_files(text, root)
            if not nums:
                continue       # a block without numbers may name files still to be made
            for m in missing:
                problems.append(Problem(label, m, "named results file does not exist (or is a *_quick file)"))
            if not files:
                if not missing:
                    problems.append(Problem(label, nums[0].text,
                                            "quotes numbers but names no benchmarks/results file"))
                continue
            values = [v for f in files for v in json_numbers(json.loads(f.read_text()))]
            for q in nums:
                if not any(matches(q, v) for v in values):
                    problems.append(Problem(
                        label, q.text,
                        f"not in {', '.join(str(f.relative_to(root)) for f in files)} "
                        f"(to the precision written)"))
    return problems


def referenced_figures(md: str) -> list[str]:
    """File names of the figures the text includes (``![...](figures/NAME.png)``)."""
    return re.findall(r"!\[[^\]]*(?:\][^(]|[^\]])*?\]\(figures/([^)\s]+\.png)\)", md, flags=re.S)


def main(argv=None) -> int:
    path = Path(argv[0]) if argv else REPO / "paper" / "paper.md"
    problems = check_text(path.read_text())
    for p in problems:
        print(f"{p.block}: {p.text!r}: {p.reason}")
    print(f"{len(problems)} problem(s) in {path}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
