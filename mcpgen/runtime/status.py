"""gRPC failures as text a model can act on, and as HTTP statuses for the REST endpoints.

A status becomes `CODE: message`, followed by the details a server put in
`grpc-status-details-bin` (google.rpc.Status): field violations, error info, retry delay,
quota and precondition failures, resource info, help links and localized messages.
"""

from __future__ import annotations

from typing import Any

import grpc
from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message
from google.rpc import error_details_pb2, status_pb2

STATUS_DETAILS_KEY = "grpc-status-details-bin"

_DETAIL_TYPES: dict[str, type[Message]] = {
    cls.DESCRIPTOR.full_name: cls
    for cls in (
        error_details_pb2.BadRequest,
        error_details_pb2.ErrorInfo,
        error_details_pb2.RetryInfo,
        error_details_pb2.DebugInfo,
        error_details_pb2.QuotaFailure,
        error_details_pb2.PreconditionFailure,
        error_details_pb2.ResourceInfo,
        error_details_pb2.Help,
        error_details_pb2.LocalizedMessage,
        error_details_pb2.RequestInfo,
    )
}

#: gRPC code → HTTP status, as grpc-gateway maps them; failures of the backend itself are 5xx.
HTTP_STATUS = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
}


def http_status(code: grpc.StatusCode) -> int:
    return HTTP_STATUS.get(code, 502)


def _duration(value: Any) -> str:
    return json_format.MessageToDict(value) if value.ByteSize() else "0s"


def _detail_lines(detail: Message) -> list[str]:
    """Readable lines for one status detail."""
    if isinstance(detail, error_details_pb2.BadRequest):
        return [f"field `{v.field}`: {v.description}" for v in detail.field_violations]
    if isinstance(detail, error_details_pb2.ErrorInfo):
        meta = ", ".join(f"{k}={v}" for k, v in sorted(detail.metadata.items()))
        line = f"reason {detail.reason}" + (f" (domain {detail.domain})" if detail.domain else "")
        return [line + (f": {meta}" if meta else "")]
    if isinstance(detail, error_details_pb2.RetryInfo):
        return [f"retry after {_duration(detail.retry_delay)}"]
    if isinstance(detail, error_details_pb2.QuotaFailure):
        return [f"quota of {v.subject}: {v.description}" for v in detail.violations]
    if isinstance(detail, error_details_pb2.PreconditionFailure):
        return [f"precondition {v.type} on {v.subject}: {v.description}" for v in detail.violations]
    if isinstance(detail, error_details_pb2.ResourceInfo):
        owner = f" (owner {detail.owner})" if detail.owner else ""
        resource = f"resource {detail.resource_type} {detail.resource_name}{owner}"
        return [f"{resource}: {detail.description}"]
    if isinstance(detail, error_details_pb2.Help):
        return [f"help: {link.description} <{link.url}>" for link in detail.links]
    if isinstance(detail, error_details_pb2.LocalizedMessage):
        return [detail.message]
    if isinstance(detail, error_details_pb2.DebugInfo):
        return [f"debug: {detail.detail}"] if detail.detail else []
    if isinstance(detail, error_details_pb2.RequestInfo):
        return [f"request id {detail.request_id}"]
    return []


def status_details(trailing_metadata: Any) -> tuple[list[str], list[dict[str, Any]]]:
    """Lines and JSON of the google.rpc.Status details in a call's trailing metadata."""
    raw = next((value for key, value in trailing_metadata or () if key == STATUS_DETAILS_KEY), None)
    if not isinstance(raw, bytes):
        return [], []
    try:
        status = status_pb2.Status.FromString(raw)
    except DecodeError:
        return [], []
    lines: list[str] = []
    documents: list[dict[str, Any]] = []
    for any_detail in status.details:
        type_name = any_detail.TypeName()
        cls = _DETAIL_TYPES.get(type_name)
        if cls is None:
            lines.append(f"detail of type {type_name}")
            documents.append({"@type": any_detail.type_url})
            continue
        detail = cls()
        if not any_detail.Unpack(detail):
            continue
        lines += _detail_lines(detail)
        documents.append({"@type": any_detail.type_url, **json_format.MessageToDict(detail)})
    return lines, documents


class BackendError(Exception):
    """A failed backend call: its gRPC code, message, and rendered details."""

    def __init__(
        self,
        code: grpc.StatusCode,
        message: str,
        lines: list[str] | None = None,
        details: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message
        self.lines = lines or []
        self.details = details or []

    @classmethod
    def from_rpc_error(cls, error: grpc.aio.AioRpcError) -> BackendError:
        lines, details = status_details(error.trailing_metadata())
        return cls(error.code(), error.details() or "", lines, details)

    def text(self) -> str:
        head = f"{self.code.name}: {self.message}" if self.message else self.code.name
        return "\n".join([head, *(f"- {line}" for line in self.lines)])
