"""`llasa-rt info`: what a bundle holds, with its files' hashes checked."""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="show what a bundle holds and verify its files",
                       description="Print a bundle's graphs, model facts, voices and verifiers, after checking every "
                                   "file's sha256 against manifest.json (use --fast to check presence only).")
    p.add_argument("bundle", help="bundle folder")
    p.add_argument("--fast", action="store_true", help="check that files exist, skip the sha256 check")
    p.add_argument("--json", action="store_true", help="print the manifest as JSON")
    p.set_defaults(func=run)


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


def describe(bundle) -> str:
    """Human-readable summary of an opened Bundle."""
    from llasa_rt.bundle.manifest import generation_to_json
    from llasa_rt.commands.verifier import describe_entry

    m = bundle.manifest
    lines = [f"bundle      {bundle.root}", f"written by  llasa-rt {m.llasa_rt_version} (format {m.format_version})"]
    for name, g in m.graphs.items():
        size = sum((bundle.root / f).stat().st_size for f in g.files)
        what = f"{len(g.segments)} segments {g.segments[0]}..{g.segments[-1]}" if g.layered else g.path_name
        flavour = f", {g.details['flavour']}" if "flavour" in g.details else ""
        lines.append(f"graph       {name}: {what} ({_size(size)}), {g.precision}, {g.backend}{flavour}, "
                     f"opset {g.opset}")
    md = m.model
    if md:
        lines.append(f"model       {md.num_layers} layers, hidden {md.hidden_size}, heads {md.num_attention_heads}/"
                     f"{md.num_kv_heads} kv, head_dim {md.head_dim}, context {md.max_context}, KV {md.kv_dtype}")
    for part, src in m.sources.items():
        rev = f" @ {src['revision']}" if src.get("revision") else ""
        lines.append(f"source      {part}: {src.get('id')}{rev}")
    if m.prompt:
        lines.append(f"prompt      chat template date pinned to {m.prompt.date!r}")
    gen = {k: v for k, v in generation_to_json(m.generation, "").items()}
    lines.append(f"defaults    {', '.join(f'{k}={v}' for k, v in gen.items())}")
    lines.append(f"voices      {', '.join(sorted(m.voices)) or 'none'}")
    if not m.verifiers:
        lines.append("verifiers   none")
    for name in sorted(m.verifiers):
        lines.append("verifier    " + describe_entry(name, m.verifiers[name], m.voices).replace("\t", ": ", 1))
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from llasa_rt.bundle import Bundle

    bundle = Bundle.open(args.bundle, verify="fast" if args.fast else "full")
    if args.json:
        print(json.dumps(bundle.manifest.to_json(), indent=2, ensure_ascii=False))
        return 0
    print(describe(bundle))
    n = len(bundle.manifest.all_files())
    print(f"files       {n} present" + ("" if args.fast else ", all sha256 match manifest.json"))
    return 0
