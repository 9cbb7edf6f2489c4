#!/usr/bin/env python3
"""Render nk3's template fixtures with real Jinja2, for the Swift Jinja-compatibility tests.

Reads   Tests/CoordinatorTests/Fixtures/jinja/inventory.yaml
        Tests/CoordinatorTests/Fixtures/jinja/templates/*.j2
        the default template from Sources/Coordinator/Templates/DefaultTemplate.swift (between #\"\"\" and \"\"\"#)
Writes  Tests/CoordinatorTests/Fixtures/jinja/expected/<template>/<node name>   (bytes exactly as Jinja2 renders)

and, for the engine's own parity suite (Tests/JinjaTests):
Reads   Tests/JinjaTests/Fixtures/cases.yaml      (template cases: name, t = template, c = context, files)
Writes  Tests/JinjaTests/Fixtures/parity.json     (each case with its context as tagged values and Jinja2's
                                                   output, or the class name of the exception it raised)

The context is built here independently, following the contract BundleRenderer documents:
  node     = hostvars as written + name (hostname, else uuid5(NAMESPACE_OID, address)), ip, address, is_server
  hostvars = the node's hostvars
  cluster  = every top-level key as written, with nodes = [node maps] and namespaces = watch_namespaces
  vars     = the vars: map
rendered with a default jinja2.Environment() (keep_trailing_newline=False, no trim_blocks/lstrip_blocks), as
the Python tool did. Run it after changing a fixture template or the default template:
    python3 scripts/gen-jinja-fixtures.py
"""
import os
import sys
import uuid

import json
import tempfile

import jinja2
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIX = os.path.join(ROOT, "Tests", "CoordinatorTests", "Fixtures", "jinja")
CASES = os.path.join(ROOT, "Tests", "JinjaTests", "Fixtures")
DEFAULT_SWIFT = os.path.join(ROOT, "Sources", "Coordinator", "Templates", "DefaultTemplate.swift")


def default_template():
    text = open(DEFAULT_SWIFT, encoding="utf-8").read()
    start = text.index('#"""\n') + len('#"""\n')
    end = text.index('\n"""#', start)
    return text[start:end]


def servers(inv):
    nodes = inv["nodes"]
    if "servers" in inv:
        wanted = set(inv["servers"])
        return {a: (a in wanted or (hv or {}).get("hostname") in wanted) for a, hv in nodes.items()}
    if any("role" in (hv or {}) for hv in nodes.values()):
        return {a: (hv or {}).get("role") != "agent" for a, hv in nodes.items()}
    return {a: True for a in nodes}


def node_map(address, hostvars, is_server):
    d = dict(hostvars or {})
    d["name"] = d.get("hostname") or str(uuid.uuid5(uuid.NAMESPACE_OID, address))
    d["ip"] = address
    d["address"] = address
    d["is_server"] = is_server
    return d


def main():
    with open(os.path.join(FIX, "inventory.yaml"), encoding="utf-8") as f:
        inv = yaml.safe_load(f)
    srv = servers(inv)
    nodes = [node_map(a, hv, srv[a]) for a, hv in inv["nodes"].items()]
    cluster = dict(inv)
    cluster["nodes"] = nodes
    if "namespaces" not in cluster:
        cluster["namespaces"] = inv.get("watch_namespaces") or []
    variables = inv.get("vars") or {}

    templates = {}
    tdir = os.path.join(FIX, "templates")
    for name in sorted(os.listdir(tdir)):
        if name.endswith(".j2"):
            # newline="" keeps \r\n as written: Jinja2's lexer is what normalises it.
            with open(os.path.join(tdir, name), encoding="utf-8", newline="") as f:
                templates[name[: -len(".j2")]] = f.read()
    templates["default"] = default_template()

    env = jinja2.Environment()
    count = 0
    for tname, source in templates.items():
        template = env.from_string(source)
        out_dir = os.path.join(FIX, "expected", tname)
        os.makedirs(out_dir, exist_ok=True)
        for (address, hostvars), node in zip(inv["nodes"].items(), nodes):
            rendered = template.render(node=node, hostvars=dict(hostvars or {}), cluster=cluster, vars=variables)
            with open(os.path.join(out_dir, node["name"]), "wb") as f:
                f.write(rendered.encode("utf-8"))
            count += 1
    print(f"jinja2 {jinja2.__version__}: wrote {count} files under {os.path.relpath(FIX, ROOT)}/expected")
    engine_cases()


def tagged(v):
    """A value as [type, payload], so that the Swift side rebuilds it exactly (order, int vs float, tuples)."""
    if v is None:
        return ["none"]
    if isinstance(v, bool):
        return ["bool", v]
    if isinstance(v, int):
        return ["int", v]
    if isinstance(v, float):
        return ["float", repr(v)]
    if isinstance(v, str):
        return ["str", v]
    if isinstance(v, (list, tuple)):
        return ["list" if isinstance(v, list) else "tuple", [tagged(x) for x in v]]
    if isinstance(v, dict):
        return ["dict", [[tagged(k), tagged(x)] for k, x in v.items()]]
    raise TypeError(f"cannot tag {type(v).__name__}")


def engine_cases():
    with open(os.path.join(CASES, "cases.yaml"), encoding="utf-8") as f:
        spec = yaml.safe_load(f)
    shared = spec["context"]
    out = []
    names = set()
    for case in spec["cases"]:
        name = case["name"]
        assert name not in names, f"duplicate case {name}"
        names.add(name)
        context = dict(shared)
        context.update(case.get("c") or {})
        files = case.get("files") or {}
        with tempfile.TemporaryDirectory() as tmp:
            for fname, text in files.items():
                path = os.path.join(tmp, fname)
                os.makedirs(os.path.dirname(path), exist_ok=True)
                with open(path, "w", encoding="utf-8", newline="") as fh:
                    fh.write(text)
            env = jinja2.Environment(loader=jinja2.FileSystemLoader(tmp))
            entry = {"name": name, "template": case["t"], "context": tagged(context), "files": files}
            try:
                entry["output"] = env.from_string(case["t"]).render(**context)
            except Exception as e:  # the class name is what the Swift engine must report
                entry["error"] = type(e).__name__
                entry["message"] = str(e).replace(tmp, "<files>")
        if case.get("error") and "error" not in entry:
            raise SystemExit(f"case {name} is marked error but Jinja2 rendered it: {entry['output']!r}")
        if not case.get("error") and "error" in entry:
            raise SystemExit(f"case {name} failed in Jinja2: {entry['error']}: {entry['message']}")
        out.append(entry)
    with open(os.path.join(CASES, "parity.json"), "w", encoding="utf-8") as f:
        json.dump({"jinja2": jinja2.__version__, "cases": out}, f, indent=1, ensure_ascii=False)
        f.write("\n")
    print(f"jinja2 {jinja2.__version__}: wrote {len(out)} cases to {os.path.relpath(CASES, ROOT)}/parity.json")


if __name__ == "__main__":
    sys.exit(main())
