"""``bayesemu pretrained list`` and ``bayesemu pretrained verify NAME``.

Pretrained models ship with the package (``bayesemu/pretrained``; no network):
``list`` prints each model's name, size, image shape, description and the
command that rebuilds it (``--json``: the whole index entries); ``verify``
checks the SHA-256 of every file of a model against the index. Load one in
Python with ``bayesemu.load_pretrained(NAME)``.
"""

from __future__ import annotations

import json


def register(sub) -> None:
    p = sub.add_parser("pretrained", help="list or verify the pretrained models shipped offline",
                       description=__doc__.split("\n\n", 1)[1])
    actions = p.add_subparsers(dest="action", metavar="ACTION", parser_class=type(p))
    actions.required = True
    lst = actions.add_parser("list", help="list the pretrained models")
    lst.add_argument("--json", action="store_true", help="print the index entries as JSON")
    ver = actions.add_parser("verify", help="check a model's files against the index")
    ver.add_argument("name", metavar="NAME")
    for q in (lst, ver):
        q.add_argument("--root", default=None,
                       help="directory with an index.json (default: the package's models)")
    lst.set_defaults(func=run_list)
    ver.set_defaults(func=run_verify)


def run_list(args) -> int:
    from ..pretrained import default_root, list_pretrained

    entries = list_pretrained(args.root)
    if args.json:
        print(json.dumps(entries, indent=2, sort_keys=True))
        return 0
    root = args.root or default_root()
    if not entries:
        print(f"no pretrained models in {root} (build them with: python -m "
              "bayesemu.pretrained.build)")
        return 0
    print(f"{len(entries)} pretrained model(s) in {root}:")
    for e in entries:
        shape = "x".join(map(str, e.get("image_shape", ["?"])))
        m = e.get("metrics", {})
        mse = m.get("mse_over_noise_var", {}).get("median")
        print(f"  {e['name']}  {e.get('bytes', 0) / 1e6:.2f} MB  {shape} px at "
              f"{e.get('pixel_scale', '?')}\"/px"
              + (f"  median MSE/sigma^2 {mse:.3g}" if isinstance(mse, (int, float)) else ""))
        print(f"      {e['description']}")
        print(f"      rebuild: {e['command']}")
    return 0


def run_verify(args) -> int:
    from ..pretrained import verify_pretrained

    path = verify_pretrained(args.name, args.root)
    print(f"{args.name}: every file matches its checksum ({path})")
    return 0
