"""Schema stage: IR message types → JSON Schema 2020-12 (precise and portable renderings)."""

from mcpgen.schema.render import SchemaRenderer, recursive_types

__all__ = ["SchemaRenderer", "recursive_types"]
