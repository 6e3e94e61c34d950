"""OpenAPI 3.1 description of the intake API, served at /openapi.json and used by the
schemathesis fuzz test. Written by hand so it says exactly what the handlers do."""

from __future__ import annotations

from typing import Any

from edge import __version__

__all__ = ["openapi_document"]

_ERROR = {"$ref": "#/components/schemas/Error"}


def _err(desc: str) -> dict[str, Any]:
    return {"description": desc, "content": {"application/json": {"schema": _ERROR}}}


def openapi_document() -> dict[str, Any]:
    rid = {"name": "recording_id", "in": "path", "required": True,
           "description": "Chosen by the workstation; makes retries idempotent.",
           "schema": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"}}
    receipt = {"$ref": "#/components/schemas/IntakeReceipt"}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "edge intake (e-KTP office appliance)",
            "version": __version__,
            "description": (
                "Enrolment workstations upload each recording here. 201 means the "
                "recording is sealed to the central site's key and durable on the "
                "appliance's disk: the workstation may delete its copy's urgency; the "
                "appliance forwards it when the uplink allows."),
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {"type": "object", "required": ["error", "message"],
                          "properties": {"error": {"type": "string"},
                                         "message": {"type": "string"}}},
                "IntakeReceipt": {
                    "type": "object",
                    "required": ["recording_id", "sha256", "size", "sequence", "stored_at",
                                 "state"],
                    "properties": {
                        "recording_id": {"type": "string"},
                        "sha256": {"type": "string", "description": "of the uploaded bytes"},
                        "size": {"type": "integer"},
                        "sequence": {"type": "integer"},
                        "stored_at": {"type": "string"},
                        "state": {"type": "string"},
                        "device_id": {"type": "string"},
                    }},
                "RecordingState": {
                    "type": "object",
                    "required": ["recording_id", "state", "sequence"],
                    "properties": {
                        "recording_id": {"type": "string"},
                        "state": {"type": "string",
                                  "enum": ["stored", "sending", "receipted", "purged",
                                           "lost"]},
                        "sequence": {"type": "integer"},
                        "sha256": {"type": "string"},
                        "size": {"type": "integer"},
                        "stored_at": {"type": "string"},
                        "workstation": {"type": "string"},
                        "priority": {"type": "string"},
                        "central_receipt": {},
                    }},
                "SpoolStatus": {"type": "object", "required": ["waiting_count"],
                                "properties": {"waiting_count": {"type": "integer"},
                                               "waiting_bytes": {"type": "integer"},
                                               "oldest_waiting_age_s": {
                                                   "type": ["number", "null"]},
                                               "free_bytes": {"type": "integer"}}},
            },
        },
        "security": [{"bearer": []}],
        "paths": {
            "/v1/recordings/{recording_id}": {
                "put": {
                    "operationId": "putRecording",
                    "summary": "Upload one recording (raw body)",
                    "parameters": [
                        rid,
                        {"name": "Content-Digest", "in": "header", "required": False,
                         "description": "RFC 9530, e.g. sha-256=:<base64>:",
                         "schema": {"type": "string"}},
                        {"name": "X-Operator", "in": "header", "required": False,
                         "schema": {"type": "string", "maxLength": 128}},
                        {"name": "X-Captured-At", "in": "header", "required": False,
                         "schema": {"type": "string", "maxLength": 128}},
                        {"name": "X-Priority", "in": "header", "required": False,
                         "schema": {"type": "string", "enum": ["urgent", "bulk"]}},
                    ],
                    "requestBody": {"required": True, "content": {
                        "application/octet-stream": {
                            "schema": {"type": "string", "format": "binary"}}}},
                    "responses": {
                        "201": {"description": "sealed and durable on the appliance",
                                "content": {"application/json": {"schema": receipt}}},
                        "200": {"description": "already held (same id and content): the "
                                               "original receipt",
                                "content": {"application/json": {"schema": receipt}}},
                        "400": _err("unsafe id, bad header, or body shorter than declared"),
                        "401": _err("missing or unknown token"),
                        "403": _err("token revoked"),
                        "408": _err("body stalled; nothing stored"),
                        "409": _err("same id, different content"),
                        "411": _err("Content-Length required"),
                        "413": _err("larger than the per-recording cap"),
                        "422": _err("Content-Digest does not match the body"),
                        "507": _err("spool quota or disk reserve reached; nothing stored"),
                    },
                },
                "get": {
                    "operationId": "getRecording",
                    "summary": "State of one recording (with the central receipt once "
                               "delivered)",
                    "parameters": [rid],
                    "responses": {
                        "200": {"description": "state", "content": {"application/json": {
                            "schema": {"$ref": "#/components/schemas/RecordingState"}}}},
                        "401": _err("missing or unknown token"),
                        "403": _err("token revoked"),
                        "404": _err("not on this appliance"),
                    },
                },
            },
            "/v1/status": {
                "get": {
                    "operationId": "getStatus",
                    "summary": "Spool summary",
                    "responses": {
                        "200": {"description": "summary", "content": {"application/json": {
                            "schema": {"$ref": "#/components/schemas/SpoolStatus"}}}},
                        "401": _err("missing or unknown token"),
                        "403": _err("token revoked"),
                    },
                },
            },
        },
    }
