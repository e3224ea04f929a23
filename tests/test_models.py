"""Models modules: importable on their own, a model pair per tool, and true to protobuf.

The tests call `models_module` on the tools of the fixtures (their ToolSpecs) and import the
module it returns from a temporary folder, as a bundle's `models/<package>.py` would be.
Protobuf is the oracle, as in test_oracle.py: random response messages printed by
`MessageToDict` must validate into the output models, and random requests that the precise input
schema accepts must validate into the input models and come back out (`model_dump` by alias)
as the same message through `ParseDict`.
"""

from __future__ import annotations

import importlib.util
import json
import os
import random
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from google.protobuf import json_format
from google.protobuf.descriptor import MethodDescriptor
from google.protobuf.descriptor_pool import DescriptorPool
from google.protobuf.message import Message
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from ruff import find_ruff_bin

from mcpgen.config import Config
from mcpgen.errors import Warnings
from mcpgen.model import Catalog
from mcpgen.pymodels import ModelSchemas, models_module, tool_classes
from mcpgen.runtime.arguments import response_json, root_value, validate_arguments
from mcpgen.runtime.validation import SchemaValidator, validator_for
from mcpgen.schema import SchemaRenderer
from mcpgen.schema.scalars import ROOT_VALUE_KEY
from mcpgen.sources.inputs import load_catalog
from mcpgen.tools import ToolSpec, build_tools
from tests.conftest import FIXTURES, PROTOS

sys.path.insert(0, str(Path(__file__).parent))
from randomfill import RandomFiller, build_pool, message_class, well_known_names

REGISTRY = FIXTURES / "registry"
EXAMPLES = int(os.environ.get("MCPGEN_ORACLE_EXAMPLES", "25"))
_SETTINGS = settings(
    max_examples=EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=[HealthCheck.too_slow],
)


def load_models(path: Path, name: str) -> ModuleType:
    """A models module as a module of its own name (bundles do not share modules)."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # pydantic resolves forward references through sys.modules
    spec.loader.exec_module(module)
    return module


def tools_of(
    sources: Sequence[str | Path], import_paths: Sequence[str | Path] = ()
) -> tuple[Catalog, list[ToolSpec]]:
    """The catalog of the sources and their tools, as a build renders them by default."""
    catalog = load_catalog([str(s) for s in sources], [str(p) for p in import_paths], Warnings())
    return catalog, build_tools(catalog, Config(), SchemaRenderer(catalog), Warnings())


def write_models(specs: Sequence[ToolSpec], catalog: Catalog, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(models_module(specs, catalog))
    return path


def package_of(spec: ToolSpec) -> str:
    """The proto package of a tool: its route's service without the last dotted segment."""
    return spec.route["service"].rpartition(".")[0]


class Fixtures:
    """The fixtures' tools and what the oracle needs of them: protobuf's classes of each gRPC
    tool's messages and the precise input schema the server validates arguments against."""

    def __init__(self) -> None:
        self.catalog, self.specs = tools_of([PROTOS])
        self.by_name = {s.name: s for s in self.specs}
        self.renderer = SchemaRenderer(self.catalog)
        self.pool: DescriptorPool = build_pool(self.catalog.descriptor_files)
        self.any_types = tuple(sorted(well_known_names(self.pool)))
        self._validators: dict[str, SchemaValidator] = {}

    def method(self, tool: str) -> MethodDescriptor:
        route = self.by_name[tool].route
        return self.pool.FindMethodByName(f"{route['service']}.{route['method']}")

    def input_schema(self, tool: str) -> dict[str, Any]:
        """What the server checks arguments against: the precise schema of the request (for a
        go-micro endpoint only its registry describes, the tool's own inputSchema)."""
        return input_schema(self.by_name[tool], self.catalog, self.renderer)

    def input_validator(self, tool: str) -> SchemaValidator:
        if tool not in self._validators:
            self._validators[tool] = validator_for(self.input_schema(tool))
        return self._validators[tool]


def input_schema(spec: ToolSpec, catalog: Catalog, renderer: SchemaRenderer) -> dict[str, Any]:
    route = spec.route
    if route["kind"] == "grpc":
        service = next(s for s in catalog.services if s.full_name == route["service"])
        method = next(m for m in service.methods if m.name == route["method"])
        return renderer.precise(method.input_type, output=False)
    if "request" in route:
        return renderer.precise(route["request"], output=False)
    return spec.tool["inputSchema"]


@pytest.fixture(scope="module")
def fixtures() -> Fixtures:
    return Fixtures()


@pytest.fixture(scope="module")
def models_path(fixtures: Fixtures, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One module of every fixture tool (several packages: the API takes any set of tools)."""
    folder = tmp_path_factory.mktemp("models")
    return write_models(fixtures.specs, fixtures.catalog, folder / "fixtures_models.py")


@pytest.fixture(scope="module")
def models(models_path: Path) -> ModuleType:
    return load_models(models_path, "fixtures_models")


# ---- the module ------------------------------------------------------------------------------


def test_models_import_in_a_fresh_interpreter_with_a_pair_for_every_tool(
    fixtures: Fixtures, models_path: Path, tmp_path: Path
) -> None:
    script = (
        "import importlib.util, json, sys\n"
        "from pydantic import BaseModel\n"
        "spec = importlib.util.spec_from_file_location('models', sys.argv[1])\n"
        "m = importlib.util.module_from_spec(spec); sys.modules['models'] = m\n"
        "spec.loader.exec_module(m)\n"
        "ok = {n: [issubclass(c, BaseModel) for c in pair] for n, pair in m.TOOLS.items()}\n"
        "print(json.dumps({n: [c.__name__ for c in p] for n, p in m.TOOLS.items()}))\n"
        "assert all(all(v) for v in ok.values())\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(models_path)],
        capture_output=True,
        text=True,
        cwd=tmp_path,  # nothing of the checkout on the path but the installed packages
    )
    assert done.returncode == 0, done.stderr
    pairs = json.loads(done.stdout)
    assert list(pairs) == [s.name for s in fixtures.specs]
    assert pairs["Library_CreateBook"] == ["LibraryCreateBookInput", "LibraryCreateBookOutput"]
    assert pairs["v1_Users_GetUser"] == ["V1UsersGetUserInput", "V1UsersGetUserOutput"]


def test_every_package_gets_a_module_of_its_own(fixtures: Fixtures, tmp_path: Path) -> None:
    """As builds call it: once per proto package with that package's tools. Each module holds
    the types its tools reach, from whatever package, and imports on its own."""
    packages: dict[str, list[ToolSpec]] = {}
    for spec in fixtures.specs:
        packages.setdefault(package_of(spec), []).append(spec)
    assert len(packages) > 2
    for package, specs in packages.items():
        name = package.replace(".", "_")
        module = load_models(write_models(specs, fixtures.catalog, tmp_path / f"{name}.py"), name)
        assert list(module.TOOLS) == [s.name for s in specs]
    library = sys.modules["acme_library_v1"]
    assert "Book" in vars(library) and "LibraryCreateBookInput" in vars(library)
    assert "TypesEchoTreeInput" not in vars(library)  # another package's tools are not here


def test_a_larger_catalog_gives_the_same_bytes(fixtures: Fixtures) -> None:
    """A module depends only on the types its tools reach, not on the rest of the catalog."""
    library = [s for s in fixtures.specs if package_of(s) == "acme.library.v1"]
    small, _ = tools_of([PROTOS / "acme" / "library"], [PROTOS])
    assert len(small.messages) < len(fixtures.catalog.messages)
    assert models_module(library, small) == models_module(library, fixtures.catalog)


def test_the_module_is_formatted_by_the_environments_ruff(
    fixtures: Fixtures, models_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ruff formats the module (formatting it again changes nothing), and the ruff of mcpgen's
    environment does, not one on PATH."""
    done = subprocess.run(
        [find_ruff_bin(), "format", "--isolated", "--line-length", "100", "--diff", models_path],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    source = models_path.read_text()
    assert source.startswith("# Generated by mcpgen ")
    assert "from __future__ import annotations\n\nfrom typing import " in source  # sorted
    monkeypatch.setenv("PATH", str(tmp_path))  # no ruff (nor anything else) on PATH
    library = [s for s in fixtures.specs if package_of(s) == "acme.library.v1"]
    assert models_module(library, fixtures.catalog).startswith(b"# Generated by mcpgen ")


def test_shared_types_are_one_class_and_variants_are_named(models: ModuleType) -> None:
    source = Path(models.__file__).read_text()
    assert source.count("class Book(") == 1
    assert source.count("class BookInput(") == 1  # validation rules make the input differ
    # a tool whose result is a shared type extends its class instead of copying it
    assert models.LibraryGetBookOutput.__mro__[1] is models.Book
    assert models.LibraryCreateBookInput.model_fields["book"].annotation is models.BookInput
    assert "TOOLS: dict[str, tuple[type[BaseModel], type[BaseModel]]]" in source


def test_models_follow_the_precise_schemas(models: ModuleType) -> None:
    create = models.LibraryCreateBookInput
    with pytest.raises(ValueError):
        create.model_validate({"parent": "shelves/1"})  # book is required
    with pytest.raises(ValueError):
        create.model_validate({"parent": "shelves/1", "book": {"title": ""}})  # minLength 1
    with pytest.raises(ValueError):
        create.model_validate({"parent": "s", "book": {"title": "t"}, "surprise": 1})
    with pytest.raises(ValueError):  # inherited from Book: no unknown fields
        models.LibraryGetBookOutput.model_validate({"name": "x", "surprise": 1})
    book = create.model_validate({"parent": "s", "book": {"title": "t", "copiesSold": "12"}})
    assert book.book.copiesSold == "12"  # a 64-bit integer keeps its string form


def test_json_names_that_are_not_identifiers_get_aliases(models: ModuleType) -> None:
    any_model = next(
        cls
        for cls in vars(models).values()
        if isinstance(cls, type)
        and "@type"
        in getattr(cls, "model_fields", {}).keys()
        | {f.alias for f in getattr(cls, "model_fields", {}).values()}
    )
    field = next(f for f in any_model.model_fields.values() if f.alias == "@type")
    assert field.alias == "@type"
    value = any_model.model_validate({"@type": "type.googleapis.com/x.Y", "extra": 1})
    assert value.model_dump(by_alias=True, exclude_unset=True) == {
        "@type": "type.googleapis.com/x.Y",
        "extra": 1,  # an Any's payload fields are kept
    }


def test_class_names_of_tools_are_unique() -> None:
    assert tool_classes(["a_b", "A_b", "AB", "9lives", "x-y"]) == {
        "a_b": ("ABInput", "ABOutput"),
        "A_b": ("AB2Input", "AB2Output"),
        "AB": ("AB3Input", "AB3Output"),
        "9lives": ("Tool9livesInput", "Tool9livesOutput"),
        "x-y": ("XYInput", "XYOutput"),
    }


def test_recursive_types(models: ModuleType) -> None:
    tree = {"label": "a", "children": [{"label": "b", "byName": {"c": {"label": "c"}}}]}
    node = models.TypesEchoTreeInput.model_validate(tree)
    assert node.children[0].byName["c"].label == "c"
    assert node.model_dump(by_alias=True, exclude_unset=True) == tree


def test_hoisted_schemas_say_what_the_manifest_says(fixtures: Fixtures) -> None:
    """The models' schemas name every message type; inlined again, they are the tools'
    outputSchemas (descriptions aside, which differ where a field's text meets its type's)."""
    classes = tool_classes([s.name for s in fixtures.specs])
    document = ModelSchemas(fixtures.catalog).document(fixtures.specs, classes)["$defs"]
    for spec in fixtures.specs:
        ours = _expand(document[classes[spec.name][1]], document)
        output = spec.tool["outputSchema"]
        theirs = _expand(output, output.get("$defs", {}))
        assert _strip_massaged(ours) == _strip_massaged(theirs), spec.name


def _expand(schema: Any, defs: dict[str, Any], depth: int = 0) -> Any:
    """A schema with references replaced by their targets, cut at a fixed nesting depth."""
    if depth > 8:
        return "..."
    if isinstance(schema, list):
        return [_expand(v, defs, depth + 1) for v in schema]
    if not isinstance(schema, dict):
        return schema
    if "$ref" in schema:
        target = defs[schema["$ref"].rpartition("/")[2]]
        rest = {k: v for k, v in schema.items() if k != "$ref"}
        return _expand({**target, **rest}, defs, depth)
    if list(schema) == ["allOf"] and len(schema["allOf"]) == 1:
        return _expand(schema["allOf"][0], defs, depth)
    return {k: _expand(v, defs, depth + 1) for k, v in schema.items() if k != "$defs"}


def _strip_massaged(schema: Any) -> Any:
    """Without what models drop or add on purpose (see pymodels._massage), and descriptions."""
    if isinstance(schema, list):
        return [_strip_massaged(v) for v in schema]
    if not isinstance(schema, dict):
        return schema
    gone = {"description", "format", "contentEncoding", "dependentSchemas"}
    out = {k: _strip_massaged(v) for k, v in schema.items() if k not in gone}
    if out.get("additionalProperties") is True:
        del out["additionalProperties"]
    if out.get("type") == "object" and out.get("properties") == {}:
        del out["properties"]
    return out


# ---- protobuf as the oracle ------------------------------------------------------------------


GRPC_TOOLS = [
    "Inventory_Lookup", "Inventory_Reserve", "Library_CreateBook", "Library_DeleteBook",
    "Library_GetBook", "Library_LegacySearch", "Library_ListBooks", "Library_UpdateBook",
    "Library_WatchBooks", "Types_EchoChoice", "Types_EchoContainers", "Types_EchoPair",
    "Types_EchoScalars", "Types_EchoStruct", "Types_EchoTree", "Types_EchoValidated",
    "Types_EchoValue", "Types_EchoWellKnown", "Types_Now", "v1_Users_GetUser", "v2_Users_GetUser",
]  # fmt: skip


def test_the_oracle_covers_every_tool(fixtures: Fixtures) -> None:
    assert [s.name for s in fixtures.specs if s.route["kind"] == "grpc"] == GRPC_TOOLS


def _random(fixtures: Fixtures, rng: random.Random, full_name: str) -> Message:
    return RandomFiller(fixtures.pool, rng, any_types=fixtures.any_types).message(full_name)


@pytest.mark.parametrize("tool", GRPC_TOOLS)
@_SETTINGS
@given(rng=st.randoms(use_true_random=True))
def test_printed_responses_validate_into_the_output_model(
    tool: str, rng: random.Random, fixtures: Fixtures, models: ModuleType
) -> None:
    method = fixtures.method(tool)
    output_model = models.TOOLS[tool][1]
    messages = [_random(fixtures, rng, method.output_type.full_name) for _ in range(2)]
    try:
        if method.server_streaming:
            data: dict[str, Any] = {"messages": [response_json(m) for m in messages]}
        else:
            data = response_json(messages[0])
    except json_format.SerializeToJsonError:
        return  # not printable as JSON at all (e.g. an Any of an unknown type)
    output_model.model_validate(data)


@pytest.mark.parametrize("tool", GRPC_TOOLS)
@_SETTINGS
@given(rng=st.randoms(use_true_random=True))
def test_valid_requests_round_trip_through_the_input_model(
    tool: str, rng: random.Random, fixtures: Fixtures, models: ModuleType
) -> None:
    name = fixtures.method(tool).input_type.full_name
    request = _random(fixtures, rng, name)
    try:
        data = json_format.MessageToDict(request, descriptor_pool=fixtures.pool)
    except json_format.SerializeToJsonError:
        return
    arguments = {ROOT_VALUE_KEY: data} if root_value(name) else data
    if validate_arguments(arguments, fixtures.input_validator(tool)):
        return  # a random message may break validation rules; the model is laxer, not stricter
    parsed = models.TOOLS[tool][0].model_validate(arguments)
    dumped = parsed.model_dump(by_alias=True, exclude_unset=True)
    # the message the JSON stands for (JSON loses some: an unknown NullValue number prints null)
    request_class = message_class(fixtures.pool, name)
    expected, again = request_class(), request_class()
    json_format.ParseDict(data, expected, descriptor_pool=fixtures.pool)
    payload = dumped[ROOT_VALUE_KEY] if root_value(name) else dumped
    json_format.ParseDict(payload, again, descriptor_pool=fixtures.pool)
    if again != expected:  # NaN is not equal to itself: compare the printed forms then
        assert _printed(again) == _printed(expected), (arguments, dumped)


def _printed(message: Message) -> str:
    pool = message.DESCRIPTOR.file.pool
    return json_format.MessageToJson(message, descriptor_pool=pool, sort_keys=True)


def test_valid_requests_are_found_for_most_tools(fixtures: Fixtures) -> None:
    """The round-trip property is not vacuous: random requests pass the schema for most tools."""
    passing = set()
    for tool in GRPC_TOOLS:
        name = fixtures.method(tool).input_type.full_name
        for seed in range(40):
            request = _random(fixtures, random.Random(seed), name)
            try:
                data = json_format.MessageToDict(request, descriptor_pool=fixtures.pool)
            except json_format.SerializeToJsonError:
                continue
            arguments = {ROOT_VALUE_KEY: data} if root_value(name) else data
            if not validate_arguments(arguments, fixtures.input_validator(tool)):
                passing.add(tool)
                break
    assert len(passing) >= len(GRPC_TOOLS) - 4, sorted(set(GRPC_TOOLS) - passing)


# ---- other sources and options ---------------------------------------------------------------


@pytest.mark.parametrize(
    "sources",
    [
        [REGISTRY / "gomicro-registry.json"],
        [REGISTRY / "quirks.json"],
        [REGISTRY / "gomicro-registry.json", REGISTRY / "protos"],
    ],
    ids=["registry", "quirks", "registry+protos"],
)
def test_registry_tools_have_importable_models(
    sources: list[Path], tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    catalog, specs = tools_of(sources)
    name = f"models_{request.node.callspec.id.replace('+', '_')}"
    module = load_models(write_models(specs, catalog, tmp_path / f"{name}.py"), name)
    assert list(module.TOOLS) == [s.name for s in specs]
    renderer = SchemaRenderer(catalog)
    for spec in specs:  # every example argument the registry gives is a valid input
        validator = validator_for(input_schema(spec, catalog, renderer))
        for example in spec.tool["inputSchema"].get("examples", []):
            if not validate_arguments(example, validator):
                module.TOOLS[spec.name][0].model_validate(example)
    assert specs


def test_well_known_types_and_googleapis_protos_generate(tmp_path: Path) -> None:
    """Every well-known type as request and response, and google/api, google/rpc, google/type
    types nested in them (patterns, formats, type arrays, keywords pydantic does not know)."""
    proto = tmp_path / "wkt.proto"
    wkts = ["Any", "Duration", "Empty", "FieldMask", "Struct", "Timestamp", "Value", "ListValue"]
    wkts += ["DoubleValue", "FloatValue", "Int64Value", "UInt64Value", "Int32Value"]
    wkts += ["UInt32Value", "BoolValue", "StringValue", "BytesValue"]
    imports = ["any", "duration", "empty", "field_mask", "struct", "timestamp", "wrappers"]
    lines = ['syntax = "proto3";', "package wkt;"]
    lines += [f'import "google/protobuf/{i}.proto";' for i in imports]
    lines += ['import "google/rpc/status.proto";', 'import "google/type/money.proto";']
    lines += ['import "google/api/http.proto";']
    lines += ["message Rich { google.rpc.Status status = 1; google.type.Money money = 2;"]
    lines += ["  google.api.HttpRule rule = 3; }", "service W {"]
    lines += [f"  rpc {w}Echo(google.protobuf.{w}) returns (google.protobuf.{w});" for w in wkts]
    lines += ["  rpc RichEcho(Rich) returns (Rich);", "}"]
    proto.write_text("\n".join(lines) + "\n")
    catalog, specs = tools_of([proto], [tmp_path])
    module = load_models(write_models(specs, catalog, tmp_path / "wkt.py"), "wkt_models")
    assert len(module.TOOLS) == len(wkts) + 1
    timestamp_in, timestamp_out = module.TOOLS["W_TimestampEcho"]
    assert timestamp_in.model_validate({"value": "2024-01-31T12:00:00Z"}).value == (
        "2024-01-31T12:00:00Z"  # a string as protobuf writes it, not a datetime
    )
    assert timestamp_out.model_validate({"value": "0001-01-01T00:00:00Z"})


def test_patterns_no_engine_compiles_are_dropped_with_a_note() -> None:
    from mcpgen.pymodels import _massage

    schema = {"type": "object", "properties": {"a": {"type": "string", "pattern": "(?<=x)y"}}}
    out = _massage(schema)["properties"]["a"]
    assert "pattern" not in out
    assert out["description"] == "Pattern not checked by this model: (?<=x)y"
    kept = _massage({"type": "string", "pattern": "^[0-9]+$", "format": "int64"})
    assert kept == {"type": "string", "pattern": "^[0-9]+$"}


def test_hostile_text_stays_data(tmp_path: Path) -> None:
    """Comments and names reach the module only as string literals."""
    hostile = '"""; import os; os.system("echo PWNED") #\\\'\'\' {{ x }} <script>'
    proto = tmp_path / "evil.proto"
    proto.write_text(
        'syntax = "proto3";\npackage evil;\n'
        f"// {hostile}\nmessage Req {{\n  // {hostile}\n  string from = 1;\n"
        '  string model_config = 2;\n  string Field = 3 [json_name = "Field"];\n'
        "  string after = 4; // described too\n  int64 n = 5;\n}\n"
        "service S { rpc Do(Req) returns (Req); }\n"
    )
    catalog, specs = tools_of([proto], [tmp_path])
    path = write_models(specs, catalog, tmp_path / "models" / "evil.py")
    source = path.read_text()
    assert "PWNED" in source  # the text is there, as data
    done = subprocess.run([sys.executable, str(path)], capture_output=True, text=True)
    assert done.returncode == 0 and "PWNED" not in done.stdout + done.stderr, done.stderr
    module = load_models(path, "evil_models")
    request = module.TOOLS["S_Do"][0].model_validate(
        {"from": "a", "modelConfig": "b", "Field": "c", "after": "d", "n": "5"}
    )
    assert request.model_dump(by_alias=True, exclude_unset=True) == {
        "from": "a", "modelConfig": "b", "Field": "c", "after": "d", "n": "5"
    }  # fmt: skip
    assert module.TOOLS["S_Do"][0].__doc__ and hostile.strip() in module.TOOLS["S_Do"][0].__doc__


def test_no_tools_give_an_empty_index() -> None:
    code = models_module([], load_catalog([str(PROTOS)], [], Warnings())).decode()
    namespace: dict[str, Any] = {}
    exec(compile(code, "models.py", "exec"), namespace)
    assert namespace["TOOLS"] == {}


def test_models_are_deterministic(tmp_path: Path) -> None:
    """Two runs from different folders under different hash seeds: the same bytes."""
    script = (
        "import sys\n"
        "from mcpgen.config import Config\n"
        "from mcpgen.errors import Warnings\n"
        "from mcpgen.pymodels import models_module\n"
        "from mcpgen.schema import SchemaRenderer\n"
        "from mcpgen.sources.inputs import load_catalog\n"
        "from mcpgen.tools import build_tools\n"
        "catalog = load_catalog([sys.argv[1]], [], Warnings())\n"
        "specs = build_tools(catalog, Config(), SchemaRenderer(catalog), Warnings())\n"
        "sys.stdout.buffer.write(models_module(specs, catalog))\n"
    )
    outputs = []
    for seed, cwd in (("1", tmp_path / "a"), ("987", tmp_path / "b" / "c")):
        cwd.mkdir(parents=True)
        (cwd / "pyproject.toml").write_text("[tool.ruff]\nline-length = 40\n")  # not ours
        env = {**os.environ, "PYTHONHASHSEED": seed}
        done = subprocess.run(
            [sys.executable, "-c", script, str(PROTOS)], cwd=cwd, env=env, capture_output=True
        )
        assert done.returncode == 0, done.stderr.decode()
        outputs.append(done.stdout)
    assert outputs[0] == outputs[1]
    assert outputs[0].startswith(b"# Generated by mcpgen ")


def test_types_of_one_name_in_two_packages_are_qualified(tmp_path: Path) -> None:
    for package in ("shop.a", "shop.b"):
        path = tmp_path / package.replace(".", "/") / "x.proto"
        path.parent.mkdir(parents=True)
        path.write_text(
            f'syntax = "proto3";\npackage {package};\nmessage Item {{ string id = 1; }}\n'
            "message Req { Item item = 1; }\nmessage Res { repeated Item items = 1; }\n"
            "service S { rpc Get(Req) returns (Res); }\n"
        )
    catalog, specs = tools_of([tmp_path / "shop"], [tmp_path])
    module = load_models(write_models(specs, catalog, tmp_path / "shop.py"), "shop_models")
    assert {"ShopAItem", "ShopBItem"} <= set(vars(module))
    assert "Item" not in vars(module)
    a_input = module.TOOLS["a_S_Get"][0]
    assert a_input.model_fields["item"].annotation == module.ShopAItem | None
    # a package's own module has one Item: no need to qualify it
    a_only = [s for s in specs if package_of(s) == "shop.a"]
    module = load_models(write_models(a_only, catalog, tmp_path / "shop_a.py"), "shop_a_models")
    assert "Item" in vars(module) and "ShopAItem" not in vars(module)
