#!/usr/bin/env python3
"""Writes backfilld's OpenAPI 3.1 document, src/api/openapi.json, which the server serves at
GET /api/openapi.json: `python3 tools/openapi.py src/api/openapi.json` (or `-` for standard
output). The tests check that the committed document is what this makes, that it describes
exactly the server's route table (api::ROUTES), and, with schemathesis, that the live server
answers as it says."""
import copy
import json
import sys

I64_MAX = 9223372036854775807
I64_MIN = -9223372036854775808

# Rust's char::is_whitespace (Unicode White_Space), which `str::trim` strips: a value made of
# these alone is "blank". Written as literal characters inside a class, so that Python's `re`,
# ECMA-262 and Rust's regex all read the same set.
RUST_WS = "\t\n\u000b\u000c\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
NONBLANK = "[^" + RUST_WS + "]"

# What the API stores at most: characters of a name (Mage's `String(255)` columns), bytes of an
# object's compact JSON (which JSON Schema cannot bound, so descriptions say it).
NAME_CHARS = 255
OBJECT_BOUND = "At most 64 KiB (65,536 bytes) of JSON, as written compactly: a larger object is a 400."

RUN_STATUSES = ["initial", "running", "completed", "failed", "cancelled"]
INTERVAL_TYPES = ["second", "minute", "hour", "day", "week", "month", "year", "custom"]

# Request datetimes (datetime::parse): a calendar date, optionally a time (seconds and a 1 to 9
# digit fraction optional), optionally an offset; years 1 to 9999.
YEAR = "(?:000[1-9]|00[1-9][0-9]|0[1-9][0-9]{2}|[1-9][0-9]{3})"
LEAP_YEAR = "(?:[0-9]{2}(?:0[48]|[2468][048]|[13579][26])|(?:0[48]|[2468][048]|[13579][26])00)"
DATE = (
    "(?:" + YEAR + "-(?:(?:0[13578]|1[02])-(?:0[1-9]|[12][0-9]|3[01])|(?:0[469]|11)-(?:0[1-9]|[12][0-9]|30)"
    "|02-(?:0[1-9]|1[0-9]|2[0-8]))|" + LEAP_YEAR + "-02-29)"
)
TIME = "[Tt ](?:[01][0-9]|2[0-3]):[0-5][0-9](?::[0-5][0-9](?:[.,][0-9]{1,9})?)?"
OFFSET = "(?:[Zz]|[+-](?:[01][0-9]|2[0-3])(?::?[0-5][0-9]|:)?)"
REQUEST_DATETIME = "^" + DATE + "(?:" + TIME + OFFSET + "?)?$"

# Flags (params::flag): true/1/yes/on, false/0/no/off or empty, any case, surrounding
# whitespace trimmed.
WS_CLASS = "[" + RUST_WS + "]"
FLAG = (
    "^" + WS_CLASS + "*(?:[Tt][Rr][Uu][Ee]|1|[Yy][Ee][Ss]|[Oo][Nn]|[Ff][Aa][Ll][Ss][Ee]|0|[Nn][Oo]|[Oo][Ff][Ff])?"
    + WS_CLASS + "*$"
)


def ref(kind, name):
    return {"$ref": f"#/components/{kind}/{name}"}


def sref(name):
    return ref("schemas", name)


# ---------------------------------------------------------------------------------------------
# Schemas
# ---------------------------------------------------------------------------------------------

schemas = {}

schemas["DateTime"] = {
    "type": "string",
    "description": "A UTC datetime as Python's `str()` of an aware datetime writes it: `.ffffff` only when "
    "the microseconds are not zero.",
    "pattern": r"^[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{6})?\+00:00$",
    "examples": ["2023-03-05 00:00:00+00:00", "2023-03-23 18:27:58.848959+00:00"],
}
schemas["IsoDateTime"] = {
    "type": "string",
    "description": "A UTC datetime as Python's `isoformat()` writes it (run-date variables).",
    "pattern": r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{6})?\+00:00$",
    "examples": ["2023-03-01T04:00:00+00:00"],
}
schemas["RequestDateTime"] = {
    "type": "string",
    "description": "A datetime as requests may spell it: RFC 3339 (`2023-03-01T00:00:00Z`, `...+05:30`), the "
    "answers' form (`2023-03-01 00:00:00+00:00`), a naive datetime (taken as UTC: `2023-03-01 00:00` or with "
    "seconds and up to 9 fraction digits, dropped past the microsecond) or a bare date (`2023-03-01`, midnight "
    "UTC). Offsets are converted to UTC, which must stay within the years 1 to 9999. Surrounding whitespace is "
    "also accepted.",
    "pattern": REQUEST_DATETIME,
    "examples": ["2023-03-01T00:00:00Z", "2023-03-05 00:00:00+00:00", "2023-03-01"],
}
schemas["RunStatus"] = {
    "type": "string",
    "enum": RUN_STATUSES,
    "description": "A pipeline run's status.",
}
schemas["BackfillStatus"] = {
    "type": ["string", "null"],
    "enum": RUN_STATUSES + [None],
    "description": "A backfill's status (Mage's): null until it is started (`PUT` with `\"status\": \"initial\"`); "
    "then it follows the newest run of each date: `failed` while some date's newest run is failed (its other dates "
    "still run, unless `settings.stop_on_failure`), `completed` once every date completed, `running` otherwise "
    "once a run has begun; `cancelled` when cancelled.",
}
schemas["IntervalType"] = {
    "type": ["string", "null"],
    "enum": INTERVAL_TYPES + [None],
    "description": "The run dates' step unit; `custom` means `interval_units` seconds.",
}

schemas["Error"] = {
    "type": "object",
    "description": "The error envelope of every failure: the HTTP status equals `code` and `status`.",
    "required": ["error", "status"],
    "additionalProperties": False,
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "type", "message", "errors"],
            "additionalProperties": False,
            "properties": {
                "code": {"type": "integer", "minimum": 400, "maximum": 599},
                "type": {
                    "type": "string",
                    "enum": [
                        "record_not_found",
                        "method_not_allowed",
                        "record_invalid",
                        "api_resource_error",
                        "record_conflict",
                        "payload_too_large",
                        "request_timeout",
                        "service_unavailable",
                        "invalid_api_key",
                        "invalid_oauth_token",
                        "expired_oauth_token",
                        "unauthorized_access",
                        "invalid_credentials",
                        "too_many_requests",
                        "cross_origin_request",
                        "host_not_allowed",
                        "internal_error",
                    ],
                },
                "message": {"type": "string"},
                "errors": {
                    "type": "array",
                    "items": {"type": "string"},
                    "maxItems": 1,
                    "description": "`record_invalid`: one entry, `<field>: <why>`; empty for every other type.",
                },
            },
        },
        "status": {"type": "integer", "minimum": 400, "maximum": 599},
    },
}


def error_variant(code, types, description):
    """The envelope for one status: its code, the types it can carry, and `errors` as they come."""
    variants = []
    for t in types:
        errors = (
            {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 1}
            if t == "record_invalid"
            else {"type": "array", "maxItems": 0}
        )
        variants.append(
            {
                "properties": {
                    "error": {
                        "properties": {"type": {"const": t}, "errors": errors},
                    }
                }
            }
        )
    s = {
        "description": description,
        "allOf": [
            sref("Error"),
            {
                "properties": {
                    "error": {"properties": {"code": {"const": code}}},
                    "status": {"const": code},
                }
            },
        ],
    }
    if len(variants) == 1:
        s["allOf"].append(variants[0])
    else:
        s["allOf"].append({"oneOf": variants})
    return s


schemas["Metadata"] = {
    "type": "object",
    "description": "What a collection answer says besides its records.",
    "required": ["count", "next"],
    "additionalProperties": False,
    "properties": {
        "count": {
            "type": "integer",
            "minimum": 0,
            "description": "How many records match the filters (not the page size).",
        },
        "next": {
            "type": "boolean",
            "description": "Whether more records follow this page. A page stops before the record that would take "
            "the answer past 8 MiB, even short of `_limit` (it holds at least one record); `next` is then true.",
        },
        "cursor": {
            "type": "string",
            "description": "Beyond Mage: where the next page starts; pass it as `_cursor` (instead of `_offset`) "
            "for the following page at the cost of the first. Present only when `next` is true and the page "
            "is not empty (`_limit=0` gives none).",
        },
    },
    "if": {"properties": {"next": {"const": False}}},
    "then": {"not": {"required": ["cursor"]}},
}

schemas["RunDate"] = {
    "type": "object",
    "description": "One run date with the variables its run gets (`include_preview_runs`).",
    "required": [
        "ds",
        "execution_date",
        "hr",
        "interval_end_datetime",
        "interval_seconds",
        "interval_start_datetime",
        "interval_start_datetime_previous",
    ],
    "additionalProperties": False,
    "properties": {
        "ds": {"type": "string", "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}$", "examples": ["2023-03-01"]},
        "execution_date": sref("IsoDateTime"),
        "hr": {"type": "string", "pattern": "^[0-9]{2}$", "examples": ["04"]},
        "interval_end_datetime": {
            "anyOf": [sref("IsoDateTime"), {"type": "null"}],
            "description": "The next date; for the last, the date plus the previous gap; null with a single date.",
        },
        "interval_seconds": {
            "type": ["number", "null"],
            "description": "The gap in seconds, as a float (`14400.0`); null with a single date.",
        },
        "interval_start_datetime": sref("IsoDateTime"),
        "interval_start_datetime_previous": {
            "anyOf": [sref("IsoDateTime"), {"type": "null"}],
            "description": "The previous run date; for the first, the date minus the gap; null with a single date.",
        },
    },
}

schemas["RunStatusCounts"] = {
    "type": "object",
    "description": "Pipeline-run status -> how many of the backfill's execution dates have their newest run in it "
    "(statuses without runs are left out).",
    "propertyNames": {"enum": RUN_STATUSES},
    "additionalProperties": {"type": "integer", "minimum": 0},
}

BACKFILL_PROPS = {
    "block_uuid": {
        "type": ["string", "null"],
        "description": "Set for a backfill driven by custom code (no run dates; backfilld cannot start it).",
    },
    "completed_at": {"anyOf": [sref("DateTime"), {"type": "null"}]},
    "created_at": sref("DateTime"),
    "end_datetime": {"anyOf": [sref("DateTime"), {"type": "null"}]},
    "failed_at": {"anyOf": [sref("DateTime"), {"type": "null"}]},
    "id": {"type": "integer", "minimum": 1, "maximum": I64_MAX},
    "interval_type": sref("IntervalType"),
    "interval_units": {"type": ["integer", "null"]},
    "is_halted": {
        "type": "boolean",
        "description": "Beyond Mage: true when a failed backfill hands out none of its waiting runs: it failed under "
        "`settings.stop_on_failure`, or it had failed before backfilld ran every date of a failed backfill. Running "
        "it again or retrying a date clears it.",
    },
    "is_paused": {
        "type": "boolean",
        "description": "Beyond Mage: claims hand out none of its runs while true; its `status` is unchanged.",
    },
    "metrics": {"type": ["object", "null"]},
    "name": {"type": "string"},
    "pipeline_schedule_id": {
        "type": ["integer", "null"],
        "description": "The `@once` schedule its start made.",
    },
    "pipeline_uuid": {"type": "string"},
    "settings": {
        "type": ["object", "null"],
        "description": "Mage's settings and backfilld's (`pipeline_run_limit`, `max_attempts`, `run_backwards`, "
        "`reprocess_behavior`, `stop_on_failure`), as stored.",
    },
    "start_datetime": {"anyOf": [sref("DateTime"), {"type": "null"}]},
    "started_at": {"anyOf": [sref("DateTime"), {"type": "null"}]},
    "status": sref("BackfillStatus"),
    "updated_at": sref("DateTime"),
    "variables": {"type": ["object", "null"]},
}
BACKFILL_REQUIRED = sorted(BACKFILL_PROPS)

COUNT_PROPS = {
    "run_status_counts": sref("RunStatusCounts"),
    "total_run_count": {
        "type": "integer",
        "minimum": 0,
        "description": "How many pipeline runs the backfill's dates make (0 with a `block_uuid`).",
    },
}


def backfill_schema(description, counts, preview):
    props = dict(BACKFILL_PROPS)
    if counts:
        props.update(COUNT_PROPS)
    if preview:
        props["pipeline_run_dates"] = {
            "type": "array",
            "items": sref("RunDate"),
            "maxItems": 1000,
            "description": "With `include_preview_runs`: exactly `_limit` run dates from `_offset` (fewer at the "
            "end; none for a backfill with a `block_uuid` or incomplete dates).",
        }
    s = {
        "type": "object",
        "description": description,
        "required": BACKFILL_REQUIRED,
        "additionalProperties": False,
        "properties": dict(sorted(props.items())),
    }
    if counts:
        s["dependentRequired"] = {
            "total_run_count": ["run_status_counts"],
            "run_status_counts": ["total_run_count"],
        }
    return s


schemas["Backfill"] = backfill_schema(
    "A backfill as a write answers it (create, update, delete): keys in alphabetical order, as Mage sends them.",
    counts=False,
    preview=False,
)
schemas["BackfillListed"] = backfill_schema(
    "A backfill in a listing. `total_run_count` and `run_status_counts` come (together) only with "
    "`include_run_count` and when `start_datetime`, `end_datetime`, `interval_type` and `interval_units` are "
    "all set.",
    counts=True,
    preview=False,
)
schemas["BackfillDetail"] = backfill_schema(
    "A backfill as `GET /api/backfills/{id}` answers it. `total_run_count` and `run_status_counts` come "
    "(together) with `include_run_count` or `include_preview_runs`, when the four date settings are all set; "
    "`pipeline_run_dates` with `include_preview_runs`.",
    counts=True,
    preview=True,
)

schemas["PipelineRun"] = {
    "type": "object",
    "description": "A pipeline run: Mage's keys (with the values true for backfilld, which runs no blocks and keeps "
    "no pipelines) and the lease's (`worker`, `lease_expires_at`, `attempt`), in alphabetical order.",
    "additionalProperties": False,
    "properties": {
        "attempt": {
            "type": ["integer", "null"],
            "description": "Which run of its execution date this is (1 for the first); null for runs imported "
            "without one.",
        },
        "backfill_id": {"type": ["integer", "null"], "description": "Null once its backfill is deleted."},
        "block_runs": {"type": "array", "maxItems": 0, "description": "Always empty: backfilld runs no blocks."},
        "block_runs_count": {"type": "integer", "const": 0},
        "completed_at": {"anyOf": [sref("DateTime"), {"type": "null"}]},
        "completed_block_runs_count": {"type": "integer", "const": 0},
        "created_at": sref("DateTime"),
        "event_variables": {"type": ["object", "null"]},
        "execution_date": {"anyOf": [sref("DateTime"), {"type": "null"}]},
        "executor_type": {
            "type": ["string", "null"],
            "description": "What runs it, as the claim that took it said (`backfilld_exec`, `backfilld_simulate`).",
        },
        "id": {"type": "integer", "minimum": 1, "maximum": I64_MAX},
        "lease_expires_at": {
            "anyOf": [sref("DateTime"), {"type": "null"}],
            "description": "Set only while the run is `running` under a lease.",
        },
        "metrics": {"type": ["object", "null"]},
        "passed_sla": {"type": "boolean"},
        "pipeline_schedule_id": {"type": ["integer", "null"]},
        "pipeline_schedule_name": {"type": ["string", "null"]},
        "pipeline_schedule_token": {"type": ["string", "null"]},
        "pipeline_schedule_type": {
            "type": "null",
            "description": "Always null, as on Mage's backfill runs (Mage makes a backfill's schedule without a type).",
        },
        "pipeline_tags": {
            "type": "null",
            "description": "Always null, as on Mage's backfill runs.",
        },
        "pipeline_type": {"type": "null"},
        "pipeline_uuid": {"type": "string"},
        "repo_path": {"type": "null"},
        "started_at": {"anyOf": [sref("DateTime"), {"type": "null"}]},
        "status": sref("RunStatus"),
        "updated_at": sref("DateTime"),
        "variables": {
            "type": ["object", "null"],
            "description": "The backfill's variables merged with the run date's (`ds`, `hr`, `execution_date`, ...).",
        },
        "worker": {"type": ["string", "null"], "description": "Who holds, or last held, its lease."},
    },
}
schemas["PipelineRun"]["required"] = sorted(schemas["PipelineRun"]["properties"])

def one_answer(key, record):
    """`{"<key>": record, "metadata": null}`: a single record, as `api::one` writes it."""
    return {
        "type": "object",
        "required": [key, "metadata"],
        "additionalProperties": False,
        "properties": {key: record, "metadata": {"type": "null"}},
    }


def page_answer(key, item, metadata=None):
    """`{"<key>": [items], "metadata": ...}`: a listing, as `api::collection` writes it (or a
    list answered with `api::one`, whose metadata is null)."""
    return {
        "type": "object",
        "required": [key, "metadata"],
        "additionalProperties": False,
        "properties": {
            key: {"type": "array", "items": item, "maxItems": 1000},
            "metadata": metadata or sref("Metadata"),
        },
    }


schemas["BackfillAnswer"] = one_answer("backfill", sref("Backfill"))
schemas["BackfillDetailAnswer"] = one_answer("backfill", sref("BackfillDetail"))
schemas["BackfillPage"] = page_answer("backfills", sref("BackfillListed"))
schemas["PipelineRunAnswer"] = one_answer("pipeline_run", sref("PipelineRun"))
schemas["DateMapCell"] = {
    "type": "object",
    "description": "Consecutive dates of a backfill, counted by the status of each date's newest run.",
    "required": ["first", "last", "dates", "counts"],
    "additionalProperties": False,
    "properties": {
        "first": sref("DateTime"),
        "last": sref("DateTime"),
        "dates": {"type": "integer", "minimum": 1, "description": "How many dates the cell has."},
        "counts": {
            "type": "object",
            "description": "The cell's dates by the status of their newest run; `none`: without a run. They add "
            "up to `dates`.",
            "required": ["completed", "failed", "running", "initial", "cancelled", "none"],
            "additionalProperties": False,
            "properties": {
                k: {"type": "integer", "minimum": 0}
                for k in ["completed", "failed", "running", "initial", "cancelled", "none"]
            },
        },
    },
}
schemas["DateMap"] = {
    "type": "object",
    "required": ["dates", "cells"],
    "additionalProperties": False,
    "properties": {
        "dates": {"type": "integer", "minimum": 0, "description": "How many dates the backfill has."},
        "cells": {"type": "array", "items": sref("DateMapCell"), "maxItems": 5000},
    },
}
schemas["DateMapAnswer"] = one_answer("date_map", sref("DateMap"))

schemas["PipelineRunPage"] = page_answer("pipeline_runs", sref("PipelineRun"))
schemas["ClaimAnswer"] = {
    "description": "The claimed runs, now `running` under the worker's lease; possibly none.",
    **page_answer("pipeline_runs", sref("PipelineRun"), {"type": "null"}),
}

schemas["Status"] = {
    "type": "object",
    "description": "Mage's status keys with what is true of backfilld, and `backfilld_version`.",
    "additionalProperties": False,
    "properties": {
        "backfilld_version": {"type": "string", "examples": ["0.1.0"]},
        "disable_pipeline_edit_access": {"type": "boolean", "const": True},
        "instance_type": {"type": "null"},
        "is_instance_manager": {"type": "boolean", "const": False},
        "max_print_output_lines": {"type": "null"},
        "project_type": {"type": "null"},
        "project_uuid": {"type": "null"},
        "repo_path": {"type": "null"},
        "repo_path_relative": {"type": "null"},
        "repo_path_relative_root": {"type": "null"},
        "repo_path_root": {"type": "null"},
        "require_user_authentication": {
            "type": "boolean",
            "description": "Whether `/api` requests need an API key and an OAuth token (`--require-auth`).",
        },
        "require_user_permissions": {"type": "boolean", "const": False},
        "scheduler_status": {"type": "string", "const": "running"},
    },
}
schemas["Status"]["required"] = sorted(schemas["Status"]["properties"])
schemas["StatusAnswer"] = {
    "type": "object",
    "required": ["statuses", "metadata"],
    "additionalProperties": False,
    "properties": {
        "statuses": {"type": "array", "items": sref("Status"), "minItems": 1, "maxItems": 1},
        "metadata": {"type": "object", "additionalProperties": False, "description": "Always `{}`."},
    },
}

schemas["User"] = {
    "type": "object",
    "description": "The logged-in user in Mage's keys. backfilld has no roles: every user may do everything, "
    "which Mage calls an owner.",
    "additionalProperties": False,
    "properties": {
        "avatar": {"type": "null"},
        "first_name": {"type": "null"},
        "id": {"type": "integer"},
        "last_name": {"type": "null"},
        "owner": {"type": "boolean", "const": True},
        "roles": {"type": "null"},
        "roles_display": {"type": "string", "const": "Owner"},
        "username": {"type": "string"},
    },
}
schemas["User"]["required"] = sorted(schemas["User"]["properties"])
schemas["Session"] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["expires", "token", "user"],
    "properties": {
        "expires": {
            "type": "string",
            "description": "When the session ends, as Mage writes it: the UTC datetime without an offset. A logout "
            "answers the moment it ended.",
            "pattern": r"^[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{6})?$",
            "examples": ["2026-12-28 22:40:25.536914"],
        },
        "token": {
            "type": "string",
            "description": "A JWT (HS256) whose payload is `{\"expires\": <epoch seconds>, \"token\": \"<OAuth "
            "token>\"}`: send the inner token as `OAUTH-TOKEN` (or `Authorization: Bearer`), or the whole JWT as "
            "the `oauth_token` cookie.",
            "pattern": "^[A-Za-z0-9_-]+\\.[A-Za-z0-9_-]+\\.[A-Za-z0-9_-]+$",
        },
        "user": sref("User"),
    },
}
schemas["SessionAnswer"] = one_answer("session", sref("Session"))

# ---- Request bodies ----

BODY_KEY_NOTE = (
    " Other top-level keys are ignored; when the server requires authentication and the API key is in neither "
    "the `X-API-KEY` header nor the `api_key` query parameter, it may come as a top-level string `api_key` here "
    "(in a body of at most 64 KiB)."
)

INT_STRING_POSITIVE = "^0*[1-9][0-9]{0,17}$"


def positive_int_or_digits(maximum, digits_pattern, description):
    return {
        "description": description,
        "anyOf": [
            {"type": "integer", "minimum": 1, "maximum": maximum},
            {"type": "string", "pattern": digits_pattern},
            {"type": "null"},
        ],
    }


schemas["BackfillSettings"] = {
    "type": ["object", "null"],
    "description": "Kept as given (other keys are the client's own); an update's `settings` replaces the whole "
    "object. " + OBJECT_BOUND + " backfilld reads these keys, each checked when a create or an update sends "
    "`settings`:",
    "properties": {
        "pipeline_run_limit": positive_int_or_digits(
            I64_MAX,
            INT_STRING_POSITIVE,
            "At most this many of the backfill's runs `running` at once; a positive whole number, or a string of "
            "its digits (as Mage's edit form sends it); null for no limit.",
        ),
        "max_attempts": positive_int_or_digits(
            100,
            "^0*(?:100|[1-9][0-9]?)$",
            "How many runs a date may have before a lost lease leaves it failed: 1 to 100 (default 3), or a "
            "string of its digits.",
        ),
        "run_backwards": {
            "type": ["boolean", "null"],
            "description": "Hand out the newest dates first (default false).",
        },
        "reprocess_behavior": {
            "type": ["string", "null"],
            "enum": ["none", "failed", "completed", None],
            "description": "Which finished dates a run again repeats besides the cancelled ones: `none`, `failed` "
            "(the default: failed and cancelled dates) or `completed` (every finished date, as Mage does).",
        },
        "stop_on_failure": {
            "type": ["boolean", "null"],
            "description": "From the first date that fails for good on, hand out none of the backfill's runs "
            "(`is_halted`) until it is run again or a date is retried (default false: every date runs whatever "
            "happened to the others).",
        },
    },
}

WRITABLE = {
    "block_uuid": {
        "type": ["string", "null"],
        "maxLength": NAME_CHARS,
        "description": "Custom code drives such a backfill: it has no run dates, and backfilld cannot start it. "
        "An empty string is none. At most 255 characters.",
    },
    "start_datetime": {"anyOf": [sref("RequestDateTime"), {"type": "null"}]},
    "end_datetime": {
        "anyOf": [sref("RequestDateTime"), {"type": "null"}],
        "description": "Not before `start_datetime` (400 `record_invalid`).",
    },
    "interval_type": sref("IntervalType"),
    "interval_units": positive_int_or_digits(
        I64_MAX,
        INT_STRING_POSITIVE,
        "At least 1; a JSON integer (`4`, not `4.0`) or a string of its digits.",
    ),
    "variables": {
        "type": ["object", "null"],
        "description": "Given to every run (the run date's own keys win). " + OBJECT_BOUND,
    },
    "settings": sref("BackfillSettings"),
    "is_paused": {
        "type": ["boolean", "null"],
        "description": "Beyond Mage: pause (true) or resume (false) claims of its runs.",
    },
}

NAME_DESC = "Required and not blank; at most 255 characters."
schemas["BackfillCreate"] = {
    "type": "object",
    "description": "The writable keys of a new backfill; any other key (`id`, `status`, `metrics`, timestamps) is "
    "ignored, as in Mage. Dates and interval may be left for later. The four date settings must be complete "
    "(and no `block_uuid` set) to start it.",
    "required": ["name"],
    "properties": {
        "name": {
            "type": "string",
            "minLength": 1,
            "maxLength": NAME_CHARS,
            "pattern": NONBLANK,
            "description": NAME_DESC,
        },
        **WRITABLE,
    },
}
schemas["BackfillUpdate"] = {
    "type": "object",
    "description": "The writable keys to change (the others keep their values), validated together with the "
    "stored ones as a create is. Once the backfill has started, its dates, interval and `block_uuid` cannot "
    "change (409). `status` acts: `initial` starts the backfill (400 when its dates are incomplete, it has a "
    "`block_uuid`, or it has more run dates than `--max-runs`), or, once started, runs it again (409 when no date "
    "would); `cancelled` cancels it and its unfinished runs (409 when it has completed). Other keys are ignored.",
    "properties": {
        "name": {
            "type": "string",
            "minLength": 1,
            "maxLength": NAME_CHARS,
            "pattern": NONBLANK,
            "description": "Not blank (nor null); at most 255 characters.",
        },
        **WRITABLE,
        "status": {
            "type": ["string", "null"],
            "enum": ["initial", "cancelled", None],
            "description": "`initial` starts (or runs again), `cancelled` cancels; any other status is a 400: the "
            "rest follows the runs.",
        },
    },
}
schemas["BackfillCreateRequest"] = {
    "type": "object",
    "description": "`{\"backfill\": {...}}`." + BODY_KEY_NOTE,
    "required": ["backfill"],
    "properties": {"backfill": sref("BackfillCreate")},
    "examples": [
        {
            "backfill": {
                "name": "sparkling glitter",
                "start_datetime": "2023-03-01T00:00:00Z",
                "end_datetime": "2023-03-05T00:00:00Z",
                "interval_type": "hour",
                "interval_units": 4,
                "variables": {"region": "eu"},
            }
        }
    ],
}
schemas["BackfillUpdateRequest"] = {
    "type": "object",
    "description": "`{\"backfill\": {...}}`." + BODY_KEY_NOTE,
    "required": ["backfill"],
    "properties": {"backfill": sref("BackfillUpdate")},
    "examples": [{"backfill": {"name": "sparkling glitter, EU only"}}, {"backfill": {"is_paused": True}}],
}

WORKER_NAME = {"type": "string", "minLength": 1, "maxLength": 200, "pattern": NONBLANK}

schemas["ClaimRequest"] = {
    "type": "object",
    "description": "Every key is checked and any other key is refused (400 naming it), so that a misspelt "
    "`lease_seconds` is not quietly 60. Numbers must be JSON numbers (not strings). Note: a top-level `api_key` "
    "is not among the keys, so a claim carries the API key in the header or the query.",
    "required": ["worker"],
    "additionalProperties": False,
    "properties": {
        "worker": {**WORKER_NAME, "description": "The claiming worker's name: not blank, at most 200 characters."},
        "limit": {
            "type": ["integer", "null"],
            "minimum": 1,
            "maximum": 1000,
            "description": "The most runs to take (default 1); fewer when they would take the answer past about "
            "8 MiB (at least one).",
        },
        "lease_seconds": {
            "type": ["integer", "null"],
            "minimum": 5,
            "maximum": 86400,
            "description": "The lease each run is held under, renewed by each heartbeat (default 60). The floor is "
            "5 unless the server runs with a lower `--min-lease-seconds` (tests and demos).",
        },
        "pipeline_uuid": {
            "type": ["string", "null"],
            "pattern": NONBLANK,
            "description": "Only runs of this pipeline (not blank).",
        },
        "backfill_id": {
            "type": ["integer", "null"],
            "minimum": 1,
            "maximum": I64_MAX,
            "description": "Only runs of this backfill: an unknown id (or one of another `pipeline_uuid`) is a 404; "
            "a paused, finished or full one gives an empty answer.",
        },
        "executor_type": {
            "type": ["string", "null"],
            "maxLength": 64,
            "pattern": NONBLANK,
            "description": "What will run the claimed runs, stored as their `executor_type` (not blank, at most 64 "
            "characters); none leaves it null.",
        },
    },
    "examples": [{"worker": "w1", "limit": 5, "lease_seconds": 30}],
}

schemas["RunReport"] = {
    "type": "object",
    "description": "A status set by hand (no `worker`: taken whatever the lease, which it ends), or a worker's "
    "heartbeat (`running`, renewing its lease) or report (`completed`, `failed`), which needs the worker to hold "
    "the run's lease (else 409, the message saying why). `running` sets `started_at`; `completed` and `failed` "
    "set `completed_at`; no run goes back to `initial`, and a finished run cannot go back to `running` (409). "
    "Other keys are ignored.",
    "required": ["status"],
    "properties": {
        "status": sref("RunStatus"),
        "worker": {
            "anyOf": [WORKER_NAME, {"type": "null"}],
            "description": "The reporting worker, which must hold the run's lease; not blank, at most 200 characters.",
        },
        "metrics": {"type": ["object", "null"], "description": "Stored on the run when given. " + OBJECT_BOUND},
        "log": {
            "type": ["object", "null"],
            "description": "With `worker`: the last chunk of the run's log, appended before the report in the same "
            "transaction, as `POST /api/pipeline_runs/{id}/logs` would (`offset` where it starts in the run's output, "
            "`data` its bytes in standard base64; a chunk sent again is stored once). Ignored without `worker`.",
            "required": ["offset", "data"],
            "properties": {
                "offset": {"type": "integer", "minimum": 0, "maximum": I64_MAX},
                "data": {"type": "string", "contentEncoding": "base64"},
            },
        },
    },
    "anyOf": [
        {"properties": {"worker": {"type": "null"}}},
        {
            "required": ["worker"],
            "properties": {"worker": {"type": "string"}, "status": {"enum": ["running", "completed", "failed"]}},
        },
    ],
}
schemas["RunReportRequest"] = {
    "type": "object",
    "description": "`{\"pipeline_run\": {...}}`." + BODY_KEY_NOTE,
    "required": ["pipeline_run"],
    "properties": {"pipeline_run": sref("RunReport")},
    "examples": [
        {"pipeline_run": {"status": "running"}},
        {"pipeline_run": {"status": "completed", "worker": "w1", "metrics": {"rows": 1200}}},
    ],
}

schemas["LoginRequest"] = {
    "type": "object",
    "description": "`{\"session\": {...}}`." + BODY_KEY_NOTE,
    "required": ["session"],
    "properties": {
        "session": {
            "type": "object",
            "description": "Who logs in: `email` or `username` (compared without case; `email` wins when both "
            "come), and the password. Other keys are ignored.",
            "required": ["password"],
            "properties": {
                "email": {
                    "type": ["string", "null"],
                    "pattern": NONBLANK,
                    "maxLength": 63,
                    "description": "At most 254 bytes of UTF-8 (the schema's 63 characters are the most that "
                    "always fit; a longer one may still be accepted).",
                },
                "username": {
                    "type": ["string", "null"],
                    "pattern": NONBLANK,
                    "maxLength": 63,
                    "description": "At most 254 bytes of UTF-8, as `email`.",
                },
                "password": {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": 256,
                    "description": "Not empty; at most 1024 bytes of UTF-8 (the schema's 256 characters are the "
                    "most that always fit; a longer one may still be accepted).",
                },
            },
            "anyOf": [
                {"required": ["email"], "properties": {"email": {"type": "string"}}},
                {"required": ["username"], "properties": {"username": {"type": "string"}}},
            ],
        },
    },
    "examples": [{"session": {"email": "ada@example.com", "password": "correct horse battery staple"}}],
}

# ---------------------------------------------------------------------------------------------
# Responses, headers, parameters
# ---------------------------------------------------------------------------------------------

headers = {
    "ETag": {
        "description": "Where what this answer shows stands, in this start of the server: a backfill's record, its "
        "runs' pages (`backfill_id`) and a run's record follow that backfill's writes alone, a run's log that log "
        "and its run's status, other answers every write. Send it back as `If-None-Match` to get a 304 while that "
        "has not changed. No tag from before a restart matches after it.",
        "schema": {"type": "string", "pattern": '^W/"[0-9a-f]{16}-[0-9a-z.]+"$'},
    },
    "CacheControl": {"description": "Always `no-cache`.", "schema": {"type": "string", "const": "no-cache"}},
    "RetryAfter": {
        "description": "Seconds to wait before trying again.",
        "required": True,
        "schema": {"type": "integer", "minimum": 0},
    },
    "AssetETag": {
        "description": "A strong tag of the asset's content.",
        "required": True,
        "schema": {"type": "string", "pattern": '^"[0-9a-f]{32}"$'},
    },
    "ContentSecurityPolicy": {
        "description": "The page may load and fetch nothing from another origin.",
        "required": True,
        "schema": {"type": "string"},
    },
    "XContentTypeOptions": {"required": True, "schema": {"type": "string", "const": "nosniff"}},
    "ReferrerPolicy": {"required": True, "schema": {"type": "string", "const": "no-referrer"}},
}


def hdr(name):
    return ref("headers", name)


def json_content(schema):
    return {"application/json": {"schema": schema}}


responses = {}


def err_response(name, code, types, description, extra_headers=None):
    schemas[f"Error{name}"] = error_variant(code, types, description)
    r = {"description": description, "content": json_content(sref(f"Error{name}"))}
    if extra_headers:
        r["headers"] = extra_headers
    responses[name] = r


err_response(
    "BadRequest",
    400,
    ["record_invalid", "api_resource_error"],
    "Refused: `record_invalid` for a bad field (`errors` names it: `<field>: <why>`), `api_resource_error` for a "
    "malformed query parameter, path id or body (the message names it).",
)
err_response(
    "Unauthorized",
    401,
    ["invalid_api_key", "invalid_oauth_token", "expired_oauth_token"],
    "Authentication is required and failed: the API key is missing or unknown (`invalid_api_key`), or the OAuth "
    "token is unknown (`invalid_oauth_token`, also a cookie JWT that fails its signature check) or has expired "
    "(`expired_oauth_token`).",
)
err_response(
    "Forbidden",
    403,
    ["unauthorized_access"],
    "Authentication is required and the request presents no OAuth token.",
)
err_response("NotFound", 404, ["record_not_found"], "No such record (`record_not_found`).")
err_response(
    "Conflict",
    409,
    ["record_conflict"],
    "The record's state forbids the change (`record_conflict`); the message says why.",
)
err_response(
    "RequestTimeout",
    408,
    ["request_timeout"],
    "The request body did not arrive within `--body-timeout` (5 s) of the headers; the connection is closed.",
)
err_response(
    "PayloadTooLarge",
    413,
    ["payload_too_large"],
    "The request body is over 1 MiB; the connection is closed.",
)
err_response(
    "InternalError",
    500,
    ["internal_error"],
    "An unexpected failure; the cause goes only to the server's log. Nothing was written.",
)
err_response(
    "ServiceUnavailable",
    503,
    ["service_unavailable"],
    "The server cannot take the request now: it holds as many request bodies as it will at once (16 MiB), its "
    "queue of slow reads (deep `_offset` pages), of writes or of password checks is full, or its data file is "
    "gone (writes only). Nothing was written.",
    {"Retry-After": hdr("RetryAfter")},
)
err_response(
    "LoginUnauthorized",
    401,
    ["invalid_credentials", "invalid_api_key"],
    "The email (or username) and password do not match a user (`invalid_credentials`: one message for both), or "
    "authentication is required and the API key is missing or unknown (`invalid_api_key`).",
)
err_response(
    "TooManyRequests",
    429,
    ["too_many_requests"],
    "Too many failed logins for this email or username, or from this client's address (across the addresses it "
    "tries): after 3 failures each one doubles the wait (1 s, 2 s, ... at most 60 s) before the next try is checked; "
    "the message says which.",
    {"Retry-After": {**headers["RetryAfter"], "schema": {"type": "integer", "minimum": 1}}},
)

responses["NotModified"] = {
    "description": "Not modified: `If-None-Match` names the current `ETag`, so nothing is read and no body is sent.",
    "headers": {"ETag": {**headers["ETag"], "required": True}, "Cache-Control": hdr("CacheControl")},
}

parameters = {
    "BackfillId": {
        "name": "id",
        "in": "path",
        "required": True,
        "description": "A backfill id: a whole number (anything else is a 400); an id no backfill has is a 404.",
        "schema": {"type": "integer", "format": "int64", "minimum": 1, "maximum": I64_MAX},
        "example": 1,
    },
    "PipelineRunId": {
        "name": "id",
        "in": "path",
        "required": True,
        "description": "A pipeline run id: a whole number (anything else is a 400); an id no run has is a 404.",
        "schema": {"type": "integer", "format": "int64", "minimum": 1, "maximum": I64_MAX},
        "example": 1,
    },
    "PipelineUuidPath": {
        "name": "pipeline_uuid",
        "in": "path",
        "required": True,
        "description": "A pipeline's uuid. backfilld keeps no pipelines: any value is accepted.",
        "schema": {"type": "string", "minLength": 1},
        "example": "example_pipeline",
    },
    "PipelineUuidPathNew": {
        "name": "pipeline_uuid",
        "in": "path",
        "required": True,
        "description": "The new backfill's pipeline: any non-blank value of at most 255 characters (backfilld "
        "keeps no pipelines); a longer one is a 400.",
        "schema": {"type": "string", "minLength": 1, "maxLength": NAME_CHARS, "pattern": NONBLANK},
        "example": "example_pipeline",
    },
    "Limit": {
        "name": "_limit",
        "in": "query",
        "description": "Page size: a whole number from 0 to 1000 (default 40); anything else is a 400. `_limit=0` "
        "gives an empty page with the true count and `next`.",
        "schema": {"type": "integer", "minimum": 0, "maximum": 1000, "default": 40},
    },
    "Offset": {
        "name": "_offset",
        "in": "query",
        "description": "Records to skip (default 0): a whole number; anything else is a 400. Pages from offset "
        "10,000 on are read by a single slow-read thread (503 when its queue is full): page with `_cursor` "
        "instead. Cannot be combined with a non-empty `_cursor` unless 0 (400).",
        "schema": {"type": "integer", "minimum": 0, "maximum": I64_MAX, "default": 0},
    },
    "BackfillCursor": {
        "name": "_cursor",
        "in": "query",
        "description": "Beyond Mage: the `metadata.cursor` of the previous page, which continues after its last "
        "row at the cost of the first page. Opaque: pass it back as given; a value this server did not give is a "
        "400, and so is combining it with a non-zero `_offset`. Empty is none.",
        "schema": {"type": "string", "pattern": "^(?:1\\.[0-9a-f]{1,14}\\.[0-9a-f]{1,16})?$"},
    },
    "RunCursor": {
        "name": "_cursor",
        "in": "query",
        "description": "Beyond Mage: the `metadata.cursor` of the previous page of runs. Opaque: pass it back as "
        "given; a value this server did not give (a backfill listing's included) is a 400, and so is combining it "
        "with a non-zero `_offset`. Empty is none.",
        "schema": {"type": "string", "pattern": "^(?:r1\\.[0-9a-f]{1,15})?$"},
    },
    "PipelineUuidFilter": {
        "name": "pipeline_uuid",
        "in": "query",
        "description": "Only this pipeline's records; empty filters nothing.",
        "schema": {"type": "string"},
    },
    "IncludeRunCount": {
        "name": "include_run_count",
        "in": "query",
        "description": "A flag: `true`/`1`/`yes`/`on` or `false`/`0`/`no`/`off`/empty, any case (anything else is a "
        "400). True adds `total_run_count` and `run_status_counts` to each backfill whose four date settings are "
        "all set.",
        "schema": {"type": "string", "pattern": FLAG, "examples": ["true"]},
    },
    "IncludePreviewRuns": {
        "name": "include_preview_runs",
        "in": "query",
        "description": "A flag, as `include_run_count`. True adds `pipeline_run_dates` (exactly `_limit` run dates "
        "from `_offset`) and the two count keys.",
        "schema": {"type": "string", "pattern": FLAG, "examples": ["true"]},
    },
    "PreviewLimit": {
        "name": "_limit",
        "in": "query",
        "description": "With `include_preview_runs`: how many run dates (0 to 1000, default 40; anything else is a "
        "400). Read only with `include_preview_runs`.",
        "schema": {"type": "integer", "minimum": 0, "maximum": 1000, "default": 40},
    },
    "PreviewOffset": {
        "name": "_offset",
        "in": "query",
        "description": "With `include_preview_runs`: the first run date's index (default 0; anything else than a "
        "whole number is a 400). Read only with `include_preview_runs`.",
        "schema": {"type": "integer", "minimum": 0, "maximum": I64_MAX, "default": 0},
    },
    "BackfillIdFilter": {
        "name": "backfill_id",
        "in": "query",
        "description": "Only this backfill's runs: a whole number (anything else is a 400; ids are positive, so "
        "others match nothing); empty filters nothing.",
        "schema": {
            "anyOf": [
                {"type": "integer", "format": "int64", "minimum": I64_MIN, "maximum": I64_MAX},
                {"type": "string", "const": ""},
            ]
        },
    },
    "RunStatusFilter": {
        "name": "status",
        "in": "query",
        "description": "Only runs in this status (exact, lower case; anything else is a 400); empty filters nothing. `last_run_failed` (Mage's \"Last run failed\" filter) lists the runs that failed and are the newest run of their date; it needs a `backfill_id` (without one, a 400), and it is counted and paged as the other filters.",
        "schema": {"type": "string", "enum": RUN_STATUSES + ["last_run_failed", ""]},
    },
    "ExecutionDateFrom": {
        "name": "execution_date_from",
        "in": "query",
        "description": "Beyond Mage: only runs whose `execution_date` is this datetime or later (any form the "
        "API reads, e.g. `2023-03-01 04:00:00+00:00`, as runs write it). Needs a `backfill_id` (without one, a 400), "
        "and is counted over the range's runs. With `execution_date_to`, a range of the backfill's dates, as a cell "
        "of its date map gives it.",
        "schema": {"type": "string", "examples": ["2023-03-01 04:00:00+00:00"]},
    },
    "ExecutionDateTo": {
        "name": "execution_date_to",
        "in": "query",
        "description": "Beyond Mage: only runs whose `execution_date` is this datetime or earlier; as "
        "`execution_date_from`, which must not be later (else a 400).",
        "schema": {"type": "string", "examples": ["2023-03-01 20:00:00+00:00"]},
    },
    "Cells": {
        "name": "cells",
        "in": "query",
        "description": "The most cells the map may have: a whole number from 1 to 5000 (default 1000); anything "
        "else is a 400.",
        "schema": {"type": "integer", "minimum": 1, "maximum": 5000, "default": 1000},
    },
    "BackfillStatusFilter": {
        "name": "status",
        "in": "query",
        "description": "Beyond Mage: only backfills in this status, or in any of several separated by commas "
        "(`failed,running`; spaces around each and empty ones are ignored); exact, lower case; anything else is a "
        "400. Empty filters nothing. Counted in `metadata.count` from counts kept by every write.",
        "schema": {"type": "string", "pattern": "^[a-z, ]*$", "examples": ["running", "failed,running"]},
    },
    "NamePrefix": {
        "name": "name_prefix",
        "in": "query",
        "description": "Beyond Mage: only backfills whose name starts with this, without case for the ASCII "
        "letters (`alpha` matches `Alpha 1`; other letters match as written). Empty filters nothing. Its count is "
        "a walk of the matching names, as long as they are many.",
        "schema": {"type": "string"},
    },
    "IfNoneMatch": {
        "name": "If-None-Match",
        "in": "header",
        "description": "An `ETag` this server gave: while it is still current the answer is a 304 without a body.",
        "schema": {"type": "string"},
    },
    "SessionId": {
        "name": "id",
        "in": "path",
        "required": True,
        "description": "Any value (Mage's clients send 1): the session ended is the one whose token the request "
        "presents.",
        "schema": {"type": "string", "minLength": 1},
        "example": "1",
    },
}


def p(name):
    return ref("parameters", name)


def r(name):
    return ref("responses", name)


# ---------------------------------------------------------------------------------------------
# Security
# ---------------------------------------------------------------------------------------------

security_schemes = {
    "ApiKeyHeader": {
        "type": "apiKey",
        "in": "header",
        "name": "X-API-KEY",
        "description": "An API key given to the server with `--api-key`. (It may also come as a top-level "
        "`api_key` in a POST or PUT body of at most 64 KiB, except a claim's.)",
    },
    "ApiKeyQuery": {
        "type": "apiKey",
        "in": "query",
        "name": "api_key",
        "description": "An API key given to the server with `--api-key`, as a query parameter (the access log "
        "redacts it).",
    },
    "OAuthTokenHeader": {
        "type": "apiKey",
        "in": "header",
        "name": "OAUTH-TOKEN",
        "description": "An OAuth token: one made with `backfilld token create`, or a login's (the `token` inside "
        "the JWT that `POST /api/sessions` answers).",
    },
    "BearerToken": {
        "type": "http",
        "scheme": "bearer",
        "description": "The same OAuth token as `Authorization: Bearer <token>`.",
    },
    "OAuthTokenCookie": {
        "type": "apiKey",
        "in": "cookie",
        "name": "oauth_token",
        "description": "The JWT a login answers, whole (checked against the data file's secret; one that fails the "
        "check is a 401), or a bare OAuth token.",
    },
}
KEY_SCHEMES = ["ApiKeyHeader", "ApiKeyQuery"]
TOKEN_SCHEMES = ["OAuthTokenHeader", "BearerToken", "OAuthTokenCookie"]
KEY_AND_TOKEN = [{k: [], t: []} for k in KEY_SCHEMES for t in TOKEN_SCHEMES]
KEY_ONLY = [{k: []} for k in KEY_SCHEMES]

AUTH_NOTE = (
    "\n\nAuthentication: when the server requires it (`--require-auth`, implied by a non-loopback `--bind`), an "
    "API key and an OAuth token; otherwise none is needed and any sent are ignored."
)

# ---------------------------------------------------------------------------------------------
# Operations
# ---------------------------------------------------------------------------------------------

# The errors every operation inside /api can answer: a body is read (whole, bounded) before any
# handler, for every method.
API_COMMON = {
    "400": r("BadRequest"),
    "408": r("RequestTimeout"),
    "413": r("PayloadTooLarge"),
    "500": r("InternalError"),
    "503": r("ServiceUnavailable"),
}
AUTH_ERRORS = {"401": r("Unauthorized"), "403": r("Forbidden")}


def ok(description, schema, links=None, etag=False):
    resp = {"description": description, "content": json_content(sref(schema))}
    if etag:
        resp["headers"] = {"ETag": hdr("ETag"), "Cache-Control": hdr("CacheControl")}
    if links:
        resp["links"] = links
    return resp


def api_responses(ok_response, *, read=False, not_found=False, conflict=False, auth=True, extra=None):
    out = {"200": ok_response}
    if read:
        out["304"] = r("NotModified")
    out.update(API_COMMON)
    if auth:
        out.update(AUTH_ERRORS)
    if not_found:
        out["404"] = r("NotFound")
    if conflict:
        out["409"] = r("Conflict")
    if extra:
        out.update(extra)
    return dict(sorted(out.items()))


def head_of(get_op, operation_id, summary):
    """The HEAD twin of a GET: the same status and headers, no body."""
    op = copy.deepcopy(get_op)
    op["operationId"] = operation_id
    op["summary"] = summary
    op["description"] = (
        "The same as the GET (the same status and headers, including `ETag`, `Content-Type` and `Content-Length`), "
        "without a body."
    )
    for code, resp in list(op["responses"].items()):
        if "$ref" in resp:
            target = resp["$ref"].rsplit("/", 1)[1]
            if "content" in responses[target]:
                head_name = "Head" + target
                if head_name not in responses:
                    head = copy.deepcopy(responses[target])
                    head.pop("content")
                    head["description"] += " (HEAD: no body.)"
                    responses[head_name] = head
                op["responses"][code] = r(head_name)
            continue
        resp = copy.deepcopy(resp)
        resp.pop("content", None)
        resp.pop("links", None)
        op["responses"][code] = resp
    return op


def link(operation_id, params, description):
    return {"operationId": operation_id, "parameters": params, "description": description}


paths = {}

# ---- status ----
status_get = {
    "tags": ["status"],
    "operationId": "getStatus",
    "summary": "Health check in Mage's shape",
    "description": "Outside authentication, without touching the database: the version, whether `/api` requests "
    "need credentials, and Mage's status keys with what is true of backfilld.",
    "security": [],
    "responses": {"200": ok("The server's status.", "StatusAnswer")},
}
paths["/api/status"] = {
    "get": status_get,
    "head": head_of(status_get, "headStatus", "Health check, headers only"),
}
statuses_get = copy.deepcopy(status_get)
statuses_get["operationId"] = "getStatuses"
statuses_get["summary"] = "Health check (Mage's other spelling)"
statuses_get["description"] = "The same answer as `GET /api/status`."
paths["/api/statuses"] = {
    "get": statuses_get,
    "head": head_of(statuses_get, "headStatuses", "Health check (Mage's other spelling), headers only"),
}

schemas["ReadyAnswer"] = {
    "type": "object",
    "description": "The server can serve and write: a write transaction on its data file just went through.",
    "required": ["ready"],
    "properties": {"ready": {"const": True}},
    "additionalProperties": False,
}
ready_get = {
    "tags": ["status"],
    "operationId": "getReady",
    "summary": "Readiness: can the server serve and write?",
    "description": "Outside authentication, for orchestrators. Unlike `/api/status` (liveness, no database), this "
    "takes the data file's write lock through the server's writer, as every write does: 200 when that went through, "
    "503 when the server cannot write now (its data file was deleted or replaced, or its writes are queued full).",
    "security": [],
    "responses": {
        "200": ok("Ready.", "ReadyAnswer"),
        "500": r("InternalError"),
        "503": r("ServiceUnavailable"),
    },
}
paths["/api/ready"] = {
    "get": ready_get,
    "head": head_of(ready_get, "headReady", "Readiness, headers only"),
}

# ---- dashboard ----
headers["AssetCacheControl"] = {**headers["CacheControl"], "required": True}
ASSET_HEADERS = {
    "ETag": hdr("AssetETag"),
    "Cache-Control": hdr("AssetCacheControl"),
    "Content-Security-Policy": hdr("ContentSecurityPolicy"),
    "X-Content-Type-Options": hdr("XContentTypeOptions"),
    "Referrer-Policy": hdr("ReferrerPolicy"),
}


def asset(path, op_id, head_id, summary, media_type):
    get_op = {
        "tags": ["dashboard"],
        "operationId": op_id,
        "summary": summary,
        "description": "Compiled into the binary; outside authentication (the page asks for credentials when the "
        "API wants them). The same headers as the page's other assets and `GET /api/openapi.json`. A request whose `If-None-Match` names the asset's `ETag` (or is `*`) gets a 304 without "
        "a body.",
        "security": [],
        "parameters": [
            {
                "name": "If-None-Match",
                "in": "header",
                "description": "The asset's `ETag` (or `*`): a 304 while the binary is the same.",
                "schema": {"type": "string"},
            }
        ],
        "responses": {
            "200": {
                "description": summary + ".",
                "headers": ASSET_HEADERS,
                "content": {media_type: {"schema": {"type": "string"}}},
            },
            "304": {"description": "Not modified.", "headers": ASSET_HEADERS},
        },
    }
    paths[path] = {"get": get_op, "head": head_of(get_op, head_id, summary + ", headers only")}


openapi_get = {
    "tags": ["status"],
    "operationId": "getOpenApi",
    "summary": "This OpenAPI document",
    "description": "Outside authentication, served like the dashboard's assets: a strong `ETag` of the document, "
    "and a 304 without a body when `If-None-Match` names it (or is `*`).",
    "security": [],
    "parameters": [
        {
            "name": "If-None-Match",
            "in": "header",
            "description": "The document's `ETag` (or `*`): a 304 while the binary is the same.",
            "schema": {"type": "string"},
        }
    ],
    "responses": {
        "200": {
            "description": "The OpenAPI 3.1 document of this API.",
            "headers": ASSET_HEADERS,
            "content": json_content({"type": "object"}),
        },
        "304": {"description": "Not modified.", "headers": ASSET_HEADERS},
    },
}
paths["/api/openapi.json"] = {
    "get": openapi_get,
    "head": head_of(openapi_get, "headOpenApi", "This OpenAPI document, headers only"),
}

metrics_get = {
    "tags": ["status"],
    "operationId": "getMetrics",
    "summary": "Prometheus metrics",
    "description": "The OpenMetrics text format: requests by route pattern, method and status and their latency "
    "(`backfilld_http_requests_total`, `backfilld_http_request_duration_seconds`), claims, runs handed out and lease "
    "expiries, backfills and runs by status, and the sizes of the data file and its WAL. Behind the API's "
    "authentication when it is on.",
    "security": KEY_AND_TOKEN,
    "responses": {
        "200": {
            "description": "The metrics.",
            "content": {"application/openmetrics-text; version=1.0.0; charset=utf-8": {"schema": {"type": "string"}}},
        },
        "401": r("Unauthorized"),
        "403": r("Forbidden"),
        "500": r("InternalError"),
        "503": r("ServiceUnavailable"),
    },
}
paths["/metrics"] = {
    "get": metrics_get,
    "head": head_of(metrics_get, "headMetrics", "Prometheus metrics, headers only"),
}

asset("/", "getDashboard", "headDashboard", "The dashboard's page", "text/html")
asset("/assets/app.js", "getDashboardScript", "headDashboardScript", "The dashboard's script", "text/javascript")
asset("/assets/app.css", "getDashboardStyle", "headDashboardStyle", "The dashboard's style sheet", "text/css")

# ---- backfills ----
LINK_GET_BACKFILL_FROM_LIST = {
    "GetFirstBackfill": link(
        "getBackfill", {"id": "$response.body#/backfills/0/id"}, "Read the page's first backfill."
    )
}

list_backfills = {
    "tags": ["backfills"],
    "operationId": "listBackfills",
    "summary": "List backfills",
    "description": "Newest `created_at` first (ties: higher id first); filtered by pipeline, status and name "
    "prefix when given (all of those given)." + AUTH_NOTE,
    "security": KEY_AND_TOKEN,
    "parameters": [
        p("Limit"),
        p("Offset"),
        p("BackfillCursor"),
        p("PipelineUuidFilter"),
        p("BackfillStatusFilter"),
        p("NamePrefix"),
        p("IncludeRunCount"),
        p("IfNoneMatch"),
    ],
    "responses": api_responses(
        ok("A page of backfills.", "BackfillPage", LINK_GET_BACKFILL_FROM_LIST, etag=True), read=True
    ),
}
paths["/api/backfills"] = {
    "get": list_backfills,
    "head": head_of(list_backfills, "headBackfills", "List backfills, headers only"),
}

get_backfill = {
    "tags": ["backfills"],
    "operationId": "getBackfill",
    "summary": "Read a backfill",
    "description": "With its run counts (`include_run_count`) and a preview of its run dates "
    "(`include_preview_runs`, which brings the counts too, as in Mage)." + AUTH_NOTE,
    "security": KEY_AND_TOKEN,
    "parameters": [
        p("BackfillId"),
        p("IncludeRunCount"),
        p("IncludePreviewRuns"),
        p("PreviewLimit"),
        p("PreviewOffset"),
        p("IfNoneMatch"),
    ],
    "responses": api_responses(
        ok(
            "The backfill.",
            "BackfillDetailAnswer",
            {
                "ListItsRuns": link(
                    "listPipelineRuns",
                    {"backfill_id": "$response.body#/backfill/id"},
                    "The backfill's pipeline runs.",
                )
            },
            etag=True,
        ),
        read=True,
        not_found=True,
    ),
}
BACKFILL_ID_LINKS = lambda source: {  # noqa: E731
    "GetBackfill": link("getBackfill", {"id": source}, "Read the backfill."),
    "UpdateBackfill": link("updateBackfill", {"id": source}, "Change, start or cancel the backfill."),
    "DeleteBackfill": link("deleteBackfill", {"id": source}, "Delete the backfill."),
}
update_backfill = {
    "tags": ["backfills"],
    "operationId": "updateBackfill",
    "summary": "Change, start, run again, pause or cancel a backfill",
    "description": "The writable keys present change (validated together with the stored ones); `updated_at` "
    "moves. `\"status\": \"initial\"` starts the backfill: in one transaction an `@once` pipeline schedule "
    "named `Backfill <name>` and one `initial` pipeline run per run date; on a started backfill it runs it again "
    "(a new run for each date whose newest run is cancelled, and by `settings.reprocess_behavior` failed, the "
    "default, or failed and completed; a halted backfill resumes its waiting runs). `\"status\": \"cancelled\"` cancels the backfill and its unfinished runs. `is_paused` pauses or "
    "resumes claims. A failed request writes nothing." + AUTH_NOTE,
    "security": KEY_AND_TOKEN,
    "parameters": [p("BackfillId")],
    "requestBody": {"required": True, "content": json_content(sref("BackfillUpdateRequest"))},
    "responses": api_responses(
        ok(
            "The backfill as changed.",
            "BackfillAnswer",
            {
                "GetBackfill": link("getBackfill", {"id": "$response.body#/backfill/id"}, "Read the backfill."),
                "ListItsRuns": link(
                    "listPipelineRuns",
                    {"backfill_id": "$response.body#/backfill/id"},
                    "The backfill's pipeline runs (a start made them).",
                ),
            },
        ),
        not_found=True,
        conflict=True,
    ),
}
delete_backfill = {
    "tags": ["backfills"],
    "operationId": "deleteBackfill",
    "summary": "Delete a backfill",
    "description": "Answers the deleted record. Its runs stay, with `backfill_id` null, as in Mage." + AUTH_NOTE,
    "security": KEY_AND_TOKEN,
    "parameters": [p("BackfillId")],
    "responses": api_responses(ok("The deleted backfill.", "BackfillAnswer"), not_found=True),
}
paths["/api/backfills/{id}"] = {
    "get": get_backfill,
    "head": head_of(get_backfill, "headBackfill", "Read a backfill, headers only"),
    "put": update_backfill,
    "delete": delete_backfill,
}

get_date_map = {
    "tags": ["backfills"],
    "operationId": "getBackfillDateMap",
    "summary": "A backfill's dates, by the status of each date's newest run",
    "description": "Every date of the backfill's schedule (the dates a start makes runs for and the preview "
    "lists; in date order, whichever way the backfill runs) once, in at most `cells` cells of consecutive dates, "
    "sized as evenly as possible (one date per cell when there are no more dates than cells). Each cell counts "
    "its dates by the status of the date's newest run (the run of the backfill and date with the highest id); "
    "`none` counts the dates without a run. A backfill without a complete schedule, or with a `block_uuid`, has "
    "no dates and no cells. Read from counts kept by every write: the cost does not grow with the runs. It "
    "carries the backfill's own `ETag`, as its record and its runs' pages do." + AUTH_NOTE,
    "security": KEY_AND_TOKEN,
    "parameters": [p("BackfillId"), p("Cells"), p("IfNoneMatch")],
    "responses": api_responses(ok("The backfill's date map.", "DateMapAnswer", etag=True), read=True, not_found=True),
}
paths["/api/backfills/{id}/date_map"] = {
    "get": get_date_map,
    "head": head_of(get_date_map, "headBackfillDateMap", "A backfill's date map, headers only"),
}

list_pipeline_backfills = {
    "tags": ["backfills"],
    "operationId": "listPipelineBackfills",
    "summary": "List one pipeline's backfills",
    "description": "As `GET /api/backfills`, filtered by the path's pipeline (Mage ignores it)." + AUTH_NOTE,
    "security": KEY_AND_TOKEN,
    "parameters": [
        p("PipelineUuidPath"),
        p("Limit"),
        p("Offset"),
        p("BackfillCursor"),
        p("BackfillStatusFilter"),
        p("NamePrefix"),
        p("IncludeRunCount"),
        p("IfNoneMatch"),
    ],
    "responses": api_responses(
        ok("A page of the pipeline's backfills.", "BackfillPage", LINK_GET_BACKFILL_FROM_LIST, etag=True),
        read=True,
        not_found=True,
    ),
}
create_links = BACKFILL_ID_LINKS("$response.body#/backfill/id")
create_links["UpdatePipelineBackfill"] = link(
    "updatePipelineBackfill",
    {"pipeline_uuid": "$request.path.pipeline_uuid", "id": "$response.body#/backfill/id"},
    "Change, start or cancel the backfill through its pipeline.",
)
create_links["ListItsRuns"] = link(
    "listPipelineRuns", {"backfill_id": "$response.body#/backfill/id"}, "The backfill's pipeline runs."
)
create_backfill = {
    "tags": ["backfills"],
    "operationId": "createBackfill",
    "summary": "Create a backfill",
    "description": "Only the writable keys are taken; dates and interval may be left for later. The new backfill "
    "is not started (`status` null)." + AUTH_NOTE,
    "security": KEY_AND_TOKEN,
    "parameters": [p("PipelineUuidPathNew")],
    "requestBody": {"required": True, "content": json_content(sref("BackfillCreateRequest"))},
    "responses": api_responses(ok("The new backfill.", "BackfillAnswer", create_links), not_found=True),
}
paths["/api/pipelines/{pipeline_uuid}/backfills"] = {
    "get": list_pipeline_backfills,
    "head": head_of(list_pipeline_backfills, "headPipelineBackfills", "List one pipeline's backfills, headers only"),
    "post": create_backfill,
}

schemas["BackfillPreview"] = {
    "type": "object",
    "description": "What creating the body's backfill and starting it would make, with nothing written.",
    "required": ["total_run_count", "pipeline_run_dates", "last_pipeline_run_dates"],
    "additionalProperties": False,
    "properties": {
        "total_run_count": {
            "type": "integer",
            "minimum": 0,
            "description": "How many pipeline runs the start would create (at most the server's `--max-runs`).",
        },
        "pipeline_run_dates": {
            "type": "array",
            "items": sref("RunDate"),
            "maxItems": 1000,
            "description": "The run dates from `_offset`, `_limit` of them (fewer at the end), as "
            "`include_preview_runs` gives them.",
        },
        "last_pipeline_run_dates": {
            "type": "array",
            "items": sref("RunDate"),
            "maxItems": 1000,
            "description": "Up to `_limit` of the last run dates, only those after `pipeline_run_dates`: "
            "together the two show every date when there are at most `_offset` + 2 x `_limit`.",
        },
    },
}
schemas["BackfillPreviewAnswer"] = one_answer("backfill_preview", sref("BackfillPreview"))
preview_backfill = {
    "tags": ["backfills"],
    "operationId": "previewBackfill",
    "summary": "Preview a backfill: its run count and dates, nothing written",
    "description": "Takes a create's body and answers what creating it and starting it would make, reading and "
    "writing nothing: the same 400 as the create or the start for the same body (a bad field, a `block_uuid`, a "
    "missing date setting, more run dates than the server's `--max-runs`)." + AUTH_NOTE,
    "security": KEY_AND_TOKEN,
    "parameters": [
        p("PipelineUuidPathNew"),
        {
            "name": "_limit",
            "in": "query",
            "description": "How many dates each list holds at most: a whole number from 0 to 1000 (default 40).",
            "schema": {"type": "integer", "minimum": 0, "maximum": 1000, "default": 40},
        },
        {
            "name": "_offset",
            "in": "query",
            "description": "The first date of `pipeline_run_dates` (default 0).",
            "schema": {"type": "integer", "minimum": 0, "maximum": I64_MAX, "default": 0},
        },
    ],
    "requestBody": {"required": True, "content": json_content(sref("BackfillCreateRequest"))},
    "responses": api_responses(ok("The preview.", "BackfillPreviewAnswer"), not_found=True),
}
paths["/api/pipelines/{pipeline_uuid}/backfills/preview"] = {"post": preview_backfill}

update_pipeline_backfill = copy.deepcopy(update_backfill)
update_pipeline_backfill["operationId"] = "updatePipelineBackfill"
update_pipeline_backfill["summary"] = "Change, start, run again, pause or cancel one of a pipeline's backfills"
update_pipeline_backfill["description"] = (
    "As `PUT /api/backfills/{id}`, for a backfill of this pipeline: another pipeline's backfill is a 404."
    + AUTH_NOTE
)
update_pipeline_backfill["parameters"] = [p("PipelineUuidPath"), p("BackfillId")]
paths["/api/pipelines/{pipeline_uuid}/backfills/{id}"] = {"put": update_pipeline_backfill}

# ---- pipeline runs ----
RUN_LINKS = lambda source: {  # noqa: E731
    "GetPipelineRun": link("getPipelineRun", {"id": source}, "Read the run."),
    "UpdatePipelineRun": link("updatePipelineRun", {"id": source}, "Heartbeat, report or set the run's status."),
    "RetryPipelineRun": link("retryPipelineRun", {"id": source}, "Retry the run's date."),
}

list_runs = {
    "tags": ["pipeline_runs"],
    "operationId": "listPipelineRuns",
    "summary": "List pipeline runs",
    "description": "Newest (highest id) first, paged like the backfills; each combination of filters is counted "
    "from kept counts and listed from an index." + AUTH_NOTE,
    "security": KEY_AND_TOKEN,
    "parameters": [
        p("Limit"),
        p("Offset"),
        p("RunCursor"),
        p("BackfillIdFilter"),
        p("PipelineUuidFilter"),
        p("RunStatusFilter"),
        p("ExecutionDateFrom"),
        p("ExecutionDateTo"),
        p("IfNoneMatch"),
    ],
    "responses": api_responses(
        ok(
            "A page of pipeline runs.",
            "PipelineRunPage",
            {"GetFirstPipelineRun": link("getPipelineRun", {"id": "$response.body#/pipeline_runs/0/id"}, "Read the page's first run.")},
            etag=True,
        ),
        read=True,
    ),
}
paths["/api/pipeline_runs"] = {
    "get": list_runs,
    "head": head_of(list_runs, "headPipelineRuns", "List pipeline runs, headers only"),
}

claim = {
    "tags": ["workers", "pipeline_runs"],
    "operationId": "claimPipelineRuns",
    "summary": "Claim runs for a worker",
    "description": "Up to `limit` waiting (`initial`) runs of backfills that are `initial` or `running` and not "
    "paused, now `running` under the worker's lease of `lease_seconds` (renew it with heartbeats: `PUT "
    "/api/pipeline_runs/{id}` with the worker and `running`). Never more than a backfill's "
    "`settings.pipeline_run_limit` running at once; within a backfill the oldest dates first (newest with "
    "`settings.run_backwards`); across backfills round-robin. Expired leases are acted on first. A claim narrowed "
    "to a backfill that is paused, finished or at its limit answers an empty list." + AUTH_NOTE,
    "security": KEY_AND_TOKEN,
    "requestBody": {"required": True, "content": json_content(sref("ClaimRequest"))},
    "responses": api_responses(
        ok("The claimed runs.", "ClaimAnswer", RUN_LINKS("$response.body#/pipeline_runs/0/id")),
        not_found=True,
        conflict=True,
    ),
}
paths["/api/pipeline_runs/claim"] = {"post": claim}

get_run = {
    "tags": ["pipeline_runs"],
    "operationId": "getPipelineRun",
    "summary": "Read a pipeline run",
    "description": "With its metrics (a failed run's error and output tail) and its variables." + AUTH_NOTE,
    "security": KEY_AND_TOKEN,
    "parameters": [p("PipelineRunId"), p("IfNoneMatch")],
    "responses": api_responses(ok("The pipeline run.", "PipelineRunAnswer", etag=True), read=True, not_found=True),
}
update_run = {
    "tags": ["pipeline_runs", "workers"],
    "operationId": "updatePipelineRun",
    "summary": "Set a run's status, or a worker's heartbeat or report",
    "description": "Without `worker`, a status set by hand, as Mage clients do. With `worker`, a heartbeat "
    "(`running`: the lease runs on for the claim's `lease_seconds`) or a report (`completed`, `failed`, with "
    "`metrics` if you like) from the lease's holder; the holder repeating its own final report gets 200 and "
    "nothing changes. A worker that does not hold the lease gets a 409 saying why (the run was cancelled, the "
    "lease expired, another worker holds it, or it was never claimed). The run's backfill then follows Mage's "
    "scheduler over the newest run of each date." + AUTH_NOTE,
    "security": KEY_AND_TOKEN,
    "parameters": [p("PipelineRunId")],
    "requestBody": {"required": True, "content": json_content(sref("RunReportRequest"))},
    "responses": api_responses(
        ok(
            "The run as changed.",
            "PipelineRunAnswer",
            {"GetPipelineRun": link("getPipelineRun", {"id": "$response.body#/pipeline_run/id"}, "Read the run.")},
        ),
        not_found=True,
        conflict=True,
    ),
}
paths["/api/pipeline_runs/{id}"] = {
    "get": get_run,
    "head": head_of(get_run, "headPipelineRun", "Read a pipeline run, headers only"),
    "put": update_run,
}

retry = {
    "tags": ["pipeline_runs"],
    "operationId": "retryPipelineRun",
    "summary": "Retry a run's date",
    "description": "On the newest run of its date, when that run is `failed`, `cancelled` or `completed`: a new "
    "`initial` run of the date (the next `attempt`, the same variables), which it answers; the backfill is no "
    "longer halted, and its status follows its dates: `running`, or still `failed` while another date is. Otherwise a 409 (a run waiting or running, not its date's newest, or whose "
    "backfill was deleted). No body is read (when the server requires authentication, a top-level `api_key` in a "
    "JSON body is still accepted as the key)." + AUTH_NOTE,
    "security": KEY_AND_TOKEN,
    "parameters": [p("PipelineRunId")],
    "responses": api_responses(
        ok(
            "The new run.",
            "PipelineRunAnswer",
            {
                "GetPipelineRun": link("getPipelineRun", {"id": "$response.body#/pipeline_run/id"}, "Read the new run."),
                "UpdatePipelineRun": link(
                    "updatePipelineRun", {"id": "$response.body#/pipeline_run/id"}, "Set the new run's status."
                ),
            },
        ),
        not_found=True,
        conflict=True,
    ),
}
paths["/api/pipeline_runs/{id}/retry"] = {"post": retry}

# ---- a run's log ----
headers["LogReceived"] = {
    "description": "Bytes of the run's output received in all: the answer's last byte is the output's byte just "
    "before this position. A follower asks next with `after` set to it.",
    "required": True,
    "schema": {"type": "integer", "minimum": 0},
}
headers["LogCut"] = {
    "description": "Bytes of the output cut from the middle of the log (0 while it is at most 1 MiB).",
    "required": True,
    "schema": {"type": "integer", "minimum": 0},
}
headers["RunFinished"] = {
    "description": "Whether the run has finished (completed, failed or cancelled): its log is then whole, and a "
    "follower stops.",
    "required": True,
    "schema": {"type": "string", "enum": ["true", "false"]},
}
LOG_HEADERS = {
    "backfilld-log-received": hdr("LogReceived"),
    "backfilld-log-cut": hdr("LogCut"),
    "backfilld-run-finished": hdr("RunFinished"),
}
LOG_TEXT = {"text/plain; charset=utf-8": {"schema": {"type": "string"}}}
schemas["PipelineRunLog"] = {
    "type": "object",
    "description": "A run's log after an append.",
    "required": ["pipeline_run_id", "received", "cut", "size"],
    "additionalProperties": False,
    "properties": {
        "pipeline_run_id": {"type": "integer", "format": "int64"},
        "received": {
            "type": "integer",
            "minimum": 0,
            "description": "Bytes of the output received in all: where the next chunk starts.",
        },
        "cut": {"type": "integer", "minimum": 0, "description": "Bytes cut from the log's middle."},
        "size": {"type": "integer", "minimum": 0, "description": "The log's length as stored (and read)."},
    },
}
schemas["PipelineRunLogAnswer"] = one_answer("pipeline_run_log", sref("PipelineRunLog"))
get_log = {
    "tags": ["pipeline_runs", "workers"],
    "operationId": "getPipelineRunLog",
    "summary": "Read a run's log",
    "description": "The output its worker sent (standard output and error as one stream), as stored: the bytes as "
    "they came, not re-encoded. At most 1 MiB of output is kept whole; of a longer one the first 512 KiB and at "
    "least the last 512 KiB, with a line between them saying how many bytes were cut. A run without a log answers "
    "an empty body.\n\nFrom a position in the log as stored: `offset`, or `Range: bytes=N-` (also `bytes=N-M` and "
    "`bytes=-N`, the last N), answered 206; or, for a follower, `after`: the output after its first N bytes, which "
    "is where a follower that has read `backfilld-log-received` bytes goes on, even once the middle has been cut "
    "meanwhile (the marker line then comes first). A follower stops once `backfilld-run-finished` is `true`."
    + AUTH_NOTE,
    "security": KEY_AND_TOKEN,
    "parameters": [
        p("PipelineRunId"),
        {
            "name": "offset",
            "in": "query",
            "description": "Start at this position of the log as stored (past its end: an empty body).",
            "schema": {"type": "integer", "minimum": 0, "maximum": I64_MAX},
        },
        {
            "name": "after",
            "in": "query",
            "description": "Start after the first N bytes of the run's output (not with `offset` or `Range`).",
            "schema": {"type": "integer", "minimum": 0, "maximum": I64_MAX},
        },
        {
            "name": "Range",
            "in": "header",
            "description": "`bytes=N-`, `bytes=N-M` or `bytes=-N` of the log as stored: a 206 (a range past the end: "
            "416). Other ranges are ignored.",
            "schema": {"type": "string"},
        },
        p("IfNoneMatch"),
    ],
    "responses": api_responses(
        {
            "description": "The log from where it was asked, to its end.",
            "headers": {"ETag": hdr("ETag"), "Cache-Control": hdr("CacheControl"), **LOG_HEADERS},
            "content": LOG_TEXT,
        },
        read=True,
        not_found=True,
        extra={
            "206": {
                "description": "The range asked for.",
                "headers": {
                    "Content-Range": {"required": True, "schema": {"type": "string"}},
                    **LOG_HEADERS,
                },
                "content": LOG_TEXT,
            },
            "416": {
                "description": "The range starts past the log's end (`Content-Range: bytes */LENGTH`).",
                "headers": {"Content-Range": {"required": True, "schema": {"type": "string"}}},
                "content": LOG_TEXT,
            },
        },
    ),
}
append_log = {
    "tags": ["workers"],
    "operationId": "appendPipelineRunLog",
    "summary": "Append to a run's log (its worker)",
    "description": "A chunk of the run's output, the body's raw bytes (any content type, at most 1 MiB), by the "
    "worker holding the run's live lease (another gets the 409 a heartbeat would). `offset` is where the chunk "
    "starts in the run's whole output: a chunk sent again (a retry after a lost answer) is stored once, only its "
    "part beyond what was received; one starting past it is a 409 naming the offset expected. Past the server's "
    "`--max-log-bytes` in all logs, the logs of the oldest finished runs are deleted (never a running run's)."
    + AUTH_NOTE,
    "security": KEY_AND_TOKEN,
    "parameters": [
        p("PipelineRunId"),
        {
            "name": "worker",
            "in": "query",
            "required": True,
            "description": "The worker holding the run's lease.",
            "schema": {"type": "string", "minLength": 1, "maxLength": 200},
        },
        {
            "name": "offset",
            "in": "query",
            "required": True,
            "description": "Where the chunk starts in the run's whole output.",
            "schema": {"type": "integer", "minimum": 0, "maximum": I64_MAX},
        },
    ],
    "requestBody": {
        "required": False,
        "content": {
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
            "text/plain": {"schema": {"type": "string"}},
        },
    },
    "responses": api_responses(
        ok("What the log holds now.", "PipelineRunLogAnswer"), not_found=True, conflict=True
    ),
}
paths["/api/pipeline_runs/{id}/logs"] = {
    "get": get_log,
    "head": head_of(get_log, "headPipelineRunLog", "Read a run's log, headers only"),
    "post": append_log,
}

# ---- sessions ----
login = {
    "tags": ["sessions"],
    "operationId": "createSession",
    "summary": "Log in",
    "description": "Checks a user's password (users are made with `backfilld user create`) and starts a session "
    "(30 days unless `--session-lifetime` says). A wrong email and a wrong password get the same 401; after 3 "
    "failures for one email or username, each try waits longer (429 with `Retry-After`). Needs the API key when "
    "the server requires authentication, but no token.",
    "security": KEY_ONLY,
    "requestBody": {"required": True, "content": json_content(sref("LoginRequest"))},
    "responses": dict(
        sorted(
            {
                "200": ok("The new session.", "SessionAnswer"),
                **API_COMMON,
                "401": r("LoginUnauthorized"),
                "404": {
                    "description": "The user was deleted while the login was checked (`record_not_found`).",
                    "content": json_content(sref("ErrorNotFound")),
                },
                "429": r("TooManyRequests"),
            }.items()
        )
    ),
}
paths["/api/sessions"] = {"post": login}

logout = {
    "tags": ["sessions"],
    "summary": "Log out",
    "description": "Ends the session whose token the request presents (`OAUTH-TOKEN`, `Authorization: Bearer`, or "
    "the login's JWT as the `oauth_token` cookie), whatever the path's id, and answers it with `expires` now. "
    "A token the request must present even when the server does not require authentication: none is a 403; an "
    "unknown one (or a cookie JWT that fails its check) a 401 `invalid_oauth_token`; a token made with "
    "`backfilld token create` (not a login's) a 400. When the server requires authentication the API key is "
    "needed too. No body is read." + AUTH_NOTE,
    "security": KEY_AND_TOKEN,
    "parameters": [p("SessionId")],
    "responses": api_responses(ok("The ended session.", "SessionAnswer")),
}
logout_put = copy.deepcopy(logout)
logout_put["operationId"] = "updateSession"
logout_put["summary"] = "Log out (Mage's clients' method)"
logout_delete = copy.deepcopy(logout)
logout_delete["operationId"] = "deleteSession"
paths["/api/sessions/{id}"] = {"put": logout_put, "delete": logout_delete}

# ---------------------------------------------------------------------------------------------
# Other sites' pages: every operation can answer 403 `host_not_allowed`, and every one that
# changes state 403 `cross_origin_request` (api::sites), besides any 403 it had.
# ---------------------------------------------------------------------------------------------

FORBIDDEN_WHY = {
    "unauthorized_access": "authentication is required and the request presents no OAuth token "
    "(`unauthorized_access`)",
    "cross_origin_request": "the browser marked the request as coming from a page on another origin, not one of "
    "`--cors-origin`'s (`cross_origin_request`: `Sec-Fetch-Site` other than `same-origin` or `none`, or without it an "
    "`Origin` that does not name the `Host`)",
    "host_not_allowed": "the `Host` is not a name the server answers to (`host_not_allowed`: on a loopback server, "
    "anything but an IP address, `localhost`, `*.localhost` and `--allowed-host` names)",
}
FORBIDDEN_NAMES = {
    ("host_not_allowed",): "HostNotAllowed",
    ("cross_origin_request", "host_not_allowed"): "CrossOrigin",
    ("unauthorized_access", "host_not_allowed"): "Forbidden",
    ("unauthorized_access", "cross_origin_request", "host_not_allowed"): "ForbiddenWrite",
}


def forbidden(types):
    """The 403 answering `types` (in FORBIDDEN_WHY's order), registered once."""
    types = tuple(t for t in FORBIDDEN_WHY if t in types)
    name = FORBIDDEN_NAMES[types]
    if name not in responses:
        whys = [FORBIDDEN_WHY[t] for t in types]
        err_response(name, 403, list(types), "Forbidden: " + "; or ".join(whys) + ". The message says what to set.")
    return name


# `Forbidden` (and its HEAD twin) said `unauthorized_access` alone: made again with the rest.
responses.pop("Forbidden")
responses.pop("HeadForbidden", None)
forbidden(["unauthorized_access", "host_not_allowed"])
for path, item in paths.items():
    for method, op in item.items():
        types = {"host_not_allowed"}
        if method not in ("get", "head", "options"):
            types.add("cross_origin_request")
        before = op["responses"].get("403", {}).get("$ref", "").rsplit("/", 1)[-1]
        if before.removeprefix("Head") in ("Forbidden", "ForbiddenWrite"):
            types.add("unauthorized_access")
        elif before:
            raise SystemExit(f"{method} {path}: an unexpected 403 {before}")
        name = forbidden(types)
        if method == "head":
            head_name = "Head" + name
            if head_name not in responses:
                head = copy.deepcopy(responses[name])
                head.pop("content")
                head["description"] += " (HEAD: no body.)"
                responses[head_name] = head
            name = head_name
        op["responses"]["403"] = r(name)
        op["responses"] = dict(sorted(op["responses"].items()))

# ---------------------------------------------------------------------------------------------
# The document
# ---------------------------------------------------------------------------------------------

DESCRIPTION = """\
backfilld serves [Mage](https://www.mage.ai/)'s backfills REST API from an embedded SQLite file: clients written \
for Mage work against it unchanged. Beyond Mage it hands a backfill's pipeline runs to workers under leases \
(claims, heartbeats and reports), pages with cursors, answers conditional reads, and serves a dashboard.

**Wire format.** Bodies are JSON (the `Content-Type` is not checked). Answers are JSON; a single record comes as \
`{"<name>": {...}, "metadata": null}` and a collection as `{"<plural>": [...], "metadata": {"count", "next", \
"cursor"?}}`. Datetimes in answers are UTC as Python writes them (`2023-03-05 00:00:00+00:00`, `.ffffff` only \
when the microseconds are not zero); requests may also send RFC 3339, a naive datetime (UTC) or a bare date. \
Query parameters an operation does not know are ignored.

**Errors.** Every failure answers `{"error": {"code", "type", "message", "errors"}, "status"}` with the HTTP \
status equal to `code` (Mage sends most errors with 200; backfilld does not): 400 `record_invalid` (a bad field; \
`errors` names it) or `api_resource_error` (a malformed query parameter, path id or body), 401 \
`invalid_api_key`/`invalid_oauth_token`/`expired_oauth_token`/`invalid_credentials`, 403 `unauthorized_access`, \
`cross_origin_request` (a state change from a page on another origin) or `host_not_allowed` (a `Host` the server \
does not answer to), \
404 `record_not_found` (also an unknown path), 405 `method_not_allowed` (with `Allow`), 408 `request_timeout`, \
409 `record_conflict`, 413 `payload_too_large` (a body over 1 MiB), 429 `too_many_requests` (with \
`Retry-After`), 500 `internal_error` and 503 `service_unavailable` (with `Retry-After`). A failed request writes \
nothing. Every request body under `/api` is read whole before the handler runs, so any `/api` operation can \
answer 408, 413 or 503 for its body.

**Authentication.** Off by default on a loopback address: no credentials are needed and any sent are ignored. \
With `--require-auth` (or a non-loopback `--bind`) every `/api` request but the status, this document and a login \
needs an API key (`X-API-KEY` header, `api_key` query parameter, or a top-level `api_key` in a POST or PUT body of \
at most 64 KiB) and an OAuth token (`OAUTH-TOKEN` header, `Authorization: Bearer`, or the `oauth_token` cookie): \
one made with `backfilld token create`, or a login's (`POST /api/sessions`). The operations' `security` lists \
what the server asks for when it requires authentication.

**Conditional reads.** Every `GET` (and `HEAD`) under `/api` answers with a weak `ETag` naming where what it shows \
stands (one backfill and its runs, one run's log, or all of the data) and `Cache-Control: no-cache`; a request whose \
`If-None-Match` names the current tag gets a 304 without the read running. The dashboard's assets carry strong `ETag`s of their content.
"""

doc = {
    "openapi": "3.1.0",
    "info": {
        "title": "backfilld",
        "version": "0.1.0",
        "description": DESCRIPTION,
        "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"},
    },
    "servers": [{"url": "/"}],
    "tags": [
        {"name": "backfills", "description": "Backfills: create, list, read, change, start, run again, pause, cancel, delete."},
        {"name": "pipeline_runs", "description": "A backfill's pipeline runs: list, read, set a status, retry a date, read a run's log."},
        {"name": "workers", "description": "Claims, heartbeats and reports: handing runs to workers under leases."},
        {"name": "sessions", "description": "Logging in and out, in Mage's shapes."},
        {"name": "status", "description": "Health check and this document, outside authentication."},
        {"name": "dashboard", "description": "The web page at the server's root and its assets."},
    ],
    "paths": paths,
    "components": {
        "schemas": schemas,
        "responses": responses,
        "parameters": parameters,
        "headers": headers,
        "securitySchemes": security_schemes,
    },
}

if __name__ == "__main__":
    out = sys.argv[1] if len(sys.argv) > 1 else "-"
    text = json.dumps(doc, indent=2, ensure_ascii=True) + "\n"
    if out == "-":
        sys.stdout.write(text)
    else:
        with open(out, "w", encoding="utf-8") as f:
            f.write(text)
