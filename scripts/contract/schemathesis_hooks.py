"""Schemathesis hooks of scripts/contract-check.sh.

Without a valid signature every generated webhook stops at 401, and the
receiver's body handling (encoding, JSON, schema, ids, duplicates, rate
limit) would never be tested. Each request to /webhooks/{source} goes, by
a hash of its body, to one of the sources of scripts/contract/sources.yaml:

- half to `generic`, sent as exact bytes signed with its secret
  (HOOKSTREAM_CONTRACT_SECRET), one in five of those with the generated
  signature instead;
- a quarter to `open`, which is unsigned, so every body reaches the JSON,
  id and duplicate checks;
- a quarter to the signed sources of the other schemes, unsigned: the
  rejections at the signature, and the per-address budget they spend
  (429 address_limited).
"""

import hashlib
import hmac
import json
import os

import schemathesis
from schemathesis.core import NotSet

# Imported now, in the main thread. Schemathesis imports its ASGI transport
# (and with it anyio, whose lazy importer compiles anyio's own source) on
# first use, inside a worker thread; two workers doing that at once failed
# a run with "SystemError: AST constructor recursion depth mismatch"
# (Python 3.11, seen on GET /admin/auth with --workers 2).
import schemathesis.transport.asgi  # noqa: E402,F401

SECRET = os.environ.get("HOOKSTREAM_CONTRACT_SECRET", "").encode()
OTHERS = ["stripe", "github", "shopify", "standard"]


def _raw(body):
    if isinstance(body, (bytes, bytearray)):
        return bytes(body)
    if isinstance(body, str):
        return body.encode("utf-8", "surrogatepass")
    try:
        return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8", "surrogatepass")
    except (TypeError, ValueError):
        return None


def _short_stream(case):
    """GET /admin/audit/stream lasts max_seconds (default 30): every
    generated stream lasts 0.1 s instead, or the run would take hours."""
    if case.query is None:
        case.query = {}
    case.query["max_seconds"] = "0.1"


@schemathesis.hook
def before_call(context, case, kwargs):
    if case.operation.path == "/admin/audit/stream":
        _short_stream(case)
        return
    if not SECRET or case.operation.path != "/webhooks/{source}" or isinstance(case.body, NotSet):
        return
    raw = _raw(case.body)
    if raw is None:
        return
    h = int(hashlib.sha256(raw).hexdigest(), 16)
    slot = h % 8
    if slot >= 6:
        case.path_parameters["source"] = "open"
        return
    if slot >= 4:
        case.path_parameters["source"] = OTHERS[(h // 8) % len(OTHERS)]
        return
    case.path_parameters["source"] = "generic"
    if (h // 8) % 5 == 0:
        return
    kwargs["data"] = raw
    if case.headers is None:
        case.headers = {}
    case.headers["X-Signature"] = hmac.new(SECRET, raw, hashlib.sha256).hexdigest()
