"""A client-go exec credential plugin for the tests, run as ``python exec_plugin.py``.

Each run appends a line to ``$PLUGIN_STATE/runs``, creates the Secret ``<prefix>-<run>`` and
mints, with the TokenRequest API, a token of ``$PLUGIN_ACCOUNT`` bound to that Secret (deleting
the Secret revokes the token). It prints an ExecCredential whose ``expirationTimestamp`` is
``$PLUGIN_EXPIRES_IN`` seconds away: shorter than the token's real life (600 s, the API's least),
as a cloud's plugin would say. With ``$PLUGIN_STATE/fail`` present it prints that file on stderr
and exits 3, as a plugin whose login is gone.
"""

import json
import os
import ssl
import sys
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any


def call(method: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(  # noqa: S310 - the test's own https API server
        os.environ["PLUGIN_SERVER"] + path,
        data=json.dumps(body).encode(),
        method=method,
        headers={
            "Authorization": f"Bearer {os.environ['PLUGIN_ADMIN_TOKEN']}",
            "Content-Type": "application/json",
        },
    )
    context = ssl.create_default_context(cafile=os.environ["PLUGIN_CA"])
    with urllib.request.urlopen(request, context=context, timeout=20) as answer:  # noqa: S310
        return dict(json.loads(answer.read()))


def main() -> int:
    state = Path(os.environ["PLUGIN_STATE"])
    info = json.loads(os.environ.get("KUBERNETES_EXEC_INFO") or "{}")
    if info.get("spec", {}).get("interactive") is not False:
        print("KUBERNETES_EXEC_INFO does not say the run is non-interactive", file=sys.stderr)
        return 4
    with (state / "runs").open("a") as runs:
        runs.write(f"{datetime.now(UTC).isoformat()}\n")
    run = len((state / "runs").read_text().splitlines())
    if (state / "fail").exists():
        sys.stderr.write((state / "fail").read_text())
        return 3
    namespace, account = os.environ["PLUGIN_ACCOUNT"].split("/")
    name = f"{os.environ['PLUGIN_PREFIX']}-{run}"
    secret = call("POST", f"/api/v1/namespaces/{namespace}/secrets", {"metadata": {"name": name}})
    bound = {"kind": "Secret", "apiVersion": "v1", "name": name, "uid": secret["metadata"]["uid"]}
    minted = call(
        "POST",
        f"/api/v1/namespaces/{namespace}/serviceaccounts/{account}/token",
        {"spec": {"expirationSeconds": 600, "boundObjectRef": bound}},
    )
    status: dict[str, Any] = {"token": minted["status"]["token"]}
    (state / f"token-{run}").write_text(status["token"])  # for the test to see it refused
    if os.environ.get("PLUGIN_EXPIRES_IN"):
        expires = datetime.now(UTC) + timedelta(seconds=float(os.environ["PLUGIN_EXPIRES_IN"]))
        status["expirationTimestamp"] = expires.isoformat().replace("+00:00", "Z")
    answer = {"apiVersion": info.get("apiVersion"), "kind": "ExecCredential", "status": status}
    print(json.dumps(answer))
    return 0


if __name__ == "__main__":
    sys.exit(main())
