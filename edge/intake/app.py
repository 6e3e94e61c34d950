"""The LAN intake API for enrolment workstations (Starlette, served by uvicorn).

    PUT /v1/recordings/{id}   raw body → 201 once sealed and durable (200 for a retry)
    GET /v1/recordings/{id}   its state, and the central custody receipt once delivered
    GET /v1/status            spool summary
    GET /openapi.json         this API's OpenAPI description

Every refusal names its cause and what to do, as JSON ``{"error": key, "message": ...}``.
The body is never held in memory: chunks are sealed into a spool temp file as they arrive
(in a worker thread, so fsync and crypto never block the event loop), and a body that stalls
longer than ``body_idle_timeout_s`` is dropped.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from anyio import to_thread
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from edge.errors import EdgeError, SpoolConflict, SpoolFull
from edge.intake.ingest import BadUpload, DigestMismatch, Ingestor, Outcome, parse_content_digest
from edge.intake.openapi import openapi_document
from edge.intake.tokens import TokenStore
from edge.spool import Recording, Spool

__all__ = ["IntakeContext", "create_app"]

FLUSH_AT = 256 * 1024  # hand the worker thread ~256 KiB at a time


@dataclass
class IntakeContext:
    ingestor: Ingestor
    spool: Spool
    tokens: TokenStore
    device_id: str
    max_recording_bytes: int
    body_idle_timeout_s: float
    extra_routes: list[BaseRoute] = field(default_factory=list)
    on_accept: Callable[[str], None] | None = None


class HttpError(Exception):
    def __init__(self, status: int, key: str, message: str,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.key, self.message, self.headers = status, key, message, headers or {}


def error(status: int, key: str, message: str, headers: dict[str, str] | None = None,
          close: bool = False) -> JSONResponse:
    h = dict(headers or {})
    if close:
        h["Connection"] = "close"
    return JSONResponse({"error": key, "message": message}, status_code=status, headers=h)


def _authenticate(ctx: IntakeContext, request: Request) -> str:
    auth = request.headers.get("authorization", "")
    scheme, _, token = auth.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise HttpError(401, "auth.missing",
                        "this appliance needs the workstation's upload token: send "
                        "'Authorization: Bearer <token>' (issued with 'edge token add')",
                        {"WWW-Authenticate": 'Bearer realm="edge"'})
    check = ctx.tokens.check(token.strip())
    if check.workstation is None:
        raise HttpError(401, "auth.unknown_token",
                        "the upload token is not known to this appliance: check the "
                        "workstation's settings or ask the technician for a new token",
                        {"WWW-Authenticate": 'Bearer realm="edge", error="invalid_token"'})
    if check.revoked:
        raise HttpError(403, "auth.revoked",
                        f"the upload token of workstation {check.workstation!r} was revoked: "
                        "ask the technician for a new token")
    return check.workstation


def _metadata(request: Request, workstation: str) -> dict[str, str]:
    h = request.headers
    return {
        "workstation": workstation,
        "operator": h.get("x-operator", ""),
        "captured_at": h.get("x-captured-at", ""),
        "content_type": h.get("content-type", "application/octet-stream"),
    }


def _priority(request: Request) -> int:
    p = request.headers.get("x-priority", "bulk").strip().lower()
    if p not in ("urgent", "bulk"):
        raise HttpError(400, "intake.bad_priority", "X-Priority must be 'urgent' or 'bulk'")
    return 0 if p == "urgent" else 1


def _declared_length(ctx: IntakeContext, request: Request) -> int:
    cl = request.headers.get("content-length")
    if cl is None:
        raise HttpError(411, "intake.length_required",
                        "send Content-Length with the recording (chunked uploads are not "
                        "accepted: the appliance checks space before reading the body)")
    if not cl.isdigit():
        raise HttpError(400, "intake.bad_length", "Content-Length must be a byte count")
    size = int(cl)
    if size > ctx.max_recording_bytes:
        raise HttpError(413, "intake.too_large",
                        f"recording is {size} bytes; this appliance accepts at most "
                        f"{ctx.max_recording_bytes} bytes per recording")
    return size


def _state_doc(rec: Recording) -> dict[str, Any]:
    doc: dict[str, Any] = {**rec.intake_receipt().to_dict(), "state": rec.state.value,
                           "workstation": rec.workstation, "priority":
                           "urgent" if rec.priority == 0 else "bulk"}
    if rec.receipt:
        try:
            doc["central_receipt"] = json.loads(rec.receipt)
        except ValueError:
            doc["central_receipt"] = base64.b64encode(rec.receipt).decode()
    return doc


def create_app(ctx: IntakeContext) -> Starlette:
    async def put_recording(request: Request) -> Response:
        rid = request.path_params["recording_id"]
        try:
            workstation = _authenticate(ctx, request)
            size = _declared_length(ctx, request)
            metadata = _metadata(request, workstation)
            priority = _priority(request)
            digests = parse_content_digest(request.headers.get("content-digest", ""))
            upload = await to_thread.run_sync(
                lambda: ctx.ingestor.begin(rid, size, metadata, priority=priority,
                                           digests=digests))
        except HttpError as e:
            return error(e.status, e.key, e.message, e.headers, close=True)
        except BadUpload as e:
            return error(400, e.key, e.message, close=True)
        except SpoolFull as e:
            return error(507, e.key, e.message, close=True)

        try:
            buf = bytearray()
            stream = request.stream().__aiter__()
            while True:
                try:
                    async with asyncio.timeout(ctx.body_idle_timeout_s):
                        chunk = await stream.__anext__()
                except StopAsyncIteration:
                    break
                except TimeoutError:
                    await to_thread.run_sync(upload.abort)
                    return error(408, "intake.timeout",
                                 f"no data for {ctx.body_idle_timeout_s:g} s; nothing was "
                                 "stored: send the recording again", close=True)
                buf += chunk
                if len(buf) >= FLUSH_AT:
                    data, buf = buf, bytearray()
                    await to_thread.run_sync(upload.write, data)
            outcome, receipt = await to_thread.run_sync(upload.finish_with, buf)
        except ClientDisconnect:
            await to_thread.run_sync(upload.abort)
            return error(400, "intake.disconnected", "client went away; nothing was stored")
        except DigestMismatch as e:
            return error(422, e.key, e.message)
        except BadUpload as e:
            return error(400, e.key, e.message, close=True)
        except SpoolConflict as e:
            return error(409, e.key, e.message)
        except SpoolFull as e:
            return error(507, e.key, e.message)
        except BaseException:
            await to_thread.run_sync(upload.abort)
            raise
        doc = {**receipt.to_dict(), "device_id": ctx.device_id, "state": "stored"}
        if outcome is Outcome.CREATED:
            if ctx.on_accept is not None:
                ctx.on_accept(rid)
            return JSONResponse(doc, status_code=201,
                                headers={"Location": f"/v1/recordings/{rid}"})
        rec = await to_thread.run_sync(ctx.spool.get, rid)
        if rec is not None:
            doc["state"] = rec.state.value
        return JSONResponse(doc, status_code=200)

    async def get_recording(request: Request) -> Response:
        try:
            _authenticate(ctx, request)
        except HttpError as e:
            return error(e.status, e.key, e.message, e.headers)
        rid = request.path_params["recording_id"]
        rec = await to_thread.run_sync(ctx.spool.get, rid)
        if rec is None:
            return error(404, "spool.not_found",
                         f"no recording {rid[:128]!r} on this appliance: upload it with PUT")
        return JSONResponse(_state_doc(rec))

    async def get_status(request: Request) -> Response:
        try:
            _authenticate(ctx, request)
        except HttpError as e:
            return error(e.status, e.key, e.message, e.headers)
        summary = await to_thread.run_sync(ctx.spool.summary)
        return JSONResponse({"device_id": ctx.device_id, **summary.to_dict()})

    async def get_openapi(request: Request) -> Response:
        return JSONResponse(openapi_document())

    async def on_edge_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, EdgeError)
        return error(503, exc.key, exc.message)

    routes: list[BaseRoute] = [
        Route("/v1/recordings/{recording_id:path}", put_recording, methods=["PUT"]),
        Route("/v1/recordings/{recording_id:path}", get_recording, methods=["GET"]),
        Route("/v1/status", get_status, methods=["GET"]),
        Route("/openapi.json", get_openapi, methods=["GET"]),
        *ctx.extra_routes,
    ]
    return Starlette(routes=routes, exception_handlers={EdgeError: on_edge_error})
