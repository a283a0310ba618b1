#!/usr/bin/env python3
"""Fails when a public symbol of a target has no documentation comment of its own.

    python3 scripts/doc-coverage.py TARGET [ARCHIVE]

Reads the symbol graphs swift-docc-plugin extracted for TARGET (.build/*/extracted-symbols/*/TARGET/)
and counts, of the symbols declared in this repository's sources (those with a source location:
not the members the compiler synthesizes, such as `!=` or a `Codable` init), those with a `///`
comment of their own. With ARCHIVE, also DocC's own count of symbol pages with an abstract, from
its documentation-coverage.json (`--experimental-documentation-coverage`), and fails on any page
without one. .ci/docs runs it after generate-documentation.
"""
import glob, json, os, sys

target = sys.argv[1]
graphs = sorted(glob.glob(f".build/*/extracted-symbols/*/{target}/*.symbols.json"))
if not graphs:
    sys.exit(f"doc-coverage: no symbol graphs for {target} under .build/*/extracted-symbols: run generate-documentation first")
root = "file://" + os.getcwd() + "/"
sources = root + "Sources/"
declared, missing = 0, []
for path in graphs:
    for symbol in json.load(open(path))["symbols"]:
        location = symbol.get("location", {}).get("uri", "")
        if not location.startswith(sources):
            continue  # synthesized by the compiler, or declared elsewhere (a default implementation)
        declared += 1
        comment = symbol.get("docComment")
        own = comment and comment.get("uri", location) == location and any(l["text"].strip() for l in comment["lines"])
        if not own:
            line = symbol["location"]["position"]["line"] + 1
            missing.append(f"{location[len(root):]}:{line}: {'.'.join(symbol['pathComponents'])} ({symbol['kind']['displayName']})")
documented = declared - len(missing)
print(f"doc-coverage: {target}: {documented} of {declared} public symbols declared in Sources/ have a doc comment"
      f" ({100 * documented / max(declared, 1):.1f}%)")
if len(sys.argv) > 2:
    coverage = json.load(open(os.path.join(sys.argv[2], "documentation-coverage.json")))
    symbols = [e for e in coverage if e["kind"]["isSymbol"]]
    with_abstract = sum(1 for e in symbols if e["hasAbstract"])
    print(f"doc-coverage: {target}: DocC: {with_abstract} of {len(symbols)} symbol pages have an abstract"
          f" ({100 * with_abstract / max(len(symbols), 1):.1f}%)")
    # Built with --experimental-skip-synthesized-symbols; the synthesized initializers that stay
    # (init(rawValue:), Codable's init(from:)) get their abstract from a documentation extension.
    missing += [f"DocC page without an abstract: {e.get('title')} ({e.get('referencePath') or e.get('reference')})"
                for e in symbols if not e["hasAbstract"]]
for entry in missing:
    print(f"doc-coverage: undocumented: {entry}", file=sys.stderr)
sys.exit(1 if missing else 0)
