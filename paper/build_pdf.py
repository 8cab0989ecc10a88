"""Render paper.md to PDF with pip-installable tools only: pandoc (pypandoc-binary) and Typst.

    pip install pypandoc-binary typst
    python paper/build_pdf.py [--out paper/paper.pdf] [--png-first-page page1.png]

pandoc converts the Markdown (citations resolved with ``--citeproc`` from paper.bib) to a
Typst document, which the ``typst`` Python package compiles to PDF; no LaTeX needed. The
Makefile's ``make pdf`` (pandoc + xelatex) gives the JOSS-like LaTeX rendering instead.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=str(HERE / "paper.pdf"), help="PDF to write")
    p.add_argument("--png-first-page", default=None, metavar="PNG",
                   help="also write the first page as a PNG (a preview)")
    args = p.parse_args(argv)
    try:
        import pypandoc
        import typst
    except ImportError:
        print("build_pdf.py needs: pip install pypandoc-binary typst", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(dir=HERE) as tmp:
        typ = Path(tmp) / "paper.typ"
        subprocess.run([pypandoc.get_pandoc_path(), "paper.md", "--citeproc",
                        "--resource-path=.", "-M", "link-citations=true", "--standalone",
                        "-t", "typst", "-o", str(typ)], cwd=HERE, check=True)
        # figures are referenced as figures/NAME.png, relative to paper/
        text = typ.read_text().replace('image("figures/', 'image("../figures/')
        typ.write_text(text)
        typst.compile(str(typ), output=args.out, root=str(HERE))
        if args.png_first_page:
            pages = typst.compile(str(typ), root=str(HERE), format="png", ppi=80)
            first = pages[0] if isinstance(pages, list) else pages
            Path(args.png_first_page).write_bytes(first)
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
