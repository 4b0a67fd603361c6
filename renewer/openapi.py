"""The OpenAPI 3.1 document of the renewer's HTTP API (served at ``GET /api/v1/openapi.json``).

Kept beside :data:`renewer.api.ROUTES`; a test checks that both list the same operations and that
real responses validate against the schemas here.
"""

from __future__ import annotations

from typing import Any

from certloop.errors import FailureReason

__all__ = ["OPENAPI"]

_TS = {"type": ["string", "null"], "format": "date-time"}
_REASONS = [r.value for r in FailureReason]
_ERROR = {
    "type": "object",
    "required": ["error", "status"],
    "properties": {"error": {"type": "string"}, "status": {"type": "integer"}},
}


def _err(description: str) -> dict[str, Any]:
    return {"description": description,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


def _text(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"text/plain": {"schema": {"type": "string"}}}}


_JOB_PROPS: dict[str, Any] = {
    "id": {"type": "integer"},
    "certificate": {"type": "string"},
    "trigger": {"type": "string", "enum": ["alert", "schedule", "manual"]},
    "reason": {"type": "string"},
    "force": {"type": "boolean"},
    "state": {"type": "string",
              "enum": ["queued", "issuing", "installing", "verifying", "succeeded", "failed", "rolled_back"]},
    "attempt": {"type": "integer", "description": "issuance attempts so far"},
    "deploy_attempt": {"type": "integer", "description": "deployment attempts so far"},
    "not_before": {"type": "string", "format": "date-time", "description": "not run before (backoff)"},
    "lease_owner": {"type": ["string", "null"]},
    "lease_expires": _TS,
    "created_at": {"type": "string", "format": "date-time"},
    "updated_at": {"type": "string", "format": "date-time"},
    "started_at": _TS,
    "last_error": {"type": ["string", "null"]},
    "material_ref": {"type": ["string", "null"]},
}

OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "certloop renewer",
        "version": "0",
        "description": "Renews certificates on Alertmanager webhooks, installs them safely, verifies, rolls back.",
    },
    "components": {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}, "mtls": {"type": "mutualTLS"}},
        "schemas": {
            "Error": _ERROR,
            "AlertmanagerPayload": {
                "type": "object",
                "description": "Alertmanager webhook payload, version 4",
                "required": ["version", "groupKey", "status", "receiver", "alerts"],
                "properties": {
                    "version": {"const": "4"},
                    "groupKey": {"type": "string"},
                    "truncatedAlerts": {"type": "integer", "minimum": 0},
                    "status": {"enum": ["firing", "resolved"]},
                    "receiver": {"type": "string"},
                    "groupLabels": {"type": "object", "additionalProperties": {"type": "string"}},
                    "commonLabels": {"type": "object", "additionalProperties": {"type": "string"}},
                    "commonAnnotations": {"type": "object", "additionalProperties": {"type": "string"}},
                    "externalURL": {"type": "string"},
                    "alerts": {"type": "array", "items": {
                        "type": "object",
                        "required": ["status", "labels", "startsAt"],
                        "properties": {
                            "status": {"enum": ["firing", "resolved"]},
                            "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                            "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
                            "startsAt": {"type": "string"},
                            "endsAt": {"type": "string"},
                            "generatorURL": {"type": "string"},
                            "fingerprint": {"type": "string"},
                        },
                    }},
                },
            },
            "WebhookResult": {
                "type": "object",
                "required": ["groupKey", "truncatedAlerts", "certificates", "ignored"],
                "properties": {
                    "groupKey": {"type": "string"},
                    "truncatedAlerts": {"type": "integer"},
                    "certificates": {"type": "array", "items": {
                        "type": "object",
                        "required": ["certificate", "outcome", "alertname", "fingerprint"],
                        "properties": {
                            "certificate": {"type": "string"},
                            "outcome": {"enum": ["queued", "duplicate"]},
                            "alertname": {"type": "string"},
                            "fingerprint": {"type": "string"},
                        },
                    }},
                    "ignored": {"type": "array", "items": {
                        "type": "object",
                        "required": ["outcome", "detail", "fingerprint"],
                        "properties": {
                            "outcome": {"enum": ["duplicate", "unknown_certificate", "resolved_ignored",
                                                 "not_renewable"]},
                            "detail": {"type": "string"},
                            "fingerprint": {"type": "string"},
                        },
                    }},
                },
            },
            "Job": {"type": "object", "required": list(_JOB_PROPS), "properties": _JOB_PROPS},
            "JobEvent": {
                "type": "object",
                "required": ["from_state", "to_state", "at", "reason", "actor"],
                "properties": {
                    "from_state": {"type": ["string", "null"]},
                    "to_state": {"type": "string"},
                    "at": {"type": "string", "format": "date-time"},
                    "reason": {"type": "string"},
                    "actor": {"type": ["string", "null"]},
                },
            },
            "AuditEvent": {
                "type": "object",
                "required": ["id", "at", "actor", "role", "action", "target", "address", "status", "detail"],
                "properties": {
                    "id": {"type": "integer"},
                    "at": {"type": "string", "format": "date-time"},
                    "actor": {"type": ["string", "null"],
                              "description": "the user's or token's name; null when not authenticated"},
                    "role": {"type": ["string", "null"]},
                    "action": {"type": "string", "enum": ["renew", "retry", "reload", "webhook", "refused"]},
                    "target": {"type": ["string", "null"],
                               "description": "certificate id, `job N`, or the refused request's method and path"},
                    "address": {"type": ["string", "null"], "description": "the client's address"},
                    "status": {"type": "integer", "description": "the HTTP status it was answered with"},
                    "detail": {"type": ["string", "null"], "description": "the job queued, or the error"},
                },
            },
            "Certificate": {
                "type": "object",
                "required": ["id", "domains", "issuer", "not_after", "fingerprint_sha256", "next_due",
                             "last_attempt", "last_success", "last_result", "last_error", "open_job", "served"],
                "properties": {
                    "id": {"type": "string"},
                    "domains": {"type": "array", "items": {"type": "string"}},
                    "issuer": {"type": "string"},
                    "not_after": {**_TS, "description": "expiry of the installed certificate (read from its file)"},
                    "fingerprint_sha256": {"type": ["string", "null"]},
                    "next_due": {**_TS, "description": "when the safety net renews it"},
                    "last_attempt": _TS,
                    "last_success": _TS,
                    "last_result": {"type": ["string", "null"], "enum": ["succeeded", "failed", "rolled_back", None]},
                    "last_error": {"type": ["string", "null"]},
                    "open_job": {"type": ["object", "null"], "required": ["id", "state", "not_before", "waiting"],
                                 "properties": {
                        "id": {"type": "integer"}, "state": {"type": "string"},
                        "not_before": {**_TS, "description": "the job is not worked before this time"},
                        "waiting": {"type": ["string", "null"], "description":
                                    "why a queued job waits until not_before (a rate limit: `waiting: rate limit "
                                    "...`, or a retry backoff); null when it is due or running"}}},
                    "served": {"$ref": "#/components/schemas/Served"},
                },
            },
            "Served": {
                "type": "object", "additionalProperties": False,
                "description": "What the certificate's verify endpoints serve now, probed live (cached for "
                               "status_page.probe_interval; a request waits at most status_page.probe_wait), "
                               "judged against the installed leaf's fingerprint",
                "required": ["state", "drift", "probe_failed", "endpoints"],
                "properties": {
                    "state": {"type": "string", "description": "the most pressing verdict", "enum": [
                        "drift", "probe_failed", "probing", "serves_installed", "no_endpoints"]},
                    "drift": {"type": "boolean", "description": "some address serves another leaf than the "
                                                                "installed one (e.g. the server was not reloaded)"},
                    "probe_failed": {"type": "boolean", "description": "some address could not be probed"},
                    "endpoints": {"type": "array", "items": {
                        "type": "object", "additionalProperties": False,
                        "required": ["endpoint", "server_name", "probed_at", "probing", "addresses"],
                        "properties": {
                            "endpoint": {"type": "string", "description": "a verify endpoint, host:port"},
                            "server_name": {"type": ["string", "null"]},
                            "probed_at": {**_TS, "description": "when the answer shown was probed; null: "
                                                                "no probe has answered yet"},
                            "probing": {"type": "boolean",
                                        "description": "a newer probe is running (not waited for)"},
                            "addresses": {"type": "array", "items": {
                                "type": "object", "additionalProperties": False,
                                "required": ["address", "fingerprint_sha256", "not_after", "serial", "reason",
                                             "detail"],
                                "properties": {
                                    "address": {"type": ["string", "null"], "description":
                                                "null when the failure belongs to the whole endpoint"},
                                    "fingerprint_sha256": {"type": ["string", "null"],
                                                           "description": "the served leaf's"},
                                    "not_after": {**_TS, "description": "the served leaf's expiry"},
                                    "serial": {"type": ["string", "null"]},
                                    "reason": {"type": ["string", "null"], "description": "why the probe failed",
                                               "enum": [*_REASONS, None]},
                                    "detail": {"type": ["string", "null"]},
                                }}},
                        }}},
                },
            },
        },
    },
    "security": [{"bearer": []}, {"mtls": []}],
    "paths": {
        "/api/v1/alertmanager": {"post": {
            "operationId": "alertmanagerWebhook",
            "summary": "Alertmanager webhook receiver (payload version 4)",
            "requestBody": {"required": True, "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/AlertmanagerPayload"}}}},
            "responses": {
                "202": {"description": "accepted: what happened to each alert", "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/WebhookResult"}}}},
                "400": _err("malformed payload; the message names the wrong field"),
                "401": _err("missing or wrong bearer token"),
                "413": _err("body over the size limit"),
                "503": _err("the job store cannot queue now; Alertmanager retries"),
            },
        }},
        "/api/v1/certificates/{id}/renew": {"post": {
            "operationId": "renewCertificate",
            "summary": "Queue a renewal now",
            "parameters": [
                {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}},
                {"name": "force", "in": "query", "required": False, "schema": {"type": "boolean"},
                 "description": "renew even though the installed certificate is not inside renew_before"},
            ],
            "responses": {
                "202": {"description": "queued (created) or the open job", "content": {"application/json": {
                    "schema": {"type": "object", "required": ["certificate", "job_id", "created"], "properties": {
                        "certificate": {"type": "string"}, "job_id": {"type": ["integer", "null"]},
                        "created": {"type": "boolean"}}}}}},
                "401": _err("missing or wrong bearer token"),
                "404": _err("no such certificate"),
                "409": _err("the installed certificate is not due yet and force is not set"),
                "503": _err("job store unavailable"),
            },
        }},
        "/api/v1/certificates": {"get": {
            "operationId": "listCertificates",
            "summary": "Managed certificates and their renewal state",
            "responses": {
                "200": {"description": "every configured certificate", "content": {"application/json": {
                    "schema": {"type": "object", "required": ["certificates"], "properties": {"certificates": {
                        "type": "array", "items": {"$ref": "#/components/schemas/Certificate"}}}}}}},
                "401": _err("missing or wrong bearer token"),
                "503": _err("job store unavailable"),
            },
        }},
        "/api/v1/jobs": {"get": {
            "operationId": "listJobs",
            "summary": "Recent jobs, newest first",
            "parameters": [
                {"name": "certificate", "in": "query", "required": False, "schema": {"type": "string"}},
                {"name": "state", "in": "query", "required": False, "schema": {"type": "string"}},
                {"name": "limit", "in": "query", "required": False,
                 "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}},
            ],
            "responses": {
                "200": {"description": "jobs", "content": {"application/json": {"schema": {
                    "type": "object", "required": ["jobs"], "properties": {
                        "jobs": {"type": "array", "items": {"$ref": "#/components/schemas/Job"}}}}}}},
                "400": _err("bad query parameter"),
                "401": _err("missing or wrong bearer token"),
                "503": _err("job store unavailable"),
            },
        }},
        "/api/v1/jobs/{id}": {"get": {
            "operationId": "getJob",
            "summary": "One job with its audit trail",
            "parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}}],
            "responses": {
                "200": {"description": "the job and every state change", "content": {"application/json": {
                    "schema": {"allOf": [{"$ref": "#/components/schemas/Job"}, {
                        "type": "object", "required": ["events"], "properties": {"events": {
                            "type": "array", "items": {"$ref": "#/components/schemas/JobEvent"}}}}]}}}},
                "400": _err("job id is not an integer"),
                "401": _err("missing or wrong bearer token"),
                "404": _err("no such job"),
                "503": _err("job store unavailable"),
            },
        }},
        "/": {"get": {
            "operationId": "landing", "summary": "Landing page: name, version, links", "security": [],
            "responses": {"200": {"description": "an HTML page", "content": {"text/html": {
                "schema": {"type": "string"}}}}},
        }},
        "/api/v1/jobs/{id}/retry": {"post": {
            "operationId": "retryJob",
            "summary": "Queue the certificate of a failed or rolled-back job again (role operator or admin)",
            "parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}}],
            "responses": {
                "202": {"description": "queued (created) or the certificate's open job", "content": {
                    "application/json": {"schema": {
                        "type": "object", "required": ["certificate", "job_id", "created", "retry_of"],
                        "properties": {"certificate": {"type": "string"}, "job_id": {"type": ["integer", "null"]},
                                       "created": {"type": "boolean"}, "retry_of": {"type": "integer"}}}}}},
                "400": _err("job id is not an integer"),
                "401": _err("missing or wrong credentials"),
                "403": _err("the caller's role may not renew"),
                "404": _err("no such job"),
                "409": _err("the job is open or succeeded, or its certificate is no longer configured"),
                "503": _err("job store unavailable"),
            },
        }},
        "/api/v1/audit": {"get": {
            "operationId": "listAudit",
            "summary": "The audit trail, newest first: state-changing calls and refused requests",
            "parameters": [
                {"name": "limit", "in": "query", "required": False,
                 "schema": {"type": "integer", "minimum": 1, "maximum": 1000}},
                {"name": "before", "in": "query", "required": False, "schema": {"type": "integer"},
                 "description": "only events with a smaller id (paging)"},
            ],
            "responses": {
                "200": {"description": "audit events", "content": {"application/json": {
                    "schema": {"type": "object", "required": ["events"], "properties": {"events": {
                        "type": "array", "items": {"$ref": "#/components/schemas/AuditEvent"}}}}}}},
                "400": _err("limit or before is not an integer"),
                "401": _err("missing or wrong credentials"),
                "403": _err("the caller has no role"),
                "503": _err("job store unavailable"),
            },
        }},
        "/api/v1/openapi.json": {"get": {
            "operationId": "openapi", "summary": "This document", "security": [],
            "responses": {"200": {"description": "OpenAPI 3.1", "content": {"application/json": {
                "schema": {"type": "object"}}}}},
        }},
        "/metrics": {"get": {
            "operationId": "metrics", "summary": "Prometheus metrics", "security": [],
            "responses": {"200": _text("Prometheus text exposition format")},
        }},
        "/-/healthy": {"get": {
            "operationId": "healthy", "summary": "Liveness", "security": [],
            "responses": {"200": _text("the process is up")},
        }},
        "/-/ready": {"get": {
            "operationId": "ready", "summary": "Readiness: the job store answers", "security": [],
            "responses": {"200": _text("ready"), "503": _text("job store unavailable")},
        }},
        "/-/reload": {"post": {
            "operationId": "reload", "summary": "Reload the config file (as SIGHUP); a bad config is rejected",
            "responses": {
                "200": _text("reloaded"),
                "401": _err("missing or wrong bearer token"),
                "403": _err("the caller's role may not reload, or the renewer runs without --web.enable-lifecycle"),
                "500": _err("the new config is invalid; the previous one stays active"),
            },
        }},
    },
}
