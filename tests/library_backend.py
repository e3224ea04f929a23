"""A real gRPC server for the fixture `acme.library.v1.Library`, built from descriptors.

It runs in background threads (`grpc.server`), so gateways under test — in-process or in a
subprocess — reach it over a real socket. Messages are dynamic classes from the bundle's own
descriptors.binpb: no generated code. It records what it received, to check what the gateway
sent (and that it sent nothing for a bad call).
"""

from __future__ import annotations

import threading
import time
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import any_pb2, descriptor_pb2, descriptor_pool, duration_pb2, message_factory
from google.rpc import code_pb2, error_details_pb2, status_pb2

SERVICE = "acme.library.v1.Library"


@dataclass
class Received:
    method: str
    request: Any
    metadata: dict[str, str]


@dataclass
class LibraryBackend:
    """In-memory books; special names trigger errors, delays and endless streams."""

    descriptors: Path
    books: dict[str, Any] = field(default_factory=dict)
    received: list[Received] = field(default_factory=list)
    server: grpc.Server | None = None
    port: int = 0
    streamed: int = 0  # messages sent by endless streams
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        pool = descriptor_pool.DescriptorPool()
        for f in descriptor_pb2.FileDescriptorSet.FromString(self.descriptors.read_bytes()).file:
            pool.Add(f)
        self.service = pool.FindServiceByName(SERVICE)
        self.classes = {
            m.name: (
                message_factory.GetMessageClass(m.input_type),
                message_factory.GetMessageClass(m.output_type),
            )
            for m in self.service.methods
        }
        book = pool.FindMessageTypeByName("acme.library.v1.Book")
        self.Book = message_factory.GetMessageClass(book)

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    # ---- lifecycle ---------------------------------------------------------------------------

    def start(self, port: int = 0) -> LibraryBackend:
        handlers = {}
        for method in self.service.methods:
            if method.client_streaming:
                continue
            request_class, _ = self.classes[method.name]
            behavior = getattr(self, method.name)
            if method.server_streaming:
                handler = grpc.unary_stream_rpc_method_handler(
                    self._recorded(method.name, behavior),
                    request_deserializer=request_class.FromString,
                    response_serializer=lambda m: m.SerializeToString(),
                )
            else:
                handler = grpc.unary_unary_rpc_method_handler(
                    self._recorded(method.name, behavior),
                    request_deserializer=request_class.FromString,
                    response_serializer=lambda m: m.SerializeToString(),
                )
            handlers[method.name] = handler
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
        self.server.add_generic_rpc_handlers(
            [grpc.method_handlers_generic_handler(SERVICE, handlers)]
        )
        self.port = self.server.add_insecure_port(f"127.0.0.1:{port}")
        self.server.start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop(grace=None).wait()
            self.server = None

    def _recorded(self, name: str, behavior: Any) -> Any:
        def handler(request: Any, context: grpc.ServicerContext) -> Any:
            with self.lock:
                self.received.append(Received(name, request, dict(context.invocation_metadata())))
            return behavior(request, context)

        return handler

    def calls(self, method: str | None = None) -> list[Received]:
        with self.lock:
            return [r for r in self.received if method is None or r.method == method]

    # ---- behaviors ---------------------------------------------------------------------------

    def _response(self, method: str) -> Any:
        return self.classes[method][1]()

    def GetBook(self, request: Any, context: grpc.ServicerContext) -> Any:
        if request.name.endswith("/slow"):
            time.sleep(5)
        book = self.books.get(request.name)
        if book is None:
            info = error_details_pb2.ResourceInfo(
                resource_type="acme.library.v1.Book",
                resource_name=request.name,
                description="no book has this name",
            )
            _abort(context, code_pb2.NOT_FOUND, f"book {request.name} not found", info)
        return book

    def CreateBook(self, request: Any, context: grpc.ServicerContext) -> Any:
        if request.book.title.strip().lower() == "forbidden":
            violation = error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(
                        field="book.title", description="this title is not allowed"
                    )
                ]
            )
            retry = error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(seconds=2))
            _abort(context, code_pb2.INVALID_ARGUMENT, "the book is invalid", violation, retry)
        book = self.Book()
        book.CopyFrom(request.book)
        with self.lock:
            book.name = f"{request.parent}/books/{len(self.books) + 1}"
            book.create_time.seconds = 1_700_000_000
            self.books[book.name] = book
        return book

    def ListBooks(self, request: Any, context: grpc.ServicerContext) -> Any:
        response = self._response("ListBooks")
        with self.lock:
            for name in sorted(self.books):
                if name.startswith(request.parent + "/"):
                    response.books.append(self.books[name])
        return response

    def UpdateBook(self, request: Any, context: grpc.ServicerContext) -> Any:
        with self.lock:
            book = self.books.get(request.book.name)
            if book is None:
                _abort(context, code_pb2.NOT_FOUND, f"book {request.book.name} not found")
            paths = list(request.update_mask.paths) or ["title", "author"]
            for path in paths:
                setattr(book, path, getattr(request.book, path))
            return book

    def DeleteBook(self, request: Any, context: grpc.ServicerContext) -> Any:
        with self.lock:
            if self.books.pop(request.name, None) is None:
                _abort(context, code_pb2.NOT_FOUND, f"book {request.name} not found")
        return self._response("DeleteBook")

    def LegacySearch(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self.ListBooks(request, context)

    def WatchBooks(self, request: Any, context: grpc.ServicerContext) -> Any:
        event_class = self.classes["WatchBooks"][1]
        if request.parent == "shelves/endless":
            i = 0
            while context.is_active():
                i += 1
                event = event_class(kind=1)
                event.book.name = f"shelves/endless/books/{i}"
                event.book.title = f"Book {i}"
                yield event
                with self.lock:
                    self.streamed += 1
                time.sleep(0.01)
            return
        with self.lock:
            books = [b for n, b in sorted(self.books.items()) if n.startswith(request.parent + "/")]
        for book in books:
            event = event_class(kind=1)
            event.book.CopyFrom(book)
            yield event


def _abort(context: grpc.ServicerContext, code: int, message: str, *details: Any) -> None:
    """Abort with a google.rpc.Status carrying `details` in grpc-status-details-bin."""
    status = status_pb2.Status(code=code, message=message)
    for detail in details:
        packed = any_pb2.Any()
        packed.Pack(detail)
        status.details.append(packed)
    context.abort_with_status(_RichStatus(status))


class _RichStatus(grpc.Status):  # type: ignore[misc]
    def __init__(self, status: status_pb2.Status) -> None:
        self.code = grpc.StatusCode[code_pb2.Code.Name(status.code)]
        self.details = status.message
        self.trailing_metadata = (("grpc-status-details-bin", status.SerializeToString()),)
