# rest.py - the REST calls to the local cloud's APIs that up.sh and compute-up.sh make from
# Python (their heredocs import it; embedded in labplane and written beside them). Settings come
# from the environment: KS_URL, ADMIN_USER, ADMIN_PASSWORD, ADMIN_PROJECT.
import json, os, time, urllib.request, urllib.error

E = os.environ
KS = E["KS_URL"] + "/v3"


def req(method, url, body=None, token=None, raw=None, ctype="application/json"):
    """One call: url is absolute, or a path under Keystone's /v3. Returns (headers, JSON body);
    409 (it exists) returns (None, None). A freshly started API's 503 or refused connection is
    tried again, 5 times in all."""
    if url.startswith("/"):
        url = KS + url
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    headers = {"Content-Type": ctype, **({"X-Auth-Token": token} if token else {})}
    for attempt in range(5):
        r = urllib.request.Request(url, method=method, data=data, headers=headers)
        try:
            with urllib.request.urlopen(r, timeout=60) as resp:
                out = resp.read()
                return resp.headers, (json.loads(out) if out else None)
        except urllib.error.HTTPError as e:
            if e.code == 409:
                return None, None
            if e.code != 503 or attempt == 4:
                raise SystemExit(f"{method} {url} -> {e.code}: {e.read()[:500]!r}")
        except (ConnectionError, urllib.error.URLError):
            if attempt == 4:
                raise
        time.sleep(1)


def admin_token():
    """A token of the cloud admin, scoped to the admin project."""
    hdr, _ = req("POST", "/auth/tokens", {"auth": {"identity": {"methods": ["password"], "password": {"user": {
        "name": E["ADMIN_USER"], "domain": {"id": "default"}, "password": E["ADMIN_PASSWORD"]}}},
        "scope": {"project": {"name": E["ADMIN_PROJECT"], "domain": {"id": "default"}}}}})
    return hdr["X-Subject-Token"]


def find(token, coll, **q):
    """The first Keystone object of coll matching the query, or None."""
    qs = "&".join(f"{k}={v}" for k, v in q.items())
    items = req("GET", f"/{coll}?{qs}", token=token)[1][coll]
    return items[0] if items else None


def ensure(token, coll, single, body, **q):
    """The Keystone object of coll matching the query, created from body if there is none."""
    got = find(token, coll, **q)
    if got:
        return got
    req("POST", f"/{coll}", {single: body}, token=token)
    return find(token, coll, **q)
