#!/usr/bin/env python3
"""Offline, strict validation of Kubernetes objects and of custom resources.

usage: validate.py [--k8s-version X] [--crd CRD.yaml]... [--strict-crd] FILE...

Each FILE ("-" is standard input) holds one or more YAML documents. A document of a
built-in Kubernetes kind is validated with kubernetes-validate against the schemas of
Kubernetes X that ship inside that package, in strict mode (an unknown field is an error).
A document whose apiVersion/kind a CustomResourceDefinition given with --crd defines (a
MiniCluster, flux-framework.org/v1alpha2) is validated with jsonschema against that
version's openAPIV3Schema, read the way the API server reads it (see to_json_schema and
decode). Any other document is an error.

Prints one line per document, `ok   FILE#N Kind/name` or `FAIL FILE#N Kind/name: reasons`
(N counts the documents of FILE from 1, empty ones included), then
`validated N documents: N ok, M failed`. Exit status: 0 when every document is valid,
1 when one is not or no document was found, 2 for a usage or setup error.
Nothing is fetched from the network.
"""

from __future__ import annotations

import argparse
import copy
import functools
import json
import re
import sys
from typing import Any, Iterable, Iterator

import jsonschema
import yaml
from referencing import Registry, Resource

import kubernetes_validate
from kubernetes_validate import utils as kv_utils

MAX_REASONS = 12


# --------------------------------------------------------------------------------------
# YAML


class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # libyaml: 2x faster
    """YAML as the API server reads it: timestamps stay strings, and a plain `=` is a
    string (PyYAML would otherwise refuse it as the YAML 1.1 "value" tag)."""


def _scalar_as_string(loader: Any, node: yaml.Node) -> str:
    if not isinstance(node, yaml.ScalarNode):
        raise yaml.constructor.ConstructorError(
            None, None, f"expected a scalar, found {node.id}", node.start_mark)
    return str(node.value)


_Loader.add_constructor("tag:yaml.org,2002:timestamp", _scalar_as_string)
_Loader.add_constructor("tag:yaml.org,2002:value", _scalar_as_string)


def _as_json(value: Any) -> Any:
    """The JSON the API server would see: mapping keys become strings ("true", "1")."""
    return json.loads(json.dumps(value, default=str))


def read_documents(text: str) -> Iterator[tuple[int, Any]]:
    """Yields (position from 1, document); a YAML error is raised as YamlError."""
    position = 0
    try:
        for doc in yaml.load_all(text, Loader=_Loader):
            position += 1
            yield position, doc
    except yaml.YAMLError as e:
        raise YamlError(position + 1, " ".join(str(e).split())) from None


class YamlError(Exception):
    def __init__(self, position: int, message: str):
        super().__init__(message)
        self.position = position
        self.message = message


# --------------------------------------------------------------------------------------
# Reporting jsonschema errors


def _path(parts: Iterable[Any]) -> str:
    out = ""
    for p in parts:
        if isinstance(p, int):
            out += f"[{p}]"
        elif re.fullmatch(r"[A-Za-z_$][A-Za-z0-9_$-]*", str(p)):
            out += f".{p}" if out else str(p)
        else:
            out += f"[{json.dumps(str(p))}]"
    return out or "(top level)"


def _short(value: Any, limit: int = 60) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def describe(error: jsonschema.ValidationError) -> list[str]:
    """One or more readable reasons for one jsonschema error."""
    path = tuple(error.absolute_path)
    inst = error.instance
    kind = error.validator
    if kind == "additionalProperties" and error.validator_value is False and isinstance(inst, dict):
        known = (error.schema or {}).get("properties", {})
        patterns = list((error.schema or {}).get("patternProperties", {}))
        extra = [k for k in inst if k not in known and not any(re.search(p, k) for p in patterns)]
        return [f"{_path(path + (k,))}: unknown field" for k in extra] or [error.message]
    if kind == "required" and isinstance(inst, dict):
        return [f"{_path(path + (k,))}: required field is missing"
                for k in error.validator_value if k not in inst]
    if kind == "type":
        want = error.validator_value if isinstance(error.validator_value, list) else [error.validator_value]
        want = [t for t in want if t != "null"] or ["null"]
        return [f"{_path(path)}: expected {' or '.join(want)}, got {_json_type(inst)} {_short(inst)}"]
    if kind == "enum":
        return [f"{_path(path)}: {_short(inst)} is not one of {_short(error.validator_value, 120)}"]
    message = " ".join(error.message.split())
    if len(message) > 200:
        message = message[:199] + "…"
    return [f"{_path(path)}: {message}"]


def reasons_of(errors: Iterable[jsonschema.ValidationError]) -> list[str]:
    errors = list(errors)
    # "not valid under any of the given schemas" says nothing more where another error
    # already names the problem at the same place (an int-or-string that is neither, say).
    plain = {tuple(e.absolute_path) for e in errors if e.validator not in ("anyOf", "oneOf")}
    seen: dict[str, None] = {}
    for e in errors:
        if e.validator in ("anyOf", "oneOf") and tuple(e.absolute_path) in plain:
            continue
        for r in describe(e):
            seen.setdefault(r, None)
    return list(seen)


# --------------------------------------------------------------------------------------
# Built-in kinds: kubernetes-validate

# kubernetes_validate.validate() reads and parses its 1.8 MB definitions file on every call;
# keeping what it reads makes a document cost milliseconds instead of ~20 ms.
kv_utils.schema_contents = functools.lru_cache(maxsize=None)(kv_utils.schema_contents)


def bundled_versions() -> dict[str, str]:
    """major.minor -> the full version whose schemas kubernetes-validate ships."""
    return {kv_utils.major_minor(v): v for v in kv_utils.all_versions()}


def without_nulls(value: Any) -> Any:
    """A built-in object as the API server decodes it into its Go type: a field set to null
    is the same as a field left out. (The bundled schemas would otherwise refuse a null
    int-or-string such as a Service's targetPort, and let a required field pass as null.)"""
    if isinstance(value, dict):
        return {k: without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [without_nulls(v) for v in value]
    return value


class BuiltinKinds:
    def __init__(self, version: str):
        self.version = version  # major.minor, e.g. "1.37"
        self.full_version = bundled_versions()[version]

    def check(self, doc: dict, strict: bool = True) -> list[str] | None:
        """Reasons the document is invalid ([] when valid), or None when Kubernetes
        has no such kind."""
        doc = without_nulls(doc)
        try:
            kubernetes_validate.validate(doc, self.version, strict=strict)
            return []
        except kubernetes_validate.SchemaNotFoundError:
            return None
        except kubernetes_validate.ValidationError as e:
            first = describe(e)
        except Exception as e:  # a broken schema file, say: report it rather than crash
            return [f"kubernetes-validate could not validate it: {type(e).__name__}: {e}"]
        errors = list(self._validator(doc["apiVersion"], doc["kind"], strict).iter_errors(doc))
        if any(list(e.absolute_path) == ["apiVersion"] and e.validator == "enum" for e in errors):
            return None  # e.g. Deployment of apps.example.com/v1: a kind of someone else's
        return reasons_of(errors) or first

    @functools.lru_cache(maxsize=None)
    def _validator(self, api_version: str, kind: str, strict: bool) -> jsonschema.Validator:
        # The same files and the same registry that kubernetes_validate.validate() uses, kept
        # to list every problem of an invalid document (validate() raises only the first).
        group, _, ver = api_version.rpartition("/")
        name = f"{kind.lower()}-{group.split('.')[0]}-{ver}" if group else f"{kind.lower()}-{ver}"
        folder = f"kubernetes-json-schema/v{self.full_version}-local{'-strict' if strict else ''}"
        schema = kv_utils.schema_contents(f"{folder}/{name}.json", self.version)
        defs = kv_utils.schema_contents(f"{folder}/_definitions.json", self.version)
        resources = [Resource.from_contents(schema), Resource.from_contents(defs)]
        registry = Registry().with_resources((r.id(), r) for r in resources)
        return jsonschema.Draft202012Validator(schema, registry=registry)

    def metadata_reasons(self, metadata: Any, strict: bool) -> list[str]:
        """ObjectMeta rules for the metadata of a custom resource."""
        wrapper = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata}
        return self.check(wrapper, strict) or []


# --------------------------------------------------------------------------------------
# Custom resources: a CRD's openAPIV3Schema with jsonschema

_ANNOTATIONS = ("description", "example", "externalDocs", "default", "nullable", "title")


def to_json_schema(node: Any, strict: bool, structural: bool = True, root: bool = False) -> Any:
    """A Kubernetes structural schema (OpenAPI v3 subset) as a JSON Schema 2020-12 schema.

    - x-kubernetes-int-or-string: an integer or a string;
    - nullable: null is valid (otherwise null is handled before validation, see decode());
    - exclusiveMinimum/exclusiveMaximum: OpenAPI's booleans become 2020-12's numbers;
    - x-kubernetes-preserve-unknown-fields: unknown fields are kept, so never an error;
    - strict: where the schema lists properties and says nothing about others, others are
      errors (the API server would drop them silently). Only in the structural part: the
      branches of allOf/anyOf/oneOf/not only add constraints.
    - apiVersion, kind and metadata are always allowed at the root and in an
      x-kubernetes-embedded-resource object.
    """
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key.startswith("x-kubernetes-") or key in _ANNOTATIONS:
            continue
        if key in ("properties", "patternProperties"):
            out[key] = {k: to_json_schema(v, strict, structural) for k, v in value.items()}
        elif key == "additionalProperties":
            out[key] = to_json_schema(value, strict, structural)
        elif key == "items":
            if isinstance(value, list):
                out["prefixItems"] = [to_json_schema(v, strict, structural) for v in value]
            else:
                out[key] = to_json_schema(value, strict, structural)
        elif key in ("allOf", "anyOf", "oneOf"):
            out[key] = [to_json_schema(v, strict, False) for v in value]
        elif key == "not":
            out[key] = to_json_schema(value, strict, False)
        elif key in ("exclusiveMinimum", "exclusiveMaximum"):
            bound = "minimum" if key == "exclusiveMinimum" else "maximum"
            if value is True and bound in node:
                out[key] = node[bound]
            elif not isinstance(value, bool):
                out[key] = value
        elif key in ("minimum", "maximum"):
            exclusive = "exclusiveMinimum" if key == "minimum" else "exclusiveMaximum"
            if node.get(exclusive) is not True:
                out[key] = value
        else:
            out[key] = value
    if node.get("x-kubernetes-int-or-string"):
        out["type"] = ["integer", "string"]
    if root or node.get("x-kubernetes-embedded-resource"):
        props = out.setdefault("properties", {})
        props.setdefault("apiVersion", {"type": "string"})
        props.setdefault("kind", {"type": "string"})
        props.setdefault("metadata", {"type": "object"})
    if (strict and structural and "properties" in out and "additionalProperties" not in out
            and not node.get("x-kubernetes-preserve-unknown-fields")):
        out["additionalProperties"] = False
    if node.get("nullable"):
        out = {"if": {"type": "null"}, "else": out}
    return out


def decode(value: Any, schema: Any) -> None:
    """What the API server does to a custom resource before validating it: a null where the
    schema does not say nullable is dropped, then defaults fill absent fields."""
    if not isinstance(schema, dict):
        return
    if isinstance(value, dict):
        props = schema.get("properties") or {}
        extra = schema.get("additionalProperties")
        for key in list(value):
            sub = props.get(key, extra if key not in props and isinstance(extra, dict) else None)
            if isinstance(sub, dict) and value[key] is None and not sub.get("nullable"):
                if "default" in sub:
                    value[key] = copy.deepcopy(sub["default"])
                else:
                    del value[key]
        for key, sub in props.items():
            if key not in value and isinstance(sub, dict) and "default" in sub:
                value[key] = copy.deepcopy(sub["default"])
        for key, item in value.items():
            sub = props.get(key, extra if key not in props else None)
            decode(item, sub)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for item in value:
            decode(item, schema["items"])


class CrdKind:
    def __init__(self, crd_name: str, version: dict, strict: bool):
        self.crd_name = crd_name
        self.served = version.get("served", True)
        self.schema = ((version.get("schema") or {}).get("openAPIV3Schema"))
        self.strict = strict
        self._validator: jsonschema.Validator | None = None

    def validator(self) -> jsonschema.Validator:
        if self._validator is None:
            translated = to_json_schema(self.schema, self.strict, root=True)
            jsonschema.Draft202012Validator.check_schema(translated)
            self._validator = jsonschema.Draft202012Validator(translated)
        return self._validator


def fatal(message: str) -> None:
    print(f"validate.py: {message}", file=sys.stderr)
    sys.exit(2)


def load_crds(paths: list[str], strict: bool) -> dict[tuple[str, str], CrdKind]:
    """(apiVersion, kind) -> the CRD version that serves it."""
    kinds: dict[tuple[str, str], CrdKind] = {}
    for path in paths:
        try:
            with open(path, encoding="utf-8") as f:
                docs = [d for _, d in read_documents(f.read())]
        except (OSError, YamlError) as e:
            fatal(f"cannot read --crd {path}: {getattr(e, 'message', e)}")
        crds = [_as_json(d) for d in docs
                if isinstance(d, dict) and d.get("kind") == "CustomResourceDefinition"]
        if not crds:
            fatal(f"--crd {path} holds no CustomResourceDefinition")
        for crd in crds:
            spec = crd.get("spec") or {}
            group, kind = spec.get("group"), (spec.get("names") or {}).get("kind")
            name = (crd.get("metadata") or {}).get("name", "?")
            if not group or not kind or not spec.get("versions"):
                fatal(f"--crd {path}: CRD {name} lacks group, kind or versions")
            for version in spec["versions"]:
                kinds[(f"{group}/{version.get('name')}", kind)] = CrdKind(name, version, strict)
    return kinds


# --------------------------------------------------------------------------------------
# Documents


class Validator:
    def __init__(self, builtin: BuiltinKinds, crds: dict[tuple[str, str], CrdKind], strict_crd: bool):
        self.builtin = builtin
        self.crds = crds
        self.strict_crd = strict_crd

    def reasons(self, doc: Any) -> list[str]:
        if not isinstance(doc, dict):
            return [f"the document is {_json_type(doc)}, not an object"]
        api_version, kind = doc.get("apiVersion"), doc.get("kind")
        if not isinstance(api_version, str) or not api_version:
            return ["apiVersion is missing or not a string"]
        if not isinstance(kind, str) or not kind:
            return ["kind is missing or not a string"]
        meta = doc.get("metadata")
        named = isinstance(meta, dict) and bool(meta.get("name") or meta.get("generateName"))
        missing_name = [] if named else ["metadata.name: required field is missing"]

        crd_kind = self.crds.get((api_version, kind))
        if crd_kind is not None:
            return self.custom_resource(doc, crd_kind) + missing_name
        found = self.builtin.check(doc)
        if found is not None:
            return found + missing_name
        group = api_version.rpartition("/")[0]
        versions = sorted(v for (av, k) in self.crds if k == kind and av.rpartition("/")[0] == group
                          for v in [av.rpartition("/")[2]])
        if versions:
            return [f"unknown kind: the --crd defines {kind} in {group} only as {', '.join(versions)}"]
        hint = "" if self.crds else " (give its CRD with --crd)"
        return [f"unknown kind: {api_version} {kind} is not a built-in kind of Kubernetes "
                f"{self.builtin.version} and no --crd defines it{hint}"]

    def custom_resource(self, doc: dict, crd_kind: CrdKind) -> list[str]:
        if not crd_kind.served:
            return [f"{doc['apiVersion']} is not served by CRD {crd_kind.crd_name}"]
        if not isinstance(crd_kind.schema, dict):
            return [f"CRD {crd_kind.crd_name} gives no openAPIV3Schema for {doc['apiVersion']}"]
        try:
            validator = crd_kind.validator()
        except jsonschema.SchemaError as e:
            return [f"CRD {crd_kind.crd_name}: its schema is unusable: {e.message}"]
        decoded = copy.deepcopy(doc)
        decode(decoded, crd_kind.schema)
        reasons = reasons_of(validator.iter_errors(decoded))
        if isinstance(doc.get("metadata"), dict):
            reasons += [r for r in self.builtin.metadata_reasons(doc["metadata"], self.strict_crd)
                        if r not in reasons]
        return reasons


def display_name(doc: Any) -> str:
    if not isinstance(doc, dict):
        return "?/?"
    meta = doc.get("metadata") if isinstance(doc.get("metadata"), dict) else {}
    name = meta.get("name") or (f"{meta['generateName']}*" if meta.get("generateName") else "?")
    return f"{doc.get('kind') or '?'}/{name}"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="validate.py",
        description="Validate Kubernetes objects (strictly, offline) and custom resources.")
    latest = kv_utils.major_minor(kv_utils.latest_version())
    parser.add_argument("--k8s-version", default=latest, metavar="X",
                        help=f"Kubernetes version whose schemas to use (default {latest})")
    parser.add_argument("--crd", action="append", default=[], metavar="CRD.yaml",
                        help="CustomResourceDefinition(s) whose kinds to accept; repeatable")
    parser.add_argument("--strict-crd", action="store_true",
                        help="unknown fields in custom resources are errors")
    parser.add_argument("files", nargs="+", metavar="FILE", help='YAML file, or "-" for stdin')
    args = parser.parse_args(argv)

    wanted = kv_utils.major_minor(args.k8s_version.lstrip("v"))
    bundled = bundled_versions()
    if wanted not in bundled:
        parser.error(f"kubernetes-validate {kubernetes_validate.__version__} has schemas for "
                     f"Kubernetes {', '.join(bundled)}; not for {args.k8s_version}")
    validator = Validator(BuiltinKinds(wanted), load_crds(args.crd, args.strict_crd), args.strict_crd)

    ok = failed = 0

    def report(label: str, reasons: list[str]) -> None:
        nonlocal ok, failed
        if reasons:
            failed += 1
            shown = reasons[:MAX_REASONS]
            if len(reasons) > MAX_REASONS:
                shown.append(f"… and {len(reasons) - MAX_REASONS} more")
            print(f"FAIL {label}: {'; '.join(shown)}")
        else:
            ok += 1
            print(f"ok   {label}")

    for path in args.files:
        try:
            if path == "-":
                text = sys.stdin.read()
            else:
                with open(path, encoding="utf-8") as f:
                    text = f.read()
        except (OSError, UnicodeDecodeError) as e:
            report(f"{path}#1 ?/?", [f"cannot read the file: {e}"])
            continue
        try:
            for position, doc in read_documents(text):
                if doc is None:
                    continue
                doc = _as_json(doc)
                report(f"{path}#{position} {display_name(doc)}", validator.reasons(doc))
        except YamlError as e:
            report(f"{path}#{e.position} ?/?", [f"YAML does not parse: {e.message}"])
        sys.stdout.flush()

    print(f"validated {ok + failed} documents: {ok} ok, {failed} failed")
    return 0 if ok + failed > 0 and failed == 0 else 1


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except BrokenPipeError:  # the reader went away (| head): no traceback
        sys.stderr.close()
        sys.exit(1)
