"""Generate a synthetic, realistic .proto corpus for the build benchmark.

Deterministic for a seed: packages with several API versions, services of 5-20 RPCs (unary,
server-streaming, a few client/bidi), messages with scalars, enums, nested and repeated
messages, maps, oneofs, a recursive type, well-known types, google.api annotations, comments,
and name collisions across versions.

    python benchmarks/corpus.py --out /tmp/corpus --rpcs 5000
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

SCALARS = ["string", "int32", "int64", "uint32", "uint64", "bool", "double", "float", "bytes"]
WKT = {
    "google.protobuf.Timestamp": "google/protobuf/timestamp.proto",
    "google.protobuf.Duration": "google/protobuf/duration.proto",
    "google.protobuf.FieldMask": "google/protobuf/field_mask.proto",
    "google.protobuf.Struct": "google/protobuf/struct.proto",
    "google.protobuf.StringValue": "google/protobuf/wrappers.proto",
    "google.protobuf.Int64Value": "google/protobuf/wrappers.proto",
}
VERBS = ["Get", "List", "Create", "Update", "Delete", "Search", "Batch", "Watch", "Export"]
NOUNS = ["Account", "Order", "Invoice", "Shipment", "Product", "Review", "Ticket", "Report"]


def _service_file(rng: random.Random, package: str, service: str, rpcs: int) -> str:
    imports = {"google/api/annotations.proto", "google/api/field_behavior.proto",
               "google/protobuf/empty.proto"}  # fmt: skip
    lines: list[str] = []
    messages: list[str] = []
    lines.append(f"// The {service} service of {package}.\nservice {service} {{")
    for i in range(rpcs):
        verb, noun = rng.choice(VERBS), rng.choice(NOUNS)
        method = f"{verb}{noun}{i}"
        kind = rng.random()
        request, response = f"{method}Request", f"{method}Response"
        stream_in = "stream " if kind > 0.985 else ""
        stream_out = "stream " if kind > 0.9 else ""
        lines.append(f"  // {verb}s a {noun.lower()}.\n  //\n  // Returns the result of {method}.")
        lines.append(f"  rpc {method}({stream_in}{request}) returns ({stream_out}{response}) {{")
        if verb in ("Get", "List", "Search"):
            lines.append(f'    option (google.api.http) = {{get: "/v1/{noun.lower()}s/{i}"}};')
            lines.append("    option idempotency_level = NO_SIDE_EFFECTS;")
        else:
            lines.append(
                f'    option (google.api.http) = {{post: "/v1/{noun.lower()}s:{i}" body: "*"}};'
            )
        lines.append("  }")
        messages.append(_message(rng, request, imports, request=True))
        messages.append(_message(rng, response, imports, request=False))
    lines.append("}")
    header = [f'syntax = "proto3";\n\n// Generated for the mcpgen benchmark.\npackage {package};\n']
    header += [f'import "{i}";' for i in sorted(imports)]
    common = (
        "\n// A node of a tree; recursive.\nmessage Node {\n  string label = 1;\n"
        "  repeated Node children = 2;\n}\n\nenum State {\n  STATE_UNSPECIFIED = 0;\n"
        "  // Active.\n  ACTIVE = 1;\n  ARCHIVED = 2;\n}\n"
    )
    return "\n".join(header) + "\n\n" + "\n".join(lines) + "\n" + common + "\n".join(messages)


def _message(rng: random.Random, name: str, imports: set[str], request: bool) -> str:
    fields = []
    number = 1
    for _ in range(rng.randint(3, 12)):
        roll = rng.random()
        field_name = f"field_{number}_{rng.choice(NOUNS).lower()}"
        if roll < 0.5:
            kind = rng.choice(SCALARS)
        elif roll < 0.65:
            kind = rng.choice(list(WKT))
            imports.add(WKT[kind])
        elif roll < 0.75:
            kind = "State"
        elif roll < 0.85:
            kind = f"repeated {rng.choice(SCALARS)}"
        elif roll < 0.92:
            kind = f"map<string, {rng.choice(['string', 'int64', 'State'])}>"
        else:
            kind = "Node"
        option = " [(google.api.field_behavior) = REQUIRED]" if request and number == 1 else ""
        fields.append(f"  // The {field_name.replace('_', ' ')}.\n  {kind} {field_name} = "
                      f"{number}{option};")  # fmt: skip
        number += 1
    if rng.random() < 0.3:
        fields.append(f"  oneof choice {{\n    string text = {number};\n"
                      f"    int64 count = {number + 1};\n  }}")  # fmt: skip
    return f"\n// {name}.\nmessage {name} {{\n" + "\n".join(fields) + "\n}\n"


def generate(out: Path, rpcs: int, seed: int = 7) -> int:
    """Write the corpus under `out`; return the number of RPCs written.

    Each domain has a v1 and a v2 package with the same service and method names, so tool
    names collide and must be qualified, as in real multi-version APIs.
    """
    written = 0
    domain = 0
    while written < rpcs:
        count = min(random.Random(f"{seed}:{domain}").randint(5, 20), rpcs - written)
        for version in ("v1", "v2"):
            if written >= rpcs:
                break
            count = min(count, rpcs - written)
            rng = random.Random(f"{seed}:{domain}")  # same names in both versions
            rng.randint(5, 20)
            service = f"{rng.choice(NOUNS)}Service"
            package = f"acme.bench{domain}.{version}"
            path = out / "acme" / f"bench{domain}" / version / f"{service.lower()}.proto"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(_service_file(rng, package, service, count), encoding="utf-8")
            written += count
        domain += 1
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--rpcs", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    print(f"wrote {generate(args.out, args.rpcs, args.seed)} RPCs under {args.out}")


if __name__ == "__main__":
    main()
