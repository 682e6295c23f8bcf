"""Schemathesis hooks of scripts/contract-check.sh.

Without a valid signature every generated webhook stops at 401, and the
receiver's body handling (encoding, JSON, schema, ids, duplicates, rate
limit) would never be tested. So three requests in four to /webhooks/generic
are sent as exact bytes signed with the generic source's secret
(HOOKSTREAM_CONTRACT_SECRET); the fourth keeps its generated signature, and
tests the rejections before and at the signature.
"""

import hashlib
import hmac
import json
import os

import schemathesis
from schemathesis.core import NotSet

SECRET = os.environ.get("HOOKSTREAM_CONTRACT_SECRET", "").encode()


def _raw(body):
    if isinstance(body, (bytes, bytearray)):
        return bytes(body)
    if isinstance(body, str):
        return body.encode("utf-8", "surrogatepass")
    try:
        return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8", "surrogatepass")
    except (TypeError, ValueError):
        return None


@schemathesis.hook
def before_call(context, case, kwargs):
    if not SECRET or case.operation.path != "/webhooks/{source}":
        return
    if isinstance(case.body, NotSet):
        return
    raw = _raw(case.body)
    if raw is None:
        return
    if int(hashlib.sha256(raw).hexdigest(), 16) % 4 == 0:
        return
    kwargs["data"] = raw
    if case.headers is None:
        case.headers = {}
    case.headers["X-Signature"] = hmac.new(SECRET, raw, hashlib.sha256).hexdigest()
